"""impute(..., cell_depth="predicted"): the unmeasured ATAC depth predicted from the measured RNA."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.model._depth_prediction import fit_depth_regression, ridge_fit

SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}
TRAIN = {"max_epochs": 2, "batch_size": 32, "enable_progress_bar": False}


def test_ridge_fit_recovers_a_linear_model_and_ignores_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    x = np.c_[x, np.full(500, 3.0)]  # constant column
    y = x[:, :3] @ [0.5, -0.2, 3.0] + 1.5 + rng.normal(scale=0.01, size=500)
    coef, intercept = ridge_fit(x, y, alpha=1e-8)
    np.testing.assert_allclose(coef, [0.5, -0.2, 3.0, 0.0], rtol=1e-2, atol=2e-3)
    assert intercept == pytest.approx(1.5, abs=1e-2)
    shrunk, _ = ridge_fit(x, y, alpha=10.0)  # the penalty shrinks the standardized coefficients
    assert np.all(np.abs(shrunk[:3] * x[:, :3].std(0)) < np.abs(coef[:3] * x[:, :3].std(0)))


def _depth_coupled_adata(n=240, n_genes=30, n_peaks=80, seed=0):
    """RNA-only, ATAC-only and paired cells whose RNA library and ATAC depth share a cell factor."""
    rng = np.random.default_rng(seed)
    size = np.exp(rng.normal(0.0, 0.6, n))  # per-cell capture efficiency, in both modalities
    counts = sp.csr_matrix(rng.poisson(2.0 * size[:, None] * np.ones((1, n_genes))).astype(np.float32))
    p = np.clip(0.08 * size[:, None] * np.ones((1, n_peaks)), 0, 0.9)
    atac = (rng.random((n, n_peaks)) < p).astype(np.float32)
    group = np.arange(n) % 3  # 0 paired, 1 RNA only, 2 ATAC only
    obs = pd.DataFrame({"batch": pd.Categorical(np.where(group == 2, "b2", "b1")),
                        "has_rna": group != 2, "has_atac": group != 1}, index=[f"c{i}" for i in range(n)])
    rna = sp.csr_matrix(counts.multiply(obs["has_rna"].to_numpy()[:, None]))
    adata = ad.AnnData(X=rna.copy(), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    adata.layers["counts"] = rna
    adata.obsm["X_atac"] = sp.csr_matrix(atac * obs["has_atac"].to_numpy()[:, None])
    return adata, atac


def test_predicted_depth_follows_the_rna_library_and_enters_the_logit():
    torch.manual_seed(0)
    adata, atac = _depth_coupled_adata()
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    model.train(**TRAIN)
    reg = fit_depth_regression(model, "atac", ["rna"])
    has_rna, has_atac = adata.obs["has_rna"].to_numpy(), adata.obs["has_atac"].to_numpy()
    assert reg.sources == ["rna"] and reg.n_cells == int((has_rna & has_atac).sum())
    assert reg.r2 > 0.3  # the shared size factor makes the depth predictable from the RNA library

    ref = model.impute("atac", from_modalities=["rna"], cell_depth=True)
    pred = model.impute("atac", from_modalities=["rna"], cell_depth="predicted")
    # cells that measured ATAC keep their own depth
    np.testing.assert_allclose(pred[has_atac], ref[has_atac], rtol=1e-5)
    # RNA-only cells: the logit moves by slope x (predicted - reference) log depth
    head = model.module.heads["atac"]
    slope = head.logit_layer.weight[:, -1].detach().numpy().astype(np.float64)
    logit = lambda q: np.log(q) - np.log1p(-q)  # noqa: E731
    only_rna = has_rna & ~has_atac
    shift = (logit(pred[only_rna].astype(np.float64)) - logit(ref[only_rna].astype(np.float64))) / slope
    assert np.allclose(shift, shift[:, :1], atol=1e-3)  # one depth per cell
    true_depth = np.log1p(atac[only_rna].sum(1))
    assert np.corrcoef(shift[:, 0], true_depth)[0, 1] > 0.5  # the hidden depth, never seen by the model


def test_predicted_depth_checks_its_arguments():
    adata = make_mosaic_adata(n=60, seed=1)
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    model.train(**{**TRAIN, "max_epochs": 1})
    with pytest.raises(ValueError, match="cell_depth must be True, False or 'predicted'"):
        model.impute("atac", cell_depth="own")
    with pytest.raises(ValueError, match="needs a modality other than 'atac'"):
        model.impute("atac", from_modalities=["atac"], cell_depth="predicted")
    with pytest.raises(ValueError, match="cell_depth=True applies to binary"):
        model.impute("adt", cell_depth="predicted")
    out = model.impute("atac", cell_depth="predicted")  # default sources: every other modality
    assert out.shape == (60, 60) and np.isfinite(out).all()
