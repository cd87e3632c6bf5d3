"""setup_anndata / setup_mudata: registration, no mutation, and a clear error for each bad input."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remadom import REMADOM, RemadomSetupError

KEYS = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}


def test_setup_anndata_registers_every_modality_and_mask(mosaic_adata):
    REMADOM.setup_anndata(mosaic_adata, **KEYS, labels_key="cluster")
    model = REMADOM(mosaic_adata, n_latent=4, n_hidden=16)
    assert model.modality_names == ["rna", "atac", "adt"]
    assert list(model.feature_names_["adt"]) == [f"p{i}" for i in range(6)]
    fields = model.adata_manager.data_registry
    assert {"mod_rna", "mod_atac", "mod_adt", "mask_rna", "mask_atac", "mask_adt"} <= set(fields)


def test_modalities_not_passed_are_not_in_model(mosaic_adata):
    adata = mosaic_adata[mosaic_adata.obs["has_rna"].to_numpy()].copy()
    REMADOM.setup_anndata(adata, rna_layer="counts", batch_key="batch", mask_keys={"rna": "has_rna"})
    model = REMADOM(adata, n_latent=4, n_hidden=16)
    assert model.modality_names == ["rna"]


def test_missing_mask_column_means_all_observed(mosaic_adata):
    adata = mosaic_adata
    del adata.obs["has_adt"]
    adata.obs["has_rna"] = True
    adata.obs["has_atac"] = False
    REMADOM.setup_anndata(adata, rna_layer="counts", adt_obsm_key="X_adt")
    assert "mask_adt" not in REMADOM(adata, n_hidden=16).adata_manager.data_registry


def test_generic_counts_modality(mosaic_adata):
    mosaic_adata.obsm["X_h3"] = sp.csr_matrix(np.ones((mosaic_adata.n_obs, 7), dtype=np.float32))
    REMADOM.setup_anndata(mosaic_adata, rna_layer="counts",
                          extra_modalities={"h3k27ac": {"obsm_key": "X_h3", "likelihood": "poisson"}})
    model = REMADOM(mosaic_adata, n_hidden=16)
    assert model.modality_names == ["rna", "h3k27ac"]
    assert model.module.heads["h3k27ac"].__class__.__name__ == "PoissonHead"


def test_setup_anndata_leaves_data_matrices_untouched(mosaic_adata):
    before = mosaic_adata.layers["counts"].copy()
    atac_before = mosaic_adata.obsm["X_atac"].copy()
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    assert (mosaic_adata.layers["counts"] != before).nnz == 0
    assert (mosaic_adata.obsm["X_atac"] != atac_before).nnz == 0


def test_setup_mudata_does_not_mutate(mosaic_mdata):
    mods_before = list(mosaic_mdata.mod.keys())
    obs_cols = list(mosaic_mdata.obs.columns)
    shapes = {k: v.shape for k, v in mosaic_mdata.mod.items()}
    REMADOM.setup_mudata(mosaic_mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"},
                         batch_key="batch", labels_key="cluster")
    model = REMADOM(mosaic_mdata, n_latent=4, n_hidden=16)
    assert list(mosaic_mdata.mod.keys()) == mods_before
    assert list(mosaic_mdata.obs.columns) == obs_cols
    assert {k: v.shape for k, v in mosaic_mdata.mod.items()} == shapes
    # a cell absent from a modality is missing; present cells are observed
    view = model.adata
    assert view.n_obs == mosaic_mdata.n_obs
    np.testing.assert_array_equal(view.obs["has_atac"].to_numpy(),
                                  mosaic_mdata.obs_names.isin(mosaic_mdata.mod["atac"].obs_names))
    assert sp.issparse(view.obsm["X_atac"])


def test_mudata_all_zero_cell_in_modality_is_observed(mosaic_mdata):
    cell = mosaic_mdata.mod["atac"].obs_names[0]
    mosaic_mdata.mod["atac"].X[0] = 0
    REMADOM.setup_mudata(mosaic_mdata, batch_key="batch")
    view = REMADOM(mosaic_mdata, n_hidden=16).adata
    assert bool(view.obs.loc[cell, "has_atac"])


# ----------------------------------------------------------------- bad inputs
def test_negative_counts_error(mosaic_adata):
    mosaic_adata.layers["counts"] = mosaic_adata.layers["counts"].copy()
    mosaic_adata.layers["counts"].data[0] = -1
    with pytest.raises(RemadomSetupError, match="negative values"):
        REMADOM.setup_anndata(mosaic_adata, **KEYS)


def test_non_integer_counts_error(mosaic_adata):
    mosaic_adata.obsm["X_adt"].iloc[0, 0] = 0.5
    with pytest.raises(RemadomSetupError, match="non-integer values"):
        REMADOM.setup_anndata(mosaic_adata, **KEYS)


def test_gaussian_adt_accepts_non_integer(mosaic_adata):
    mosaic_adata.obsm["X_adt"].iloc[0, 0] = 0.5
    REMADOM.setup_anndata(mosaic_adata, **KEYS, likelihoods={"adt": "gaussian"})
    model = REMADOM(mosaic_adata, n_hidden=16)
    assert model.module.heads["adt"].__class__.__name__ == "GaussianHead"
    # switching back to a count likelihood at model creation re-checks the data
    with pytest.raises(RemadomSetupError, match="non-integer"):
        REMADOM(mosaic_adata, likelihoods={"adt": "nbmixture"})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_error(mosaic_adata, bad):
    atac = mosaic_adata.obsm["X_atac"].copy()
    atac.data[0] = bad
    mosaic_adata.obsm["X_atac"] = atac
    with pytest.raises(RemadomSetupError, match="NaN or infinite"):
        REMADOM.setup_anndata(mosaic_adata, **KEYS)


def test_mask_observed_but_absent_in_mudata_errors(mosaic_mdata):
    mosaic_mdata.obs["atac_flag"] = True
    with pytest.raises(RemadomSetupError, match="says modality 'atac' is observed"):
        REMADOM.setup_mudata(mosaic_mdata, mask_keys={"atac": "atac_flag"})


def test_cell_without_any_modality_errors(mosaic_adata):
    for m in ("has_rna", "has_atac", "has_adt"):
        mosaic_adata.obs.loc[mosaic_adata.obs_names[0], m] = False
    with pytest.raises(RemadomSetupError, match="no observed modality"):
        REMADOM.setup_anndata(mosaic_adata, **KEYS)


def test_mudata_cell_without_modality_error_and_drop_flag(mosaic_mdata):
    import anndata as ad
    import mudata as md

    extra = ad.AnnData(X=np.ones((1, 2), dtype=np.float32), obs=pd.DataFrame(index=["lonely"]))
    mods = dict(mosaic_mdata.mod)
    mods["other"] = extra
    mdata = md.MuData(mods)
    mdata.obs["batch"] = "b"
    with pytest.raises(RemadomSetupError, match="in none of the modalities"):
        REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac"}, batch_key="batch")
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac"}, batch_key="batch",
                         drop_cells_without_modalities=True)
    assert REMADOM(mdata, n_hidden=16).adata.n_obs == mdata.n_obs - 1 - (
        ~mdata.obs_names.isin(mdata.mod["rna"].obs_names.union(mdata.mod["atac"].obs_names))
    ).sum() + 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"atac_obsm_key": "X_nope"}, "not in adata.obsm"),
        ({"rna_layer": "raw"}, "not in adata.layers"),
        ({"mask_keys": {"protein": "has_adt"}}, "unknown modalities"),
        ({"extra_modalities": {"h3": {"obsm_key": "X_atac", "kind": "chromatin"}}}, "Unknown modality kind"),
    ],
)
def test_unknown_names_and_keys_error(mosaic_adata, kwargs, match):
    base = {"rna_layer": "counts", "batch_key": "batch"}
    with pytest.raises((RemadomSetupError, ValueError), match=match):
        REMADOM.setup_anndata(mosaic_adata, **{**base, **kwargs})


def test_unknown_mudata_modality_errors(mosaic_mdata):
    with pytest.raises(RemadomSetupError, match="does not exist"):
        REMADOM.setup_mudata(mosaic_mdata, modalities={"rna": "rna", "atac": "peaks"})


def test_mudata_cells_not_in_global_obs_error(mosaic_mdata):
    mosaic_mdata.mod["atac"].obs_names = [f"x{i}" for i in range(mosaic_mdata.mod["atac"].n_obs)]
    with pytest.raises(RemadomSetupError, match="not in mdata.obs_names"):
        REMADOM.setup_mudata(mosaic_mdata)


def test_zero_features_error(mosaic_adata):
    mosaic_adata.obsm["X_empty"] = np.zeros((mosaic_adata.n_obs, 0), dtype=np.float32)
    with pytest.raises(RemadomSetupError, match="zero features"):
        REMADOM.setup_anndata(mosaic_adata, rna_layer="counts",
                              extra_modalities={"e": {"obsm_key": "X_empty"}})


def test_batch_key_with_nan_errors(mosaic_adata):
    mosaic_adata.obs["batch"] = mosaic_adata.obs["batch"].astype(object)
    mosaic_adata.obs.iloc[3, mosaic_adata.obs.columns.get_loc("batch")] = np.nan
    with pytest.raises(RemadomSetupError, match="missing values"):
        REMADOM.setup_anndata(mosaic_adata, **KEYS)


def test_unknown_likelihood_errors(mosaic_adata):
    REMADOM.setup_anndata(mosaic_adata, **KEYS)
    with pytest.raises(ValueError, match="not available for modality 'atac'"):
        REMADOM(mosaic_adata, likelihoods={"atac": "nb"})
    with pytest.raises(ValueError, match="unknown modalities"):
        REMADOM(mosaic_adata, likelihoods={"protein": "gaussian"})
