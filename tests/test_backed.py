"""Out-of-core training: an .h5ad opened with remadom.data.read_h5ad_backed keeps every matrix on disk."""

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scvi
from anndata.abc import CSRDataset

import remadom
from remadom import _row_reads
from remadom._ondisk import stored_value_chunks
from remadom.data import read_h5ad_backed, write_scale_dataset
from remadom.model import _setup
from remadom.model._validation import RemadomSetupError

TINY = {"n_cells": 300, "n_genes": 40, "n_peaks": 400, "n_proteins": 6, "chunk_cells": 128, "seed": 1}
SETUP = {"atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch"}
MODEL = {"n_hidden": 16, "n_latent": 4, "modality_dropout": 0.0, "dropout_rate": 0.0}
TRAIN = {"max_epochs": 2, "batch_size": 64, "enable_progress_bar": False}


@pytest.fixture(scope="module")
def scale_file(tmp_path_factory):
    return write_scale_dataset(tmp_path_factory.mktemp("backed") / "tiny.h5ad", **TINY)


def _fit(adata, seed=0, **train):
    remadom.REMADOM.setup_anndata(adata, **SETUP)
    scvi.settings.seed = seed
    model = remadom.REMADOM(adata, **MODEL)
    model.train(**{**TRAIN, **train})
    return model


def test_every_matrix_stays_on_disk(scale_file):
    adata = read_h5ad_backed(scale_file)
    assert adata.isbacked
    assert isinstance(adata.X, CSRDataset)
    assert isinstance(adata.obsm["X_atac"], CSRDataset)
    assert isinstance(adata.obsm["X_adt"], h5py.Dataset)
    memory = ad.read_h5ad(scale_file)
    assert (adata.obsm["X_atac"][np.array([3, 7])] != memory.obsm["X_atac"][[3, 7]]).nnz == 0
    assert list(adata.uns["adt_names"]) == list(memory.uns["adt_names"])
    adata.file.close()


def test_setup_and_training_read_bounded_row_blocks(scale_file, monkeypatch):
    """Setup and training never load a whole on-disk matrix: minibatches and a bounded statistics sample only."""
    rows_read = []
    probe = read_h5ad_backed(scale_file)
    dataset_cls = type(probe.obsm["X_atac"])  # anndata's concrete CSRDataset class
    probe.file.close()
    original = dataset_cls.__getitem__

    def spy(self, index):
        rows = index[0] if isinstance(index, tuple) else index
        rows_read.append(len(np.arange(self.shape[0])[rows]))
        return original(self, index)

    def refuse(self):
        raise AssertionError("an on-disk matrix was loaded whole")

    original_rows = _row_reads.read_rows

    def spy_rows(group, indptr, rows, n_cols):  # training's one-read minibatches (remadom._row_reads)
        rows_read.append(len(rows))
        return original_rows(group, indptr, rows, n_cols)

    monkeypatch.setattr(_setup, "_MAX_CELLS_FOR_STATS", 50)
    monkeypatch.setattr(dataset_cls, "__getitem__", spy)
    monkeypatch.setattr(_row_reads, "read_rows", spy_rows)
    monkeypatch.setattr(dataset_cls, "to_memory", refuse)
    adata = read_h5ad_backed(scale_file)
    model = _fit(adata, max_epochs=1)
    z = model.get_latent_representation(batch_size=64)
    assert np.isfinite(z).all() and z.shape == (TINY["n_cells"], MODEL["n_latent"])
    assert rows_read and max(rows_read) <= 64 < TINY["n_cells"]
    assert len(rows_read) > 10  # the minibatch reads were seen
    assert np.isfinite(model.history["elbo_train"].to_numpy(dtype=float)).all()


@pytest.mark.slow
def test_backed_training_matches_in_memory_training(scale_file, tmp_path):
    memory = ad.read_h5ad(scale_file)
    in_memory = _fit(memory)
    backed = read_h5ad_backed(scale_file)
    on_disk = _fit(backed)
    # the same minibatches (scvi-tools sorts each batch's rows for HDF5): the same ELBO curve within 1 %
    np.testing.assert_allclose(on_disk.history["elbo_train"].to_numpy(dtype=float), in_memory.history["elbo_train"].to_numpy(dtype=float),
                               rtol=0.01)
    # one model: identical latent from the file and from memory
    np.testing.assert_array_equal(in_memory.get_latent_representation(backed),
                                  in_memory.get_latent_representation(memory))
    on_disk.save(tmp_path / "model")
    loaded = remadom.REMADOM.load(tmp_path / "model", adata=read_h5ad_backed(scale_file))
    np.testing.assert_allclose(loaded.get_latent_representation(), on_disk.get_latent_representation(), atol=1e-6)


def _write(path, atac):
    adata = ad.AnnData(X=sp.csr_matrix(np.ones((20, 5), np.float32)), obsm={"X_atac": atac})
    adata.write_h5ad(path)
    return read_h5ad_backed(path)


def test_on_disk_csc_matrix_is_refused(tmp_path):
    adata = _write(tmp_path / "csc.h5ad", sp.random(20, 30, density=0.3, format="csc", dtype=np.float32, random_state=0))
    with pytest.raises(RemadomSetupError, match="CSC on disk"):
        remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac")


def test_on_disk_values_are_checked(tmp_path, monkeypatch):
    atac = sp.random(20, 30, density=0.3, format="csr", dtype=np.float32, random_state=0)
    atac.data[-1] = -1.0  # in the last chunk
    monkeypatch.setattr("remadom.model._checks._CHUNK", 7)
    adata = _write(tmp_path / "neg.h5ad", atac)
    with pytest.raises(RemadomSetupError, match="negative values"):
        remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac")


def test_stored_value_chunks_are_bounded(tmp_path):
    atac = sp.random(20, 30, density=0.3, format="csr", dtype=np.float32, random_state=0)
    adata = _write(tmp_path / "chunks.h5ad", atac)
    sparse = list(stored_value_chunks(adata.obsm["X_atac"], 50))
    assert max(len(c) for c in sparse) <= 50
    np.testing.assert_array_equal(np.concatenate(sparse), atac.data)
    with h5py.File(tmp_path / "dense.h5", "w") as f:
        f["x"] = np.arange(60.0).reshape(20, 3)
        dense = list(stored_value_chunks(f["x"], 7))
        assert max(c.size for c in dense) <= 7
        np.testing.assert_array_equal(np.concatenate(dense), f["x"][:])


@pytest.mark.slow
def test_user_guide_large_data_code_runs(tmp_path, monkeypatch):
    """The user guide's "Large data" code blocks (except the multi-device ones) run as written."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "user_guide.md").read_text()
    section = text[text.index("## Large data"):]
    section = section[:section.index("\n## ", 1)]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "devices=" not in b]
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile("\n".join(blocks), "user_guide.md", "exec"), namespace)
    assert namespace["latent"].shape == (600, namespace["model"].module.n_latent)
    assert namespace["adata_mu"].isbacked and namespace["model_mu"].is_trained  # the MuData converted, then backed
