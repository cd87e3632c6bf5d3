"""Paired cells as anchors and the unshrunk fusion (nn._alignment_anchor), issue #13."""

import numpy as np
import pytest
import torch
from conftest import make_mosaic_adata, make_study_adata

from remadom import REMADOM
from remadom.nn import product_of_experts
from remadom.nn._alignment_anchor import paired_anchor_loss, unshrunk_fusion
from remadom.nn.poe import kl_between_gaussians

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}


def _experts(n_cells=5, n_latent=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(2, n_cells, n_latent, generator=g)
    logvars = torch.randn(2, n_cells, n_latent, generator=g)
    return means, logvars


def test_unshrunk_single_expert_keeps_its_mean_at_any_precision():
    means, logvars = _experts()
    only_first = torch.tensor([[1.0] * 5, [0.0] * 5])
    mean, logvar = unshrunk_fusion(means, logvars, only_first)
    torch.testing.assert_close(mean, means[0])
    torch.testing.assert_close(logvar, -torch.log1p(torch.exp(-logvars[0])))
    poe_mean, poe_logvar = product_of_experts(means, logvars, only_first)
    torch.testing.assert_close(logvar, poe_logvar)  # same variance as the PoE, prior included
    shrink = torch.exp(-logvars[0]) / (1 + torch.exp(-logvars[0]))
    torch.testing.assert_close(poe_mean, means[0] * shrink)  # the PoE pulls it towards 0


def test_unshrunk_two_experts_precision_weighted_mean():
    means, logvars = _experts()
    both = torch.ones(2, 5)
    mean, _ = unshrunk_fusion(means, logvars, both)
    prec = torch.exp(-logvars)
    torch.testing.assert_close(mean, (prec * means).sum(0) / prec.sum(0))


def test_unshrunk_no_expert_is_the_prior_and_masked_expert_gets_no_gradient():
    means, logvars = _experts()
    means.requires_grad_(True)
    masks = torch.tensor([[1.0, 0, 1, 0, 1], [0.0, 0, 1, 1, 0]])
    mean, logvar = unshrunk_fusion(means, logvars, masks)
    assert torch.all(mean[1] == 0) and torch.all(logvar[1] == 0)  # cell 1 has nothing: N(0, I)
    mean.sum().backward()
    assert torch.all(means.grad[0, [1, 3]] == 0) and torch.all(means.grad[1, [0, 1, 4]] == 0)


def test_anchor_is_zero_for_single_modality_cells():
    means, logvars = _experts()
    single = torch.tensor([[1.0] * 5, [0.0] * 5])
    for fusion in ("poe", "unshrunk"):
        assert torch.all(paired_anchor_loss(means, logvars, single, fusion=fusion) == 0)


def test_anchor_closed_form_mean_kind():
    means, logvars = _experts()
    both = torch.ones(2, 5)
    joint, _ = unshrunk_fusion(means, logvars, both)
    expected = ((means[0] - joint) ** 2).sum(-1) + ((means[1] - joint) ** 2).sum(-1)
    torch.testing.assert_close(paired_anchor_loss(means, logvars, both, fusion="unshrunk"), expected)


def test_anchor_kl_kind_is_mode_seeking_kl_to_joint():
    means, logvars = _experts()
    both = torch.ones(2, 5)
    jm, jl = product_of_experts(means, logvars, both)
    expected = sum(
        kl_between_gaussians(*product_of_experts(means[i : i + 1], logvars[i : i + 1], both[i : i + 1]), jm, jl)
        for i in range(2)
    )
    torch.testing.assert_close(paired_anchor_loss(means, logvars, both, kind="kl"), expected)


def test_agreeing_experts_are_anchored_only_without_the_prior_shrinkage():
    """Identical experts: the unshrunk posteriors coincide (loss 0); the PoE's do not."""
    means, logvars = _experts()
    means[1], logvars[1] = means[0], logvars[0]
    both = torch.ones(2, 5)
    assert float(paired_anchor_loss(means, logvars, both, fusion="unshrunk").abs().max()) < 1e-10
    assert float(paired_anchor_loss(means, logvars, both, fusion="poe").min()) > 0


def test_stop_gradient_moves_only_the_unimodal_posteriors():
    """With the joint detached, moving expert 1 changes only its own unimodal term."""
    means, logvars = _experts(n_cells=1)
    both = torch.ones(2, 1)
    m = means.clone().requires_grad_(True)
    loss = paired_anchor_loss(m, logvars, both, fusion="unshrunk")
    (grad,) = torch.autograd.grad(loss.sum(), m)
    joint, _ = unshrunk_fusion(means, logvars, both)
    torch.testing.assert_close(grad, 2 * (means - joint))  # d/dmu_m |mu_m - sg(joint)|^2
    m2 = means.clone().requires_grad_(True)
    (grad_both,) = torch.autograd.grad(paired_anchor_loss(m2, logvars, both, fusion="unshrunk",
                                                          stop_gradient=False).sum(), m2)
    assert not torch.allclose(grad, grad_both)


def test_unknown_kind_errors():
    means, logvars = _experts()
    with pytest.raises(ValueError, match="kind="):
        paired_anchor_loss(means, logvars, torch.ones(2, 5), kind="l1")


def test_auto_switches_both_on_only_when_confounded():
    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    assert model.module.fusion == "unshrunk" and model.module.paired_anchor_weight > 0
    off = REMADOM(adata, fusion="poe", paired_anchor_weight=0, **SMALL)
    assert off.module.fusion == "poe" and off.module.paired_anchor_weight == 0
    plain = make_mosaic_adata()
    REMADOM.setup_anndata(plain, **KEYS)
    ordinary = REMADOM(plain, **SMALL)
    assert ordinary.module.fusion == "poe" and ordinary.module.paired_anchor_weight == 0


def test_bad_arguments_error():
    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    with pytest.raises(ValueError, match="paired_anchor_weight="):
        REMADOM(adata, paired_anchor_weight=-1.0, **SMALL)
    with pytest.raises(ValueError, match="paired_anchor_weight="):
        REMADOM(adata, paired_anchor_weight="on", **SMALL)
    with pytest.raises(ValueError, match="fusion="):
        REMADOM(adata, fusion="mean", **SMALL)


def test_trains_and_logs_the_anchor_on_a_study_split():
    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    model.train(max_epochs=2, batch_size=64)
    assert "paired_anchor_train" in model.history
    z = model.get_latent_representation()
    assert np.isfinite(z).all()


def test_saved_model_keeps_its_fusion_and_old_files_load_as_trained(tmp_path):
    from remadom.model._confounding import with_pre_anchor_defaults

    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    model.train(max_epochs=1, batch_size=64)
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(tmp_path / "m", adata=adata)
    assert loaded.module.fusion == "unshrunk" and loaded.module.paired_anchor_weight == model.module.paired_anchor_weight
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-5)
    old = {"non_kwargs": {"n_latent": 4}, "kwargs": {}}  # saved before these arguments existed
    assert with_pre_anchor_defaults(old)["non_kwargs"] == {"fusion": "poe", "paired_anchor_weight": 0.0, "n_latent": 4}
    assert with_pre_anchor_defaults({"non_kwargs": {"fusion": "unshrunk"}, "kwargs": {}})["non_kwargs"]["fusion"] == "unshrunk"
