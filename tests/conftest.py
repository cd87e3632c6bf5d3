"""Shared fixtures: a seeded rng, tiny mosaic AnnData/MuData, and the shared real data folder."""

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: ../shared/data beside the project root, or $REMADOM_DATA_DIR.
SHARED_DATA = Path(os.environ.get("REMADOM_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def shared_data_dir():
    """The real-data folder; skips the test cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_mosaic_adata(n=120, n_genes=30, n_peaks=60, n_proteins=6, seed=0):
    """Tiny mosaic AnnData with two clusters: RNA in layers['counts'], ATAC/ADT in obsm."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 2, n)
    rna_rate = np.where(cluster[:, None] == 0, 1.0, 4.0) * rng.uniform(0.5, 1.5, (1, n_genes))
    atac_p = np.where(cluster[:, None] == 0, 0.05, 0.3) * np.ones((1, n_peaks))
    adt_rate = np.where(cluster[:, None] == 0, 3.0, 12.0) * np.ones((1, n_proteins))
    counts = sp.csr_matrix(rng.poisson(rna_rate).astype(np.float32))
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(rng.choice(["b1", "b2"], n)),
            "cluster": pd.Categorical(cluster.astype(str)),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    groups = rng.integers(0, 4, n)  # 0 paired all, 1 rna only, 2 atac only, 3 adt+rna
    obs["has_rna"] = np.isin(groups, [0, 1, 3])
    obs["has_atac"] = np.isin(groups, [0, 2])
    obs["has_adt"] = np.isin(groups, [0, 3])
    adata = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    adata.layers["counts"] = counts
    atac = sp.csr_matrix((rng.random((n, n_peaks)) < atac_p).astype(np.float32))
    adata.obsm["X_atac"] = atac
    adata.obsm["X_adt"] = pd.DataFrame(
        rng.poisson(adt_rate).astype(np.float32), index=obs.index, columns=[f"p{i}" for i in range(n_proteins)]
    )
    # hidden entries are zero, as in real mosaic data
    for key, mask in (("X_atac", "has_atac"), ("X_adt", "has_adt")):
        m = adata.obs[mask].to_numpy()
        if sp.issparse(adata.obsm[key]):
            adata.obsm[key] = sp.csr_matrix(adata.obsm[key].multiply(m[:, None]))
        else:
            adata.obsm[key].loc[~m] = 0.0
    adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"].multiply(obs["has_rna"].to_numpy()[:, None]))
    return adata


def make_mosaic_mudata(n=120, seed=0):
    """Unpadded MuData built from :func:`make_mosaic_adata`: a cell absent from a modality = missing."""
    import mudata as md

    adata = make_mosaic_adata(n=n, seed=seed)
    rna = adata[adata.obs["has_rna"].to_numpy()]
    rna = ad.AnnData(X=rna.layers["counts"].copy(), obs=pd.DataFrame(index=rna.obs_names), var=adata.var.copy())
    keep = adata.obs["has_atac"].to_numpy()
    atac = ad.AnnData(X=adata.obsm["X_atac"][keep], obs=pd.DataFrame(index=adata.obs_names[keep]),
                      var=pd.DataFrame(index=[f"peak{i}" for i in range(adata.obsm["X_atac"].shape[1])]))
    keep = adata.obs["has_adt"].to_numpy()
    adt_df = adata.obsm["X_adt"].loc[keep]
    adt = ad.AnnData(X=sp.csr_matrix(adt_df.to_numpy()), obs=pd.DataFrame(index=adt_df.index),
                     var=pd.DataFrame(index=adt_df.columns))
    mdata = md.MuData({"rna": rna, "atac": atac, "adt": adt})
    mdata.obs["batch"] = adata.obs.loc[mdata.obs_names, "batch"].to_numpy()
    mdata.obs["cluster"] = adata.obs.loc[mdata.obs_names, "cluster"].to_numpy()
    return mdata


@pytest.fixture
def mosaic_adata():
    return make_mosaic_adata()


@pytest.fixture
def mosaic_mdata():
    return make_mosaic_mudata()


def make_study_adata():
    """b1: every cell RNA+ATAC+ADT; b2: every cell ADT only (a study confounded with its modality set)."""
    adata = make_mosaic_adata()
    b2 = (adata.obs["batch"] == "b2").to_numpy()
    adata.obs["has_rna"] = ~b2
    adata.obs["has_atac"] = ~b2
    adata.obs["has_adt"] = True
    return adata
