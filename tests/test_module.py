"""Module-level tests on hand-built tensors: masked ELBO semantics and shapes."""

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS

from remadom._constants import mask_key, modality_key
from remadom.module import RemadomModule

N, G, P, A = 12, 8, 20, 5


def make_module(**kw):
    torch.manual_seed(0)
    mods = [
        {"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G},
        {"name": "atac", "kind": "atac", "attr": "obsm", "key": "X_atac", "n_features": P},
        {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": A},
    ]
    stats = {"atac": {"encoder": {"idf": np.ones(P, dtype=np.float32)}}}
    return RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16, modality_stats=stats, **kw)


def make_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = {
        "rna": torch.tensor([1.0] * 6 + [0.0] * 6),
        "atac": torch.tensor([1.0, 0] * 6),
        "adt": torch.tensor([0.0] * 6 + [1.0] * 6),
    }
    return {
        modality_key("rna"): torch.poisson(torch.full((N, G), 2.0), generator=g),
        modality_key("atac"): (torch.rand(N, P, generator=g) < 0.2).float(),
        modality_key("adt"): torch.poisson(torch.full((N, A), 5.0), generator=g),
        **{mask_key(m): v.view(-1, 1) for m, v in masks.items()},
        REGISTRY_KEYS.BATCH_KEY: torch.tensor([0, 1] * 6).view(-1, 1),
    }


def test_masked_modality_gets_no_gradient_and_no_loss():
    module = make_module(modality_dropout=0.0)
    module.eval()  # no dropout randomness
    tensors = make_tensors()
    rna = tensors[modality_key("rna")].clone().requires_grad_(True)
    tensors[modality_key("rna")] = rna
    torch.manual_seed(1)
    _, _, loss = module(tensors)
    loss.loss.backward()
    missing = tensors[mask_key("rna")].view(-1) == 0
    assert torch.all(rna.grad[missing] == 0)
    assert torch.any(rna.grad[~missing] != 0)
    assert torch.all(loss.reconstruction_loss["rna"][missing] == 0)
    assert torch.all(loss.reconstruction_loss["adt"][tensors[mask_key("adt")].view(-1) == 0] == 0)

    # values of a masked-out modality do not change the loss
    other = make_tensors()
    other[modality_key("rna")][missing] = 1000.0
    torch.manual_seed(1)
    _, _, loss2 = module(other)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())


def test_all_zero_observed_row_is_data_not_missing():
    module = make_module(modality_dropout=0.0)
    module.eval()
    tensors = make_tensors()
    tensors[modality_key("rna")][0] = 0.0  # observed but all zero
    observed = module.inference(**module._get_inference_input(tensors))
    tensors[mask_key("rna")][0] = 0.0  # now declared missing
    missing = module.inference(**module._get_inference_input(tensors))
    assert observed["observed"][0, 0] == 1 and missing["observed"][0, 0] == 0
    # the zero row is an expert in the fusion: the posterior differs from the missing case
    assert not torch.allclose(observed["qz_m"][0], missing["qz_m"][0])


def test_masked_expert_parameters_get_no_gradient_from_missing_cells():
    module = make_module(modality_dropout=0.0, consistency_weight=0.0)
    tensors = make_tensors()
    tensors[mask_key("adt")] = torch.zeros(N, 1)
    tensors[mask_key("rna")] = torch.ones(N, 1)
    module.eval()
    _, _, loss = module(tensors)
    loss.loss.backward()
    for p in list(module.encoders["adt"].parameters()) + list(module.heads["adt"].parameters()):
        assert p.grad is None or torch.all(p.grad == 0)


def test_loss_output_terms_and_shapes():
    module = make_module()
    module.train()
    inf, gen, loss = module(make_tensors())
    assert set(loss.reconstruction_loss) == {"rna", "atac", "adt"}
    assert loss.kl_local["kl_z"].shape == (N,)
    assert inf["z"].shape == (N, 3)
    assert {"nll_rna", "nll_atac", "nll_adt"} <= set(loss.extra_metrics)
    assert "consistency" not in loss.extra_metrics  # the consistency term is off by default
    assert torch.isfinite(loss.loss)


def test_consistency_term_is_logged_when_enabled():
    module = make_module(consistency_weight=0.5)
    module.train()
    _, _, loss = module(make_tensors())
    assert "consistency" in loss.extra_metrics
    assert torch.isfinite(loss.extra_metrics["consistency"]) and torch.isfinite(loss.loss)


def test_modality_dropout_keeps_at_least_one_observed():
    module = make_module(modality_dropout=0.9)
    observed = torch.tensor([[1.0, 1, 0, 1], [1.0, 0, 1, 1], [0.0, 1, 1, 1]])
    for _ in range(20):
        kept = module._modality_dropout(observed)
        assert torch.all(kept <= observed) and torch.all(kept.sum(0) >= 1)


def test_kl_weight_scales_kl_term():
    module = make_module(modality_dropout=0.0, consistency_weight=0.0)
    module.eval()
    tensors = make_tensors()
    inf = module.inference(**module._get_inference_input(tensors))
    gen = module.generative(**module._get_generative_input(tensors, inf))
    l0 = module.loss(tensors, inf, gen, kl_weight=0.0).loss
    l1 = module.loss(tensors, inf, gen, kl_weight=1.0).loss
    kl = module.loss(tensors, inf, gen).kl_local["kl_z"].mean()
    torch.testing.assert_close(l1 - l0, kl)


def test_modality_weights_scale_reconstruction():
    module = make_module(modality_dropout=0.0, consistency_weight=0.0)
    module.eval()
    tensors = make_tensors()
    inf = module.inference(**module._get_inference_input(tensors))
    gen = module.generative(**module._get_generative_input(tensors, inf))
    base = module.loss(tensors, inf, gen).reconstruction_loss["atac"]
    doubled = module.loss(tensors, inf, gen, modality_weights={"atac": 2.0}).reconstruction_loss["atac"]
    torch.testing.assert_close(doubled, 2 * base)


def test_subset_inference_uses_only_chosen_modalities():
    module = make_module()
    module.eval()
    tensors = make_tensors()
    full = module.inference(**module._get_inference_input(tensors))
    rna_only = module.inference(**module._get_inference_input(tensors), use_modalities=["rna"])
    # cells without RNA fall back to the prior
    no_rna = tensors[mask_key("rna")].view(-1) == 0
    assert torch.all(rna_only["qz_m"][no_rna] == 0)
    assert not torch.allclose(full["qz_m"][no_rna], rna_only["qz_m"][no_rna])


def test_unknown_modality_weight_is_an_error():
    with pytest.raises(ValueError, match="unknown modalities"):
        make_module(modality_weights={"protein": 1.0})


def test_availability_groups_encode_observed_sets():
    observed = torch.tensor([[1.0, 1, 0, 0], [1.0, 0, 1, 0], [0.0, 0, 0, 1]])
    groups = RemadomModule.alignment_groups({}, observed, "availability")
    assert groups.tolist() == [3, 1, 2, 4]


@pytest.mark.parametrize("transform", ["log1p", "tfidf", "clr", "identity"])
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_encoder_input_sparse_equals_dense(transform, layout):
    from remadom.nn.networks import EncoderInput

    torch.manual_seed(0)
    x = torch.poisson(torch.rand(7, 11) * 1.5)
    x[2] = 0.0  # an all-zero (observed) row
    enc = EncoderInput(transform, idf=torch.rand(11) + 0.5 if transform == "tfidf" else None)
    sparse = x.to_sparse_csr() if layout == "csr" else x.to_sparse()
    torch.testing.assert_close(enc(sparse), enc(x))


def test_training_plan_uses_fused_adam_on_cpu():
    from remadom.train import RemadomTrainingPlan

    plan = RemadomTrainingPlan(make_module())
    opt = plan.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"] is True


def test_additive_batch_effect_enters_only_the_likelihood_layer():
    mod = make_module(batch_effect="additive")
    for dec in mod.decoders.values():
        # trunk sees z only; the head's first input block is the trunk's output plus a batch one-hot
        assert dec.body.fc_layers[0][0].in_features == 3
    assert mod.heads["rna"].scale_layer.in_features == 16 + 2
    assert mod.heads["atac"].logit_layer.in_features == 16 + 2 + 1  # + depth
    tensors = make_tensors()
    _, gen, loss = mod(tensors)
    assert torch.isfinite(loss.loss)
    # the batch shifts the RNA log-scale by a per-gene offset that does not depend on z
    with torch.no_grad():
        z = torch.randn(4, 3)
        lib = {m: torch.full((4,), 100.0) for m in mod.modality_names}
        b0 = mod.generative(z, lib, batch_index=torch.zeros(4, 1, dtype=torch.long))["params"]["rna"]["scale"]
        b1 = mod.generative(z, lib, batch_index=torch.ones(4, 1, dtype=torch.long))["params"]["rna"]["scale"]
        ratio = torch.log(b1) - torch.log(b0)
        centred = ratio - ratio.mean(-1, keepdim=True)
        torch.testing.assert_close(centred, centred[:1].expand_as(centred), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_effect"):
        make_module(batch_effect="deep")
