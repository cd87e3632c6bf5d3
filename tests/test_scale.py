"""The streamed synthetic scale generator (remadom.data._scale), on tiny sizes."""

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from remadom.data._scale import MOSAIC_LAYOUT, ScaleConfig, main, write_scale_dataset

TINY = {"n_cells": 700, "n_genes": 40, "n_peaks": 3000, "n_proteins": 7, "chunk_cells": 256, "seed": 3}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_scale_dataset(tmp_path_factory.mktemp("scale") / "tiny.h5ad", **TINY)


def test_shapes_layout_and_mosaic_masks(tiny_path):
    adata = ad.read_h5ad(tiny_path)
    assert adata.shape == (700, 40)
    assert sp.issparse(adata.X) and sp.issparse(adata.obsm["X_atac"])
    assert adata.obsm["X_atac"].shape == (700, 3000) and adata.obsm["X_adt"].shape == (700, 7)
    assert len(adata.uns["adt_names"]) == 7
    batch = adata.obs["batch"].cat.codes.to_numpy()
    for b in range(4):
        for mod in ("rna", "atac", "adt"):
            assert (adata.obs[f"has_{mod}"].to_numpy()[batch == b] == (mod in MOSAIC_LAYOUT[b])).all()
    # rows of cells lacking a modality are empty; cells having it carry data
    for mod, x in (("rna", adata.X), ("atac", adata.obsm["X_atac"]), ("adt", sp.csr_matrix(adata.obsm["X_adt"]))):
        has = adata.obs[f"has_{mod}"].to_numpy()
        nnz = np.diff(sp.csr_matrix(x).indptr)
        assert (nnz[~has] == 0).all()
        assert (nnz[has] > 0).mean() > 0.9


def test_atac_is_binary_at_the_target_density(tiny_path):
    adata = ad.read_h5ad(tiny_path)
    atac = adata.obsm["X_atac"][adata.obs["has_atac"].to_numpy()]
    assert set(np.unique(atac.data)) == {1.0}
    density = atac.nnz / np.prod(atac.shape)
    assert 0.02 < density < 0.04  # ScaleConfig's NoiseConfig default: 3 % open


def test_rna_counts_are_integers_and_batches_differ(tiny_path):
    adata = ad.read_h5ad(tiny_path)
    assert np.allclose(adata.X.data, np.round(adata.X.data))
    assert adata.obs["cluster"].nunique() > 1


def test_csr_groups_are_chunk_appended_and_open_backed(tiny_path):
    with h5py.File(tiny_path) as f:
        assert f["obsm/X_atac/indices"].chunks is not None  # grown by appends, not written at once
        assert tuple(f["obsm/X_atac"].attrs["shape"]) == (700, 3000)
    backed = ad.read_h5ad(tiny_path, backed="r")
    assert backed.X[100:110].shape == (10, 40)


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    small = {**TINY, "n_cells": 120, "n_peaks": 500}
    a = ad.read_h5ad(write_scale_dataset(tmp_path / "a.h5ad", **small))
    b = ad.read_h5ad(write_scale_dataset(tmp_path / "b.h5ad", ScaleConfig(**small)))
    c = ad.read_h5ad(write_scale_dataset(tmp_path / "c.h5ad", **{**small, "seed": 4}))
    assert (a.obsm["X_atac"] != b.obsm["X_atac"]).nnz == 0
    assert (a.obsm["X_atac"] != c.obsm["X_atac"]).nnz > 0


def test_modality_left_out_with_zero_features(tmp_path):
    adata = ad.read_h5ad(write_scale_dataset(tmp_path / "x.h5ad", **{**TINY, "n_cells": 50, "n_proteins": 0}))
    assert "X_adt" not in adata.obsm and "has_adt" not in adata.obs


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.h5ad"
    assert main(["--out", str(out), "--n-cells", "64", "--n-genes", "10", "--n-peaks", "100",
                 "--n-proteins", "3", "--quiet"]) == 0
    assert ad.read_h5ad(out).n_obs == 64


def test_trains_with_remadom(tiny_path):
    """Smoke test: the written file sets up and trains one epoch as a mosaic."""
    import remadom

    adata = ad.read_h5ad(tiny_path)
    remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = remadom.REMADOM(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=1, batch_size=128, enable_progress_bar=False)
    assert model.get_latent_representation().shape == (700, 4)
