"""Seconds per minibatch read from a backed ``.h5ad``: scvi-tools' loader vs REMADOM's one-read loader.

    python benchmarks/backed_reads.py FILE.h5ad [--batch-size 128] [--batches 30] [--in-memory]

Opens ``FILE`` with :func:`remadom.data.read_h5ad_backed`, registers it with
``REMADOM.setup_anndata`` (ATAC in ``obsm["X_atac"]``, ADT in ``obsm["X_adt"]`` when present) and
times ``--batches`` shuffled minibatches (``load_sparse_tensor=True``, as training reads them) of
scvi-tools' :class:`~scvi.dataloaders.AnnDataLoader` (anndata reads two HDF5 slices per row and
matrix) and of :class:`remadom._row_reads.RowBatchAnnDataLoader` (one HDF5 read per array), one
after the other, twice, interleaved; checks that both give the same batches. ``--in-memory`` also
times scvi-tools' loader on the file read whole with :func:`anndata.read_h5ad`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _time(loader_cls, manager, batch_size: int, n: int, seed: int) -> tuple[float, list]:
    import torch

    torch.manual_seed(seed)
    loader = loader_cls(manager, batch_size=batch_size, shuffle=True, load_sparse_tensor=True)
    times, batches, t0 = [], [], time.perf_counter()
    for i, batch in enumerate(loader):
        now = time.perf_counter()
        if i:  # the first batch starts the loader
            times.append(now - t0)
        batches.append(batch)
        if len(batches) == n + 1:
            break
        t0 = time.perf_counter()
    return statistics.median(times), batches


def _same(a: list, b: list) -> bool:
    import torch

    def dense(t):
        return t.to_dense() if t.layout != torch.strided else t

    return all(torch.equal(dense(x[k]), dense(y[k])) for x, y in zip(a, b) for k in x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--in-memory", action="store_true")
    args = p.parse_args(argv)

    import anndata as ad
    from scvi.dataloaders import AnnDataLoader

    from remadom import REMADOM
    from remadom._row_reads import RowBatchAnnDataLoader
    from remadom.data import read_h5ad_backed

    def manager(adata):
        REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key="X_adt" if "X_adt" in adata.obsm else None,
                              batch_key="batch")
        return REMADOM._get_most_recent_anndata_manager(adata, required=True)

    backed = manager(read_h5ad_backed(args.file))
    rows = {"file": args.file, "n_cells": backed.adata.n_obs, "batch_size": args.batch_size, "batches": args.batches}
    for rnd in range(2):
        for name, cls in (("scvi_backed", AnnDataLoader), ("remadom_backed", RowBatchAnnDataLoader)):
            s, batches = _time(cls, backed, args.batch_size, args.batches, seed=rnd)
            rows.setdefault(name, []).append(s)
            rows.setdefault("_batches", {})[name] = batches
        rows.setdefault("identical", []).append(_same(*rows["_batches"].values()))
    if args.in_memory:
        memory = manager(ad.read_h5ad(args.file))
        rows["scvi_in_memory"] = [_time(AnnDataLoader, memory, args.batch_size, args.batches, seed=0)[0]]
    del rows["_batches"]
    rows["load_average"] = os.getloadavg()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
