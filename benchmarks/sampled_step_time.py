"""Time one optimizer step of REMADOM with the full vs the sampled ATAC likelihood, on the same batches.

    python benchmarks/sampled_step_time.py [--scenario snare_paired] [--fractions 0.05 0.1 0.25]
                                           [--n-cells 2560] [--batch-size 256] [--threads 1] [--steps 20]
                                           [--variant all_experts '{"consistency_weight": 1e-30}']
                                           [--h5ad /work/scale_data/synth_10000_100000.h5ad]

Same method as ``step_time.py`` (forward + backward + Adam, data loading excluded, median over
three interleaved rounds), one REMADOM per setting of ``negative_sampling``, and one per
``--variant NAME JSON`` (other ``REMADOM(...)`` arguments, full likelihood). A vanishing
``consistency_weight`` makes training compute every observed expert, as it did before #14 skipped
the ones modality dropout leaves out. ``--h5ad FILE`` times the first ``--n-cells`` cells of a
synthetic scale file (:func:`remadom.data.write_scale_dataset`, ATAC in ``obsm["X_atac"]``) instead
of ``--scenario``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from step_time import _batches, _time_steps, add_step_arguments, remadom_with_optimizer  # noqa: E402 - after the path insert


def _h5ad_model(adata, **model_kwargs):
    """REMADOM on a copy of a synthetic scale AnnData, and its training plan's optimizer."""
    from remadom import REMADOM
    from remadom.train import RemadomTrainingPlan

    adata = adata.copy()
    REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", batch_key="batch")
    model = REMADOM(adata, **model_kwargs)
    return model, RemadomTrainingPlan(model.module).configure_optimizers()["optimizer"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p)
    p.add_argument("--fractions", type=float, nargs="*", default=[0.05, 0.1, 0.25])
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "JSON"))
    p.add_argument("--h5ad", default=None, help="a synthetic scale .h5ad instead of --scenario")
    args = p.parse_args(argv)

    import scvi
    import torch
    from _scenarios import build_scenario

    torch.set_num_threads(args.threads)
    scn = None if args.h5ad else build_scenario(args.scenario, args.data_dir, n_cells=args.n_cells)
    adata = None
    if args.h5ad:
        import anndata as ad

        adata = ad.read_h5ad(args.h5ad)[: args.n_cells].copy()
    runs = {}
    settings = {"full" if f is None else f"sampled_{f}": {"negative_sampling": f} for f in [None, *args.fractions]}
    settings.update({name: json.loads(spec) for name, spec in args.variant})
    for name, kwargs in settings.items():
        scvi.settings.seed = 0
        model, opt = remadom_with_optimizer(scn, **kwargs) if scn is not None else _h5ad_model(adata, **kwargs)
        runs[name] = (model.module, _batches(model, 8, args.batch_size, load_sparse_tensor=True), opt)
    times = {k: [] for k in runs}
    for _ in range(3):
        for name, (module, batches, opt) in runs.items():
            times[name] += _time_steps(module, batches, args.steps, {"kl_weight": 1.0}, opt)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_features = ({m: int(scn.mdata.mod[m].n_vars) for m in scn.modalities} if scn is not None
                  else {"rna": int(adata.n_vars), "atac": int(adata.obsm["X_atac"].shape[1])})
    print(json.dumps({"scenario": args.h5ad or args.scenario, "n_cells": args.n_cells, "n_features": n_features,
                      "batch_size": args.batch_size, "threads": args.threads, "median_s_per_step": med,
                      "load_average": os.getloadavg(),
                      "speedup_vs_full": {k: med["full"] / v for k, v in med.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
