"""One-read minibatches from on-disk CSR matrices (remadom._row_reads): the same values as in memory."""

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata.io import sparse_dataset

import remadom
from remadom._row_reads import RowBatchAnnDataLoader, RowBatchCSRDataset, with_row_batch_reads
from remadom.data import read_h5ad_backed, write_scale_dataset

TINY = {"n_cells": 300, "n_genes": 40, "n_peaks": 400, "n_proteins": 6, "chunk_cells": 128, "seed": 1}
SETUP = {"atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}


@pytest.fixture(scope="module")
def csr_file(tmp_path_factory):
    matrix = sp.random(300, 50, density=0.1, format="csr", random_state=0, dtype=np.float32)
    matrix = sp.csr_matrix(matrix.toarray() * (np.arange(300) % 7 != 0)[:, None])  # some empty rows
    path = tmp_path_factory.mktemp("rows") / "m.h5ad"
    ad.AnnData(matrix).write_h5ad(path)
    return path, matrix


@pytest.mark.parametrize("rows", [
    np.sort(np.random.default_rng(0).choice(300, 40, replace=False)),  # what scvi-tools asks for
    np.random.default_rng(1).choice(300, 60),  # any order, repeats
    [7, 7, 0, 299, 14],  # empty rows, repeated
    np.array([-1, 3]),
    np.array([], dtype=np.int64),
])
def test_rows_equal_the_in_memory_rows(csr_file, rows):
    path, matrix = csr_file
    with h5py.File(path, "r") as f:
        on_disk = with_row_batch_reads(sparse_dataset(f["X"]))
        assert isinstance(on_disk, RowBatchCSRDataset)
        for index in (rows, (rows, slice(None))):
            got = on_disk[index]
            expected = matrix[np.asarray(rows, dtype=np.int64)]
            assert isinstance(got, sp.csr_matrix) and got.dtype == expected.dtype
            assert got.shape == expected.shape
            np.testing.assert_array_equal(got.toarray(), expected.toarray())
            assert np.all(np.diff(got.indptr) == np.diff(expected.indptr))


def test_other_indexes_are_anndatas_and_out_of_range_rows_raise(csr_file):
    path, matrix = csr_file
    with h5py.File(path, "r") as f:
        on_disk = with_row_batch_reads(sparse_dataset(f["X"]))
        np.testing.assert_array_equal(on_disk[10:20].toarray(), matrix[10:20].toarray())
        mask = np.arange(300) % 3 == 0
        np.testing.assert_array_equal(on_disk[mask].toarray(), matrix[mask].toarray())
        with pytest.raises(IndexError, match="out of range"):
            on_disk[np.array([0, 300])]
    assert with_row_batch_reads(matrix) is matrix  # in memory: untouched


def test_backed_loader_batches_equal_in_memory_batches(tmp_path):
    path = write_scale_dataset(tmp_path / "tiny.h5ad", **TINY)
    batches = {}
    for mode, adata in (("memory", ad.read_h5ad(path)), ("backed", read_h5ad_backed(path))):
        remadom.REMADOM.setup_anndata(adata, **SETUP)
        model = remadom.REMADOM(adata, n_hidden=8, n_latent=2)
        loader = model._make_data_loader(adata=adata, batch_size=64, shuffle=False, load_sparse_tensor=True)
        assert isinstance(loader, RowBatchAnnDataLoader)
        fields = loader.dataset.data if hasattr(loader.dataset, "data") else loader.dataset.dataset.data
        wrapped = [key for key, value in fields.items() if isinstance(value, RowBatchCSRDataset)]
        assert (len(wrapped) >= 2) == (mode == "backed")  # RNA in X and ATAC in obsm are on-disk CSR
        batches[mode] = list(loader)
    assert len(batches["memory"]) == len(batches["backed"]) == 5
    for mem, disk in zip(batches["memory"], batches["backed"]):
        assert mem.keys() == disk.keys()
        for key in mem:
            a, b = mem[key], disk[key]
            a = a.to_dense() if a.is_sparse or a.layout != torch.strided else a
            b = b.to_dense() if b.is_sparse or b.layout != torch.strided else b
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_backed_mudata_is_refused_with_the_fix(tmp_path):
    import mudata as md

    from remadom.model._validation import RemadomSetupError

    rna = ad.AnnData(sp.random(20, 10, density=0.3, format="csr", random_state=0, dtype=np.float32))
    atac = ad.AnnData(sp.random(20, 30, density=0.3, format="csr", random_state=1, dtype=np.float32))
    atac.X.data[:] = 1.0
    md.MuData({"rna": rna, "atac": atac}).write_h5mu(tmp_path / "m.h5mu")
    mdata = md.read_h5mu(tmp_path / "m.h5mu", backed=True)
    with pytest.raises(RemadomSetupError, match="backed.*read_h5ad_backed"):
        remadom.REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac"})
