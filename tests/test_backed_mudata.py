"""Out-of-core training from a MuData: remadom.data.mudata_to_backed_h5ad writes setup_mudata's padded view to disk."""

import hashlib

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
from anndata.abc import CSRDataset
from conftest import make_mosaic_mudata
from scipy.spatial.distance import pdist

import remadom
from remadom import _row_reads
from remadom.data import _backed_mudata, mudata_to_backed_h5ad, read_h5ad_backed, stored_setup_kwargs
from remadom.model._validation import RemadomSetupError

MODEL = {"n_hidden": 16, "n_latent": 4, "modality_dropout": 0.0, "dropout_rate": 0.0}
TRAIN = {"max_epochs": 2, "batch_size": 32, "enable_progress_bar": False}
#: setup_mudata / mudata_to_backed_h5ad arguments: every modality (RNA from a layer) or a subset that drops cells
ARGS = {
    "all": {"layers": {"rna": "counts"}, "batch_key": "batch", "categorical_covariate_keys": ["site"]},
    "subset": {"modalities": {"rna": {"mod": "rna", "layer": "counts"}, "adt": "adt"}, "batch_key": "batch",
               "drop_cells_without_modalities": True},
}


def _mosaic_mudata(n=150, seed=0):
    """A mosaic MuData with what the converter must carry: rows in another order than obs_names, a
    counts layer (X holds other values), a dense modality, per-batch feature masks and a covariate."""
    mdata = make_mosaic_mudata(n=n, seed=seed)
    rna, atac, adt = (mdata.mod[k] for k in ("rna", "atac", "adt"))
    rna = ad.AnnData(X=rna.X * 0.5, obs=rna.obs, var=rna.var, layers={"counts": rna.X.copy()})
    perm = np.random.default_rng(seed).permutation(atac.n_obs)
    atac = atac[perm].copy()  # modality rows in another order than mdata.obs_names
    adt = ad.AnnData(X=adt.X.toarray(), obs=adt.obs, var=adt.var)  # dense
    batches = sorted(mdata.obs["batch"].unique())
    measured = pd.DataFrame(True, index=adt.var_names, columns=batches)
    measured.iloc[0, 0] = False
    adt.varm["remadom_measured"] = measured
    out = md.MuData({"rna": rna, "atac": atac, "adt": adt})
    out.obs["batch"] = mdata.obs.loc[out.obs_names, "batch"].to_numpy()
    out.obs["site"] = np.where(np.arange(out.n_obs) % 3 == 0, "s1", "s2")
    return out


@pytest.fixture(scope="module")
def h5mu(tmp_path_factory):
    path = tmp_path_factory.mktemp("backed_mudata") / "mosaic.h5mu"
    _mosaic_mudata().write_h5mu(path)
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _view(mdata, **args):
    """setup_mudata's in-memory padded view of ``mdata``."""
    remadom.REMADOM.setup_mudata(mdata, **args)
    return remadom.REMADOM._mudata_views[id(mdata)][1]


def _dense(matrix):
    if isinstance(matrix, CSRDataset):
        matrix = matrix.to_memory()
    elif isinstance(matrix, h5py.Dataset):
        matrix = matrix[...]
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def test_the_fixture_has_what_the_converter_must_handle(h5mu):
    mdata = md.read_h5mu(h5mu)
    atac = mdata.mod["atac"].obs_names
    assert list(atac) != list(mdata.obs_names[mdata.obs_names.isin(atac)])  # another order
    assert all((~mdata.obs_names.isin(mdata.mod[k].obs_names)).any() for k in mdata.mod)  # absent cells
    with h5py.File(h5mu) as f:
        assert isinstance(f["mod/adt/X"], h5py.Dataset) and f["mod/rna/X"].attrs["encoding-type"] == "csr_matrix"


@pytest.mark.parametrize("case", sorted(ARGS))
def test_converted_file_holds_the_setup_mudata_view(h5mu, tmp_path, case):
    before = _digest(h5mu)
    setup = mudata_to_backed_h5ad(h5mu, tmp_path / "padded.h5ad", **ARGS[case], chunk_size=16)
    assert _digest(h5mu) == before  # the user's file is only read
    view = _view(md.read_h5mu(h5mu), **ARGS[case])
    adata = read_h5ad_backed(tmp_path / "padded.h5ad")
    assert isinstance(adata.X, CSRDataset)
    assert list(adata.obs_names) == list(view.obs_names)
    if ARGS[case].get("drop_cells_without_modalities"):  # the ATAC-only cells are left out, as in memory
        assert adata.n_obs < md.read_h5mu(h5mu).n_obs
    pd.testing.assert_frame_equal(adata.obs, view.obs[[c for c in view.obs if not c.startswith("_scvi")]])
    np.testing.assert_array_equal(_dense(adata.X), view.X.toarray())  # row by row, zero rows where absent
    assert list(adata.var_names) == list(view.var_names)
    matrices = {k: m for k, m in view.obsm.items() if not k.startswith("_scvi")}
    assert sorted(adata.obsm) == sorted(matrices)
    for key, matrix in matrices.items():
        assert sp.issparse(matrix) == isinstance(adata.obsm[key], CSRDataset)  # sparse stays sparse, dense dense
        np.testing.assert_array_equal(_dense(adata.obsm[key]), _dense(matrix))
        name = key.removeprefix("X_")
        np.testing.assert_array_equal(adata.uns[f"{name}_names"], view.uns[f"{name}_names"])
    pd.testing.assert_frame_equal(adata.uns["remadom_feature_masks"]["adt"], view.uns["remadom_feature_masks"]["adt"])
    assert setup == stored_setup_kwargs(adata)
    # registered the same: modalities, masks, feature masks, batches, covariates
    remadom.REMADOM.setup_anndata(adata, **setup)
    backed_model = remadom.REMADOM(adata, **MODEL)
    memory_model = remadom.REMADOM(view, **MODEL)
    assert backed_model.summary_stats == memory_model.summary_stats
    backed_masks, memory_masks = backed_model.get_feature_masks(), memory_model.get_feature_masks()
    assert sorted(backed_masks) == sorted(memory_masks) and "adt" in backed_masks
    for name in memory_masks:
        pd.testing.assert_frame_equal(backed_masks[name], memory_masks[name])
    for key in ("has_rna", "has_adt", "_scvi_batch"):
        np.testing.assert_array_equal(adata.obs[key], view.obs[key])
    adata.file.close()


def _train(adata, setup=None):
    if setup is not None:
        remadom.REMADOM.setup_anndata(adata, **setup)
    scvi.settings.seed = 0
    model = remadom.REMADOM(adata, **MODEL)
    model.train(**TRAIN)
    return model


def test_training_from_the_file_matches_the_in_memory_mudata_run(h5mu, tmp_path):
    args = ARGS["all"]
    mdata = md.read_h5mu(h5mu)
    remadom.REMADOM.setup_mudata(mdata, **args)
    in_memory = _train(mdata)
    z_memory = in_memory.get_latent_representation()
    setup = mudata_to_backed_h5ad(h5mu, tmp_path / "padded.h5ad", **args)

    # the file read into memory trains exactly as the MuData does: the same data, order and registry
    same = _train(ad.read_h5ad(tmp_path / "padded.h5ad"), setup)
    np.testing.assert_allclose(same.history["elbo_train"].to_numpy(dtype=float),
                               in_memory.history["elbo_train"].to_numpy(dtype=float), rtol=1e-6)
    np.testing.assert_allclose(same.get_latent_representation(), z_memory, atol=1e-5)

    # out of core: scvi-tools reads a backed minibatch's rows sorted, so each cell draws other noise
    # (as for any backed .h5ad, tests/test_backed.py): the ELBO curve within 1 %, the latent's geometry
    adata = read_h5ad_backed(tmp_path / "padded.h5ad")
    backed = _train(adata, setup)
    np.testing.assert_allclose(backed.history["elbo_train"].to_numpy(dtype=float),
                               in_memory.history["elbo_train"].to_numpy(dtype=float), rtol=0.01)
    z_backed = backed.get_latent_representation()
    assert np.isfinite(z_backed).all() and z_backed.shape == (mdata.n_obs, MODEL["n_latent"])
    assert np.corrcoef(pdist(z_backed), pdist(z_memory))[0, 1] > 0.9
    # one model: the file and the MuData give one latent
    np.testing.assert_allclose(in_memory.get_latent_representation(adata), z_memory, atol=1e-6)
    backed.save(tmp_path / "model")
    loaded = remadom.REMADOM.load(tmp_path / "model", adata=read_h5ad_backed(tmp_path / "padded.h5ad"))
    np.testing.assert_allclose(loaded.get_latent_representation(), z_backed, atol=1e-6)


def test_conversion_reads_at_most_chunk_size_rows_at_a_time(h5mu, tmp_path, monkeypatch):
    """Bounded memory by construction: matrix values are read only chunk_size rows at a time."""
    sparse_reads, dense_reads = [], []
    original_rows, original_get = _row_reads.read_rows, h5py.Dataset.__getitem__

    def spy_rows(group, indptr, rows, n_cols):
        sparse_reads.append((group.name, len(rows)))
        return original_rows(group, indptr, rows, n_cols)

    def spy_get(self, index):
        out = original_get(self, index)
        name = self.name or ""
        if name.startswith("/mod/") and name.rsplit("/", 1)[-1] in ("data", "indices"):
            raise AssertionError(f"{name} read whole")  # CSR values go through read_rows only
        if name.startswith("/mod/") and self.ndim == 2:
            dense_reads.append((name, len(out)))
        return out

    monkeypatch.setattr(_backed_mudata, "read_rows", spy_rows)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy_get)
    mudata_to_backed_h5ad(h5mu, tmp_path / "padded.h5ad", **ARGS["all"], chunk_size=16)
    monkeypatch.undo()
    mdata = md.read_h5mu(h5mu)
    assert max(n for _, n in sparse_reads + dense_reads) <= 16 < mdata.n_obs
    for mod, reads in (("rna", sparse_reads), ("atac", sparse_reads), ("adt", dense_reads)):
        rows = [n for name, n in reads if name.startswith(f"/mod/{mod}/")]
        assert len(rows) > 1 and sum(rows) == mdata.mod[mod].n_obs  # every row once, in several chunks


def test_a_backed_mudata_object_is_accepted(h5mu, tmp_path):
    backed = md.read_h5mu(h5mu, backed=True)
    setup = mudata_to_backed_h5ad(backed, tmp_path / "padded.h5ad", batch_key="batch")
    assert set(setup["modalities"]) == {"rna", "atac", "adt"}


def test_setup_mudata_on_a_backed_mudata_names_the_converter(h5mu):
    with pytest.raises(RemadomSetupError, match="backed.*mudata_to_backed_h5ad"):
        remadom.REMADOM.setup_mudata(md.read_h5mu(h5mu, backed=True), batch_key="batch")


def test_bad_inputs(h5mu, tmp_path):
    out = tmp_path / "padded.h5ad"
    with pytest.raises(FileNotFoundError, match="No .h5mu file"):
        mudata_to_backed_h5ad(tmp_path / "absent.h5mu", out)
    with pytest.raises(RemadomSetupError, match=r"mdata.mod\['nope'\], which does not exist"):
        mudata_to_backed_h5ad(h5mu, out, modalities={"rna": "rna", "adt": "nope"})
    with pytest.raises(RemadomSetupError, match="Layer 'raw'"):
        mudata_to_backed_h5ad(h5mu, out, layers={"rna": "raw"})
    with pytest.raises(RemadomSetupError, match="'donor' is not a column of mdata.obs"):
        mudata_to_backed_h5ad(h5mu, out, batch_key="donor")
    with pytest.raises(ValueError, match="chunk_size"):
        mudata_to_backed_h5ad(h5mu, out, chunk_size=0)
    with pytest.raises(RemadomSetupError, match="in-memory MuData needs no conversion"):
        mudata_to_backed_h5ad(md.read_h5mu(h5mu), out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))  # a failed conversion leaves nothing
    with pytest.raises(ValueError, match="is the .h5mu being converted"):
        mudata_to_backed_h5ad(h5mu, h5mu)
    out.write_text("")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        mudata_to_backed_h5ad(h5mu, out)
    h5ad = tmp_path / "plain.h5ad"
    ad.AnnData(np.ones((3, 2), np.float32)).write_h5ad(h5ad)
    with pytest.raises(RemadomSetupError, match="not a MuData .h5mu"):
        mudata_to_backed_h5ad(h5ad, tmp_path / "x.h5ad")
    with pytest.raises(RemadomSetupError, match="not written by"):
        stored_setup_kwargs(ad.AnnData(np.ones((3, 2), np.float32)))


def test_csc_modality_is_refused_with_the_fix(tmp_path):
    rna = ad.AnnData(sp.random(20, 10, density=0.3, format="csc", random_state=0, dtype=np.float32))
    md.MuData({"rna": rna}).write_h5mu(tmp_path / "csc.h5mu")
    with pytest.raises(RemadomSetupError, match="CSC matrix on disk.*CSR"):
        mudata_to_backed_h5ad(tmp_path / "csc.h5mu", tmp_path / "out.h5ad")
    assert not (tmp_path / "out.h5ad").exists()
