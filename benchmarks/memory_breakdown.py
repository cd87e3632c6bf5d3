"""Where REMADOM's added training memory goes at 100k peaks: parameters, gradients, Adam, activations.

    python benchmarks/memory_breakdown.py --h5ad /work/scale_data/synth_10000_100000.h5ad \\
        [--n-cells 1024] [--batch-size 128] [--variant NAME JSON ...]

One REMADOM per variant (``REMADOM(...)`` arguments as JSON; ``default`` = ``{}``), set up on the
first ``--n-cells`` cells of a synthetic scale file (:func:`remadom.data.write_scale_dataset`), one
training step (forward, backward, the training plan's Adam) on a ``--batch-size`` minibatch from
REMADOM's own loader. Reported per variant, in MB, counted from the tensors themselves (not RSS):

* ``params``, ``grads`` (after the backward), ``adam_states`` (``exp_avg``/``exp_avg_sq``);
* ``saved_activations``: every tensor autograd keeps from the forward for the backward
  (``torch.autograd.graph.saved_tensors_hooks``; storage counted once);
* ``minibatch``: the minibatch's tensors as the loader gives them (sparse ATAC stays sparse);
* ``rss_step_mb``: the process RSS growth over the step, for comparison (glibc keeps freed pages).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MB = 1024**2


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _nbytes(t) -> int:
    import torch

    if t.layout != torch.strided:
        if t.layout == torch.sparse_csr:
            return sum(x.numel() * x.element_size() for x in (t.values(), t.col_indices(), t.crow_indices()))
        c = t.coalesce() if not t.is_coalesced() else t
        return c.values().numel() * c.values().element_size() + c.indices().numel() * 8
    return t.untyped_storage().nbytes()


def measure(adata, kwargs: dict, batch_size: int) -> dict:
    import scvi
    import torch

    from remadom import REMADOM
    from remadom.train import RemadomTrainingPlan

    scvi.settings.seed = 0
    a = adata.copy()
    REMADOM.setup_anndata(a, atac_obsm_key="X_atac", batch_key="batch")
    model = REMADOM(a, **kwargs)
    module = model.module
    opt = RemadomTrainingPlan(module).configure_optimizers()["optimizer"]
    loader = model._make_data_loader(adata=a, batch_size=batch_size, shuffle=True, load_sparse_tensor=True)
    tensors = next(iter(loader))
    minibatch = sum(_nbytes(t) for t in tensors.values() if torch.is_tensor(t))
    saved, seen = [0], set()

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.layout) if t.layout == torch.strided else id(t)
        if key not in seen:
            seen.add(key)
            saved[0] += _nbytes(t)
        return t

    module.train()
    rss0 = _rss_mb()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, _, out = module(tensors, loss_kwargs={"kl_weight": 1.0})
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    opt.step()
    rss1 = _rss_mb()
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in module.parameters() if p.grad is not None)
    states = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                 if torch.is_tensor(v) and v.dim() > 0)
    wide = {n: p.numel() for n, p in module.named_parameters() if p.numel() >= 1_000_000}
    return {"kwargs": kwargs, "n_params": sum(p.numel() for p in module.parameters()),
            "params_mb": params / MB, "grads_mb": grads / MB, "adam_states_mb": states / MB,
            "saved_activations_mb": saved[0] / MB, "minibatch_mb": minibatch / MB,
            "total_counted_mb": (params + grads + states + saved[0] + minibatch) / MB,
            "rss_step_mb": rss1 - rss0, "wide_params": wide}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5ad", required=True)
    p.add_argument("--n-cells", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "JSON"))
    args = p.parse_args(argv)

    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.h5ad)[: args.n_cells].copy()
    variants = {"default": {}, **{name: json.loads(spec) for name, spec in args.variant}}
    rows = {}
    for name, kwargs in variants.items():
        rows[name] = measure(adata, kwargs, args.batch_size)
        print(json.dumps({"variant": name, **rows[name]}), flush=True)
    print(json.dumps({"h5ad": args.h5ad, "n_features": {"rna": adata.n_vars, "atac": adata.obsm["X_atac"].shape[1]},
                      "batch_size": args.batch_size, "load_average": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
