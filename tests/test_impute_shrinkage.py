"""impute(..., shrinkage=...): cross-modal predictions hedged towards the population profile,
with the weight fitted on held-out validation cells (remadom.model._shrinkage)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.model._shrinkage import GRID, fit_shrinkage, heldout_loglik

SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}
TRAIN = {"max_epochs": 4, "batch_size": 32, "enable_progress_bar": False}


def test_heldout_loglik_prefers_no_shrinkage_for_an_exact_prediction_and_some_for_a_wrong_one():
    rng = np.random.default_rng(0)
    truth_p = rng.dirichlet(np.full(40, 0.5), size=200)  # each cell its own profile
    x = np.stack([rng.multinomial(2000, p) for p in truth_p]).astype(float)
    profile = truth_p.mean(0)
    assert GRID[np.argmax(heldout_loglik(truth_p, x, profile, binary=False))] == 0.0
    wrong = truth_p[rng.permutation(200)]  # confident profiles of other cells
    assert GRID[np.argmax(heldout_loglik(wrong, x, profile, binary=False))] > 0.5
    # binary: a per-entry probability that is right beats the per-feature rate
    p = rng.uniform(0.01, 0.6, size=(300, 50))
    y = (rng.random(p.shape) < p).astype(float)
    assert GRID[np.argmax(heldout_loglik(p, y, (y > 0).mean(0), binary=True))] == 0.0
    assert GRID[np.argmax(heldout_loglik(p[rng.permutation(300)], y, (y > 0).mean(0), binary=True))] > 0.5


def _noise_source_adata(n=300, n_genes=60, n_peaks=50, seed=0):
    """RNA with three cell types; ATAC independent of them (no cross-modal signal). Batch b1 paired,
    batch b2 ATAC-only; the hidden RNA of b2 is returned."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    prof = rng.dirichlet(np.full(n_genes, 0.3), size=3)
    counts = np.stack([rng.multinomial(int(rng.integers(300, 900)), prof[t]) for t in types]).astype(np.float32)
    atac = (rng.random((n, n_peaks)) < 0.2).astype(np.float32)
    b2 = np.arange(n) >= 2 * n // 3
    obs = pd.DataFrame({"batch": pd.Categorical(np.where(b2, "b2", "b1")), "has_rna": ~b2},
                       index=[f"c{i}" for i in range(n)])
    rna = sp.csr_matrix(counts * (~b2)[:, None])
    adata = ad.AnnData(X=rna.copy(), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    adata.layers["counts"] = rna
    adata.obsm["X_atac"] = sp.csr_matrix(atac)
    return adata, counts, b2


@pytest.fixture(scope="module")
def noise_model():
    torch.manual_seed(0)
    adata, counts, b2 = _noise_source_adata()
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    model.train(**TRAIN)
    return model, adata, counts, b2


def test_default_impute_shrinks_cross_modal_rows_by_the_fitted_weight(noise_model):
    model, adata, counts, b2 = noise_model
    fit = fit_shrinkage(model, "rna", ["atac"])
    assert fit.n_cells >= 10 and fit.reason == "" and len(fit.loglik) == len(GRID)
    out = model.impute("rna", from_modalities=["atac"], return_numpy=False)  # default: "auto"
    assert out.uns["shrinkage"] == fit.weight
    plain = model.impute("rna", from_modalities=["atac"], shrinkage=0.0)
    full = model.impute("rna", from_modalities=["atac"], shrinkage=1.0)
    # shrinkage=1: the mean per-cell proportion of the training cells that measured RNA, at 1e4
    train = np.sort(model.train_indices)
    train = train[adata.obs["has_rna"].to_numpy()[train]]
    profile = (counts[train] / counts[train].sum(1, keepdims=True)).mean(0)
    np.testing.assert_allclose(full, np.tile(profile * 1e4, (adata.n_obs, 1)), rtol=1e-4)
    w = fit.weight
    np.testing.assert_allclose(out.X, (1 - w) * plain + w * full, rtol=1e-4, atol=1e-6)
    # on the hidden RNA (no cross-modal signal to lose) the hedge loses no likelihood to speak of
    def loglik(pred):
        p = pred[b2] / pred[b2].sum(1, keepdims=True)
        return float((counts[b2] * np.log(p)).sum())
    assert loglik(out.X) >= loglik(plain) - 1e-3 * abs(loglik(plain))


def test_reconstructions_are_never_shrunk(noise_model):
    model, adata, _, _ = noise_model
    has = np.flatnonzero(adata.obs["has_rna"].to_numpy())
    np.testing.assert_array_equal(model.impute("rna", indices=has, shrinkage=1.0),
                                  model.impute("rna", indices=has, shrinkage=0.0))
    # the same cells encoded from ATAC alone are cross-modal, so they are shrunk
    assert not np.allclose(model.impute("rna", from_modalities=["atac"], indices=has, shrinkage=1.0),
                           model.impute("rna", from_modalities=["atac"], indices=has, shrinkage=0.0))


def test_shrinkage_is_off_without_validation_cells_and_checks_its_argument():
    torch.manual_seed(0)
    adata = make_mosaic_adata(n=60, seed=1)
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    model.train(**{**TRAIN, "max_epochs": 1, "train_size": 1.0})
    fit = fit_shrinkage(model, "rna", ["atac"])
    assert fit.weight == 0.0 and "validation" in fit.reason
    np.testing.assert_array_equal(model.impute("rna", from_modalities=["atac"]),
                                  model.impute("rna", from_modalities=["atac"], shrinkage=0))
    for bad in ("yes", 1.5, -0.1, True):
        with pytest.raises(ValueError, match="shrinkage must be 'auto' or a number in"):
            model.impute("rna", shrinkage=bad)
    # ADT (nbmixture) is neither a count nor a binary head: "auto" leaves it alone, a number is refused
    assert fit_shrinkage(model, "adt", ["rna"]).weight == 0.0
    with pytest.raises(ValueError, match="cannot be applied.*neither a count nor a binary head"):
        model.impute("adt", from_modalities=["rna"], shrinkage=0.5)
