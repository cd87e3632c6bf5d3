"""Time one optimizer step (forward + backward + Adam) of REMADOM and MULTIVI on the same batches.

    python benchmarks/step_time.py [--scenario snare_paired] [--n-hidden 128] [--threads 1]
                                   [--steps 20] [--batch-size 256] [--remadom-kwargs '{"n_layers": 1}']

Isolates the model's compute from data loading, validation and logging (``run.py`` measures the
whole training loop). Both models see the same cells, batch size and hidden width
(``--n-hidden``; default: each method's own default). Reports the median seconds per step and
the ratio, measured in the same process, one method after the other, three rounds interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def add_step_arguments(p: argparse.ArgumentParser, n_cells: int = 2560, batch_size: int = 256, steps: int = 20) -> None:
    """The options every step-timing script shares: scenario, data, cells, batch size, threads, steps."""
    p.add_argument("--scenario", default="snare_paired")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=n_cells)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=steps)


def remadom_with_optimizer(scn, **model_kwargs):
    """REMADOM set up on a copy of the scenario's MuData, and the optimizer its training plan makes."""
    from remadom import REMADOM
    from remadom.train import RemadomTrainingPlan

    mdata = scn.mdata.copy()
    REMADOM.setup_mudata(mdata, modalities={m: m for m in scn.modalities}, batch_key=scn.batch_key)
    model = REMADOM(mdata, **model_kwargs)
    return model, RemadomTrainingPlan(model.module).configure_optimizers()["optimizer"]


def _batches(model, n: int, batch_size: int, **loader_kwargs) -> list[dict]:
    loader = model._make_data_loader(adata=model.adata, batch_size=batch_size, shuffle=True, **loader_kwargs)
    out = []
    for tensors in loader:
        out.append(tensors)
        if len(out) == n:
            break
    return out


def _time_steps(module, batches, steps: int, loss_kwargs: dict, optimizer) -> list[float]:
    module.train()
    opt = optimizer
    times = []
    for i in range(steps):
        tensors = batches[i % len(batches)]
        t0 = time.perf_counter()
        _, _, out = module(tensors, loss_kwargs=loss_kwargs)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[2:]  # first steps allocate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p)
    p.add_argument("--n-hidden", type=int, default=None, help="width for both models (default: their own)")
    p.add_argument("--remadom-kwargs", default="{}", help="JSON of extra REMADOM(...) arguments")
    args = p.parse_args(argv)

    import scvi
    import torch
    from _methods import _MULTIVI_LAYER
    from _scenarios import build_scenario, padded_mudata

    torch.set_num_threads(args.threads)
    scvi.settings.seed = 0
    scn = build_scenario(args.scenario, args.data_dir, n_cells=args.n_cells)
    width = {} if args.n_hidden is None else {"n_hidden": args.n_hidden}

    rem, rem_opt = remadom_with_optimizer(scn, **width, **json.loads(args.remadom_kwargs))
    pad = padded_mudata(scn)
    mods = {_MULTIVI_LAYER[m]: m for m in scn.modalities}
    scvi.model.MULTIVI.setup_mudata(pad, batch_key=scn.batch_key, modalities={**mods, "batch_key": "rna"})
    mvi = scvi.model.MULTIVI(pad, **width)

    # each model's own training-time data loading (REMADOM: sparse ATAC) and optimizer
    # (REMADOM: Adam from its training plan; MULTIVI.train: AdamW, weight decay 1e-3)
    mvi_plan = scvi.train.TrainingPlan(mvi.module, optimizer="AdamW", weight_decay=1e-3, eps=1e-8)
    mvi_opt = mvi_plan.configure_optimizers()["optimizer"]
    runs = {
        "remadom": (rem.module, _batches(rem, 8, args.batch_size, load_sparse_tensor=True), rem_opt),
        "multivi": (mvi.module, _batches(mvi, 8, args.batch_size), mvi_opt),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):  # interleave so that slow drift of the machine hits both
        for name, (module, batches, opt) in runs.items():
            times[name] += _time_steps(module, batches, args.steps, {"kl_weight": 1.0}, opt)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _, _) in runs.items()}
    result = {
        "scenario": args.scenario,
        "n_features": {m: int(scn.mdata.mod[m].n_vars) for m in scn.modalities},
        "batch_size": args.batch_size,
        "threads": args.threads,
        "n_hidden": {
            "remadom": int(rem.module.decoders[scn.modalities[0]].body.fc_layers[0][0].out_features),
            "multivi": int(mvi.module.n_hidden),
        },
        "n_params": n_params,
        "median_s_per_step": med,
        "multivi_over_remadom": med["multivi"] / med["remadom"],
    }
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
