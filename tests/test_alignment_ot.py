"""Composition-robust availability alignment by unbalanced OT (nn._alignment_ot)."""

import numpy as np
import pytest
import torch

pytest.importorskip("geomloss")

from conftest import make_study_adata

from remadom import REMADOM
from remadom.nn._alignment_ot import availability_ot_loss, unbalanced_ot_divergence
from remadom.nn.alignment import mmd

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
SMALL = {"n_latent": 4, "n_hidden": 32, "n_layers": 1}
D, GAP = 4, 6.0  # latent dims; distance between the two "cell types" (>> reach = 1)


def _two_types(rng, n_first, n_second, shift=0.0):
    """Two tight clusters 6 apart on axis 0 (the cell types); ``shift`` moves all cells on axis 1."""
    centres = torch.zeros(2, D)
    centres[1, 0] = GAP
    x = torch.cat([centres[0] + 0.3 * torch.randn(n_first, D, generator=rng),
                   centres[1] + 0.3 * torch.randn(n_second, D, generator=rng)])
    x[:, 1] += shift
    return x


def _grad_on_first(a, b, **kw):
    """Loss and per-cell gradient (scaled by n, as a cell's own pull) on the cells of ``a``."""
    a = a.detach().clone().requires_grad_(True)
    loss = unbalanced_ot_divergence(a, b, **kw)
    (grad,) = torch.autograd.grad(loss, a)
    return float(loss.detach()), grad * a.shape[0]


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


def test_identical_groups_have_zero_divergence(rng):
    a = _two_types(rng, 60, 60)
    assert abs(unbalanced_ot_divergence(a, a.clone())) < 1e-4


def test_same_distribution_is_small_against_a_study_shift(rng):
    same, _ = _grad_on_first(_two_types(rng, 90, 90), _two_types(rng, 90, 90))
    shifted, _ = _grad_on_first(_two_types(rng, 90, 90), _two_types(rng, 90, 90, shift=1.0))
    assert same < 0.2 * shifted


def test_different_composition_does_not_pull_types_together(rng):
    """Same per-type distribution, 160/20 vs 20/160 cells: no pull between the types.

    Balanced OT (reach=None) and the plain MMD ask the compositions to match, so they move the
    extra cells of one type towards the other type; unbalanced OT does not, beyond sampling noise.
    """
    a, b = _two_types(rng, 160, 20), _two_types(rng, 20, 160)
    _, noise = _grad_on_first(_two_types(rng, 90, 90), _two_types(rng, 90, 90))
    _, unbalanced = _grad_on_first(a, b, reach=1.0)
    _, balanced = _grad_on_first(a, b, reach=None)
    along_types = lambda g: float(g[:, 0].abs().mean())  # noqa: E731
    assert along_types(unbalanced) < 1.5 * along_types(noise)
    assert along_types(unbalanced) < 0.1 * along_types(balanced)
    assert float(mmd(a, b)) > 10 * float(mmd(_two_types(rng, 90, 90), _two_types(rng, 90, 90)))


def test_study_shift_is_pulled_in_despite_different_composition(rng):
    """Groups shifted by 1 on axis 1: every cell of ``a`` is pulled towards ``b`` on that axis only."""
    a, b = _two_types(rng, 160, 20), _two_types(rng, 20, 160, shift=1.0)
    _, grad = _grad_on_first(a, b, reach=1.0)
    assert float(grad[:, 1].mean()) < -0.2  # gradient descent moves a towards +1 (b)
    assert float(grad[:, 1].mean()) < -3 * float(grad[:, 0].abs().mean())


def test_group_loss_skips_small_and_single_groups(rng):
    z = _two_types(rng, 10, 10)
    assert float(availability_ot_loss(z, torch.zeros(20, dtype=torch.long))) == 0.0
    one_cell = torch.tensor([0] * 19 + [1])
    assert float(availability_ot_loss(z, one_cell)) == 0.0
    groups = torch.tensor([0] * 10 + [1] * 10)
    expected = unbalanced_ot_divergence(z[:10], z[10:])
    assert float(availability_ot_loss(z, groups)) == pytest.approx(float(expected), rel=1e-5)


def test_training_with_availability_ot_logs_the_term(mosaic_adata):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    model = REMADOM(mosaic_adata, **SMALL)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False,
                plan_kwargs={"availability_ot_weight": 1.0, "availability_ot_reach": 1.0})
    values = model.history["availability_ot_train"].to_numpy().astype(float).ravel()
    assert np.isfinite(values).all() and values[-1] > 0


@pytest.mark.parametrize("bad", [{"availability_ot_weight": -1.0}, {"availability_ot_weight": 1.0,
                                 "availability_ot_reach": 0.0}, {"availability_ot_blur": 0.0}])
def test_bad_availability_ot_settings_error(mosaic_adata, bad):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    with pytest.raises(ValueError, match="availability_ot_weight="):
        REMADOM(mosaic_adata, **SMALL).train(max_epochs=1, plan_kwargs=bad, enable_progress_bar=False)




def _logs_ot(adata, **plan) -> bool:
    REMADOM.setup_anndata(adata, **KEYS)
    model = REMADOM(adata, **SMALL)
    model.train(max_epochs=1, batch_size=64, enable_progress_bar=False, plan_kwargs=plan or None)
    return "availability_ot_train" in model.history


def test_availability_ot_is_off_by_default_even_when_confounded():
    assert not _logs_ot(make_study_adata())
    assert _logs_ot(make_study_adata(), availability_ot_weight=3.0)


def test_divergence_is_float32_under_bf16_autocast(rng):
    a, b = _two_types(rng, 40, 40), _two_types(rng, 40, 40, shift=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = unbalanced_ot_divergence(a, b)
    assert amp.dtype == torch.float32
    assert float(amp) == pytest.approx(float(unbalanced_ot_divergence(a, b)), rel=1e-5)
