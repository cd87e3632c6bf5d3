"""Open an ``.h5ad`` file for out-of-core training: every matrix stays on disk.

Why this path (and not a loader of our own)
-------------------------------------------
REMADOM trains through scvi-tools' own data path (:class:`~scvi.data.AnnDataManager`,
:class:`~scvi.data.AnnTorchDataset`, :class:`~scvi.dataloaders.AnnDataLoader`). scvi-tools 1.4
already reads minibatches from anndata's on-disk sparse matrices
(:class:`anndata.abc.CSRDataset`, from :func:`anndata.io.sparse_dataset`) and from ``h5py``
datasets: it slices the batch's rows (sorted, as HDF5 needs, when the AnnData is backed) and
hands them on as sparse tensors. So the only missing piece is an AnnData whose *modality
matrices* are those on-disk objects. anndata's ``read_h5ad(backed="r")`` leaves only ``X`` on
disk and reads ``obsm`` and ``layers`` (where REMADOM keeps ATAC and ADT) into memory;
:func:`read_h5ad_backed` opens the same file in anndata's backed mode and points ``obsm`` and
``layers`` at on-disk datasets of that file too.

Alternatives considered: scvi-tools 1.5's ``AnnbatchDataModule`` (not installable here, and one
matrix per dataset, while REMADOM registers one per modality), lamindb's ``MappedCollection``
(a large dependency, and a data module outside the AnnData registry, so ``load``,
``get_latent_representation`` and the per-modality fields would need a second code path),
anndata's ``read_lazy`` (dask/xarray-backed elements that scvi-tools' dataset does not batch
as sparse tensors).

Everything else about a backed AnnData is the in-memory one: setup, ``train``,
``get_latent_representation``, ``save``/``load``. Setup checks the stored values chunk by chunk
(:mod:`remadom._ondisk`) and computes the initialization statistics on a bounded sample of
cells, so host memory grows with the number of cells only by per-cell vectors: ``obs``, the
splitter's indices and each sparse matrix's ``indptr`` (8 bytes per cell); measured ~230 bytes
per cell in all (``benchmarks/out_of_core.py``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
from anndata import AnnData
from anndata.io import read_elem, sparse_dataset

__all__ = ["read_h5ad_backed"]

_SPARSE = ("csr_matrix", "csc_matrix")


def _encoding(elem) -> str | None:
    value = elem.attrs.get("encoding-type")
    return value.decode() if isinstance(value, bytes) else value


def _on_disk(elem):
    """An on-disk view of a matrix element; other elements (e.g. a DataFrame in obsm) are read."""
    if isinstance(elem, h5py.Group) and _encoding(elem) in _SPARSE:
        return sparse_dataset(elem)
    if isinstance(elem, h5py.Dataset) and elem.ndim == 2 and _encoding(elem) in (None, "array"):
        return elem
    return read_elem(elem)


def read_h5ad_backed(path: str | Path) -> AnnData:
    """Open an ``.h5ad`` file with ``X``, every layer and every ``obsm`` matrix left on disk.

    ``obs``, ``var``, ``uns`` and ``varm`` are read into memory (they are small); each sparse
    matrix becomes an :class:`anndata.abc.CSRDataset` and each dense one an
    :class:`h5py.Dataset` of the file, opened read-only. ``obsp`` and ``varp`` (cell or feature
    graphs, unused by REMADOM) are not read. Register the result with
    :meth:`remadom.REMADOM.setup_anndata` as usual; training then reads each minibatch's rows
    from disk (see the module docstring for why this path).

    Parameters
    ----------
    path
        An ``.h5ad`` file, e.g. from :func:`remadom.data.write_scale_dataset`, or from
        :func:`remadom.data.mudata_to_backed_h5ad` for a MuData (``.h5mu``). Sparse matrices
        must be CSR (rows are cells); write CSC data as CSR first.

    Returns
    -------
    A backed AnnData (``adata.isbacked``; ``adata.file.close()`` closes the file). It is the
    caller's: setup adds scvi-tools' ``_scvi_*`` columns to its in-memory ``obs`` only.

    Examples
    --------
    >>> adata = remadom.data.read_h5ad_backed("scale_1m.h5ad")
    >>> remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    >>> model = remadom.REMADOM(adata)
    >>> model.train(max_epochs=1)
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        small = {key: read_elem(f[key]) for key in ("obs", "var", "uns", "varm") if key in f}
    adata = AnnData(**small, filename=path, filemode="r")
    for attr in ("obsm", "layers"):  # on anndata's own handle of the file: adata.file.close() closes them all
        if attr in adata.file:
            store = getattr(adata, attr)
            for key, elem in adata.file[attr].items():
                store[key] = _on_disk(elem)
    return adata
