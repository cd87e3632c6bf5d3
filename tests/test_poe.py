"""Product-of-Experts algebra against the closed-form precision-weighted result."""

import numpy as np
import pytest
import torch

from remadom.nn.poe import (
    kl_between_gaussians,
    kl_to_standard_normal,
    product_of_experts,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def closed_form(means, variances, masks):
    """Reference PoE with a N(0, 1) prior expert, one cell at a time (numpy)."""
    n_exp, n_cells, d = means.shape
    out_m, out_v = np.zeros((n_cells, d)), np.zeros((n_cells, d))
    for c in range(n_cells):
        prec = np.ones(d)
        wsum = np.zeros(d)
        for e in range(n_exp):
            if masks[e, c]:
                prec += 1 / variances[e, c]
                wsum += means[e, c] / variances[e, c]
        out_v[c] = 1 / prec
        out_m[c] = wsum / prec
    return out_m, out_v


def test_poe_matches_closed_form(rng):
    means = rng.normal(size=(3, 7, 4))
    variances = rng.uniform(0.1, 3.0, size=(3, 7, 4))
    masks = rng.random((3, 7)) < 0.6
    m, lv = product_of_experts(
        torch.tensor(means), torch.tensor(np.log(variances)), torch.tensor(masks.astype(float))
    )
    ref_m, ref_v = closed_form(means, variances, masks)
    np.testing.assert_allclose(m.numpy(), ref_m, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.exp(lv.numpy()), ref_v, rtol=1e-6)


def test_poe_no_expert_gives_prior():
    m, lv = product_of_experts(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.zeros(2, 3))
    assert torch.all(m == 0) and torch.allclose(lv, torch.zeros_like(lv))


def test_poe_single_expert_with_prior():
    mu, var = torch.tensor([[[2.0]]]), torch.tensor([[[1.0]]])
    m, lv = product_of_experts(mu, var.log(), torch.ones(1, 1))
    assert torch.allclose(m, torch.tensor([[1.0]])) and torch.allclose(lv.exp(), torch.tensor([[0.5]]))


def test_poe_is_stable_for_extreme_logvars():
    means = torch.randn(2, 5, 3)
    logvars = torch.tensor([-1e4, 1e4]).view(2, 1, 1).expand(2, 5, 3)
    m, lv = product_of_experts(means, logvars, torch.ones(2, 5))
    assert torch.isfinite(m).all() and torch.isfinite(lv).all()


def test_masked_expert_has_zero_gradient_and_no_influence():
    means = torch.randn(2, 4, 3, requires_grad=True)
    logvars = torch.randn(2, 4, 3, requires_grad=True)
    masks = torch.tensor([[1.0, 1, 1, 1], [1.0, 0, 1, 0]])
    m, lv = product_of_experts(means, logvars, masks)
    (m.sum() + lv.sum()).backward()
    assert torch.all(means.grad[1, [1, 3]] == 0) and torch.all(logvars.grad[1, [1, 3]] == 0)
    assert torch.any(means.grad[1, [0, 2]] != 0)
    # changing a masked expert's values does not change the result
    with torch.no_grad():
        other = means.detach().clone()
        other[1, [1, 3]] = 1e3
        m2, _ = product_of_experts(other, logvars.detach(), masks)
    assert torch.equal(m2, m.detach())


def test_kl_closed_form_matches_torch_distributions(rng):
    mu = torch.tensor(rng.normal(size=(5, 4)))
    lv = torch.tensor(rng.normal(size=(5, 4)))
    q = torch.distributions.Normal(mu, (0.5 * lv).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mu, lv), ref)
    mu2, lv2 = torch.tensor(rng.normal(size=(5, 4))), torch.tensor(rng.normal(size=(5, 4)))
    p2 = torch.distributions.Normal(mu2, (0.5 * lv2).exp())
    torch.testing.assert_close(kl_between_gaussians(mu, lv, mu2, lv2), torch.distributions.kl_divergence(q, p2).sum(-1))
