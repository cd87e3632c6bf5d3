"""Each likelihood head's NLL against torch.distributions / scipy on random inputs."""

import numpy as np
import pytest
import torch
from scipy import stats

from remadom.nn.likelihoods import LIKELIHOODS, LikelihoodHead, clr, register_likelihood


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def _setup(name, rng, n=6, g=5, h=4, n_batch=2, x=None, **kw):
    torch.manual_seed(0)
    head = LIKELIHOODS[name](h, g, n_batch, **kw)
    hidden = torch.randn(n, h)
    batch = torch.tensor(rng.integers(0, n_batch, size=(n, 1)))
    library = torch.tensor(rng.integers(50, 500, size=n), dtype=torch.float32)
    if x is None:
        x = torch.tensor(rng.poisson(3.0, size=(n, g)), dtype=torch.float32)
    return head, head(hidden, batch, library), x, library


def _nb_logpmf(x, mu, theta):
    # scipy parametrization: n = theta, p = theta / (theta + mu)
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def test_nb_matches_scipy(rng):
    head, p, x, library = _setup("nb", rng)
    mu, theta = p["mu"].detach().numpy(), p["theta"].detach().numpy()
    ref = -_nb_logpmf(x.numpy(), mu, theta).sum(-1)
    np.testing.assert_allclose(head.nll(x, p).detach().numpy(), ref, rtol=1e-4)
    # scaled by the observed library size
    np.testing.assert_allclose(mu.sum(-1), library.numpy(), rtol=1e-5)


@pytest.mark.parametrize("dispersion", ["gene-batch", "gene-cell"])
def test_nb_dispersion_options(rng, dispersion):
    head, p, x, _ = _setup("nb", rng, dispersion=dispersion)
    assert p["theta"].shape == x.shape and torch.isfinite(head.nll(x, p)).all()


def test_zinb_matches_manual_mixture(rng):
    head, p, x, _ = _setup("zinb", rng)
    mu, theta = p["mu"].detach().numpy(), p["theta"].detach().numpy()
    pi = 1 / (1 + np.exp(-p["zi_logits"].detach().numpy()))
    nb = np.exp(_nb_logpmf(x.numpy(), mu, theta))
    lik = np.where(x.numpy() == 0, pi + (1 - pi) * nb, (1 - pi) * nb)
    np.testing.assert_allclose(head.nll(x, p).detach().numpy(), -np.log(lik).sum(-1), rtol=1e-4)


def test_poisson_matches_torch(rng):
    head, p, x, _ = _setup("poisson", rng)
    ref = -torch.distributions.Poisson(p["mu"] + 1e-8).log_prob(x).sum(-1)
    torch.testing.assert_close(head.nll(x, p), ref)


def test_bernoulli_matches_torch(rng):
    head, _, x, library = _setup("bernoulli", rng)
    xb = head.prepare(x)
    p = head(torch.randn(6, 4), torch.zeros(6, 1, dtype=torch.long), head.library(xb))
    ref = -torch.distributions.Bernoulli(logits=p["logits"]).log_prob((x > 0).float()).sum(-1)
    torch.testing.assert_close(head.nll(xb, p), ref)
    assert torch.all(head.expected(p) <= 1) and torch.all(head.expected(p) >= 0)


def test_bernoulli_depth_enters_the_logit(rng):
    head, _, _, _ = _setup("bernoulli", rng)
    h = torch.randn(1, 4).repeat(2, 1)
    p = head(h, torch.zeros(2, 1, dtype=torch.long), torch.tensor([10.0, 1000.0]))
    slope = head.logit_layer.weight[:, -1].detach()
    diff = p["logits"][1] - p["logits"][0]
    torch.testing.assert_close(diff, slope * (np.log1p(1000.0) - np.log1p(10.0)))
    # the normalized expectation does not depend on depth
    torch.testing.assert_close(head.expected(p)[0], head.expected(p)[1])


def test_bernoulli_prepare_binarizes_sparse_values_only():
    x = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 1.0]])
    head = LIKELIHOODS["bernoulli"](4, 3, 1)
    for sparse in (x.to_sparse_csr(), x.to_sparse()):
        out = head.prepare(sparse)
        assert out.layout == sparse.layout
        torch.testing.assert_close(out.to_dense(), (x > 0).float())
    torch.testing.assert_close(head.library(head.prepare(x)), torch.tensor([1.0, 2.0]))


def test_nb_mixture_matches_manual(rng):
    head, p, x, _ = _setup("nbmixture", rng)
    back, fore = p["rate_back"].detach().numpy(), p["rate_fore"].detach().numpy()
    theta = p["theta"].detach().numpy()
    w = 1 / (1 + np.exp(-p["mixing_logits"].detach().numpy()))  # P(background)
    xs = x.numpy()
    lik = w * np.exp(_nb_logpmf(xs, back, theta)) + (1 - w) * np.exp(_nb_logpmf(xs, fore, theta))
    np.testing.assert_allclose(head.nll(x, p).detach().numpy(), -np.log(lik).sum(-1), rtol=1e-4)
    assert torch.all(p["rate_fore"] >= p["rate_back"])


def test_gaussian_is_a_gaussian_on_the_values_as_given(rng):
    x = torch.tensor(rng.normal(-2.0, 1.5, size=(6, 5)), dtype=torch.float32)  # negative, real-valued
    head, p, x, _ = _setup("gaussian", rng, x=x)
    ref = -torch.distributions.Normal(p["mean"], torch.exp(0.5 * p["log_var"])).log_prob(x).sum(-1)
    torch.testing.assert_close(head.nll(x, p), ref)
    assert torch.isfinite(head.nll(x, p)).all()
    assert LIKELIHOODS["gaussian"].default_encoder_input == "identity"
    assert not LIKELIHOODS["gaussian"].needs_nonnegative()


def test_gaussian_clr_scores_the_clr_of_counts(rng):
    head, p, x, _ = _setup("gaussian_clr", rng)
    ref = -torch.distributions.Normal(p["mean"], torch.exp(0.5 * p["log_var"])).log_prob(clr(x)).sum(-1)
    torch.testing.assert_close(head.nll(x, p), ref)
    torch.testing.assert_close(clr(x).mean(-1), torch.zeros(x.shape[0]), atol=1e-6, rtol=0)
    assert LIKELIHOODS["gaussian_clr"].needs_nonnegative()
    assert LIKELIHOODS["gaussian_clr"].default_encoder_input == "clr"


def test_gaussian_data_statistics_initialize_mean_and_variance(rng):
    x = rng.normal(-3.0, 2.0, size=(500, 4))
    stats = LIKELIHOODS["gaussian"].data_statistics(x)
    np.testing.assert_allclose(stats["feature_mean"], x.mean(0), rtol=1e-5)
    head = LIKELIHOODS["gaussian"](3, 4, 1, **stats)
    p = head(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), torch.ones(2))
    np.testing.assert_allclose(p["mean"][0].detach().numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(p["log_var"][0].detach().numpy(), np.log(x.var(0)), rtol=1e-5)


def test_scaled_counts_statistics_are_the_mean_share():
    x = np.array([[1.0, 3.0], [2.0, 2.0]])
    stats = LIKELIHOODS["nb"].data_statistics(x)
    np.testing.assert_allclose(stats["mean_proportion"], [0.375, 0.625])


def test_heads_reject_unknown_constructor_arguments():
    with pytest.raises(TypeError):
        LIKELIHOODS["nb"](4, 3, 1, dispersoin="gene")  # a typo is an error, not swallowed
    with pytest.raises(TypeError):
        LIKELIHOODS["gaussian"](4, 3, 1, dispersion="gene")


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_every_head_declares_what_it_needs(name):
    head = LIKELIHOODS[name]
    assert head.name == name
    assert head.default_encoder_input in ("log1p", "tfidf", "clr", "identity")
    assert not (head.binary and head.requires_counts)


def test_registering_a_second_head_under_a_taken_name_errors():
    class Other(LikelihoodHead):
        name = "nb"

    with pytest.raises(ValueError, match="already registered"):
        register_likelihood(Other)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_nll_is_float32_under_bf16_inputs(rng, name):
    head, p, x, _ = _setup(name, rng)
    p16 = {k: v.to(torch.bfloat16) for k, v in p.items()}
    out = head.nll(x, p16)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bernoulli_starts_from_the_observed_open_rate():
    rate = torch.tensor([0.01, 0.2, 0.5])
    head = LIKELIHOODS["bernoulli"](4, 3, 1, open_rate=rate, log_depth_ref=2.0)
    p = head(torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.long), torch.full((2,), np.expm1(2.0)))
    torch.testing.assert_close(torch.sigmoid(p["logits"]), rate.expand(2, -1), atol=1e-5, rtol=1e-4)
