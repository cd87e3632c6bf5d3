"""Adversarial mixing of groups on the latent (nn._alignment_adversarial, training-plan option), issue #13c."""

import numpy as np
import pytest
import torch
from conftest import make_study_adata
from torch import nn

from remadom import REMADOM
from remadom.nn._alignment_adversarial import adversarial_losses, group_classifier
from remadom.train import RemadomTrainingPlan

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}


class _Constant(nn.Module):
    """Predicts the same logits for every cell, whatever ``z`` is (and lets ``z`` into the graph)."""

    def __init__(self, logits):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3, len(logits)))
        self.bias = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, z):
        return z @ self.weight + self.bias


def _groups():
    return torch.tensor([0] * 6 + [1] * 2 + [2] * 4)  # shares 1/2, 1/6, 1/3


def test_fool_is_zero_when_the_classifier_only_knows_the_group_sizes():
    groups = _groups()
    pi = torch.bincount(groups).float() / groups.numel()
    z = torch.randn(12, 3)
    fool, _ = adversarial_losses(_Constant(pi.log()), z, groups, 3)
    assert abs(float(fool)) < 1e-6
    uniform, _ = adversarial_losses(_Constant(torch.zeros(3)), z, groups, 3)
    assert float(uniform) > 0.05  # uniform is not the target when the groups differ in size


def test_fool_is_large_when_the_classifier_separates_the_groups():
    groups = _groups()
    z = torch.nn.functional.one_hot(groups, 3).float()
    clf = _Constant(torch.zeros(3))
    with torch.no_grad():
        clf.weight.copy_(10 * torch.eye(3))
    fool, discriminate = adversarial_losses(clf, z, groups, 3)
    assert float(fool) > 1.0 and float(discriminate) < 0.01


def test_gradients_flow_only_where_intended():
    groups = _groups()
    clf = group_classifier(3, 3)
    z = torch.randn(12, 3, requires_grad=True)
    fool, discriminate = adversarial_losses(clf, z, groups, 3)
    fool.backward(retain_graph=True)
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None or torch.all(p.grad == 0) for p in clf.parameters())  # fool: encoder only
    z.grad = None
    discriminate.backward()
    assert z.grad is None  # the classifier's own loss: classifier only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in clf.parameters())


def test_one_group_in_the_minibatch_gives_zero():
    z = torch.randn(5, 3, requires_grad=True)
    fool, discriminate = adversarial_losses(group_classifier(3, 2), z, torch.zeros(5, dtype=torch.long), 2)
    assert float(fool) == 0 and float(discriminate) == 0


def _reference_losses(classifier, z, groups, n_groups):
    """The previous implementation (host-side group check, boolean-mask indexing), for comparison."""
    groups = groups.view(-1).long()
    zero = z.sum() * 0.0
    counts = torch.bincount(groups, minlength=n_groups).to(z.dtype)
    if int((counts > 0).sum()) < 2:
        return zero, zero
    pi = counts / counts.sum()
    frozen = {name: p.detach() for name, p in classifier.named_parameters()}
    log_p = torch.nn.functional.log_softmax(torch.func.functional_call(classifier, frozen, (z,)).float(), dim=-1)
    present = pi > 0
    fool = (pi[present] * (pi[present].log() - log_p[:, present])).sum(-1).mean()
    discriminate = torch.nn.functional.cross_entropy(classifier(z.detach()).float(), groups)
    return fool, discriminate


@pytest.mark.parametrize("groups", [
    [0] * 6 + [1] * 2 + [2] * 4,  # every group present
    [0] * 5 + [2] * 7,  # group 1 empty in this minibatch
    [3] * 4 + [1] * 8,  # groups 0 and 2 empty
    [2] * 12,  # a single group: both 0
])
def test_same_values_and_gradients_as_the_host_side_check(groups):
    groups = torch.tensor(groups)
    torch.manual_seed(0)
    clf = group_classifier(3, 4).eval()  # eval: no dropout, so both calls see the same network
    z = torch.randn(12, 3)
    results = []
    for fn in (adversarial_losses, _reference_losses):
        zz = z.clone().requires_grad_(True)
        clf.zero_grad(set_to_none=True)
        fool, discriminate = fn(clf, zz, groups, 4)
        (fool + discriminate).backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in clf.parameters()]
        results.append((fool.detach(), discriminate.detach(), zz.grad.clone(), grads))
    (f1, d1, gz1, gc1), (f0, d0, gz0, gc0) = results
    torch.testing.assert_close(f1, f0.to(f1.dtype))
    torch.testing.assert_close(d1, d0.to(d1.dtype))
    torch.testing.assert_close(gz1, gz0)
    for a, b in zip(gc1, gc0, strict=True):
        torch.testing.assert_close(a, b)


def test_no_value_is_read_back_to_the_host():
    """On the meta device any host read (``int()``, ``.item()``, boolean-mask indexing, ``bincount``) raises.

    A GPU step therefore never waits for the device in this term.
    """
    clf = group_classifier(3, 3).to("meta")
    z = torch.empty(12, 3, device="meta", requires_grad=True)
    groups = torch.empty(12, dtype=torch.long, device="meta")
    fool, discriminate = adversarial_losses(clf, z, groups, 3)
    assert fool.shape == () and discriminate.shape == ()
    (fool + discriminate).backward()
    assert z.grad is not None and z.grad.shape == z.shape


def test_empty_minibatch_gives_zero():
    z = torch.randn(0, 3, requires_grad=True)
    fool, discriminate = adversarial_losses(group_classifier(3, 2), z, torch.zeros(0, dtype=torch.long), 2)
    assert float(fool) == 0 and float(discriminate) == 0


def _model():
    adata = make_study_adata()
    REMADOM.setup_anndata(adata, **KEYS)
    return REMADOM(adata, **SMALL)


def test_off_by_default_and_the_switch_turns_it_off():
    model = _model()
    plan = RemadomTrainingPlan(model.module)
    assert plan.adversarial_classifier is None and "adversarial_classifier" not in plan.loss_kwargs
    on = RemadomTrainingPlan(model.module, adversarial_weight=1.0)
    assert on.adversarial_classifier is not None and on.loss_kwargs["adversarial_weight"] == 1.0
    n_module = sum(p.numel() for p in model.module.parameters())
    n_opt = sum(p.numel() for g in on.configure_optimizers()["optimizer"].param_groups for p in g["params"])
    assert n_opt == n_module + sum(p.numel() for p in on.adversarial_classifier.parameters())


def test_warmup_schedule_fades_with_the_kl_weight():
    model = _model()
    plan = RemadomTrainingPlan(model.module, adversarial_weight=2.0, adversarial_schedule="warmup", n_epochs_kl_warmup=10)
    for kl, expected in ((0.0, 2.0), (0.5, 1.0), (1.0, 0.0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RemadomTrainingPlan, "kl_weight", property(lambda self, k=kl: k))
            assert plan._current_adversarial_weight() == pytest.approx(expected)
    constant = RemadomTrainingPlan(model.module, adversarial_weight=2.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RemadomTrainingPlan, "kl_weight", property(lambda self: 1.0))
        assert constant._current_adversarial_weight() == 2.0


def test_bad_arguments_error():
    model = _model()
    with pytest.raises(ValueError, match="adversarial_weight="):
        RemadomTrainingPlan(model.module, adversarial_weight=-1.0)
    with pytest.raises(ValueError, match="adversarial_on="):
        RemadomTrainingPlan(model.module, adversarial_weight=1.0, adversarial_on="study")
    with pytest.raises(ValueError, match="adversarial_schedule="):
        RemadomTrainingPlan(model.module, adversarial_weight=1.0, adversarial_schedule="cosine")


@pytest.mark.slow
@pytest.mark.parametrize("on", ["batch", "availability"])
def test_trains_logs_and_leaves_the_saved_module_unchanged(on):
    model = _model()
    keys = set(model.module.state_dict())
    model.train(max_epochs=2, batch_size=64, plan_kwargs={"adversarial_weight": 1.0, "adversarial_on": on})
    assert "adversarial_fool_train" in model.history and "adversarial_classifier_train" in model.history
    assert set(model.module.state_dict()) == keys
    assert np.isfinite(model.get_latent_representation()).all()


def test_auto_weight_is_on_only_when_a_batch_is_confounded():
    from remadom.model._train_defaults import CONFOUNDED_ADVERSARIAL_WEIGHT, resolve_adversarial_weight

    assert resolve_adversarial_weight("auto", ["b2"]) == CONFOUNDED_ADVERSARIAL_WEIGHT > 0
    assert resolve_adversarial_weight("auto", []) == 0.0
    assert resolve_adversarial_weight(0, ["b2"]) == 0.0  # the off switch wins over confounding
    assert resolve_adversarial_weight(2.5, []) == 2.5
    for bad in ("on", -1.0, True):
        with pytest.raises(ValueError, match="adversarial_weight="):
            resolve_adversarial_weight(bad, ["b2"])


def test_config_takes_the_adversarial_weight():
    from remadom.config import ConfigError, RunConfig, validate_config

    assert RunConfig().schedule.adversarial_weight == "auto"
    assert validate_config({"schedule": {"adversarial_weight": 0}}).schedule.adversarial_weight == 0.0
    with pytest.raises(ConfigError, match=r"schedule\.adversarial_weight"):
        validate_config({"schedule": {"adversarial_weight": -1}})


@pytest.mark.slow
def test_train_default_turns_it_on_when_confounded_and_zero_turns_it_off():
    model = _model()
    assert model.confounded_batches_
    model.train(max_epochs=1, batch_size=64)
    assert "adversarial_fool_train" in model.history
    off = _model()
    off.train(max_epochs=1, batch_size=64, adversarial_weight=0)
    assert "adversarial_fool_train" not in off.history
