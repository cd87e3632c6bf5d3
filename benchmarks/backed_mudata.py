"""Out-of-core training from a MuData: host memory of the conversion, of backed training and of the in-memory run.

    # 1. a mosaic .h5mu: a generated scale file, each modality keeping only the cells that have it
    python -m remadom.data._scale --n-cells 50000 --n-peaks 20000 --out scale_50k.h5ad
    python benchmarks/backed_mudata.py h5mu scale_50k.h5ad mosaic_50k.h5mu
    # 2. each step in its own process, back to back
    python benchmarks/backed_mudata.py run mosaic_50k.h5mu --steps 200 --batch-size 256 --out rows.jsonl

``run`` measures, each in a fresh process: ``convert`` (:func:`remadom.data.mudata_to_backed_h5ad`
to ``<h5mu stem>_padded.h5ad`` next to it), ``backed`` (that file opened with
:func:`remadom.data.read_h5ad_backed`, ``setup_anndata(**stored_setup_kwargs(adata))``, ``--steps``
optimizer steps with ``train_size=1.0``) and ``mudata`` (:func:`mudata.read_h5mu` into memory,
``setup_mudata``, the same training). Reported: seconds and peak RSS (``VmHWM``) of the whole
process, and for the two training modes the peak while training (``VmHWM`` reset after setup),
as in ``benchmarks/out_of_core.py``.
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
from out_of_core import _reset_peak_rss, _status_mb  # the same /proc/self RSS helpers

_BLOCK = 4096  # cells copied at a time by ``h5mu``


# ----------------------------------------------------------------------------- h5mu
def to_h5mu(source: Path, target: Path) -> Path:
    """Unpad a ``write_scale_dataset`` file: ``mod[m]`` holds only the cells with ``has_<m>``, streamed."""
    import pandas as pd
    from anndata.io import read_elem, write_elem

    from remadom._row_reads import read_rows
    from remadom.data._scale import _CSRAppender

    with h5py.File(source, "r") as f, h5py.File(target, "w", userblock_size=512) as g:
        obs = read_elem(f["obs"])
        mods = [m for m in ("rna", "atac", "adt") if f"has_{m}" in obs]
        g.create_group("mod").attrs["mod-order"] = np.array(mods, dtype=object).astype("S")
        all_vars = []
        for m in mods:
            keep = np.flatnonzero(obs[f"has_{m}"].to_numpy())
            src = f["X"] if m == "rna" else f["obsm"][f"X_{m}"]
            out = g["mod"].create_group(m)
            out.attrs["encoding-type"], out.attrs["encoding-version"] = "anndata", "0.1.0"
            if isinstance(src, h5py.Group):
                n_cols = int(src.attrs["shape"][1])
                indptr = src["indptr"][...]
                sink = _CSRAppender(out.create_group("X"), n_cols)
                for start in range(0, len(keep), _BLOCK):
                    sink.append(read_rows(src, indptr, keep[start:start + _BLOCK], n_cols))
                sink.close()
            else:
                n_cols = src.shape[1]
                ds = out.create_dataset("X", shape=(len(keep), n_cols), dtype=np.float32)
                ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
                for start in range(0, len(keep), _BLOCK):
                    ds[start:start + _BLOCK] = src[keep[start:start + _BLOCK]]
            if m == "rna":
                names = read_elem(f["var"]).index.to_numpy()
            elif m == "atac":
                names = np.array([f"peak_{i:06d}" for i in range(n_cols)])
            else:
                names = np.asarray(read_elem(f["uns"]["adt_names"]), dtype=str)
            write_elem(out, "obs", pd.DataFrame(index=obs.index[keep]))
            write_elem(out, "var", pd.DataFrame(index=pd.Index(names, dtype=str)))
            all_vars.append(names)
        write_elem(g, "obs", obs[["batch", "cluster"]])
        write_elem(g, "var", pd.DataFrame(index=pd.Index(np.concatenate(all_vars), dtype=str)))
    with open(target, "r+b") as fh:  # the header mudata writes in the user block
        fh.write(b"MuData (format-version=0.1.0;creator=remadom-benchmarks)")
    return target


# ----------------------------------------------------------------------------- run
def _train(model, args, row) -> None:
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    model.train(max_epochs=10_000, max_steps=args.steps, batch_size=args.batch_size, train_size=1.0,
                enable_progress_bar=False)
    row["train_s"] = round(time.perf_counter() - t0, 1)
    row["peak_train_mb"] = round(_status_mb("VmHWM")) if reset else None
    row["peak_run_mb"] = max(row["peak_setup_mb"], row["peak_train_mb"] or 0)


def worker(args) -> dict:
    """One measurement in this process (see the module docstring)."""
    import scvi

    import remadom
    from remadom.data import mudata_to_backed_h5ad, read_h5ad_backed, stored_setup_kwargs

    padded = args.file.with_name(args.file.stem + "_padded.h5ad")
    row = {"mode": args.mode, "h5mu_gb": round(args.file.stat().st_size / 1e9, 2), "steps": args.steps,
           "batch_size": args.batch_size, "threads": args.threads}
    t0 = time.perf_counter()
    if args.mode == "convert":
        mudata_to_backed_h5ad(args.file, padded, batch_key="batch", chunk_size=args.chunk_size, overwrite=True)
        row.update(seconds=round(time.perf_counter() - t0, 1), chunk_size=args.chunk_size,
                   padded_gb=round(padded.stat().st_size / 1e9, 2), peak_run_mb=round(_status_mb("VmHWM")))
        return row
    if args.mode == "backed":
        data = read_h5ad_backed(padded)
        remadom.REMADOM.setup_anndata(data, **stored_setup_kwargs(data))
    else:
        import mudata as md

        data = md.read_h5mu(args.file)
        row["rss_read_mb"] = round(_status_mb("VmRSS"))
        remadom.REMADOM.setup_mudata(data, batch_key="batch")
    row.update(n_cells=int(data.n_obs), setup_s=round(time.perf_counter() - t0, 1),
               rss_setup_mb=round(_status_mb("VmRSS")))
    scvi.settings.seed = 0
    model = remadom.REMADOM(data, **json.loads(args.model_kwargs))
    row["peak_setup_mb"] = round(_status_mb("VmHWM"))
    _train(model, args, row)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("h5mu", help="unpad a write_scale_dataset .h5ad into a mosaic .h5mu")
    h.add_argument("source", type=Path)
    h.add_argument("target", type=Path)
    r = sub.add_parser("run", help="convert, train backed, train in memory: each in its own process")
    r.add_argument("file", type=Path)
    r.add_argument("--modes", nargs="+", default=["convert", "backed", "mudata"])
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--chunk-size", type=int, default=10_000)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of REMADOM(...)")
    r.add_argument("--out", type=Path, default=None, help="append the rows as JSON lines")
    r.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.command == "h5mu":
        print(to_h5mu(args.source, args.target))
        return 0
    if args.mode:
        import torch

        torch.set_num_threads(args.threads)
        print("ROW " + json.dumps(worker(args)), flush=True)
        return 0
    env = {**os.environ, **{k: str(args.threads) for k in
                            ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    for mode in args.modes:
        cmd = [sys.executable, __file__, "run", str(args.file), "--mode", mode, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size),
               "--threads", str(args.threads), "--model-kwargs", args.model_kwargs]
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
        if not found:
            print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
            return 1
        row = {**json.loads(found[0]), "load_1min_before": round(load, 2)}
        print(json.dumps(row), flush=True)
        if args.out is not None:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
