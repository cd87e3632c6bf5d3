"""Per-cell feature masks on a MuData: ``setup_mudata(feature_masks={"adt": "<mod obsm key>"})``."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import make_mosaic_mudata

from remadom import REMADOM
from remadom._constants import modality_key
from remadom.model._validation import RemadomSetupError

SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}
TRAIN = {"max_epochs": 1, "batch_size": 32, "enable_progress_bar": False}
KEY = "adt_measured"


def _mdata(n=80, sparse=False, seed=0):
    """MuData whose ADT cells each measured a random ~60 % of the 6 proteins (p2 always)."""
    mdata = make_mosaic_mudata(n=n, seed=seed)
    adt = mdata.mod["adt"]
    mask = np.random.default_rng(seed).random(adt.shape) < 0.6
    mask[:, 2] = True
    adt.obsm[KEY] = sp.csr_matrix(mask) if sparse else mask
    return mdata, mask


def _setup(mdata, **kw):
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"}, batch_key="batch",
                         feature_masks={"adt": KEY}, **kw)


def _snapshot(mdata):
    return (list(mdata.obs.columns), list(mdata.obsm), {k: list(m.obsm) for k, m in mdata.mod.items()},
            {k: list(m.obs.columns) for k, m in mdata.mod.items()}, {k: list(m.uns) for k, m in mdata.mod.items()})


@pytest.mark.parametrize("sparse", [False, True])
def test_mudata_per_cell_mask_trains_imputes_saves_and_loads(sparse, tmp_path, capsys):
    mdata, mask = _mdata(sparse=sparse)
    before, stored = _snapshot(mdata), mdata.mod["adt"].obsm[KEY]
    _setup(mdata)
    assert _snapshot(mdata) == before and mdata.mod["adt"].obsm[KEY] is stored  # the MuData is not modified
    model = REMADOM(mdata, **SMALL)
    assert model.module.cell_feature_masks == ["adt"]
    view = model.adata.obsm["adt:" + KEY]  # the view's copy: rows = mdata.obs_names
    view = view.toarray() if sp.issparse(view) else view
    rows = model.adata.obs_names.get_indexer(mdata.mod["adt"].obs_names)
    np.testing.assert_array_equal(view[rows], mask)
    absent = np.setdiff1d(np.arange(model.adata.n_obs), rows)
    assert absent.size and not view[absent].any()  # cells without ADT measured none of its features
    model.train(**TRAIN)
    latent = model.get_latent_representation()
    assert np.isfinite(latent).all()
    pred = model.impute("adt")
    assert pred.shape == (mdata.n_obs, 6) and np.isfinite(pred).all()
    model.view_anndata_setup()
    assert "adt:adt_measured" in capsys.readouterr().out
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(tmp_path / "m", adata=mdata)
    assert loaded.module.cell_feature_masks == ["adt"]
    np.testing.assert_allclose(loaded.get_latent_representation(), latent, atol=1e-5)
    del mdata.mod["adt"].obsm[KEY]  # a MuData without the mask: load says which key is missing
    with pytest.raises(RemadomSetupError, match=r"mdata.mod\['adt'\].obsm\['adt_measured'\].*does not exist"):
        REMADOM.load(tmp_path / "m", adata=mdata)
    assert _snapshot(mdata)[0] == before[0]


def _first_batch(model):
    loader = model._make_data_loader(adata=model.adata, batch_size=model.adata.n_obs, shuffle=False)
    return next(iter(loader))


def test_mudata_masked_entries_get_no_loss_and_no_gradient():
    mdata, mask = _mdata()
    _setup(mdata)
    model = REMADOM(mdata, **SMALL)
    model.module.eval()
    tensors = _first_batch(model)
    measured = torch.as_tensor(np.asarray(model.adata.obsm["adt:" + KEY]))
    has_adt = torch.as_tensor(model.adata.obs["has_adt"].to_numpy())
    x = tensors[modality_key("adt")].clone().requires_grad_(True)
    tensors[modality_key("adt")] = x
    torch.manual_seed(0)
    inference, _, loss = model.module(tensors)
    assert torch.equal(inference["entry_masks"]["adt"][has_adt], measured[has_adt])
    loss.loss.backward()
    assert torch.all(x.grad[~measured] == 0)
    assert torch.any(x.grad[measured & has_adt[:, None]] != 0)
    # unmeasured values change neither the loss nor the latent: the test can fail (see the control)
    changed = {k: v.detach().clone() for k, v in tensors.items()}
    changed[modality_key("adt")][~measured & has_adt[:, None]] = 500.0
    torch.manual_seed(0)
    inference2, _, loss2 = model.module(changed)
    torch.testing.assert_close(loss2.loss, loss.loss.detach())
    torch.testing.assert_close(inference2["qz_m"], inference["qz_m"].detach())
    model.module.cell_feature_masks = []  # control: without the per-cell mask the values count
    torch.manual_seed(0)
    _, _, loss3 = model.module(changed)
    assert not torch.isclose(loss3.loss, loss.loss.detach())


def test_mudata_per_cell_mask_errors_name_the_problem():
    mdata, mask = _mdata(n=40)
    adt = mdata.mod["adt"]
    del adt.obsm[KEY]
    with pytest.raises(RemadomSetupError, match=r"mdata.mod\['adt'\].obsm\['adt_measured'\], which does not exist"):
        _setup(mdata)
    adt.obsm[KEY] = mask[:, :5]
    with pytest.raises(RemadomSetupError, match=rf"shape \({adt.n_obs}, 5\).*\({adt.n_obs}, 6\)"):
        _setup(mdata)
    adt.obsm[KEY] = mask.astype(np.float32)
    with pytest.raises(RemadomSetupError, match="must be boolean"):
        _setup(mdata)
    adt.obsm[KEY] = pd.DataFrame(mask, index=adt.obs_names, columns=adt.var_names[::-1])
    with pytest.raises(RemadomSetupError, match="not the features of modality 'adt'"):
        _setup(mdata)
    empty = mask.copy()
    empty[1] = False
    adt.obsm[KEY] = empty
    with pytest.raises(RemadomSetupError, match=rf"every feature.*{adt.obs_names[1]}.*remove those cells"):
        _setup(mdata)
    mdata.obs["adt_ok"] = mdata.obs_names.isin(adt.obs_names.delete(1))  # the fix the message names
    _setup(mdata, mask_keys={"adt": "adt_ok"})
    with pytest.raises(RemadomSetupError, match="unknown modalities"):
        REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac"}, batch_key="batch",
                             feature_masks={"adt": KEY})


def test_mudata_per_cell_mask_combines_with_the_per_batch_table():
    mdata, _ = _mdata(n=40)
    adt = mdata.mod["adt"]
    table = pd.DataFrame([[True] * 6, [True] * 5 + [False]], index=["b1", "b2"], columns=adt.var_names)
    only_p5 = np.zeros(adt.shape, dtype=bool)
    only_p5[:, 5] = True  # each cell measured only p5, which batch b2 did not stain
    adt.obsm[KEY] = only_p5
    b2 = adt.obs_names[mdata.obs.loc[adt.obs_names, "batch"].to_numpy() == "b2"][0]
    adt.varm["remadom_measured"] = table.T  # features x batches, as concat_mosaic writes it
    with pytest.raises(RemadomSetupError, match=rf"every feature.*{b2}"):
        _setup(mdata)
    only_p5[:, 4] = True  # p4 was measured by both batches
    adt.obsm[KEY] = only_p5
    _setup(mdata)
    model = REMADOM(mdata, **SMALL)
    assert model.module.cell_feature_masks == ["adt"] and list(model.get_feature_masks()) == ["adt"]
    entries = model.module(_first_batch(model))[0]["entry_masks"]["adt"]
    has_adt = model.adata.obs["has_adt"].to_numpy()
    assert entries[has_adt].sum(1).tolist() == [
        1 + int(b == "b1") for b in model.adata.obs["batch"].to_numpy()[has_adt]
    ]  # p4 everywhere; p5 only where b1 stained it


def test_mudata_view_cache_notices_a_replaced_per_cell_mask():
    """Replacing ``mdata.mod[m].obsm[key]`` after setup invalidates the cached padded view."""
    mdata, mask = _mdata(n=40)
    _setup(mdata)
    REMADOM(mdata, **SMALL)  # the cached view is current: builds
    old = mdata.mod["adt"].obsm[KEY]
    new = mask.copy()
    new[:, 0] = ~new[:, 0]
    mdata.mod["adt"].obsm[KEY] = new  # `old` stays alive, so the new object cannot reuse its id
    with pytest.raises(RemadomSetupError, match="changed .* after setup_mudata"):
        REMADOM(mdata, **SMALL)
    _setup(mdata)  # the fix the message names: the view now holds the new mask
    model = REMADOM(mdata, **SMALL)
    rows = model.adata.obs_names.get_indexer(mdata.mod["adt"].obs_names)
    np.testing.assert_array_equal(np.asarray(model.adata.obsm["adt:" + KEY])[rows], new)
    assert old is not new


def test_mudata_per_cell_matrix_given_as_a_table_is_refused():
    """A per-cell matrix belongs in ``mdata.mod[m].obsm`` and is named by its key; a non-string
    ``feature_masks`` value is a per-batch table (batches x features), checked as one."""
    mdata, mask = _mdata(n=40)
    adt = mdata.mod["adt"]
    per_cell = pd.DataFrame(mask, index=adt.obs_names, columns=adt.var_names)
    with pytest.raises(RemadomSetupError, match=r"feature_masks\['adt'\] has rows for batches that are not in the data"):
        REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"}, batch_key="batch",
                             feature_masks={"adt": per_cell})
    with pytest.raises(RemadomSetupError, match=r"must be a pandas DataFrame \(batches x features, bool\)"):
        REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"}, batch_key="batch",
                             feature_masks={"adt": mask})
