"""Factorised (low-rank) wide layers: shapes, the rank-r product, gradients, masks, save/load."""

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS

from remadom._constants import mask_key, modality_key
from remadom.module import RemadomModule
from remadom.nn._low_rank import FactorisedDecoder, FactorisedInput, check_ranks

N, G, P, A, H, R = 8, 6, 40, 5, 16, 3
PEAKS = np.array([[True] * 30 + [False] * 10, [True] * 40])  # batch 0 did not measure the last 10 peaks


def _mods():
    return [
        {"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G},
        {"name": "atac", "kind": "atac", "attr": "obsm", "key": "X_atac", "n_features": P},
        {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": A},
    ]


def _module(**kwargs):
    torch.manual_seed(0)
    return RemadomModule(
        _mods(), n_batch=2, n_latent=3, n_hidden=H, modality_dropout=0.0,
        modality_stats={"atac": {"encoder": {"idf": np.ones(P, dtype=np.float32)}}}, **kwargs,
    )


def _tensors(batch=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.tensor([0, 1] * (N // 2) if batch is None else batch).view(-1, 1)
    return {
        modality_key("rna"): torch.poisson(torch.full((N, G), 2.0), generator=g),
        modality_key("atac"): (torch.rand(N, P, generator=g) < 0.3).float(),
        modality_key("adt"): torch.poisson(torch.full((N, A), 5.0), generator=g),
        **{mask_key(m): torch.ones(N, 1) for m in ("rna", "atac", "adt")},
        REGISTRY_KEYS.BATCH_KEY: batch,
    }


def test_shapes_and_no_wide_full_width_layer():
    module = _module(decoder_rank={"atac": R}, encoder_rank={"atac": R})
    decoder, encoder = module.decoders["atac"], module.encoders["atac"]
    assert isinstance(decoder, FactorisedDecoder) and isinstance(encoder.body, FactorisedInput)
    assert decoder.to_rank.weight.shape == (R, H) and decoder.to_rank.bias is None
    assert module.heads["atac"].logit_layer.weight.shape == (P, R + 1)  # rank + the depth input
    assert encoder.body.project.weight.shape == (R, P) and encoder.body.project.bias is None
    # no parameter of the factorised modality has both a P and an H axis
    for name, p in module.named_parameters():
        if ".atac." in f".{name}":
            assert not (P in p.shape and H in p.shape), name
    # the other modalities keep their full layers
    assert not isinstance(module.decoders["rna"], FactorisedDecoder)
    full = _module()
    n_full = sum(p.numel() for p in full.parameters())
    n_low = sum(p.numel() for p in module.parameters())
    assert n_low < n_full


def test_logits_are_a_rank_r_product():
    module = _module(decoder_rank={"atac": R})
    module.eval()
    tensors = _tensors()
    with torch.no_grad():
        _, gen = module(tensors, compute_loss=False)
        logits = gen["params"]["atac"]["logits"]
    # logits - bias - depth term are (N, P) of rank <= R
    head = module.heads["atac"]
    depth = gen["params"]["atac"]["depth"]
    core = logits - head.logit_layer.bias - depth * head.logit_layer.weight[:, -1]
    s = torch.linalg.svdvals(core)
    assert s[R:].abs().max() < 1e-4 * s[0]
    assert s[R - 1] > 1e-3 * s[0]  # and of rank R, not lower


def test_gradients_reach_both_factors():
    module = _module(decoder_rank={"atac": R}, encoder_rank={"atac": R})
    module.train()
    _, _, loss = module(_tensors())
    loss.loss.backward()
    for p in (module.decoders["atac"].to_rank.weight, module.heads["atac"].logit_layer.weight,
              module.encoders["atac"].body.project.weight):
        assert p.grad is not None and torch.any(p.grad != 0)


def test_unmeasured_features_get_no_loss_and_no_gradient():
    """Cells of batch 0 only: the last 10 peaks are unmeasured, so their head rows get no gradient."""
    module = _module(decoder_rank={"atac": R}, encoder_rank={"atac": R}, feature_masks={"atac": PEAKS})
    module.eval()
    tensors = _tensors(batch=[0] * N)
    torch.manual_seed(1)
    _, _, loss = module(tensors)
    loss.loss.backward()
    head_grad = module.heads["atac"].logit_layer.weight.grad
    assert torch.all(head_grad[30:] == 0) and torch.any(head_grad[:30] != 0)
    assert torch.all(module.heads["atac"].logit_layer.bias.grad[30:] == 0)
    # the encoder sees the shared peaks only (encoder_feature_masks="shared"): no gradient on the others' columns
    project_grad = module.encoders["atac"].body.project.weight.grad
    assert torch.all(project_grad[:, 30:] == 0) and torch.any(project_grad[:, :30] != 0)
    # and the unmeasured entries do not change the loss
    other = _tensors(batch=[0] * N)
    other[modality_key("atac")][:, 30:] = 1.0 - other[modality_key("atac")][:, 30:]
    torch.manual_seed(1)
    _, _, loss2 = module(other)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())


def test_with_negative_sampling_trains_the_rank_r_head():
    module = _module(decoder_rank={"atac": R}, negative_sampling=0.5)
    module.train()
    _, _, loss = module(_tensors())
    loss.loss.backward()
    assert torch.isfinite(loss.loss)
    assert torch.any(module.decoders["atac"].to_rank.weight.grad != 0)


def test_rank_validation():
    assert check_ranks(None, ["atac"], "decoder_rank") == {}
    assert check_ranks({"atac": 8}, ["atac"], "decoder_rank") == {"atac": 8}
    with pytest.raises(ValueError, match="unknown modalities"):
        check_ranks({"peaks": 8}, ["atac"], "decoder_rank")
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match=r"decoder_rank\['atac'\]"):
            check_ranks({"atac": bad}, ["atac"], "decoder_rank")
    with pytest.raises(ValueError, match="encoder_rank="):
        check_ranks(8, ["atac"], "encoder_rank")
    with pytest.raises(ValueError, match="unknown modalities"):
        _module(encoder_rank={"chip": 4})


def test_model_trains_saves_and_loads(tmp_path):
    from conftest import make_mosaic_adata

    import remadom

    adata = make_mosaic_adata()
    remadom.REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    model = remadom.REMADOM(adata, n_hidden=16, n_latent=4, decoder_rank={"atac": 4}, encoder_rank={"atac": 4})
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_validation"].to_numpy(dtype=float)).all()
    latent = model.get_latent_representation()
    model.save(tmp_path / "m", overwrite=True)
    loaded = remadom.REMADOM.load(tmp_path / "m", adata=adata)
    assert loaded.module.decoder_rank == {"atac": 4} and loaded.module.encoder_rank == {"atac": 4}
    np.testing.assert_allclose(loaded.get_latent_representation(), latent, atol=1e-5)
    assert np.asarray(loaded.impute(target="atac")).shape[1] == adata.obsm["X_atac"].shape[1]


@pytest.mark.parametrize("batch_effect", ["nonlinear", "additive"])
def test_query_mapping_keeps_reference_decoding(batch_effect):
    """load_query_data expands a factorised decoder's batch entries layout-aware (additive: after the rank)."""
    from conftest import make_mosaic_adata

    from remadom import REMADOM
    from remadom.module import MODULE_KEYS

    adata = make_mosaic_adata()
    adata.obs["has_rna"] = True
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    ref = REMADOM(adata, n_hidden=16, n_latent=4, batch_effect=batch_effect, decoder_rank={"atac": 3, "rna": 5})
    ref.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    query = adata.copy()
    query.obs["batch"] = query.obs["batch"].cat.rename_categories({"b1": "q1", "b2": "q2"})
    q = REMADOM.load_query_data(query, ref)
    ref.module.eval()
    q.module.eval()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 4, generator=g)
    library = {m: torch.full((10,), 20.0) for m in ref.modality_names}
    batch = torch.tensor([[0], [1]] * 5)
    with torch.no_grad():
        out_ref = ref.module.generative(z, library, batch)[MODULE_KEYS.PARAMS_KEY]
        out_q = q.module.generative(z, library, batch)[MODULE_KEYS.PARAMS_KEY]
    for m in ref.modality_names:
        for key, value in out_ref[m].items():
            torch.testing.assert_close(value, out_q[m][key], atol=1e-5, rtol=1e-5)
