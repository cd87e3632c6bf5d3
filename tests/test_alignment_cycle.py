"""Cross-modal cycle consistency (nn._alignment_cycle) and confounding detection (model._confounding)."""

import numpy as np
import pytest
import torch

from remadom.model._confounding import confounded_batches
from remadom.module import RemadomModule
from remadom.nn._alignment_cycle import cycle_consistency_loss, cycle_targets

MODS = [
    {"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": 12},
    {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": 5},
]


def _tensors(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    rna = torch.poisson(torch.full((n, 12), 3.0), generator=g)
    adt = torch.poisson(torch.full((n, 5), 8.0), generator=g)
    has_rna = torch.tensor([1.0] * (n // 2) + [0.0] * (n - n // 2)).view(-1, 1)  # half ADT-only
    return {
        "X_rna": rna, "X_adt": adt, "mask_rna": has_rna, "mask_adt": torch.ones(n, 1),
        "batch": torch.cat([torch.zeros(n // 2, 1), torch.ones(n - n // 2, 1)]).long(),
    }


@pytest.fixture
def module():
    torch.manual_seed(0)
    return RemadomModule(MODS, n_batch=2, n_latent=3, n_hidden=8, modality_dropout=0.0)


def _inference(module, tensors):
    from remadom._constants import mask_key, modality_key

    x = {"rna": tensors["X_rna"], "adt": tensors["X_adt"]}
    masks = {"rna": tensors["mask_rna"], "adt": tensors["mask_adt"]}
    # map onto the module's registry keys, whatever their spelling
    t = {modality_key(m): x[m] for m in x} | {mask_key(m): masks[m] for m in masks} | {"batch": tensors["batch"]}
    inf = module.inference(**module._get_inference_input(t))
    return t, inf


def test_loss_is_zero_when_every_cell_reencodes_to_itself():
    z = torch.randn(10, 4)
    assert float(cycle_consistency_loss([(z, z.clone())])) == 0.0
    assert float(cycle_consistency_loss([(z, z + 1.0)])) == pytest.approx(4.0)
    assert float(cycle_consistency_loss([])) == 0.0


def test_pairs_only_for_cells_lacking_a_modality(module):
    t, inf = _inference(module, _tensors())
    pairs = cycle_targets(module, inf, t["batch"], None, None)
    assert len(pairs) == 1  # only RNA is ever missing
    z, z_cycle = pairs[0]
    assert z.shape == z_cycle.shape == (8, 3)
    assert not z_cycle.requires_grad
    np.testing.assert_allclose(z.detach().numpy(), inf["qz_m"][8:].detach().numpy())


def test_cycle_target_is_the_missing_modality_encoder(module):
    """With RNA's encoder fixed to a constant c, z' = c whatever was decoded: loss = |z - c|^2."""
    enc = module.encoders["rna"]
    c = torch.tensor([1.0, -2.0, 0.5])
    for p in enc.parameters():
        p.data.zero_()
    module.encoders["rna"].encode = lambda x_in, *a, **k: (c.expand(x_in.shape[0], -1), torch.zeros(x_in.shape[0], 3))
    t, inf = _inference(module, _tensors())
    pairs = cycle_targets(module, inf, t["batch"], None, None)
    z = inf["qz_m"][8:]
    expected = (z - c).pow(2).sum(-1).mean()
    assert float(cycle_consistency_loss(pairs).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_cycle_gradient_reaches_only_observed_encoders(module):
    t, inf = _inference(module, _tensors())
    loss = cycle_consistency_loss(cycle_targets(module, inf, t["batch"], None, None))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoders["adt"].parameters())
    def untouched(params):
        return all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in params)

    assert untouched(module.decoders.parameters()) and untouched(module.heads.parameters())
    assert untouched(module.encoders["rna"].parameters())


def test_no_donor_no_pairs(module):
    tensors = _tensors()
    tensors["mask_rna"] = torch.zeros_like(tensors["mask_rna"])
    t, inf = _inference(module, tensors)
    assert cycle_targets(module, inf, t["batch"], None, None) == []


def test_confounded_batches():
    has_rna = np.array([1, 1, 1, 0, 0, 0], bool)
    has_adt = np.ones(6, bool)
    batch = np.array(["a", "a", "a", "b", "b", "b"])
    # a: paired only, b: ADT only -> both are confounded with their availability set
    assert confounded_batches(batch, {"rna": has_rna, "adt": has_adt}) == ["a", "b"]
    # one paired cell in b: b shares "paired" with a -> neither is confounded
    has_rna[3] = True
    assert confounded_batches(batch, {"rna": has_rna, "adt": has_adt}) == []
    assert confounded_batches(np.zeros(6), {"rna": has_rna, "adt": has_adt}) == []
