"""Faster minibatch reads from on-disk CSR matrices (the out-of-core path).

anndata's on-disk CSR matrix (:class:`anndata.abc.CSRDataset`) reads a set of rows with two
HDF5 reads per row (``data`` and ``indices``), then concatenates them: for a 128-cell
minibatch that is 256 reads per matrix, and the per-read overhead, not the bytes, is the
cost of a backed minibatch. :class:`RowBatchCSRDataset` is the same on-disk matrix with one
read per array for a whole set of rows: the rows' ``data`` / ``indices`` spans are joined into
one HDF5 selection (a union of hyperslabs) and read in one call. The result is the same
``scipy.sparse`` matrix, value for value, as anndata's (and as the in-memory matrix); the rows
come back in the order asked for.

:class:`RowBatchAnnDataLoader` is scvi-tools' :class:`~scvi.dataloaders.AnnDataLoader` whose
dataset reads through :class:`RowBatchCSRDataset` wherever a registered field is an on-disk
HDF5 CSR matrix; everything else (in-memory data, dense or zarr-backed fields) is untouched.
REMADOM's training splitter and inference loaders use it, so nothing changes for users.
"""

from __future__ import annotations

import h5py
import numpy as np
import scipy.sparse as sp
from anndata import settings as anndata_settings
from anndata.abc import CSRDataset
from h5py import h5s
from scvi.dataloaders import AnnDataLoader
from torch.utils.data import Subset

from ._compat import AnnDataCSRDataset

__all__ = ["RowBatchAnnDataLoader", "RowBatchCSRDataset", "read_rows", "with_row_batch_reads"]


def _read_spans(dataset: h5py.Dataset, starts: np.ndarray, stops: np.ndarray, total: int) -> np.ndarray:
    """The concatenation of ``dataset[start:stop]`` over the spans, in one HDF5 read."""
    out = np.empty(total, dtype=dataset.dtype)
    if total == 0:
        return out
    file_space = dataset.id.get_space()
    file_space.select_none()
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if stop > start:
            file_space.select_hyperslab((start,), (stop - start,), op=h5s.SELECT_OR)
    dataset.id.read(h5s.create_simple((total,)), file_space, out)
    return out


def read_rows(group: h5py.Group, indptr: np.ndarray, rows: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Rows ``rows`` (sorted, unique) of the CSR matrix stored in ``group``, as a CSR matrix.

    Parameters
    ----------
    group
        An HDF5 group holding a CSR matrix (``data``, ``indices``, ``indptr``).
    indptr
        Its row pointer, read into memory.
    rows
        Increasing row numbers, no repeats.
    n_cols
        Number of columns.
    """
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    total = int(lengths.sum())
    data = _read_spans(group["data"], starts, stops, total)
    indices = _read_spans(group["indices"], starts, stops, total)
    row_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_ptr[1:])
    return sp.csr_matrix((data, indices, row_ptr), shape=(len(rows), n_cols))


class RowBatchCSRDataset(AnnDataCSRDataset):
    """anndata's on-disk CSR matrix, reading a set of rows in one HDF5 read per array.

    Indexing with a 1-D integer array (or list) of rows and all columns, what scvi-tools'
    :class:`~scvi.data.AnnTorchDataset` does for every minibatch, goes through
    :func:`read_rows`; every other index is anndata's own. Rows may be in any order and repeat.
    """

    def _row_pointer(self) -> np.ndarray:
        if not hasattr(self, "_remadom_indptr"):
            self._remadom_indptr = np.asarray(self.group["indptr"][...], dtype=np.int64)
        return self._remadom_indptr

    def __getitem__(self, index):
        rows = _integer_rows(index)
        if rows is None:
            return super().__getitem__(index)
        n_rows, n_cols = self.shape
        if rows.size and (rows.min() < -n_rows or rows.max() >= n_rows):
            raise IndexError(f"row index out of range for a matrix with {n_rows} rows")
        rows = np.where(rows < 0, rows + n_rows, rows)
        unique, inverse = np.unique(rows, return_inverse=True)
        sub = read_rows(self.group, self._row_pointer(), unique, n_cols)
        if unique.size != rows.size or not np.array_equal(unique, rows):
            sub = sub[inverse]
        return sp.csr_array(sub) if anndata_settings.use_sparse_array_on_read else sub


def _integer_rows(index) -> np.ndarray | None:
    """The rows of a ``rows`` or ``(rows, :)`` index with integer rows, else None."""
    if isinstance(index, tuple):
        if len(index) != 2 or not (isinstance(index[1], slice) and index[1] == slice(None)):
            return None
        index = index[0]
    if isinstance(index, list | np.ndarray):
        rows = np.asarray(index)
        if rows.ndim == 1 and (rows.dtype.kind in "iu" or (rows.size == 0 and rows.dtype.kind == "f")):
            return rows.astype(np.int64)
    return None


def with_row_batch_reads(matrix):
    """``matrix`` as a :class:`RowBatchCSRDataset` if it is an on-disk HDF5 CSR matrix, else itself."""
    if isinstance(matrix, CSRDataset) and not isinstance(matrix, RowBatchCSRDataset) \
            and isinstance(matrix.group, h5py.Group):
        return RowBatchCSRDataset(matrix.group)
    return matrix


class RowBatchAnnDataLoader(AnnDataLoader):
    """:class:`scvi.dataloaders.AnnDataLoader` reading on-disk CSR fields with :class:`RowBatchCSRDataset`.

    Takes the same arguments. In-memory fields are left as they are, so for an in-memory AnnData
    this is scvi-tools' loader exactly.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dataset = self.dataset.dataset if isinstance(self.dataset, Subset) else self.dataset
        if dataset.adata_manager.adata.isbacked:
            fields = dataset.data  # scvi-tools' cached {registry key: field}, read once per dataset
            for key, value in list(fields.items()):
                fields[key] = with_row_batch_reads(value)
