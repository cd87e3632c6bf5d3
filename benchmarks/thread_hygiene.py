"""Regression check for issue #14's thread problem: does a UMAP slow the next training run down?

    python benchmarks/thread_hygiene.py [--epochs 20] [--threads 2] [--umap-cells 5000]

Runs, each in a fresh subprocess: (a) train a small mock model; (b) the same after
:func:`remadom.eval.umap_embedding` (which wraps umap-learn in :func:`remadom._threads.numba_threads`);
(c) the same after a bare ``umap.UMAP().fit_transform`` with numba's default threads (the old
behaviour). Prints the training seconds of each and the ratios b/a and c/a; b/a should stay
near 1 (the issue measured c/a = 28 on an idle 2-core machine). Timings only, no assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(mode: str, epochs: int, threads: int, umap_cells: int) -> float:
    import numpy as np
    import torch

    import remadom
    from remadom.data import generate_mock_dataset

    torch.set_num_threads(threads)
    adata, keys = generate_mock_dataset("bridge", n_cells=800, n_peaks=3000, seed=0)
    if mode != "plain":
        z = np.random.default_rng(0).normal(size=(umap_cells, 10)).astype(np.float32)
        if mode == "remadom_umap":
            from remadom.eval import umap_embedding

            umap_embedding(z)
        else:
            import umap

            umap.UMAP(n_neighbors=15).fit_transform(z)
    remadom.REMADOM.setup_anndata(adata, **keys)
    model = remadom.REMADOM(adata)
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--umap-cells", type=int, default=5000,
                   help="points the UMAP embeds; above 4,096 umap-learn builds its kNN graph with numba's "
                        "parallel NN-descent (below, an exact sklearn search), as on real latents")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT", child(args.child, args.epochs, args.threads, args.umap_cells), flush=True)
        return 0
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}  # numba's default, as users have
    env["OMP_NUM_THREADS"] = str(args.threads)
    out = {}
    for mode in ("plain", "remadom_umap", "bare_umap"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--epochs", str(args.epochs),
                               "--threads", str(args.threads), "--umap-cells", str(args.umap_cells)], env=env, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
        out[mode] = float(line[-1].split()[1]) if line else None
        print(mode, out[mode], proc.stderr[-500:] if not line else "", flush=True)
    if out["plain"]:
        out["after_remadom_umap_ratio"] = out["remadom_umap"] / out["plain"] if out["remadom_umap"] else None
        out["after_bare_umap_ratio"] = out["bare_umap"] / out["plain"] if out["bare_umap"] else None
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
