"""Out-of-core training: host memory and throughput as the number of cells grows.

    # 1. files: one generated mosaic, and copies of its cells tiled to larger sizes
    python -m remadom.data._scale --n-cells 10000 --out scale_10k.h5ad
    python benchmarks/out_of_core.py tile scale_10k.h5ad bench_10k.h5ad --times 1
    python benchmarks/out_of_core.py tile scale_10k.h5ad bench_1m.h5ad --times 100
    # 2. training runs, each in its own process, back to back
    python benchmarks/out_of_core.py run bench_10k.h5ad bench_100k.h5ad bench_1m.h5ad \\
        --steps 200 --batch-size 256 --threads 1 [--in-memory] --out results.jsonl

``run`` opens each file with :func:`remadom.data.read_h5ad_backed` (``--in-memory``: with
:func:`anndata.read_h5ad`, the whole file in RAM, for comparison), sets it up, trains
``--steps`` optimizer steps (``train_size=1.0``, so no validation pass) and reports, per file:
RSS once the file is open, after setup, after the model is built, the peak RSS of the whole run,
the peak RSS while training (``VmHWM`` reset after setup, so the one-off setup statistics sample
is not in it) and of setup (the larger is the run's peak), setup seconds, and training cells/s over the steps after the first 20.

``tile`` writes an ``.h5ad`` holding the cells of a generated file ``--times`` times (CSR
arrays streamed block by block, contiguous HDF5 datasets, so random-row reads are as fast as
they get with HDF5). Generating a million cells at 100k peaks takes hours on two cores;
repeated cells cost the loader and the model exactly what new cells cost, but they are
copies: use tiled files for memory and speed, not for quality.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

_BLOCK = 1 << 24  # values copied at a time by ``tile``


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM (Linux)
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- tile
def _tile_csr(src: h5py.Group, dst: h5py.Group, times: int) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    n_rows, n_cols = (int(v) for v in src.attrs["shape"])
    nnz = src["data"].shape[0]
    data = dst.create_dataset("data", shape=(nnz * times,), dtype=src["data"].dtype)
    indices = dst.create_dataset("indices", shape=(nnz * times,), dtype=src["indices"].dtype)
    for t in range(times):
        for start in range(0, nnz, _BLOCK):
            stop = min(start + _BLOCK, nnz)
            data[t * nnz + start:t * nnz + stop] = src["data"][start:stop]
            indices[t * nnz + start:t * nnz + stop] = src["indices"][start:stop]
    indptr = src["indptr"][:]
    out = np.concatenate([indptr[:-1] + t * nnz for t in range(times)] + [[nnz * times]]).astype(np.int64)
    dst.create_dataset("indptr", data=out)
    dst.attrs["shape"] = (n_rows * times, n_cols)


def tile(source: Path, target: Path, times: int) -> Path:
    """Write ``target`` with the cells of ``source`` repeated ``times`` times (see the module docstring)."""
    import pandas as pd
    from anndata.io import read_elem, write_elem

    tmp = target.with_suffix(".tmp.h5ad")
    with h5py.File(source, "r") as src, h5py.File(tmp, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        _tile_csr(src["X"], dst.create_group("X"), times)
        obsm = dst.create_group("obsm")
        for key, value in src["obsm"].attrs.items():
            obsm.attrs[key] = value
        for key, elem in src["obsm"].items():
            if isinstance(elem, h5py.Group):
                _tile_csr(elem, obsm.create_group(key), times)
            else:
                block = elem[:]
                out = obsm.create_dataset(key, shape=(block.shape[0] * times, *block.shape[1:]), dtype=block.dtype)
                for k, v in elem.attrs.items():
                    out.attrs[k] = v
                for t in range(times):
                    out[t * block.shape[0]:(t + 1) * block.shape[0]] = block
        obs = read_elem(src["obs"])
        tiled = pd.concat([obs] * times)
        tiled.index = pd.Index([f"{name}_t{t}" for t in range(times) for name in obs.index])
        write_elem(dst, "obs", tiled)
        for key in ("var", "uns", "layers", "obsp", "varm", "varp"):
            if key in src:
                write_elem(dst, key, read_elem(src[key]))
    tmp.rename(target)
    return target


# ------------------------------------------------------------------------------ run
def worker(args) -> dict:
    """One training run in this process (see the module docstring)."""
    import anndata as ad
    import scvi
    from lightning.pytorch import Callback

    import remadom
    from remadom.data import read_h5ad_backed

    class StepTimer(Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter())

    row = {"file": str(args.file), "mode": "in-memory" if args.in_memory else "backed", "accelerator": args.accelerator,
           "file_gb": round(args.file.stat().st_size / 1e9, 2), "steps": args.steps,
           "batch_size": args.batch_size, "threads": args.threads}
    t0 = time.perf_counter()
    adata = ad.read_h5ad(args.file) if args.in_memory else read_h5ad_backed(args.file)
    row.update(n_cells=adata.n_obs, open_s=round(time.perf_counter() - t0, 1),
               rss_open_mb=round(_status_mb("VmRSS")))
    t0 = time.perf_counter()
    remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac" if "X_atac" in adata.obsm else None,
                                  adt_obsm_key="X_adt" if "X_adt" in adata.obsm else None, batch_key="batch")
    row.update(setup_s=round(time.perf_counter() - t0, 1), rss_setup_mb=round(_status_mb("VmRSS")))
    scvi.settings.seed = 0
    t0 = time.perf_counter()
    model = remadom.REMADOM(adata, **json.loads(args.model_kwargs))
    row.update(model_s=round(time.perf_counter() - t0, 1), rss_model_mb=round(_status_mb("VmRSS")),
               peak_setup_mb=round(_status_mb("VmHWM")))
    row["n_features"] = {m: int(n) for m, n in
                         ((m, len(v)) for m, v in model.feature_names_.items())}
    reset = _reset_peak_rss()
    timer = StepTimer()
    t0 = time.perf_counter()
    model.train(max_epochs=10_000, max_steps=args.steps, batch_size=args.batch_size, train_size=1.0,
                callbacks=[timer], enable_progress_bar=False, accelerator=args.accelerator)
    row["train_s"] = round(time.perf_counter() - t0, 1)
    skip = min(20, len(timer.times) // 4)
    span = timer.times[-1] - timer.times[skip]
    row["cells_per_s"] = round(args.batch_size * (len(timer.times) - 1 - skip) / span, 1)
    row["s_per_step"] = round(span / (len(timer.times) - 1 - skip), 3)
    row["peak_train_mb"] = round(_status_mb("VmHWM")) if reset else None
    # the reset also lowers getrusage's ru_maxrss: the run's peak is the larger of the two phases'
    row["peak_run_mb"] = max(row["peak_setup_mb"], row["peak_train_mb"] or 0)
    return row


def _table(rows: list[dict]) -> str:
    head = ("| mode | cells | file GB | setup s | RSS after setup MB | peak RSS training MB | peak RSS run MB "
            "| cells/s | s/step |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['n_cells']:,} | {r['file_gb']} | {r['setup_s']} | {r['rss_setup_mb']:,} "
                     f"| {r['peak_train_mb']:,} | {r['peak_run_mb']:,} | {r['cells_per_s']:,} | {r['s_per_step']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tile", help="repeat the cells of a generated file")
    t.add_argument("source", type=Path)
    t.add_argument("target", type=Path)
    t.add_argument("--times", type=int, required=True)
    r = sub.add_parser("run", help="train on each file, each in its own process")
    r.add_argument("files", type=Path, nargs="+")
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--in-memory", action="store_true", help="read each whole file into RAM instead")
    r.add_argument("--accelerator", default="cpu")
    r.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of REMADOM(...)")
    r.add_argument("--out", type=Path, default=None, help="append the runs as JSON lines")
    r.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.command == "tile":
        print(tile(args.source, args.target, args.times))
        return 0
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        args.file = args.files[0]
        print("ROW " + json.dumps(worker(args)), flush=True)
        return 0
    rows = []
    env = {**os.environ, **{k: str(args.threads) for k in
                            ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    for path in args.files:
        cmd = [sys.executable, __file__, "run", str(path), "--worker", "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--model-kwargs", args.model_kwargs, "--accelerator", args.accelerator] + (
                   ["--in-memory"] if args.in_memory else [])
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
        if not found:
            print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
            continue
        row = {**json.loads(found[0]), "load_1min_before": round(load, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out is not None:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
