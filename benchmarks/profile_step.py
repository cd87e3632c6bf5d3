"""Where does a REMADOM training step's time go? Data loading vs forward/backward/optimizer, and top ops.

    python benchmarks/profile_step.py [--scenario snare_paired] [--n-cells 5000] [--batch-size 128]
                                      [--threads 1] [--steps 10] [--negative-sampling 0.1]

Times (1) one pass of scvi-tools' ``AnnDataLoader`` over the cells (the collation a training
epoch pays, load_sparse_tensor as in training), per batch; (2) forward, backward and Adam step of
the module on the loaded batches; and prints the torch profiler's top operators by CPU time.
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

from step_time import add_step_arguments, remadom_with_optimizer  # noqa: E402 - after the path insert


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p, n_cells=5000, batch_size=128, steps=10)
    p.add_argument("--negative-sampling", type=float, default=None)
    args = p.parse_args(argv)

    import scvi
    import torch
    from _scenarios import build_scenario
    from torch.profiler import ProfilerActivity, profile


    torch.set_num_threads(args.threads)
    scvi.settings.seed = 0
    scn = build_scenario(args.scenario, args.data_dir, n_cells=args.n_cells)
    model, opt = remadom_with_optimizer(scn, negative_sampling=args.negative_sampling)
    loader = model._make_data_loader(adata=model.adata, batch_size=args.batch_size, shuffle=True,
                                     load_sparse_tensor=True)
    t0 = time.perf_counter()
    batches = list(loader)
    load_s = (time.perf_counter() - t0) / len(batches)
    module = model.module
    module.train()
    phases = {"forward": [], "backward": [], "optimizer": []}

    def step(tensors):
        t = time.perf_counter()
        _, _, out = module(tensors, loss_kwargs={"kl_weight": 1.0})
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t1 - t, t2 - t1, t3 - t2

    for i in range(2):
        step(batches[i])
    for i in range(args.steps):
        for k, v in zip(phases, step(batches[i % len(batches)])):
            phases[k].append(v)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3):
            step(batches[i % len(batches)])
    med = {k: statistics.median(v) for k, v in phases.items()}
    step_s = sum(med.values())
    print(json.dumps({"scenario": args.scenario, "n_cells": scn.mdata.n_obs, "batch_size": args.batch_size,
                      "threads": args.threads, "negative_sampling": args.negative_sampling,
                      "loader_s_per_batch": load_s, "step_phases_s": med, "step_s": step_s,
                      "loader_share_of_batch_time": load_s / (load_s + step_s)}, indent=1))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
