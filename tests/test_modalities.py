"""The generic ``modalities=`` registration: any named modality, in X / a layer / obsm, one field each."""

import numpy as np
import pytest
import scipy.sparse as sp

from remadom import REMADOM, RemadomSetupError
from remadom.model import ModalityField

SMALL = {"n_latent": 3, "n_hidden": 16}


@pytest.fixture
def rna_cells(mosaic_adata):
    """The cells that have RNA (so RNA + ADT setups leave no cell without a modality)."""
    return mosaic_adata[mosaic_adata.obs["has_rna"].to_numpy()].copy()


def _with_histone(adata, seed=0):
    """Add simulated H3K27me3 counts whose depth follows a continuous technical covariate in obs."""
    rng = np.random.default_rng(seed)
    cluster = adata.obs["cluster"].astype(int).to_numpy()
    quality = rng.uniform(0.5, 2.0, adata.n_obs)  # e.g. fraction of reads in peaks
    rate = np.where(cluster[:, None] == 0, 0.5, 3.0) * rng.uniform(0.5, 1.5, (1, 25)) * quality[:, None]
    adata.obsm["X_chip"] = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    adata.obs["frip"] = quality
    adata.obs["has_chip"] = rng.random(adata.n_obs) < 0.7
    return adata


def test_fourth_generic_count_modality_trains_imputes_saves_and_loads(mosaic_adata, tmp_path):
    adata = _with_histone(mosaic_adata)
    REMADOM.setup_anndata(adata, modalities={
        "rna": {"layer": "counts"},
        "atac": {"obsm": "X_atac"},
        "adt": {"obsm": "X_adt"},
        "h3k27me3": {"obsm": "X_chip", "kind": "counts", "likelihood": "nb", "mask": "has_chip"},
    }, batch_key="batch", continuous_covariate_keys=["frip"])
    model = REMADOM(adata, **SMALL)
    assert model.modality_names == ["rna", "atac", "adt", "h3k27me3"]
    assert model.summary_stats.n_extra_continuous_covs == 1
    np.testing.assert_array_equal(model.get_modality_masks()["h3k27me3"], adata.obs["has_chip"].to_numpy())
    model.train(max_epochs=3, batch_size=32, enable_progress_bar=False)
    elbo = model.history["elbo_train"].to_numpy(dtype=float).ravel()
    assert np.isfinite(elbo).all()
    pred = model.impute("h3k27me3", from_modalities=["rna"])
    assert pred.shape == (adata.n_obs, 25) and np.all(pred >= 0)
    # expected counts at library 1e4: each cell's prediction sums to the library size
    np.testing.assert_allclose(pred.sum(1), 1e4, rtol=1e-3)
    err = model.get_reconstruction_error()
    assert np.isfinite(err["reconstruction_loss_h3k27me3"]) and err["reconstruction_loss_h3k27me3"] > 0
    model.save(tmp_path / "m")
    loaded = REMADOM.load(tmp_path / "m", adata=adata)
    np.testing.assert_allclose(loaded.impute("h3k27me3", from_modalities=["rna"]), pred, rtol=1e-5)
    assert list(loaded.feature_names_["h3k27me3"]) == [f"h3k27me3_{i}" for i in range(25)]


def test_sugar_and_modalities_register_the_same_specs(mosaic_adata):
    keys = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt"}
    REMADOM.setup_anndata(mosaic_adata, **keys, batch_key="batch")
    sugar = REMADOM(mosaic_adata, **SMALL).specs
    REMADOM.setup_anndata(mosaic_adata, modalities={"rna": {"layer": "counts"}, "atac": {"obsm": "X_atac"},
                                                    "adt": {"obsm": "X_adt"}}, batch_key="batch")
    explicit = REMADOM(mosaic_adata, **SMALL).specs
    assert [s.to_dict() for s in sugar] == [s.to_dict() for s in explicit]
    assert [s.likelihood for s in explicit] == ["nb", "bernoulli", "nbmixture"]
    assert [s.mask_key for s in explicit] == ["has_rna", "has_atac", "has_adt"]


@pytest.mark.parametrize("where", ["X", "layer", "obsm_dense", "obsm_sparse"])
def test_a_modality_may_live_in_x_a_layer_or_obsm(rna_cells, where):
    mosaic_adata = rna_cells
    counts = mosaic_adata.layers["counts"]
    entry = {"X": {"layer": "X"}, "layer": {"layer": "counts"}}.get(where)
    if where == "obsm_dense":
        mosaic_adata.obsm["X_expr"] = counts.toarray()
        entry = {"obsm": "X_expr"}
    elif where == "obsm_sparse":
        mosaic_adata.obsm["X_expr"] = counts.copy()
        entry = {"obsm": "X_expr"}
    REMADOM.setup_anndata(mosaic_adata, modalities={"expr": {**entry, "kind": "rna"}})
    model = REMADOM(mosaic_adata, **SMALL)
    np.testing.assert_allclose(np.asarray(sp.csr_matrix(model.get_modality_data("expr")).toarray()),
                               counts.toarray())
    fields = [f for f in model.adata_manager.fields if isinstance(f, ModalityField)]
    assert [f.spec.name for f in fields] == ["expr"]


def test_gaussian_trains_on_negative_values_and_gaussian_clr_refuses_them(rna_cells):
    mosaic_adata = rna_cells
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 1.0, (mosaic_adata.n_obs, 6)) - 1.5  # z-scored ADT, many values <= -1
    mosaic_adata.obsm["X_adt_z"] = z.astype(np.float32)
    mods = {"rna": {"layer": "counts"}, "adt": {"obsm": "X_adt_z", "likelihood": "gaussian"}}
    REMADOM.setup_anndata(mosaic_adata, modalities=mods)
    model = REMADOM(mosaic_adata, **SMALL)
    assert model.module.encoders["adt"].input.transform == "identity"
    model.train(max_epochs=2, batch_size=32, enable_progress_bar=False)
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()
    pred = model.impute("adt", from_modalities=["rna"])
    assert np.isfinite(pred).all() and (pred < 0).any()  # on the data's own scale
    with pytest.raises(RemadomSetupError, match="negative values.*'gaussian_clr'"):
        REMADOM.setup_anndata(mosaic_adata, modalities={**mods, "adt": {"obsm": "X_adt_z", "likelihood": "gaussian_clr"}})


def test_gaussian_clr_trains_on_counts(rna_cells):
    mosaic_adata = rna_cells
    REMADOM.setup_anndata(mosaic_adata, modalities={"rna": {"layer": "counts"},
                                                    "adt": {"obsm": "X_adt", "likelihood": "gaussian_clr"}})
    model = REMADOM(mosaic_adata, **SMALL)
    assert model.module.encoders["adt"].input.transform == "clr"
    model.train(max_epochs=1, batch_size=32, enable_progress_bar=False)
    assert np.isfinite(model.get_reconstruction_error()["reconstruction_loss_adt"])


@pytest.mark.parametrize(
    "modalities, match",
    [
        ({"rna": {"layer": "counts", "obsm": "X_adt"}}, "both 'layer' and 'obsm'"),
        ({"rna": {"layer": "counts", "likelihod": "nb"}}, "unknown keys"),
        ({"h3": {"obsm": "X_atac", "kind": "chromatin"}}, "Unknown modality kind"),
        ({"h3": {"obsm": "X_atac", "likelihood": "negbin"}}, "not available"),
        ({"rna": {"layer": "counts", "mask": "nope"}}, "Mask column 'nope'"),
        ({"rna": {"layer": "counts", "encoder_input": "sqrt"}}, "Unknown encoder_input"),
        ({}, "No modality was given"),
    ],
)
def test_bad_modalities_entries_error(mosaic_adata, modalities, match):
    with pytest.raises((RemadomSetupError, ValueError), match=match):
        REMADOM.setup_anndata(mosaic_adata, modalities=modalities)


def test_modalities_and_shorthand_together_error(mosaic_adata):
    with pytest.raises(RemadomSetupError, match="not both"):
        REMADOM.setup_anndata(mosaic_adata, rna_layer="counts", modalities={"adt": {"obsm": "X_adt"}})


def test_transfer_field_checks_feature_names_on_new_data(rna_cells):
    mosaic_adata = rna_cells
    REMADOM.setup_anndata(mosaic_adata, modalities={"rna": {"layer": "counts"}, "adt": {"obsm": "X_adt"}})
    model = REMADOM(mosaic_adata, **SMALL)
    other = mosaic_adata.copy()
    other.obsm["X_adt"] = other.obsm["X_adt"].rename(columns={"p0": "CD3"})
    with pytest.raises(RemadomSetupError, match="'adt' features of this data"):
        model._validate_anndata(other)


def test_setup_mudata_recognises_muon_names_and_dict_entries(mosaic_mdata):
    import mudata as md

    mods = dict(mosaic_mdata.mod)
    mdata = md.MuData({"gex": mods["rna"], "peaks": mods["atac"], "prot": mods["adt"]})
    mdata.obs["batch"] = mosaic_mdata.obs.loc[mdata.obs_names, "batch"].to_numpy()
    REMADOM.setup_mudata(mdata, batch_key="batch")
    model = REMADOM(mdata, **SMALL)
    assert model.modality_names == ["rna", "atac", "adt"]
    assert [s.likelihood for s in model.specs] == ["nb", "bernoulli", "nbmixture"]
    REMADOM.setup_mudata(mdata, modalities={"rna": "gex", "adt": {"mod": "prot", "likelihood": "gaussian_clr"},
                                            "atac": "peaks"}, batch_key="batch")
    assert [s.likelihood for s in REMADOM(mdata, **SMALL).specs] == ["nb", "gaussian_clr", "bernoulli"]


def test_setup_mudata_suggests_a_name_mapping_not_dropping_cells(mosaic_mdata):
    import mudata as md

    mods = dict(mosaic_mdata.mod)
    mdata = md.MuData({"rna": mods["rna"], "tile_matrix": mods["atac"]})  # a name REMADOM cannot know
    with pytest.raises(RemadomSetupError, match="tile_matrix") as err:
        REMADOM.setup_mudata(mdata)
    assert "drop_cells_without_modalities" not in str(err.value)
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "tile_matrix"})
    assert REMADOM(mdata, **SMALL).modality_names == ["rna", "atac"]


def test_setup_mudata_with_no_recognised_name_says_how_to_map(mosaic_mdata):
    import mudata as md

    mdata = md.MuData({"foo": dict(mosaic_mdata.mod)["rna"]})
    with pytest.raises(RemadomSetupError, match="Map them"):
        REMADOM.setup_mudata(mdata)


def test_kind_comes_from_the_mod_key_when_the_name_is_free(mosaic_mdata):
    import mudata as md

    mdata = md.MuData({"rna": dict(mosaic_mdata.mod)["rna"], "protein": dict(mosaic_mdata.mod)["adt"]})
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "surface": "protein"})
    spec = REMADOM(mdata, **SMALL).specs[1]
    assert (spec.name, spec.kind, spec.likelihood) == ("surface", "adt", "nbmixture")


def test_feature_names_come_from_the_registry(rna_cells):
    mosaic_adata = rna_cells
    REMADOM.setup_anndata(mosaic_adata, modalities={"rna": {"layer": "counts"}, "adt": {"obsm": "X_adt"}})
    model = REMADOM(mosaic_adata, **SMALL)
    state = model.adata_manager.get_state_registry("mod_adt")
    assert list(state["column_names"]) == list(model.feature_names_["adt"]) == [f"p{i}" for i in range(6)]
    assert state["spec"]["likelihood"] == "nbmixture"
    model.train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    assert list(model.impute("adt", return_numpy=False).var_names) == [f"p{i}" for i in range(6)]
