"""Peak RSS of one REMADOM run by stage: open, setup_anndata, REMADOM() (its statistics pass apart), train.

    python benchmarks/stage_rss.py /work/scale_data/synth_50000_100000.h5ad [--backed] [--steps 20] \\
        [--out stages.json]

A background thread samples the process RSS (``/proc/self/statm``) every 5 ms and keeps the
maximum of each stage; the initialization statistics (``remadom.model._setup.modality_statistics``)
are their own stage inside ``REMADOM()``. Training is one epoch of ``--steps`` training and
validation batches (batch 128, ``train_size=0.9``), as ``benchmarks/scale.py --max-steps``. Run it
with ``OMP_NUM_THREADS=1`` (and ``PYTHONPATH=src`` in a worktree).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class _Sampler:
    def __init__(self):
        self.stage, self.peaks, self._stop = "imports", {}, False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            r = _rss_mb()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), r)
            time.sleep(0.005)

    def mark(self, stage: str):
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), _rss_mb())
        self.stage = stage

    def stop(self) -> dict:
        self.mark("end")
        self._stop = True
        self._thread.join()
        return {k: round(v, 1) for k, v in self.peaks.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("h5ad")
    p.add_argument("--backed", action="store_true", help="open with remadom.data.read_h5ad_backed")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=None, help="append the result as one JSON line")
    args = p.parse_args(argv)
    sampler = _Sampler()
    import anndata as ad
    import torch

    import remadom.model._remadom as remadom_model
    from remadom import REMADOM
    from remadom.data import read_h5ad_backed

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    statistics = remadom_model.modality_statistics

    def timed_statistics(*a, **k):
        sampler.mark("statistics")
        out = statistics(*a, **k)
        sampler.mark("module")
        return out

    remadom_model.modality_statistics = timed_statistics
    sampler.mark("open")
    adata = read_h5ad_backed(args.h5ad) if args.backed else ad.read_h5ad(args.h5ad)
    sampler.mark("setup_anndata")
    adt = "X_adt" if "X_adt" in adata.obsm else None
    REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key=adt, batch_key="batch")
    sampler.mark("model_checks")
    model = REMADOM(adata)
    sampler.mark("train")
    model.train(max_epochs=1, batch_size=128, train_size=0.9, limit_train_batches=args.steps,
                limit_val_batches=args.steps, early_stopping=False, enable_progress_bar=False)
    peaks = sampler.stop()
    row = {"h5ad": args.h5ad, "backed": args.backed, "steps": args.steps, "stage_peak_rss_mb": peaks,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "load_average": os.getloadavg()}
    print(json.dumps(row))
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
