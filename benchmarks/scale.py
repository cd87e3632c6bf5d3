"""Scale benchmark: REMADOM vs MULTIVI throughput, peak memory and time to convergence.

    python benchmarks/scale.py --data snare:10000 synth:50000 synth:100000 mosaic:1000000 \\
        --epochs 10 --batch-size 128 --threads 2 [--accelerator gpu] [--remadom-kwargs '{...}']

``--data`` entries (``kind:n_cells``):

* ``snare:N``: SNARE-seq (paired RNA+ATAC, 25.7k peaks), N cells subsampled, from ``--data-dir``;
* ``synth:N``: synthetic paired RNA+ATAC (2k genes, ``--n-peaks`` peaks at 3 % density) from
  :func:`remadom.data.write_scale_dataset`, cached in ``--cache-dir``;
* ``mosaic:N``: the synthetic mosaic (RNA+ATAC / RNA+ADT / RNA / ATAC batches), REMADOM only.

``--methods`` takes ``remadom``, ``remadom_backed`` (the synthetic file opened with
:func:`remadom.data.read_h5ad_backed`: every matrix stays on disk) and ``multivi``.

``--max-steps N`` times a fixed number of steps instead of whole epochs: every epoch runs at most
N training and N validation batches (Lightning's ``limit_train_batches`` / ``limit_val_batches``),
the median seconds per training batch and per validation batch (data loading included; the first
two batches of each epoch left out) are measured, and the seconds per epoch are extrapolated as
``n_train_batches x train batch s + n_val_batches x val batch s`` (``s_per_epoch_measured`` keeps
the wall time of the truncated epochs). Time to convergence needs whole epochs (no ``--max-steps``).

Every (data, method) run is its own subprocess (so peak RSS is that run's), back to back, with
equal batch size, each method's default widths and ``--threads`` torch threads. Per run:
seconds per epoch (median over epochs, validation included), training cells/s, peak RSS, RSS
once the data is loaded, and time to convergence (cumulative time until the validation ELBO is
within 1 % of its final value, and ``time_to_best_s``: within 1 % of its best value, which is
what an early stopping that restores the best weights returns; with ``--default-epochs`` each method trains with its own
``max_epochs`` and early stopping, e.g. ``--data snare:1000 --snare-top-peaks 5000 --default-epochs``
for a size that converges in minutes). The script prints a table and the issue's target ratios
(CPU: throughput >= 4x MULTIVI's, peak RSS <= 0.5x; GPU: >= 100k cells/s per epoch), and writes
the runs as JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synthetic(kind: str, n_cells: int, n_peaks: int, cache_dir: Path) -> Path:
    from remadom.data import write_scale_dataset
    from remadom.data._scale import MOSAIC_LAYOUT

    paired = kind == "synth"
    path = cache_dir / f"{kind}_{n_cells}_{n_peaks}.h5ad"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.h5ad")
        write_scale_dataset(tmp, n_cells=n_cells, n_peaks=n_peaks, n_proteins=0 if paired else 100,
                            n_batches=2 if paired else 4, layout=(("rna", "atac"),) if paired else MOSAIC_LAYOUT)
        tmp.rename(path)
    return path


class _EpochTimer:
    """Lightning callback: wall time of every training epoch (its validation included), and the
    seconds between consecutive training / validation batches (loading included), per epoch."""

    def __new__(cls):
        from lightning.pytorch import Callback

        class Timer(Callback):
            def __init__(self):
                self.times, self._t0 = [], None
                self.train_batch, self.val_batch = [], []
                self._last = None

            def on_train_epoch_start(self, trainer, pl_module):
                self._t0 = self._last = time.perf_counter()
                self._n = 0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                now = time.perf_counter()
                if batch_idx >= 2:  # the first batches of an epoch start the loader
                    self.train_batch.append(now - self._last)
                self._last = now

            def on_validation_epoch_start(self, trainer, pl_module):
                self._vlast = time.perf_counter()

            def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
                now = time.perf_counter()
                if batch_idx >= 1:  # validation sets can be only a few batches
                    self.val_batch.append(now - self._vlast)
                self._vlast = now

            def on_train_epoch_end(self, trainer, pl_module):
                self.times.append(time.perf_counter() - self._t0)

        return Timer()


def _build(method: str, kind: str, n_cells: int, args):
    """(model, n_cells) for one run, the data loaded (or, ``remadom_backed``, opened) and set up."""
    import anndata as ad
    import scipy.sparse as sp
    import scvi

    from remadom import REMADOM

    if kind == "snare":
        from _methods import _MULTIVI_LAYER
        from _scenarios import build_scenario, padded_mudata

        scn = build_scenario("snare_paired", args.data_dir, n_cells=n_cells)
        if args.snare_top_peaks:  # the most often open peaks only (a smaller problem, e.g. for convergence)
            import numpy as np

            atac = scn.mdata.mod["atac"]
            n_open = np.asarray((atac.X > 0).sum(0)).ravel()
            keep = np.sort(np.argsort(-n_open, kind="stable")[: args.snare_top_peaks])
            scn.mdata.mod["atac"] = atac[:, keep].copy()
            scn.mdata.update()
        if method == "remadom_backed":
            raise SystemExit("remadom_backed needs a synthetic .h5ad (synth:N or mosaic:N), not snare:N")
        if method == "remadom":
            mdata = scn.mdata
            REMADOM.setup_mudata(mdata, modalities={m: m for m in scn.modalities}, batch_key=scn.batch_key)
            return REMADOM(mdata, **args.remadom_kwargs), mdata.n_obs
        pad = padded_mudata(scn)
        mods = {_MULTIVI_LAYER[m]: m for m in scn.modalities}
        scvi.model.MULTIVI.setup_mudata(pad, batch_key=scn.batch_key, modalities={**mods, "batch_key": "rna"})
        return scvi.model.MULTIVI(pad), pad.n_obs
    path = _synthetic(kind, n_cells, args.n_peaks, Path(args.cache_dir))
    if method == "remadom_backed":
        from remadom.data import read_h5ad_backed

        adata = read_h5ad_backed(path)
    else:
        adata = ad.read_h5ad(path)
    if method.startswith("remadom"):
        adt = "X_adt" if "X_adt" in adata.obsm else None
        REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key=adt, batch_key="batch")
        return REMADOM(adata, **args.remadom_kwargs), adata.n_obs
    # MULTIVI's input: a MuData of the two modalities (scvi-tools 1.4's MULTIVI.setup_anndata is a no-op)
    import mudata as md

    rna = ad.AnnData(adata.X, obs=adata.obs[["batch"]], var=adata.var[[]])
    atac = ad.AnnData(sp.csr_matrix(adata.obsm["X_atac"]), obs=adata.obs[["batch"]])
    atac.var_names = [f"peak_{i}" for i in range(atac.n_vars)]
    del adata
    mdata = md.MuData({"rna": rna, "atac": atac})
    scvi.model.MULTIVI.setup_mudata(mdata, batch_key="batch", modalities={"rna_layer": "rna", "atac_layer": "atac",
                                                                          "batch_key": "rna"})
    return scvi.model.MULTIVI(mdata), mdata.n_obs


def worker(args) -> dict:
    """One (data, method) run in this process; returns its measurements."""
    import numpy as np
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.seed = 0
    kind, n_cells = args.worker_data.split(":")
    rss_start = _rss_mb()
    model, n = _build(args.worker_method, kind, int(n_cells), args)
    rss_loaded = _rss_mb()
    timer = _EpochTimer()
    t0 = time.perf_counter()
    extra = {"strategy": args.strategy} if args.strategy else {}
    if args.precision:
        extra["precision"] = args.precision
    batch_size = args.batch_size // args.devices  # per device: the global batch stays --batch-size
    if args.max_steps:
        extra.update(limit_train_batches=args.max_steps, limit_val_batches=args.max_steps)
    if not args.default_epochs:  # else each method's own max_epochs and early stopping
        extra.update(max_epochs=args.epochs, early_stopping=False)
    model.train(batch_size=batch_size, train_size=0.9, accelerator=args.accelerator,
                devices=args.devices, enable_progress_bar=False, callbacks=[timer],
                check_val_every_n_epoch=1, **extra)
    total = time.perf_counter() - t0
    measured = float(np.median(timer.times)) if timer.times else float("nan")
    if args.max_steps:
        n_train = int(round(0.9 * n))
        train_s = float(np.median(timer.train_batch)) if timer.train_batch else float("nan")
        val_s = float(np.median(timer.val_batch)) if timer.val_batch else 0.0
        s_epoch = -(-n_train // batch_size) * train_s + -(-(n - n_train) // batch_size) * val_s
    else:
        train_s = val_s = None
        s_epoch = measured
    elbo = model.history.get("elbo_validation")
    elbo = None if elbo is None else elbo.to_numpy(dtype=float).ravel()
    converged = None
    if not args.max_steps and elbo is not None and len(elbo) == len(timer.times) and len(elbo) > 1:
        within = np.abs(elbo - elbo[-1]) <= 0.01 * abs(elbo[-1])
        first = int(np.argmax(within))
        converged = float(np.sum(timer.times[: first + 1]))
        epochs_to_convergence = first + 1
        # the same against the best validation ELBO (the weights REMADOM's early stopping restores)
        best = np.nanmin(elbo)
        first_best = int(np.argmax(np.abs(elbo - best) <= 0.01 * abs(best)))
        converged_best = float(np.sum(timer.times[: first_best + 1]))
    else:
        epochs_to_convergence = converged_best = first_best = None
    return {
        "data": args.worker_data, "method": args.worker_method, "n_cells": n, "epochs": len(timer.times),
        "batch_size": args.batch_size, "threads": args.threads, "accelerator": args.accelerator,
        "devices": args.devices, "precision": str(model.trainer.precision) if hasattr(model, "trainer") else None,
        "s_per_epoch": s_epoch, "cells_per_s": 0.9 * n / s_epoch, "train_s": total,
        "max_steps": args.max_steps, "s_per_epoch_measured": measured, "s_per_train_batch": train_s,
        "s_per_val_batch": val_s, "load_average": os.getloadavg(),
        "time_to_convergence_s": converged, "epochs_to_convergence": epochs_to_convergence,
        "time_to_best_s": converged_best, "epochs_to_best": None if first_best is None else first_best + 1,
        "elbo_validation_curve": None if elbo is None else [float(v) for v in elbo],
        "epoch_s": [float(t) for t in timer.times],
        "default_epochs": args.default_epochs, "snare_top_peaks": args.snare_top_peaks,
        "best_elbo_validation": None if elbo is None else float(np.nanmin(elbo)),
        "rss_start_mb": rss_start, "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": _peak_rss_mb(), "added_mb": _peak_rss_mb() - rss_loaded,
        "final_elbo_validation": None if elbo is None else float(elbo[-1]),
        "remadom_kwargs": args.remadom_kwargs if args.worker_method.startswith("remadom") else None,
    }


def _ratio(a, b):
    return a / b if a and b else float("nan")


def report(rows: list[dict], accelerator: str) -> str:
    """Markdown table of the runs and the target ratios (each REMADOM mode against MULTIVI)."""
    lines = ["| data | method | cells | epochs | s/epoch | cells/s | conv. s | peak RSS MB | added MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        conv = "-" if r.get("time_to_convergence_s") is None else f"{r['time_to_convergence_s']:.1f}"
        load = r.get("load_average")
        load = "-" if not load else f"{load[0]:.2f}"
        lines.append(f"| {r['data']} | {r['method']} | {r['n_cells']} | {r['epochs']} | {r['s_per_epoch']:.2f} | "
                     f"{r['cells_per_s']:.0f} | {conv} | {r['peak_rss_mb']:.0f} | {r['added_mb']:.0f} | {load} |")
    lines += ["", "| data | REMADOM mode | throughput REMADOM/MULTIVI (target >= 4) | peak RSS ratio (target <= 0.5) | "
              "added-memory ratio |", "|---|---|---|---|---|"]
    by = {(r["data"], r["method"]): r for r in rows}
    for data in dict.fromkeys(r["data"] for r in rows):
        mvi = by.get((data, "multivi"))
        for mode in ("remadom", "remadom_backed"):
            rem = by.get((data, mode))
            if rem and mvi:
                lines.append(f"| {data} | {mode} | {_ratio(rem['cells_per_s'], mvi['cells_per_s']):.2f} | "
                             f"{_ratio(rem['peak_rss_mb'], mvi['peak_rss_mb']):.2f} | "
                             f"{_ratio(rem['added_mb'], mvi['added_mb']):.2f} |")
    if accelerator == "gpu":
        for r in rows:
            if r["method"].startswith("remadom"):
                lines.append(f"\nGPU {r['data']} {r['method']}: {r['cells_per_s']:.0f} cells/s = "
                             f"{r['cells_per_s'] / 1e5:.2f} x the 100k cells/s target")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=["snare:10000", "synth:50000", "synth:100000", "mosaic:1000000"])
    p.add_argument("--methods", nargs="+", default=["remadom", "multivi"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--default-epochs", action="store_true",
                   help="each method's own max_epochs and early stopping (for time to convergence)")
    p.add_argument("--snare-top-peaks", type=int, default=None, help="snare:N keeps only the N most often open peaks")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time at most this many training (and validation) batches per epoch, extrapolate per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-peaks", type=int, default=100_000)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--remadom-kwargs", type=json.loads, default={})
    p.add_argument("--precision", default=None, help="e.g. 32 or bf16-mixed (default: train()'s choice)")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default=None, help="e.g. ddp with --devices 2")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--cache-dir", default=str(HERE / "results" / "scale_data"))
    p.add_argument("--out", default=str(HERE / "results" / "scale.jsonl"))
    p.add_argument("--worker-data", help=argparse.SUPPRESS)
    p.add_argument("--worker-method", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_data:
        result = worker(args)
        if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0":  # DDP: rank 0 reports
            print("RESULT " + json.dumps(result), flush=True)
        return 0
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "NUMBA_NUM_THREADS": "1"}
    for data in args.data:
        for method in args.methods:
            if method == "multivi" and data.startswith("mosaic"):
                continue  # REMADOM alone on the mosaic (MULTIVI has no ADT+ATAC mosaic path here)
            if method == "remadom_backed" and data.startswith("snare"):
                continue  # SNARE-seq is a MuData built in memory; the backed path reads an .h5ad
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                   "--worker-data", data, "--worker-method", method]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not result:
                print(f"{data} {method} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            row = json.loads(result[-1][len("RESULT "):])
            rows.append(row)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(report(rows, args.accelerator))
    return 0


if __name__ == "__main__":
    sys.exit(main())
