"""Matrices left on disk: anndata's backed sparse datasets and HDF5 dense datasets.

Out-of-core training (see :func:`remadom.data.read_h5ad_backed`) registers these objects
instead of in-memory matrices. scvi-tools' :class:`~scvi.data.AnnTorchDataset` reads each
minibatch's rows from them; REMADOM's setup reads their stored values here, a bounded chunk
at a time, and never the whole matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np
from anndata.abc import CSCDataset, CSRDataset

#: On-disk matrix types a modality may be registered from.
ON_DISK_TYPES = (CSRDataset, CSCDataset, h5py.Dataset)


def is_on_disk(matrix) -> bool:
    """Whether ``matrix`` is read from disk on access (anndata ``CSRDataset`` / ``CSCDataset``, ``h5py.Dataset``)."""
    return isinstance(matrix, ON_DISK_TYPES)


def is_sparse_on_disk(matrix) -> bool:
    """Whether ``matrix`` is an on-disk CSR/CSC matrix (read as sparse minibatches)."""
    return isinstance(matrix, (CSRDataset, CSCDataset))


def on_disk_format_problem(matrix) -> str | None:
    """Why the data loader cannot read ``matrix`` row by row from disk, or ``None`` if it can.

    anndata reads rows of a CSC dataset by loading the whole matrix, and a boolean matrix
    would need a converted in-memory copy (:func:`remadom.model._checks.registrable_specs`).
    """
    if isinstance(matrix, CSCDataset):
        return "is stored as CSC on disk; reading rows of it loads the whole matrix"
    if matrix.dtype == bool:
        return "is stored as booleans on disk; the data loader needs numbers"
    return None


def stored_value_chunks(matrix, max_values: int) -> Iterator[np.ndarray]:
    """The stored values of an on-disk matrix, at most about ``max_values`` at a time.

    Sparse: consecutive slices of its ``data`` array; dense: blocks of whole rows.
    """
    if is_sparse_on_disk(matrix):
        data = matrix.group["data"]
        for start in range(0, data.shape[0], max_values):
            yield data[start:start + max_values]
        return
    n_cols = int(np.prod(matrix.shape[1:])) if matrix.ndim > 1 else 1
    rows = max(1, max_values // max(n_cols, 1))
    for start in range(0, matrix.shape[0], rows):
        yield matrix[start:start + rows]


__all__ = ["ON_DISK_TYPES", "is_on_disk", "is_sparse_on_disk", "on_disk_format_problem", "stored_value_chunks"]
