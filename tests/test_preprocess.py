"""Preprocessing hooks: what they write, masks respected, inputs untouched, no densifying."""

import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remadom.data import preprocess as pp
from remadom.data.mock import generate_mock_dataset


@pytest.fixture(scope="module")
def mosaic():
    adata, _ = generate_mock_dataset("mosaic", n_cells=200, n_genes=80, n_peaks=400, n_proteins=8)
    return adata


def test_normalize_rna_copy_and_values(mosaic):
    before = mosaic.layers["counts"].copy()
    out = pp.normalize_rna(mosaic, copy=True)
    assert "lognorm" not in mosaic.layers  # copy=True leaves the input alone
    assert (out.layers["counts"] != before).nnz == 0
    norm = out.layers["lognorm"]
    has = mosaic.obs["has_rna"].to_numpy()
    totals = np.asarray(np.expm1(norm.toarray()).sum(1)).ravel()
    np.testing.assert_allclose(totals[has], 1e4, rtol=1e-3)
    assert np.all(totals[~has] == 0)
    assert pp.normalize_rna(out, key_added="ln2", log1p=False) is None and "ln2" in out.layers


def test_highly_variable_genes(mosaic):
    out = pp.highly_variable_genes(mosaic, n_top_genes=20, copy=True)
    assert out.var["highly_variable"].sum() == 20
    assert "highly_variable" not in mosaic.var
    out = pp.highly_variable_genes(mosaic, n_top_genes=20, flavor="seurat", batch_key="batch", copy=True)
    assert out.var["highly_variable"].dtype == bool


def test_hvg_falls_back_without_skmisc(mosaic, monkeypatch):
    monkeypatch.setitem(sys.modules, "skmisc", None)  # import skmisc -> ImportError
    with pytest.warns(UserWarning, match="scikit-misc"):
        out = pp.highly_variable_genes(mosaic, n_top_genes=10, copy=True)
    assert out.var["highly_variable"].sum() == 10


def test_tfidf_sparse_and_masked(mosaic):
    out = pp.tfidf(mosaic, copy=True)
    x = out.obsm["X_atac_tfidf"]
    assert sp.isspmatrix_csr(x) and x.dtype == np.float32
    has = mosaic.obs["has_atac"].to_numpy()
    assert x[~has].nnz == 0
    # same sparsity pattern as the input peaks
    assert (abs(x).sign() != mosaic.obsm["X_atac"].sign()).nnz == 0


def test_tfidf_matches_manual_formula():
    x = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float32))
    import anndata as ad

    adata = ad.AnnData(np.zeros((3, 1), np.float32))
    adata.obsm["X_atac"] = x
    pp.tfidf(adata, scale_factor=10.0)
    dense = x.toarray()
    idf = 3 / (1 + dense.sum(0))
    expected = np.log1p(dense / dense.sum(1, keepdims=True) * idf * 10.0)
    np.testing.assert_allclose(adata.obsm["X_atac_tfidf"].toarray(), expected, rtol=1e-5)


def test_lsi_never_densifies(mosaic, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("densified")

    monkeypatch.setattr(sp.csr_matrix, "toarray", boom)
    out = pp.lsi(mosaic, n_components=5, copy=True)
    emb = out.obsm["X_lsi"]
    assert emb.shape == (mosaic.n_obs, 5) and emb.dtype == np.float32
    has = mosaic.obs["has_atac"].to_numpy()
    assert np.all(emb[~has] == 0) and np.abs(emb[has]).sum() > 0
    assert out.uns["X_lsi"]["components"].shape == (5, 400)
    with pytest.raises(ValueError, match="too large"):
        pp.lsi(mosaic, n_components=1000, copy=True)


@pytest.mark.parametrize("axis", [0, 1])
def test_clr(mosaic, axis):
    out = pp.clr(mosaic, axis=axis, copy=True)
    y = out.obsm["X_adt_clr"]
    has = mosaic.obs["has_adt"].to_numpy()
    x = mosaic.obsm["X_adt"][has].astype(np.float64)
    geo = np.exp(np.log1p(x).mean(axis=axis, keepdims=True))
    np.testing.assert_allclose(y[has], np.log1p(x / geo), rtol=1e-5)
    assert np.all(y[~has] == 0)
    assert "X_adt_clr" not in mosaic.obsm


def test_clr_keeps_dataframe_and_validates(mosaic):
    adata = mosaic.copy()
    adata.obsm["X_adt"] = pd.DataFrame(adata.obsm["X_adt"], index=adata.obs_names,
                                       columns=list(adata.uns["adt_names"]))
    pp.clr(adata)
    assert list(adata.obsm["X_adt_clr"].columns) == list(adata.uns["adt_names"])
    with pytest.raises(ValueError, match="axis"):
        pp.clr(adata, axis=2)
    with pytest.raises(KeyError, match="X_nope"):
        pp.clr(adata, obsm_key="X_nope")
