"""Feature masks end to end: concat_mosaic, stating masks, model, save/load, bad input."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import make_mosaic_adata

from remadom import REMADOM
from remadom.data import concat_mosaic
from remadom.model._feature_masks import MEASURED_VARM_KEY, fill_unmeasured
from remadom.model._validation import RemadomSetupError

SMALL = {"n_latent": 4, "n_hidden": 16, "n_layers": 1}
TRAIN = {"max_epochs": 1, "batch_size": 32, "enable_progress_bar": False}


def _adata(rng, n, features, prefix, rate=3.0):
    x = sp.csr_matrix(rng.poisson(rate, size=(n, len(features))).astype(np.float32))
    return ad.AnnData(X=x, obs=pd.DataFrame(index=[f"{prefix}{i}" for i in range(n)]),
                      var=pd.DataFrame(index=list(features)))


def _cite_panels(rng, n=40):
    """Two CITE-seq inputs sharing all genes, with overlapping antibody panels."""
    import mudata as md

    genes = [f"g{i}" for i in range(12)]
    panel_a, panel_b = [f"p{i}" for i in range(0, 6)], [f"p{i}" for i in range(3, 9)]
    out = {}
    for name, panel in (("panelA", panel_a), ("panelB", panel_b)):
        rna = _adata(rng, n, genes, name)
        adt = _adata(rng, n, panel, name, rate=8.0)
        out[name] = md.MuData({"rna": rna, "adt": adt})
    return out, panel_a, panel_b


def test_concat_anndata_outer_join_records_measured_genes_and_stays_sparse(rng):
    a = _adata(rng, 5, ["g0", "g1", "g2"], "a")
    b = _adata(rng, 4, ["g1", "g2", "g3"], "b")
    a.X[:, 0] = 0  # an all-zero measured gene stays measured: never guessed from zeros
    out = concat_mosaic({"a": a, "b": b})
    assert sp.issparse(out.X) and out.shape == (9, 4)
    measured = out.varm[MEASURED_VARM_KEY]
    assert list(measured.columns) == ["a", "b"]
    np.testing.assert_array_equal(measured.loc[["g0", "g1", "g2", "g3"], "a"], [True, True, True, False])
    np.testing.assert_array_equal(measured.loc[["g0", "g1", "g2", "g3"], "b"], [False, True, True, True])
    np.testing.assert_array_equal(out[b.obs_names, ["g1", "g2", "g3"]].X.toarray(), b.X.toarray())
    assert out[b.obs_names, "g0"].X.sum() == 0
    assert list(out.obs["batch"].cat.categories) == ["a", "b"]
    assert a.n_vars == 3 and "batch" not in a.obs  # inputs not modified


def test_concat_errors(rng):
    a = _adata(rng, 3, ["g0"], "x")
    with pytest.raises(RemadomSetupError, match="Cell names repeat"):
        concat_mosaic({"a": a, "b": a.copy()})
    with pytest.raises(RemadomSetupError, match="not an interval"):
        concat_mosaic({"a": a, "b": _adata(rng, 3, ["g0"], "y")}, peaks="overlap")


def test_concat_peaks_union_vs_overlap(rng):
    pytest.importorskip("bioframe")
    a = _adata(rng, 3, ["chr1:100-200", "chr1:500-600"], "a")
    b = _adata(rng, 2, ["chr1:150-250", "chr2:10-20"], "b")
    union = concat_mosaic({"a": a, "b": b})
    assert union.n_vars == 4
    over = concat_mosaic({"a": a, "b": b}, peaks="overlap")
    assert list(over.var_names) == ["chr1:100-250", "chr1:500-600", "chr2:10-20"]
    measured = over.varm[MEASURED_VARM_KEY]
    np.testing.assert_array_equal(measured["a"], [True, True, False])
    np.testing.assert_array_equal(measured["b"], [True, False, True])
    np.testing.assert_array_equal(over[a.obs_names].X.toarray()[:, :2], a.X.toarray())
    np.testing.assert_array_equal(over[b.obs_names].X.toarray()[:, [0, 2]], b.X.toarray())


@pytest.fixture(scope="module")
def panels_model():
    rng = np.random.default_rng(0)
    inputs, panel_a, panel_b = _cite_panels(rng)
    mdata = concat_mosaic(inputs, batch_key="batch")
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "adt": "adt"}, batch_key="batch")
    model = REMADOM(mdata, **SMALL)
    model.train(**TRAIN)
    return model, mdata, panel_a, panel_b


def test_mudata_masks_are_found_registered_and_returned(panels_model):
    model, mdata, panel_a, panel_b = panels_model
    masks = model.get_feature_masks()
    assert set(masks) == {"adt"}
    adt = masks["adt"]
    assert list(adt.index) == ["panelA", "panelB"] and adt.shape == (2, 9)
    assert adt.loc["panelA", panel_a].all() and not adt.loc["panelA", ["p6", "p7", "p8"]].any()
    assert adt.loc["panelB", panel_b].all() and not adt.loc["panelB", ["p0", "p1", "p2"]].any()
    np.testing.assert_array_equal(model.module.feature_masks.batch_masks("adt").numpy(), adt.to_numpy())


def test_mudata_masks_of_the_first_modality_held_in_x_are_registered(rng):
    import mudata as md

    inputs = {}
    for name, genes in (("b1", [f"g{i}" for i in range(8)]), ("b2", [f"g{i}" for i in range(3, 10)])):
        inputs[name] = md.MuData({"rna": _adata(rng, 20, genes, name),
                                  "adt": _adata(rng, 20, ["p0", "p1", "p2"], name, rate=8.0)})
    mdata = concat_mosaic(inputs, batch_key="batch")
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "adt": "adt"}, batch_key="batch")
    model = REMADOM(mdata, **SMALL)
    assert model.adata.X.shape[1] == 10  # the first modality sits in X of the view
    masks = model.get_feature_masks()
    assert set(masks) == {"rna"}
    assert not masks["rna"].loc["b1", ["g8", "g9"]].any() and not masks["rna"].loc["b2", ["g0", "g1", "g2"]].any()
    assert masks["rna"].loc["b1", [f"g{i}" for i in range(8)]].all()


def test_impute_gives_every_protein_for_every_cell(panels_model):
    model, mdata, *_ = panels_model
    out = model.impute("adt")
    assert out.shape == (mdata.n_obs, 9) and np.isfinite(out).all() and (out >= 0).all()


def test_fill_unmeasured_uses_the_decoders_of_batches_that_measured_the_feature():
    table = torch.tensor([[True, True, False], [False, True, True], [True, False, True]])
    batch = torch.tensor([[0], [1], [2]])
    own = torch.full((3, 3), -1.0)

    def decode(code):  # every cell decoded as batch `code` predicts `code + 1`
        return torch.full((3, 3), float(code + 1))

    out = fill_unmeasured(own.clone(), batch, torch.ones(3, dtype=torch.bool), table, decode, [0, 1, 2])
    # cell 0 (batch 0) lacks feature 2: measured by batches 1 and 2 -> mean(2, 3)
    # cell 1 (batch 1) lacks feature 0: batches 0 and 2 -> mean(1, 3); cell 2 lacks feature 1: mean(1, 2)
    expected = torch.tensor([[-1.0, -1.0, 2.5], [2.0, -1.0, -1.0], [-1.0, 1.5, -1.0]])
    torch.testing.assert_close(out, expected)


def test_masks_survive_save_and_load(panels_model, tmp_path):
    model, mdata, *_ = panels_model
    model.save(tmp_path / "m", overwrite=True)
    loaded = REMADOM.load(str(tmp_path / "m"), adata=mdata)
    pd.testing.assert_frame_equal(loaded.get_feature_masks()["adt"], model.get_feature_masks()["adt"])
    np.testing.assert_allclose(loaded.impute("adt"), model.impute("adt"), rtol=1e-5, atol=1e-6)


def test_view_anndata_setup_shows_the_masks(panels_model, capsys):
    model, *_ = panels_model
    model.view_anndata_setup(hide_state_registries=False)
    out = capsys.readouterr().out
    assert "Feature masks" in out and "6 / 9" in out


# ------------------------------------------------------------- explicit masks, AnnData
def _adt_masks(adata, drop=("p4", "p5")):
    cols = adata.obsm["X_adt"].columns
    frame = pd.DataFrame(True, index=["b1", "b2"], columns=cols)
    frame.loc["b2", list(drop)] = False
    return frame


def test_explicit_feature_masks_on_anndata_train_and_mask_the_loss():
    adata = make_mosaic_adata()
    masks = _adt_masks(adata)
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt",
                          batch_key="batch", feature_masks={"adt": masks})
    model = REMADOM(adata, **SMALL)
    model.train(**TRAIN)
    pd.testing.assert_frame_equal(model.get_feature_masks()["adt"], masks, check_names=False)
    assert model.impute("adt").shape == (adata.n_obs, 6)


def test_uns_convention_is_read():
    adata = make_mosaic_adata()
    adata.uns["remadom_feature_masks"] = {"adt": _adt_masks(adata)}
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    assert not model.get_feature_masks()["adt"].loc["b2", "p5"]


def _setup(adata, masks, **kw):
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt",
                          feature_masks={"adt": masks},
                          **{"batch_key": "batch", **kw})


def test_feature_measured_in_no_batch_is_an_error():
    adata = make_mosaic_adata()
    masks = _adt_masks(adata)
    masks.loc[:, "p0"] = False
    with pytest.raises(RemadomSetupError, match="measured in no batch.*p0"):
        _setup(adata, masks)


def test_mask_names_or_shape_mismatch_is_an_error():
    adata = make_mosaic_adata()
    with pytest.raises(RemadomSetupError, match="do not match the 6 features.*unknown CD99"):
        _setup(adata, _adt_masks(adata).rename(columns={"p3": "CD99"}))
    with pytest.raises(RemadomSetupError, match="do not match the 6 features"):
        _setup(adata, _adt_masks(adata).iloc[:, :4])
    with pytest.raises(RemadomSetupError, match="not in the data: b9"):
        _setup(adata, _adt_masks(adata).rename(index={"b2": "b9"}))
    with pytest.raises(RemadomSetupError, match="no row for batch"):
        _setup(adata, _adt_masks(adata).loc[["b1"]])
    with pytest.raises(RemadomSetupError, match="unknown modalities"):
        REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch",
                              feature_masks={"adt": _adt_masks(adata)})
    with pytest.raises(RemadomSetupError, match="no batch_key"):
        _setup(adata, _adt_masks(adata), batch_key=None)
    with pytest.raises(RemadomSetupError, match="DataFrame"):
        _setup(adata, np.ones((2, 6), dtype=bool))


def test_batch_with_every_feature_masked_is_an_error_naming_the_fix():
    adata = make_mosaic_adata()
    masks = _adt_masks(adata)
    masks.loc["b2", :] = False
    with pytest.raises(RemadomSetupError, match="every feature.*b2.*has_adt"):
        _setup(adata, masks)
    # the fix: the modality is missing for those cells
    adata.obs.loc[adata.obs["batch"] == "b2", "has_adt"] = False
    _setup(adata, masks)


# ------------------------------------------------------------------ benchmark scenarios
@pytest.mark.slow
@pytest.mark.realdata
def test_benchmark_feature_mask_scenarios(shared_data_dir, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _scenarios import build_feature_mask_scenario

    scn = build_feature_mask_scenario("bmmc_cite_panels", shared_data_dir)
    measured = scn.mdata.mod["adt"].varm[MEASURED_VARM_KEY]
    assert measured.shape == (134, 2) and (measured.sum() == 90).all() and measured.all(1).sum() == 46
    # hidden entries are zeros in the join, the truth keeps them
    b1 = scn.mdata.obs_names[scn.mdata.obs["batch"] == measured.columns[0]]
    hidden = scn.hidden[measured.columns[0]]
    assert hidden.size == 44 and scn.mdata.mod["adt"][b1, hidden].X.sum() == 0
    assert scn.full.mod["adt"][b1, hidden].X.sum() > 0

    scn = build_feature_mask_scenario("snare_peaksets", shared_data_dir, n_cells=400)
    measured = scn.mdata.mod["atac"].varm[MEASURED_VARM_KEY]
    n_peaks = 25_734
    # union of two random 70 % sets: about 91 % of the peaks
    assert measured.shape[1] == 12 and 0.88 < measured.shape[0] / n_peaks < 0.94
    assert np.allclose(measured.sum().to_numpy() / n_peaks, 0.7, atol=1e-3)
    assert len({tuple(v) for v in scn.hidden.values()}) == 2  # two halves, two peak sets


def test_impute_at_the_cells_own_depth():
    """cell_depth=True puts each ATAC cell's own depth in the logit; cells without ATAC keep the reference."""
    adata = make_mosaic_adata(n=80, seed=3)
    REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = REMADOM(adata, **SMALL)
    model.train(**TRAIN)
    ref = model.impute("atac")
    own = model.impute("atac", cell_depth=True)
    has = adata.obs["has_atac"].to_numpy()
    np.testing.assert_allclose(own[~has], ref[~has], rtol=1e-6)
    head = model.module.heads["atac"]
    slope = head.logit_layer.weight[:, -1].detach().numpy()
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    shift = (logit(own[has].astype(np.float64)) - logit(ref[has].astype(np.float64))) / slope
    n_open = np.asarray((adata.obsm["X_atac"][has] > 0).sum(1)).ravel()
    expected = np.log1p(n_open) - float(head.log_depth_ref)
    np.testing.assert_allclose(shift, np.repeat(expected[:, None], shift.shape[1], 1), atol=1e-3)
    with pytest.raises(ValueError, match="cell_depth=True applies to binary"):
        model.impute("adt", cell_depth=True)


def test_concat_keeps_a_sparse_input_sparse_next_to_a_dense_one(rng):
    """A large sparse peak matrix joined with a small dense input is not densified."""
    peaks = [f"chr1:{i * 100}-{i * 100 + 50}" for i in range(3000)]
    big = ad.AnnData(X=sp.random(200, 3000, density=0.002, format="csr", dtype=np.float32, random_state=0),
                     obs=pd.DataFrame(index=[f"a{i}" for i in range(200)]), var=pd.DataFrame(index=peaks))
    small = ad.AnnData(X=np.ones((5, 10), dtype=np.float32), obs=pd.DataFrame(index=[f"b{i}" for i in range(5)]),
                       var=pd.DataFrame(index=peaks[:5] + [f"chr2:{i}-{i + 1}" for i in range(5)]))
    out = concat_mosaic({"big": big, "small": small})
    assert sp.issparse(out.X) and out.shape == (205, 3005)
    np.testing.assert_array_equal(out[big.obs_names, peaks].X.toarray(), big.X.toarray())
    np.testing.assert_array_equal(out[small.obs_names, small.var_names].X.toarray(), small.X)
    other = ad.AnnData(X=np.ones((2, 5), dtype=np.float32), obs=pd.DataFrame(index=["c0", "c1"]),
                       var=pd.DataFrame(index=peaks[:5]))
    dense_only = concat_mosaic({"s1": small, "s2": other})  # dense inputs only: dense
    assert isinstance(dense_only.X, np.ndarray) and dense_only.shape == (7, 10)


def test_impute_with_the_protein_background(panels_model):
    """include_background adds the background component: foreground + background = the mixture's mean."""
    model = panels_model[0]
    fore = model.impute("adt")
    total = model.impute("adt", include_background=True)
    assert (total >= fore - 1e-6).all() and (total > fore).any()
    np.testing.assert_array_equal(model.impute("rna", include_background=True), model.impute("rna"))  # no background
