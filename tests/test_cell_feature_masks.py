"""Per-cell feature masks: ``feature_masks={"adt": "<obsm key>"}`` (maths, registration, errors)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import make_mosaic_adata
from scvi import REGISTRY_KEYS

from remadom import REMADOM
from remadom._constants import cell_feature_mask_key, mask_key, modality_key
from remadom.model._validation import RemadomSetupError
from remadom.module import RemadomModule

N, G, A = 8, 5, 6
PANELS = np.array([[True] * 5 + [False], [False] + [True] * 5])  # batch x ADT
SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}
TRAIN = {"max_epochs": 1, "batch_size": 32, "enable_progress_bar": False}


def _cell_mask(n, n_features, seed=0):
    mask = np.random.default_rng(seed).random((n, n_features)) < 0.6
    mask[:, 2] = True  # every cell measured at least one feature (also under PANELS)
    return mask


def _tensors(cell_mask, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        modality_key("rna"): torch.poisson(torch.full((N, G), 2.0), generator=g),
        modality_key("adt"): torch.poisson(torch.full((N, A), 5.0), generator=g),
        **{mask_key(m): torch.ones(N, 1) for m in ("rna", "adt")},
        REGISTRY_KEYS.BATCH_KEY: torch.tensor([0, 1] * (N // 2)).view(-1, 1),
        cell_feature_mask_key("adt"): torch.as_tensor(cell_mask, dtype=torch.float32),
    }


@pytest.mark.parametrize("with_table", [False, True])
def test_per_cell_masked_entries_get_no_loss_and_no_gradient(with_table):
    torch.manual_seed(0)
    mods = [{"name": "rna", "kind": "rna", "attr": "layers", "key": None, "n_features": G},
            {"name": "adt", "kind": "adt", "attr": "obsm", "key": "X_adt", "n_features": A}]
    module = RemadomModule(mods, n_batch=2, n_latent=3, n_hidden=16, modality_dropout=0.0,
                           feature_masks={"adt": PANELS} if with_table else None, cell_feature_masks=["adt"])
    module.eval()
    cell = _cell_mask(N, A)
    measured = torch.tensor(cell & (PANELS[[0, 1] * (N // 2)] if with_table else True))
    tensors = _tensors(cell)
    tensors[modality_key("adt")] = tensors[modality_key("adt")].clone().requires_grad_(True)
    torch.manual_seed(1)
    inference, _, loss = module(tensors)
    assert torch.equal(inference["entry_masks"]["adt"], measured)
    loss.loss.backward()
    grad = tensors[modality_key("adt")].grad
    assert torch.all(grad[~measured] == 0)
    assert torch.any(grad[measured] != 0)
    # masked values change neither the loss nor the encoder (it sees them as missing)
    other = _tensors(cell)
    other[modality_key("adt")][~measured] = 500.0
    torch.manual_seed(1)
    inference2, _, loss2 = module(other)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())
    torch.testing.assert_close(inference2["qz_m"], inference["qz_m"])
    # without the per-cell mask the same values do change the loss: the test can fail
    module.cell_feature_masks = []
    torch.manual_seed(1)
    _, _, loss3 = module(other)
    assert not torch.isclose(loss3.loss, loss.loss.detach())


def _setup(adata, key="adt_measured", **kw):
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt",
                          feature_masks={"adt": key}, **{"batch_key": "batch", **kw})


@pytest.mark.parametrize("sparse", [False, True])
def test_per_cell_mask_trains_imputes_and_survives_save_and_load(sparse, tmp_path, capsys):
    adata = make_mosaic_adata(n=80)
    mask = _cell_mask(adata.n_obs, 6)
    adata.obsm["adt_measured"] = sp.csr_matrix(mask) if sparse else mask
    _setup(adata)
    model = REMADOM(adata, **SMALL)
    assert model.module.cell_feature_masks == ["adt"]
    model.train(**TRAIN)  # the DataFrame reaches the module as a minibatch tensor
    assert np.isfinite(model.get_latent_representation()).all()
    model.train(**TRAIN)
    assert model.get_feature_masks() == {}  # no per-batch table; the per-cell mask is in the data
    pred = model.impute("adt")
    assert pred.shape == (adata.n_obs, 6) and np.isfinite(pred).all()
    model.view_anndata_setup()
    assert "adt_measured" in capsys.readouterr().out
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(tmp_path / "m", adata=adata)
    assert loaded.module.cell_feature_masks == ["adt"]
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-5)


def test_per_cell_mask_errors_name_the_problem():
    adata = make_mosaic_adata(n=40)
    with pytest.raises(RemadomSetupError, match="does not exist"):
        _setup(adata)
    adata.obsm["adt_measured"] = np.ones((40, 5), dtype=bool)
    with pytest.raises(RemadomSetupError, match=r"shape \(40, 5\).*\(40, 6\)"):
        _setup(adata)
    adata.obsm["adt_measured"] = np.ones((40, 6), dtype=np.float32)
    with pytest.raises(RemadomSetupError, match="must be boolean"):
        _setup(adata)
    mask = np.ones((40, 6), dtype=bool)
    cell = np.flatnonzero(adata.obs["has_adt"])[0]
    mask[cell] = False
    adata.obsm["adt_measured"] = mask
    with pytest.raises(RemadomSetupError, match=f"every feature.*{adata.obs_names[cell]}.*has_adt"):
        _setup(adata)
    mask[~adata.obs["has_adt"].to_numpy()] = False  # cells without ADT may be all-masked
    adata.obs.loc[adata.obs_names[cell], "has_adt"] = False  # the fix
    adata.obsm["adt_measured"] = mask
    _setup(adata)
    with pytest.raises(RemadomSetupError, match="unknown modalities"):
        REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch",
                              feature_masks={"adt": "adt_measured"})


def test_per_cell_mask_and_per_batch_table_are_combined():
    adata = make_mosaic_adata(n=40)
    cols = adata.obsm["X_adt"].columns
    import pandas as pd

    adata.uns["remadom_feature_masks"] = {"adt": pd.DataFrame([[True] * 6, [True] * 5 + [False]],
                                                              index=["b1", "b2"], columns=cols)}
    mask = np.ones((40, 6), dtype=bool)
    mask[:, :5] = False  # only p5 measured per cell; b2 did not measure p5
    b2 = np.flatnonzero((adata.obs["batch"] == "b2").to_numpy() & adata.obs["has_adt"].to_numpy())[0]
    adata.obsm["adt_measured"] = mask
    with pytest.raises(RemadomSetupError, match=f"every feature.*{adata.obs_names[b2]}"):
        _setup(adata)


def test_a_dataframe_mask_needs_the_modality_features_as_columns():
    import pandas as pd

    adata = make_mosaic_adata(n=40)
    cols = adata.obsm["X_adt"].columns
    frame = pd.DataFrame(_cell_mask(40, 6), index=adata.obs_names, columns=cols)
    adata.obsm["adt_measured"] = frame[cols[::-1]]
    with pytest.raises(RemadomSetupError, match="not the features of modality 'adt'"):
        _setup(adata)
    adata.obsm["adt_measured"] = frame.astype(int)
    with pytest.raises(RemadomSetupError, match="must hold booleans"):
        _setup(adata)
    adata.obsm["adt_measured"] = frame
    _setup(adata)
    model = REMADOM(adata, **SMALL)
    assert model.module.cell_feature_masks == ["adt"]
    model.train(**TRAIN)  # the DataFrame reaches the module as a minibatch tensor
    assert np.isfinite(model.get_latent_representation()).all()


def test_new_data_needs_the_mask_key_and_a_permuted_mask_follows_its_features(tmp_path):
    adata = make_mosaic_adata(n=60)
    adata.obsm["adt_measured"] = _cell_mask(60, 6)
    _setup(adata)
    model = REMADOM(adata, **SMALL)
    model.train(**TRAIN)
    new = make_mosaic_adata(n=60, seed=1)
    with pytest.raises(RemadomSetupError, match=r"per-cell feature mask obsm\['adt_measured'\].*lacks"):
        model.get_latent_representation(new)
    model.save(tmp_path / "m", overwrite=True)
    with pytest.raises(RemadomSetupError, match=r"per-cell feature mask obsm\['adt_measured'\].*lacks"):
        REMADOM.load(tmp_path / "m", adata=new)
    mask = _cell_mask(60, 6, seed=3)
    mask[:, 0] = False
    new.obsm["adt_measured"] = mask
    ordered = model.get_latent_representation(new)
    permuted = new.copy()
    permuted.obsm["X_adt"] = new.obsm["X_adt"].iloc[:, ::-1]
    permuted.obsm["adt_measured"] = mask[:, ::-1].copy()
    np.testing.assert_allclose(model.get_latent_representation(permuted), ordered, atol=1e-6)
    permuted.obsm["adt_measured"] = mask  # control: a mask left in the old order changes the latent
    assert not np.allclose(model.get_latent_representation(permuted), ordered, atol=1e-4)
