"""Feature masks in reference mapping: per-cell masks carried into queries, fully-masked query cells refused."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import make_mosaic_adata, make_mosaic_mudata

from remadom import REMADOM
from remadom.model._validation import RemadomSetupError

SMALL = {"n_hidden": 16, "n_latent": 4}
FAST = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "batch_size": 64}
KEY = "adt_measured"
PROTEINS = [f"p{i}" for i in range(6)]


def _rna_adt(seed=0, batches=("b1", "b2")):
    adata = make_mosaic_adata(n=80, seed=seed)
    adata = adata[(adata.obs["has_rna"] | adata.obs["has_adt"]).to_numpy()].copy()
    adata.obs["batch"] = pd.Categorical(np.where(adata.obs["batch"] == "b1", *batches))
    return adata


def _setup(adata, **kwargs):
    REMADOM.setup_anndata(adata, rna_layer="counts", adt_obsm_key="X_adt", batch_key="batch",
                          mask_keys={"rna": "has_rna", "adt": "has_adt"}, **kwargs)


def _cell_mask(n, seed=0):
    mask = np.random.default_rng(seed).random((n, 6)) < 0.6
    mask[:, 2] = True
    return mask


@pytest.fixture(scope="module")
def cell_mask_reference():
    adata = _rna_adt()
    adata.obsm[KEY] = _cell_mask(adata.n_obs)
    _setup(adata, feature_masks={"adt": KEY})
    model = REMADOM(adata, **SMALL)
    model.train(**FAST)
    return model


def test_query_per_cell_mask_is_aligned_to_the_reference_features(cell_mask_reference):
    query = _rna_adt(seed=1, batches=("q1", "q2"))
    order = ["p3", "p0", "p1", "p2", "p4"]  # reordered, p5 absent
    mask = _cell_mask(query.n_obs, seed=1)
    query.obsm["X_adt"] = query.obsm["X_adt"][order]
    query.obsm[KEY] = sp.csr_matrix(mask[:, [3, 0, 1, 2, 4]])
    prepared = REMADOM.prepare_query_anndata(query, cell_mask_reference)
    aligned = prepared.obsm[KEY].toarray()
    np.testing.assert_array_equal(aligned[:, :5], mask[:, :5])
    assert not aligned[:, 5].any()  # the feature the query lacks: not measured
    assert KEY in query.obsm and query.obsm[KEY].shape == (query.n_obs, 5)  # the input is unchanged
    q = REMADOM.load_query_data(prepared, cell_mask_reference)
    assert q.module.cell_feature_masks == ["adt"]
    q.train(**FAST)
    assert np.isfinite(q.get_latent_representation()).all()
    del query.obsm[KEY]
    with pytest.raises(RemadomSetupError, match=r"per-cell feature mask for 'adt'.*no adata.obsm\['adt_measured'\]"):
        REMADOM.prepare_query_anndata(query, cell_mask_reference)


def test_query_cells_with_every_feature_masked_are_refused(cell_mask_reference):
    query = _rna_adt(seed=2, batches=("q1", "q2"))
    mask = _cell_mask(query.n_obs, seed=2)
    cell = np.flatnonzero(query.obs["has_adt"].to_numpy())[0]
    mask[cell] = False
    query.obsm[KEY] = mask
    with pytest.raises(RemadomSetupError, match=rf"Query cell\(s\) {query.obs_names[cell]} have modality 'adt'.*has_adt"):
        REMADOM.load_query_data(query, cell_mask_reference)
    query.obs.loc[query.obs_names[cell], "has_adt"] = False  # the fix the message names
    REMADOM.load_query_data(query, cell_mask_reference)


def test_query_merged_into_a_batch_whose_table_masks_what_it_has_is_refused():
    """No per-cell mask: the merged batch's table row AND the features the query lacks leave nothing."""
    adata = _rna_adt()
    panel = pd.DataFrame(True, index=["b1", "b2"], columns=PROTEINS)
    panel.loc["b2", "p0"] = False
    _setup(adata, feature_masks={"adt": panel})
    ref = REMADOM(adata, **SMALL)
    ref.train(**FAST)
    query = _rna_adt(seed=3, batches=("b2", "q2"))  # b2 merges into the reference's b2
    query.obsm["X_adt"] = query.obsm["X_adt"][["p0"]]  # only the protein b2 did not stain
    with pytest.raises(RemadomSetupError, match="have modality 'adt' but none of its features is measured"):
        REMADOM.load_query_data(query, ref, batch_collision="merge")
    query = _rna_adt(seed=3, batches=("q1", "q2"))  # as new batches, p0 is measured there
    query.obsm["X_adt"] = query.obsm["X_adt"][["p0"]]
    REMADOM.load_query_data(query, ref)


def test_mudata_query_carries_the_modality_per_cell_mask():
    mdata = make_mosaic_mudata(n=80)
    mdata.mod["adt"].obsm[KEY] = _cell_mask(mdata.mod["adt"].n_obs)
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "adt": "adt"}, batch_key="batch",
                         feature_masks={"adt": KEY}, drop_cells_without_modalities=True)
    ref = REMADOM(mdata, **SMALL)
    ref.train(**FAST)
    query = make_mosaic_mudata(n=80, seed=1)
    del query.mod["atac"]
    query.update()
    query.obs["batch"] = np.where(query.obs["batch"] == "b1", "q1", "q2")
    query.mod["adt"].obsm[KEY] = _cell_mask(query.mod["adt"].n_obs, seed=1)
    prepared = REMADOM.prepare_query_mudata(query, ref)
    np.testing.assert_array_equal(prepared.mod["adt"].obsm[KEY], query.mod["adt"].obsm[KEY])
    q = REMADOM.load_query_data(prepared, ref)
    assert q.module.cell_feature_masks == ["adt"] and "adt:" + KEY in q.adata.obsm
    q.train(**FAST)
    assert np.isfinite(q.get_latent_representation()).all()
