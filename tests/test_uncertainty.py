"""Posterior-predictive intervals of ``REMADOM.impute(..., return_uncertainty=True)``."""

import numpy as np
import pytest
import torch
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.eval import interval_coverage

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}


def _model(likelihood: str):
    adata = make_mosaic_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, likelihoods={"adt": likelihood}, **SMALL)
    model.is_trained_ = True  # the head is set by hand below: the predictive law is known
    return model


def test_gaussian_intervals_cover_draws_from_the_known_law(rng):
    """ADT head fixed to N(mu_f, sigma_f^2) whatever z is: the 90 % interval must cover 90 % of
    fresh draws from that law (and a 50 % interval about half)."""
    model = _model("gaussian")
    head = model.module.heads["adt"]
    n_feat = head.n_features
    mu = torch.linspace(-2, 2, n_feat)
    sigma = torch.linspace(0.5, 2.0, n_feat)
    with torch.no_grad():
        head.mean_layer.weight.zero_()
        head.mean_layer.bias.copy_(mu)
        head.log_var.copy_(2 * torch.log(sigma))
    with pytest.warns(UserWarning, match="none of"):  # cells without RNA get NaN rows
        values, spread = model.impute("adt", from_modalities=["rna"], return_uncertainty=True, n_samples=400)
    has = model.get_modality_masks()["rna"]
    assert np.isnan(values[~has]).all() and np.isnan(spread["lower"][~has]).all()
    values, spread = values[has], {k: v[has] for k, v in spread.items() if k in ("std", "lower", "upper", "mean")}
    n_cells = values.shape[0]
    truth = mu.numpy() + sigma.numpy() * rng.normal(size=(n_cells, n_feat))
    cov = interval_coverage(spread["lower"], spread["upper"], truth)
    assert cov["coverage"] == pytest.approx(0.90, abs=0.03)
    np.testing.assert_allclose(values, np.broadcast_to(mu.numpy(), values.shape), atol=1e-5)
    np.testing.assert_allclose(spread["std"].mean(0), sigma.numpy(), rtol=0.15)
    with pytest.warns(UserWarning, match="none of"):
        _, half = model.impute("adt", from_modalities=["rna"], return_uncertainty=True, interval=0.5, n_samples=400)
    assert interval_coverage(half["lower"][has], half["upper"][has], truth)["coverage"] == pytest.approx(0.5, abs=0.05)


def test_count_intervals_cover_the_nb_mixture(rng):
    """Same with the totalVI-style ADT mixture: discrete, so the inclusive interval covers at
    least the nominal mass, and not much more."""
    model = _model("nbmixture")
    head = model.module.heads["adt"]
    with torch.no_grad():
        head.fore_layer.weight.zero_()
        head.fore_layer.bias.fill_(3.0)
        head.mixing_layer.weight.zero_()
        head.mixing_layer.bias.fill_(-1.0)
        head.background_log_rate.fill_(2.0)
        head.log_theta.fill_(1.0)
    with pytest.warns(UserWarning, match="none of"):  # cells without RNA get NaN rows
        _, spread = model.impute("adt", from_modalities=["rna"], return_uncertainty=True, n_samples=300)
    has = model.get_modality_masks()["rna"]
    spread = {k: spread[k][has] for k in ("lower", "upper")}
    n = spread["lower"].shape[0]
    params = head(torch.zeros(n, head.fore_layer.in_features), torch.zeros(n, 1, dtype=torch.long), torch.ones(n))
    truth = head.sample(params).numpy()
    cov = interval_coverage(spread["lower"], spread["upper"], truth)["coverage"]
    assert 0.88 <= cov <= 0.97


def test_return_uncertainty_validates_interval():
    model = _model("gaussian")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        model.impute("adt", return_uncertainty=True, interval=1.5)
