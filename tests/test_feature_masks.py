"""Feature-level masks: masked (cell, feature) entries add no loss and get no gradient.

Maths on hand-built tensors (heads, encoder input, module); the registration / model tests are
in ``tests/test_feature_masks_model.py``.
"""

import numpy as np
import pytest
import torch
from scipy import stats
from scvi import REGISTRY_KEYS

from remadom._constants import mask_key, modality_key
from remadom.module import RemadomModule
from remadom.nn.likelihoods import LIKELIHOODS, LikelihoodHead, clr, register_likelihood
from remadom.nn.masked import FeatureMaskBank, masked_encoder_input
from remadom.nn.networks import EncoderInput

N, G, H, B = 8, 6, 4, 2

#: per-entry parameters of each head (their entries at masked positions must get no gradient)
ENTRY_PARAMS = {
    "nb": ["mu", "theta"], "zinb": ["mu", "theta", "zi_logits"], "poisson": ["mu"],
    "bernoulli": ["logits"], "bernoulli_peakvi": ["log_p"],
    "nbmixture": ["rate_back", "rate_fore", "mixing_logits", "theta"],
    "nbmixture_cellbg": ["rate_back", "rate_fore", "mixing_logits", "theta"],
    "gaussian": ["mean", "log_var"], "gaussian_clr": ["mean", "log_var"],
}


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def _mask(rng, n=N, g=G):
    mask = torch.tensor(rng.random((n, g)) < 0.6)
    mask[:, 0] = True  # every cell measures at least one feature
    return mask


def _head(name, rng):
    torch.manual_seed(0)
    head = LIKELIHOODS[name](H, G, B)
    x = torch.tensor(rng.poisson(3.0, size=(N, G)), dtype=torch.float32)
    if LIKELIHOODS[name].binary:
        x = (x > 2).float()
    batch = torch.tensor(rng.integers(0, B, size=(N, 1)))
    library = torch.tensor(rng.integers(20, 200, size=N), dtype=torch.float32)
    params = head(torch.randn(N, H), batch, library)
    return head, x, params


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_masked_entries_add_no_loss_and_get_no_gradient(name, rng):
    head, x, params = _head(name, rng)
    mask = _mask(rng)
    leaves = {k: (v.detach().clone().requires_grad_(True) if torch.is_tensor(v) else v) for k, v in params.items()}
    nll = head.nll(x, leaves, mask=mask)
    nll.sum().backward()
    for key in ENTRY_PARAMS[name]:
        grad = leaves[key].grad
        assert grad is not None, key
        assert torch.all(grad[~mask] == 0), f"{name}: masked entries of {key!r} got a gradient"
        assert torch.any(grad[mask] != 0), f"{name}: measured entries of {key!r} got none"
    # values at masked entries do not matter
    x_other = x.clone()
    x_other[~mask] = 1.0 if LIKELIHOODS[name].binary else 99.0
    torch.testing.assert_close(head.nll(x_other, params, mask=mask), head.nll(x, params, mask=mask))
    # and an all-True mask is the unmasked NLL
    torch.testing.assert_close(head.nll(x, params, mask=torch.ones_like(mask)), head.nll(x, params))


def _nb_logpmf(x, mu, theta):
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def test_nb_masked_matches_scipy_on_measured_entries_with_renormalized_scale(rng):
    head, x, p = _head("nb", rng)
    mask = _mask(rng).numpy()
    scale, theta = p["scale"].detach().numpy(), p["theta"].detach().numpy()
    library = p["mu"].detach().numpy().sum(-1, keepdims=True)
    # the measured features' expected counts sum to the (measured) library
    mu = scale / (scale * mask).sum(-1, keepdims=True) * library
    np.testing.assert_allclose((mu * mask).sum(-1), library.ravel(), rtol=1e-5)
    ref = -np.where(mask, _nb_logpmf(x.numpy(), mu, theta), 0.0).sum(-1)
    np.testing.assert_allclose(head.nll(x, p, mask=torch.tensor(mask)).detach().numpy(), ref, rtol=1e-4)


def test_poisson_masked_matches_torch(rng):
    head, x, p = _head("poisson", rng)
    mask = _mask(rng)
    mu = p["mu"] / (p["scale"] * mask).sum(-1, keepdim=True)
    ref = -(torch.distributions.Poisson(mu + 1e-8).log_prob(x) * mask).sum(-1)
    torch.testing.assert_close(head.nll(x, p, mask=mask), ref)


def test_bernoulli_masked_matches_torch(rng):
    head, x, p = _head("bernoulli", rng)
    mask = _mask(rng)
    ref = -(torch.distributions.Bernoulli(logits=p["logits"]).log_prob(x) * mask).sum(-1)
    torch.testing.assert_close(head.nll(x, p, mask=mask), ref)


def test_every_registered_head_takes_feature_masks():
    assert set(ENTRY_PARAMS) == set(LIKELIHOODS)
    assert all(cls.supports_feature_masks() for cls in LIKELIHOODS.values())


def test_bernoulli_peakvi_masked_matches_torch(rng):
    head, x, p = _head("bernoulli_peakvi", rng)
    mask = _mask(rng)
    ref = -(torch.distributions.Bernoulli(probs=torch.exp(p["log_p"])).log_prob(x) * mask).sum(-1)
    torch.testing.assert_close(head.nll(x, p, mask=mask), ref, rtol=1e-4, atol=1e-4)


def test_gaussian_masked_matches_torch_on_values_as_given(rng):
    head, x, p = _head("gaussian", rng)
    mask = _mask(rng)
    dist = torch.distributions.Normal(p["mean"], torch.exp(0.5 * p["log_var"]))
    torch.testing.assert_close(head.nll(x, p, mask=mask), -(dist.log_prob(x) * mask).sum(-1))


def test_gaussian_clr_masked_clr_uses_measured_features_only(rng):
    head, x, p = _head("gaussian_clr", rng)
    mask = _mask(rng)
    out = head.nll(x, p, mask=mask)
    for c in range(N):
        keep = mask[c]
        centred = clr(x[c : c + 1, keep])  # CLR of the measured features alone
        dist = torch.distributions.Normal(p["mean"][c, keep], torch.exp(0.5 * p["log_var"][c, keep]))
        torch.testing.assert_close(out[c], -dist.log_prob(centred[0]).sum())


def test_library_and_depth_come_from_measured_features(rng):
    x = torch.tensor(rng.poisson(3.0, size=(N, G)), dtype=torch.float32)
    mask = _mask(rng)
    nb = LIKELIHOODS["nb"](H, G, B)
    torch.testing.assert_close(nb.library(x, mask), (x * mask).sum(-1))
    bern = LIKELIHOODS["bernoulli"](H, G, B)
    binary = (x > 2).float()
    frac = mask.float().mean(-1)
    # open measured peaks, scaled up to the full peak set
    torch.testing.assert_close(bern.library(binary, mask), (binary * mask).sum(-1) / frac)
    torch.testing.assert_close(bern.library(binary), binary.sum(-1))


@pytest.mark.parametrize("transform", ["log1p", "tfidf", "clr"])
def test_encoder_input_ignores_masked_values(transform, rng):
    enc = EncoderInput(transform, idf=torch.ones(G) if transform == "tfidf" else None)
    mask = _mask(rng)
    x = torch.tensor(rng.poisson(3.0, size=(N, G)), dtype=torch.float32) * mask
    out = enc(x, mask)
    assert torch.all(out[~mask] == 0)
    if transform == "log1p":  # measured entries rescaled by n_features / n_measured
        torch.testing.assert_close(out, torch.log1p(x) * mask * (G / mask.sum(-1, keepdim=True)))
    if transform == "tfidf":  # per-cell normalized over the measured opens already: no rescale
        torch.testing.assert_close(out, enc(x))
    torch.testing.assert_close(enc(x, torch.ones_like(mask)), enc(x))


def test_masked_encoder_input_without_mask_is_identity():
    x = torch.randn(3, 4)
    assert masked_encoder_input(x, None) is x


def test_feature_mask_bank_gathers_by_batch_and_is_in_the_state_dict():
    table = np.array([[True, False, True], [False, True, True]])
    bank = FeatureMaskBank({"adt": table})
    out = bank.entry_mask("adt", torch.tensor([[1], [0], [1]]))
    np.testing.assert_array_equal(out.numpy(), table[[1, 0, 1]])
    assert bank.entry_mask("rna", torch.tensor([[0]])) is None
    assert "mask_adt" in bank.state_dict()
    with pytest.raises(ValueError, match="batch index"):
        bank.entry_mask("adt", None)


# --------------------------------------------------------------------------- module
P, A = 10, 6
PANELS = np.array([[True] * 4 + [False] * 2, [False, True, True, True, True, True]])  # batch x ADT
PEAKS = np.array([[True, False] * 5, [True] * 5 + [False] * 5])  # batch x peaks


def _module():
    torch.manual_seed(0)
    mods = [
        {"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G},
        {"name": "atac", "kind": "atac", "attr": "obsm", "key": "X_atac", "n_features": P},
        {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": A},
    ]
    return RemadomModule(
        mods, n_batch=2, n_latent=3, n_hidden=16, modality_dropout=0.0,
        modality_stats={"atac": {"encoder": {"idf": np.ones(P, dtype=np.float32)}}},
        feature_masks={"adt": PANELS, "atac": PEAKS},
    )


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.tensor([0, 1] * (N // 2)).view(-1, 1)
    return {
        modality_key("rna"): torch.poisson(torch.full((N, G), 2.0), generator=g),
        modality_key("atac"): (torch.rand(N, P, generator=g) < 0.3).float(),
        modality_key("adt"): torch.poisson(torch.full((N, A), 5.0), generator=g),
        **{mask_key(m): torch.ones(N, 1) for m in ("rna", "atac", "adt")},
        REGISTRY_KEYS.BATCH_KEY: batch,
    }


def test_module_masked_entries_get_no_gradient_and_do_not_change_the_loss():
    module = _module()
    module.eval()
    tensors = _tensors()
    batch = tensors[REGISTRY_KEYS.BATCH_KEY].view(-1).numpy()
    # ATAC is binarized before scoring (no gradient to its raw values): its check is the loss below
    tensors[modality_key("adt")] = tensors[modality_key("adt")].clone().requires_grad_(True)
    torch.manual_seed(1)
    _, _, loss = module(tensors)
    loss.loss.backward()
    for name, table in (("adt", PANELS),):
        measured = torch.tensor(table[batch])
        grad = tensors[modality_key(name)].grad
        assert torch.all(grad[~measured] == 0), name
        assert torch.any(grad[measured] != 0), name

    other = _tensors()
    for name, table in (("adt", PANELS), ("atac", PEAKS)):
        unmeasured = torch.tensor(~table[batch])
        other[modality_key(name)][unmeasured] = 1.0 if name == "atac" else 500.0
    torch.manual_seed(1)
    _, _, loss2 = module(other)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())


def test_module_without_feature_masks_is_unchanged():
    torch.manual_seed(0)
    mods = [{"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G}]
    module = RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16)
    assert not any(k.startswith("feature_masks") for k in module.state_dict())


def test_shared_encoder_masks_hide_features_not_measured_by_every_batch():
    module = _module()
    module.eval()
    module.encoder_feature_masks = "shared"
    tensors = _tensors()
    base = module.inference(**module._get_inference_input(tensors))["qz_m"]
    other = _tensors()
    not_shared = torch.tensor(~PANELS.all(0))
    other[modality_key("adt")][:, not_shared] = 50.0  # measured by one batch only
    torch.testing.assert_close(module.inference(**module._get_inference_input(other))["qz_m"], base)
    module.encoder_feature_masks = "batch"  # with the batch's own features, they matter
    assert not torch.allclose(module.inference(**module._get_inference_input(other))["qz_m"], base)


def test_shared_encoder_masks_fall_back_to_batch_masks_without_shared_features():
    module = _module()
    disjoint = np.array([[True] * 3 + [False] * 3, [False] * 3 + [True] * 3])
    module.feature_masks = FeatureMaskBank({"adt": disjoint})
    entry = module.feature_masks.entry_mask("adt", torch.tensor([[0], [1]]))
    assert module.encoder_feature_masks == "shared"
    torch.testing.assert_close(module._encoder_mask("adt", {"adt": entry}), entry)
    shared = FeatureMaskBank({"adt": PANELS})
    module.feature_masks = shared
    entry = shared.entry_mask("adt", torch.tensor([[0], [1]]))
    np.testing.assert_array_equal(module._encoder_mask("adt", {"adt": entry}).numpy(),
                                  np.broadcast_to(PANELS.all(0), (2, A)))


def test_a_head_with_per_entry_terms_gets_masks_from_the_base_class(rng):
    base = LIKELIHOODS["gaussian"]

    class EntriesOnly(LikelihoodHead):  # only nll_entries: the base nll does the masking
        name = "entries_only_test"

        def __init__(self, n_hidden, n_features, n_batch):
            super().__init__(n_hidden, n_features, n_batch)
            self.inner = base(n_hidden, n_features, n_batch)

        def forward(self, h, batch_index, library):
            return self.inner(h, batch_index, library)

        def nll_entries(self, x, params, mask=None):
            return self.inner.nll_entries(x, params, mask)

    head, x, p = _head("gaussian", rng)
    mask = _mask(rng)
    assert EntriesOnly.supports_feature_masks()
    torch.testing.assert_close(EntriesOnly(H, G, B).nll(x, p, mask=mask), head.nll(x, p, mask=mask))


def test_a_head_whose_nll_takes_no_mask_is_refused_for_a_masked_modality():
    class Unmaskable(LIKELIHOODS["gaussian"]):  # overrides nll without a mask (written before masks)
        name = "unmaskable_test"

        def nll(self, x, params):
            return super().nll(x, params)

    assert not Unmaskable.supports_feature_masks()
    register_likelihood(Unmaskable)
    try:
        mods = [{"name": "sig", "kind": "counts", "attr": "obsm", "key": "X_sig", "likelihood": "unmaskable_test",
                 "n_features": A}]
        RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16)  # fine without feature masks
        with pytest.raises(ValueError, match="takes no `mask`"):
            RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16, feature_masks={"sig": PANELS})
    finally:
        LIKELIHOODS.pop(Unmaskable.name)


def test_initialization_statistics_skip_unmeasured_entries():
    """Open rates, idf and the reference depth come from the measured entries only."""
    from remadom.modalities import ModalitySpec
    from remadom.model._feature_masks import measured_statistics

    rng = np.random.default_rng(0)
    n, f = 400, 10
    x = (rng.random((n, f)) < 0.3).astype(np.float32)
    codes = np.repeat([0, 1], n // 2)
    table = np.ones((2, f), dtype=bool)
    table[1, 5:] = False  # batch 1 did not measure features 5..9
    x[codes == 1, 5:] = 0.0  # the join's zeros
    spec = ModalitySpec(name="atac", kind="atac", attr="obsm", key="X_atac")
    stats = measured_statistics(spec, x, codes, table)
    rate = stats["head"]["open_rate"]
    np.testing.assert_allclose(rate[5:], x[codes == 0, 5:].mean(0), rtol=1e-6)  # batch 0's cells only
    np.testing.assert_allclose(rate[:5], x[:, :5].mean(0), rtol=1e-6)
    assert rate[5:].mean() > 0.25  # counting the join's zeros would halve it (~0.15)
    open_cells = x[codes == 0, 5:].sum(0)
    np.testing.assert_allclose(stats["encoder"]["idf"][5:], (n // 2) / (1 + open_cells), rtol=1e-6)
    depth = np.r_[np.log1p(x[codes == 0].sum(1)), np.log1p(x[codes == 1, :5].sum(1) / 0.5)].mean()
    assert stats["head"]["log_depth_ref"] == pytest.approx(depth, rel=1e-6)
