"""The sampled (negative-sampling) Bernoulli likelihood: unbiasedness, sparsity of the gradient, hooks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from remadom.nn._sampled_bernoulli import (
    check_fraction,
    configure_negative_sampling,
    sample_features,
    sampled_bernoulli_nll,
)
from remadom.nn.likelihoods import BernoulliHead, NegativeBinomialHead


@pytest.fixture(autouse=True)
def one_thread():
    """Monte Carlo loops over tiny tensors: one thread (two only add contention on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(n_cells=6, n_features=40, n_in=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_cells, n_features, generator=g) < 0.15).float()
    u = torch.randn(n_cells, n_in, generator=g)
    w = torch.randn(n_features, n_in, generator=g) * 0.5
    b = torch.randn(n_features, generator=g) - 1.5
    return x, u, w, b


def _full(x, u, w, b):
    return F.binary_cross_entropy_with_logits(u @ w.T + b, x, reduction="none").sum(-1)


def test_all_features_sampled_is_the_full_nll():
    x, u, w, b = _problem()
    assert torch.allclose(sampled_bernoulli_nll(x, u, w, b, 1.0), _full(x, u, w, b), atol=1e-4)
    assert torch.allclose(sampled_bernoulli_nll(x.to_sparse_csr(), u, w, b, 1.0), _full(x, u, w, b), atol=1e-4)


def test_expectation_over_draws_is_the_full_nll():
    x, u, w, b = _problem()
    full = _full(x, u, w, b)
    torch.manual_seed(1)
    draws = torch.stack([sampled_bernoulli_nll(x, u, w, b, 0.25) for _ in range(2000)])
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    assert (draws.std(0) > 0).all()  # it is a random estimate ...
    assert ((mean - full).abs() < 4 * se + 1e-4).all()  # ... whose mean is the full NLL
    # the check has power: an estimate off by 5 % of the NLL would fail it
    assert ((0.05 * full).abs() > 4 * se + 1e-4).all()


def test_expected_gradient_is_the_full_gradient():
    x, u, w, b = _problem(n_features=20)
    w = w.requires_grad_()
    _full(x, u, w, b).sum().backward()
    full_grad, w.grad = w.grad.clone(), None
    torch.manual_seed(2)
    total = torch.zeros_like(w)
    n = 1000
    for _ in range(n):
        sampled_bernoulli_nll(x, u, w, b, 0.2).sum().backward()
        total += w.grad
        w.grad = None
    assert torch.allclose(total / n, full_grad, atol=0.15 * full_grad.abs().max().item())


def test_gradient_only_on_sampled_and_open_features():
    x, u, w, b = _problem(n_cells=3, n_features=200)
    w = w.requires_grad_()
    features = sample_features(200, 0.05, generator=torch.Generator().manual_seed(0))
    assert features.numel() == 10 and len(set(features.tolist())) == 10
    sampled_bernoulli_nll(x, u, w, b, 0.05, features=features).sum().backward()
    touched = w.grad.abs().sum(1) > 0
    allowed = torch.zeros(200, dtype=torch.bool)
    allowed[features] = True
    allowed |= x.sum(0) > 0
    assert touched.any() and not (touched & ~allowed).any()
    assert touched.sum() < 200


def test_fraction_validation():
    assert check_fraction(None) is None and check_fraction(0.5) == 0.5
    for bad in (0, 1.5, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="negative_sampling="):
            check_fraction(bad)


def test_head_hook_samples_in_training_only():
    head = BernoulliHead(8, 50, 1, log_depth_ref=1.0)
    heads = torch.nn.ModuleDict({"atac": head, "rna": NegativeBinomialHead(8, 10, 1)})
    configure_negative_sampling(heads, 0.2)
    assert head.negative_sampling == 0.2 and not hasattr(heads["rna"], "negative_sampling")
    h = torch.randn(4, 8)
    x = (torch.rand(4, 50) < 0.2).float()
    lib = x.sum(-1)
    head.train()
    params = head(h, torch.zeros(4, 1), lib)
    assert "logits" not in params  # no dense logits in training
    assert head.nll(x, params).shape == (4,)
    head.eval()
    params = head(h, torch.zeros(4, 1), lib)
    assert "logits" in params
    expected = F.binary_cross_entropy_with_logits(params["logits"], x, reduction="none").sum(-1)
    assert torch.allclose(head.nll(x, params), expected)


def test_configure_refuses_without_a_bernoulli_modality():
    heads = torch.nn.ModuleDict({"rna": NegativeBinomialHead(8, 10, 1)})
    configure_negative_sampling(heads, None)
    with pytest.raises(ValueError, match="no modality has a likelihood that supports it"):
        configure_negative_sampling(heads, 0.1)


def test_model_option_trains_saves_and_loads(tmp_path):
    """Smoke test: REMADOM(negative_sampling=...) trains, and the option survives save/load."""
    from conftest import make_mosaic_adata

    import remadom

    adata = make_mosaic_adata()
    remadom.REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    model = remadom.REMADOM(adata, n_hidden=16, n_latent=4, negative_sampling=0.25)
    assert model.module.heads["atac"].negative_sampling == 0.25
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_validation"].to_numpy(dtype=float)).all()
    model.save(tmp_path / "m", overwrite=True)
    loaded = remadom.REMADOM.load(tmp_path / "m", adata=adata)
    assert loaded.module.heads["atac"].negative_sampling == 0.25
