"""The ``nbmixture_cellbg`` ADT head: a per-cell protein background (totalVI's ``log_beta``).

Maths on hand-built tensors (NLL and KL against torch.distributions, masked entries), the
module's use of a head's own KL, and a small model end to end (train, impute, save/load).
"""

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from remadom._constants import mask_key, modality_key
from remadom.module import RemadomModule
from remadom.nn.likelihoods import LIKELIHOODS, CellBackgroundNBMixtureHead, NegativeBinomialMixtureHead

N, G, H, B = 8, 6, 4, 2


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def _inputs(rng):
    x = torch.tensor(rng.poisson(6.0, size=(N, G)), dtype=torch.float32)
    batch = torch.tensor(rng.integers(0, B, size=(N, 1)))
    library = x.sum(-1)
    return x, batch, library


def _trained_like_head(seed=0):
    """A head whose shift / spread layers are not at their zero initialization."""
    torch.manual_seed(seed)
    head = CellBackgroundNBMixtureHead(H, G, B, background_init=np.linspace(0.5, 2.0, G).astype(np.float32))
    with torch.no_grad():
        for layer in (head.back_shift_layer, head.back_spread_layer):
            layer.weight.normal_(0, 0.3)
        head.background_log_scale.normal_(-1.0, 0.2)
    return head


def _nb_log_prob(x, mu, theta):
    return NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta)).log_prob(x)


def test_registered_and_selected_by_name():
    assert LIKELIHOODS["nbmixture_cellbg"] is CellBackgroundNBMixtureHead
    assert issubclass(CellBackgroundNBMixtureHead, NegativeBinomialMixtureHead)
    assert CellBackgroundNBMixtureHead.supports_feature_masks()


def test_nll_matches_a_torch_two_component_nb_mixture_at_the_cells_background(rng):
    head = _trained_like_head().eval()
    x, batch, library = _inputs(rng)
    p = head(torch.randn(N, H), batch, library)
    # evaluation mode: the background is the posterior mean of the log rate, per cell
    torch.testing.assert_close(p["rate_back"], torch.exp(p["back_mean"]))
    assert not torch.allclose(p["rate_back"][0], p["rate_back"][1])  # per cell, not per batch
    theta = p["theta"]
    log_w_back = torch.nn.functional.logsigmoid(p["mixing_logits"])
    log_w_fore = torch.nn.functional.logsigmoid(-p["mixing_logits"])
    ref = -torch.logsumexp(torch.stack([log_w_back + _nb_log_prob(x, p["rate_back"], theta),
                                        log_w_fore + _nb_log_prob(x, p["rate_fore"], theta)]), 0).sum(-1)
    torch.testing.assert_close(head.nll(x, p), ref, rtol=1e-4, atol=1e-4)


def test_kl_matches_torch_normal_kl_to_the_per_batch_prior(rng):
    head = _trained_like_head()
    x, batch, library = _inputs(rng)
    p = head(torch.randn(N, H), batch, library)
    b = batch.view(-1)
    prior = Normal(head.background_log_rate[:, b].T, torch.exp(head.background_log_scale[:, b].T))
    ref = kl_divergence(Normal(p["back_mean"], p["back_scale"]), prior)
    torch.testing.assert_close(head.kl_entries(p), ref)
    torch.testing.assert_close(head.kl(p), ref.sum(-1))
    assert (ref > 0).all()


def test_masked_entries_add_no_kl_and_get_no_gradient(rng):
    head = _trained_like_head()
    x, batch, library = _inputs(rng)
    p = head(torch.randn(N, H), batch, library)
    mask = torch.tensor(rng.random((N, G)) < 0.6)
    mask[:, 0] = True
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    (head.kl(leaves, mask=mask).sum() + head.nll(x, leaves, mask=mask).sum()).backward()
    for key in ("back_mean", "back_scale", "back_prior_mean", "back_prior_scale", "rate_back", "rate_fore"):
        grad = leaves[key].grad
        assert torch.all(grad[~mask] == 0), f"masked entries of {key!r} got a gradient"
        assert torch.any(grad[mask] != 0), f"measured entries of {key!r} got none"
    torch.testing.assert_close(head.kl(p, mask=torch.ones_like(mask)), head.kl(p))


def test_training_draws_the_background_reparameterized(rng):
    head = _trained_like_head().train()
    x, batch, library = _inputs(rng)
    h = torch.randn(N, H)
    torch.manual_seed(1)
    p1 = head(h, batch, library)
    torch.manual_seed(2)
    p2 = head(h, batch, library)
    assert not torch.allclose(p1["rate_back"], p2["rate_back"])
    torch.testing.assert_close(p1["back_mean"], p2["back_mean"])
    head.nll(x, p1).sum().backward()
    assert head.back_spread_layer.weight.grad.abs().sum() > 0  # the spread is learned through the draw


def test_starts_as_the_per_batch_head(rng):
    """At initialization the posterior is the prior: the background is the per-batch level."""
    init = np.linspace(0.5, 2.0, G).astype(np.float32)
    torch.manual_seed(0)
    cell = CellBackgroundNBMixtureHead(H, G, B, background_init=init).eval()
    x, batch, library = _inputs(rng)
    p = cell(torch.randn(N, H), batch, library)
    torch.testing.assert_close(p["rate_back"], torch.exp(cell.background_log_rate[:, batch.view(-1)].T))
    torch.testing.assert_close(p["back_scale"], p["back_prior_scale"], atol=2e-4, rtol=0)
    torch.testing.assert_close(cell.kl(p), torch.zeros(N), atol=1e-3, rtol=0)


def test_data_statistics_give_a_prior_level_and_spread(rng):
    x = rng.poisson(5.0, size=(50, G)).astype(np.float32)
    stats = CellBackgroundNBMixtureHead.data_statistics(x)
    assert set(stats) == {"background_init", "background_scale_init"}
    assert stats["background_scale_init"].shape == (G,) and (stats["background_scale_init"] >= 0.05).all()
    np.testing.assert_array_equal(stats["background_init"],
                                  NegativeBinomialMixtureHead.data_statistics(x)["background_init"])


# --------------------------------------------------------------------------- module
A = 6
PANELS = np.array([[True] * 4 + [False] * 2, [False, True, True, True, True, True]])  # batch x ADT


def _module(likelihood="nbmixture_cellbg"):
    torch.manual_seed(0)
    mods = [
        {"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G},
        {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": A, "likelihood": likelihood},
    ]
    return RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16, modality_dropout=0.0,
                         feature_masks={"adt": PANELS})


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        modality_key("rna"): torch.poisson(torch.full((N, G), 2.0), generator=g),
        modality_key("adt"): torch.poisson(torch.full((N, A), 5.0), generator=g),
        **{mask_key(m): torch.ones(N, 1) for m in ("rna", "adt")},
        REGISTRY_KEYS.BATCH_KEY: torch.tensor([0, 1] * (N // 2)).view(-1, 1),
    }


def test_module_adds_the_heads_kl_with_the_kl_weight():
    module = _module().eval()
    tensors = _tensors()
    torch.manual_seed(1)
    _, _, out = module(tensors, loss_kwargs={"kl_weight": 1.0})
    assert set(out.kl_local) == {"kl_z", "kl_adt"}
    torch.manual_seed(1)
    _, _, out0 = module(tensors, loss_kwargs={"kl_weight": 0.0})
    per_cell_kl = out.kl_local["kl_z"] + out.kl_local["kl_adt"]
    torch.testing.assert_close(out.loss - out0.loss, per_cell_kl.mean(), rtol=1e-5, atol=1e-5)
    # the per-batch head has no such term
    _, _, plain = _module("nbmixture").eval()(tensors)
    assert set(plain.kl_local) == {"kl_z"}


def test_module_masked_adt_entries_get_no_gradient_and_do_not_change_the_loss():
    module = _module().eval()
    tensors = _tensors()
    with torch.no_grad():  # move the posterior off the prior so the KL depends on the entries
        module.heads["adt"].back_shift_layer.weight.normal_(0, 0.3)
    batch = tensors[REGISTRY_KEYS.BATCH_KEY].view(-1).numpy()
    measured = torch.tensor(PANELS[batch])
    tensors[modality_key("adt")] = tensors[modality_key("adt")].clone().requires_grad_(True)
    torch.manual_seed(1)
    _, _, loss = module(tensors)
    loss.loss.backward()
    grad = tensors[modality_key("adt")].grad
    assert torch.all(grad[~measured] == 0) and torch.any(grad[measured] != 0)
    other = _tensors()
    other[modality_key("adt")][~measured] = 500.0
    torch.manual_seed(1)
    _, _, loss2 = module(other)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())


def test_model_trains_imputes_and_survives_save_and_load(tmp_path):
    from test_feature_masks_model import SMALL, TRAIN, _cite_panels

    from remadom import REMADOM
    from remadom.data import concat_mosaic

    inputs, *_ = _cite_panels(np.random.default_rng(0))
    mdata = concat_mosaic(inputs, batch_key="batch")
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "adt": {"mod": "adt", "likelihood": "nbmixture_cellbg"}},
                         batch_key="batch")
    model = REMADOM(mdata, **SMALL)
    assert isinstance(model.module.heads["adt"], CellBackgroundNBMixtureHead)
    model.train(**TRAIN)
    fore = model.impute("adt")
    total = model.impute("adt", include_background=True)
    assert fore.shape == (mdata.n_obs, 9) and np.isfinite(total).all() and (total >= fore - 1e-6).all()
    np.testing.assert_allclose(model.impute("adt"), fore)  # deterministic outside training
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(str(tmp_path / "m"), adata=mdata)
    assert isinstance(loaded.module.heads["adt"], CellBackgroundNBMixtureHead)
    np.testing.assert_allclose(loaded.impute("adt"), fore, rtol=1e-5, atol=1e-6)
