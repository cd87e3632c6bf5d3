"""Real-data loaders (skip without ../shared/data) and the mosaic-making helpers."""

import numpy as np
import pytest
import scipy.sparse as sp

from remadom.data.mock import generate_mock_dataset
from remadom.datasets import (
    FILES,
    hide_modality,
    load_bmmc_cite,
    load_bmmc_multiome,
    load_mouse_cortex_snareseq,
    load_pbmc_cite_mosaic,
    load_pbmc_reapseq,
    make_mosaic3,
    resolve_data_file,
)

SMALL_LOADERS = [
    (load_pbmc_cite_mosaic, {"rna": (1200, 500), "adt": (1200, 224)}, 1600),
    (load_bmmc_cite, {"rna": (600, 1000), "adt": (600, 134)}, 600),
    (load_bmmc_multiome, {"rna": (500, 600), "atac": (500, 600)}, 500),
]
LARGE_LOADERS = [
    (load_mouse_cortex_snareseq, {"rna": (10309, 1677), "atac": (10309, 25734)}, 10309),
    (load_pbmc_reapseq, {"rna": (7488, 32738), "adt": (7488, 48)}, 7488),
]


def _check(mdata, shapes, n_obs):
    assert mdata.n_obs == n_obs
    assert {m: a.shape for m, a in mdata.mod.items()} == shapes
    for a in mdata.mod.values():
        assert sp.issparse(a.X) and a.X.dtype == np.float32
    assert "batch" in mdata.obs


@pytest.mark.realdata
@pytest.mark.parametrize(("loader", "shapes", "n_obs"), SMALL_LOADERS)
def test_small_loaders(shared_data_dir, loader, shapes, n_obs):
    mdata = loader(path=shared_data_dir)
    _check(mdata, shapes, n_obs)
    assert "cell_type" in mdata.obs


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("loader", "shapes", "n_obs"), LARGE_LOADERS)
def test_large_loaders(shared_data_dir, loader, shapes, n_obs):
    _check(loader(path=shared_data_dir), shapes, n_obs)


@pytest.mark.realdata
def test_path_resolution(shared_data_dir, monkeypatch, tmp_path):
    name = FILES["bmmc_cite"]
    assert resolve_data_file(name, shared_data_dir / name) == shared_data_dir / name
    monkeypatch.setenv("REMADOM_DATA_DIR", str(shared_data_dir))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_file(name) == shared_data_dir / name
    for key in FILES:  # every file the loaders name is there
        assert resolve_data_file(FILES[key]).is_file()


def test_missing_file_names_the_options(monkeypatch, tmp_path):
    monkeypatch.setenv("REMADOM_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="REMADOM_DATA_DIR") as err:
        load_bmmc_cite(path=tmp_path / "nowhere")
    assert str(tmp_path / "env") in str(err.value) and "shared" in str(err.value)


@pytest.fixture(scope="module")
def paired_mdata():
    mdata, _ = generate_mock_dataset("paired", n_cells=120, n_genes=20, n_proteins=5, n_batches=4,
                                     return_mudata=True)
    return mdata


def test_hide_modality_by_batch(paired_mdata):
    before = paired_mdata.mod["adt"].X.copy()
    mosaic, truth = hide_modality(paired_mdata, "adt", batches=["batch2"])
    hidden = paired_mdata.obs_names[paired_mdata.obs["batch"] == "batch2"]
    assert set(truth["obs_names"]) == set(hidden) and truth["modality"] == "adt"
    assert set(mosaic.mod["adt"].obs_names) == set(paired_mdata.obs_names) - set(hidden)
    assert mosaic.mod["rna"].n_obs == paired_mdata.n_obs == mosaic.n_obs
    # ground truth holds the hidden values
    rows = paired_mdata.mod["adt"].obs_names.get_indexer(truth["data"].obs_names)
    np.testing.assert_array_equal(truth["data"].X.toarray(), before[rows].toarray())
    # the input is untouched
    assert paired_mdata.mod["adt"].n_obs == paired_mdata.n_obs
    assert (paired_mdata.mod["adt"].X != before).nnz == 0
    assert (mosaic.obs.loc[paired_mdata.obs_names, "batch"] == paired_mdata.obs["batch"]).all()


def test_hide_modality_by_cells_and_errors(paired_mdata):
    mask = np.zeros(paired_mdata.n_obs, bool)
    mask[:10] = True
    mosaic, truth = hide_modality(paired_mdata, "rna", cells=mask)
    assert mosaic.mod["rna"].n_obs == paired_mdata.n_obs - 10 and truth["data"].n_obs == 10
    with pytest.raises(ValueError, match="batches= and/or cells="):
        hide_modality(paired_mdata, "rna")
    with pytest.raises(ValueError, match="not in mdata.mod"):
        hide_modality(paired_mdata, "atac", batches=["batch1"])
    with pytest.raises(ValueError, match="Unknown batches"):
        hide_modality(paired_mdata, "rna", batches=["nope"])
    with pytest.raises(ValueError, match="empty"):
        hide_modality(paired_mdata, "rna", cells=paired_mdata.obs_names)


def test_make_mosaic3(paired_mdata):
    mosaic, truth = make_mosaic3(paired_mdata, mods=("rna", "adt"), seed=1)
    groups = truth["groups"]
    assert sorted(groups["paired"] + groups["rna_only"] + groups["adt_only"]) == [f"batch{i}" for i in range(1, 5)]
    assert all(len(g) >= 1 for g in groups.values())
    batch = mosaic.obs["batch"].astype(str)
    rna, adt = set(mosaic.mod["rna"].obs_names), set(mosaic.mod["adt"].obs_names)
    for name, b in batch.items():
        assert (name in rna) == (b not in groups["adt_only"])
        assert (name in adt) == (b not in groups["rna_only"])
    assert set(truth["hidden"]["adt"]["obs_names"]) == set(batch.index[batch.isin(groups["rna_only"])])
    same, _ = make_mosaic3(paired_mdata, mods=("rna", "adt"), seed=1)
    assert set(same.mod["rna"].obs_names) == rna
    with pytest.raises(ValueError, match="at least 3 batches"):
        make_mosaic3(generate_mock_dataset("paired", n_cells=40, n_genes=10, n_proteins=3,
                                           return_mudata=True)[0], mods=("rna", "adt"))


# ------------------------------------------------------------ package data and fetchers
def test_pbmc_mosaic_ships_with_the_package(monkeypatch, tmp_path):
    """No path, no $REMADOM_DATA_DIR, no ../shared/data: the packaged copy is read."""
    from remadom.datasets import REGISTRY
    from remadom.datasets._fetch import _sha256
    from remadom.datasets._loaders import _locate

    monkeypatch.delenv("REMADOM_DATA_DIR", raising=False)
    monkeypatch.setenv("REMADOM_DATA_URL", "file:///nonexistent")  # a fetch would fail
    monkeypatch.chdir(tmp_path)
    found = _locate("pbmc_cite_mosaic", None)
    assert found.parent.name == "data" and found.parent.parent.name == "datasets"
    assert _sha256(found) == REGISTRY["pbmc_cite_mosaic"].sha256
    mdata = load_pbmc_cite_mosaic()
    _check(mdata, {"rna": (1200, 500), "adt": (1200, 224)}, 1600)


@pytest.mark.realdata
def test_fetch_from_file_mirror_is_cached_and_checked(shared_data_dir, monkeypatch, tmp_path):
    from remadom.datasets import fetch_file

    monkeypatch.setenv("REMADOM_DATA_URL", shared_data_dir.resolve().as_uri())
    monkeypatch.setenv("REMADOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REMADOM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    path = fetch_file("bmmc_cite")
    assert path == tmp_path / "cache" / FILES["bmmc_cite"]
    assert path.read_bytes() == (shared_data_dir / FILES["bmmc_cite"]).read_bytes()
    _check(load_bmmc_cite(), {"rna": (600, 1000), "adt": (600, 134)}, 600)  # loader falls back to the cache
    monkeypatch.setenv("REMADOM_DATA_URL", "file:///nonexistent")
    assert fetch_file("bmmc_cite") == path  # cached: not fetched again


def test_fetch_rejects_a_wrong_checksum(monkeypatch, tmp_path):
    from remadom.datasets import fetch_file

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FILES["bmmc_multiome"]).write_bytes(b"not the real file")
    with pytest.raises(ValueError, match="SHA256"):
        fetch_file("bmmc_multiome", base_url=mirror.as_uri(), folder=tmp_path / "cache")


def test_fetch_without_url_names_the_options(monkeypatch, tmp_path):
    from remadom.datasets import fetch_file

    monkeypatch.delenv("REMADOM_DATA_URL", raising=False)
    with pytest.raises(FileNotFoundError, match="REMADOM_DATA_URL"):
        fetch_file("pbmc_reapseq", folder=tmp_path)


def test_fetch_extracts_a_member_of_a_public_archive(monkeypatch, tmp_path):
    """The PBMC entry downloads the scmidas wheel and extracts the file: same code on a local zip."""
    import hashlib
    import zipfile

    from remadom.datasets import _fetch

    payload = b"h5mu bytes"
    archive = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/data/file.h5mu", payload)
    entry = _fetch.RemoteFile("file.h5mu", hashlib.sha256(payload).hexdigest(), url=archive.as_uri(),
                              archive_member="pkg/data/file.h5mu", archive_sha256=_fetch._sha256(archive))
    monkeypatch.setitem(_fetch.REGISTRY, "toy", entry)
    monkeypatch.delenv("REMADOM_DATA_URL", raising=False)
    path = _fetch.fetch_file("toy", folder=tmp_path / "cache")
    assert path.read_bytes() == payload
    bad = _fetch.RemoteFile("bad.h5mu", "0" * 64, url=archive.as_uri(), archive_member="pkg/data/file.h5mu",
                            archive_sha256=entry.archive_sha256)
    monkeypatch.setitem(_fetch.REGISTRY, "bad", bad)
    with pytest.raises(ValueError, match="does not match the recorded SHA-256"):
        _fetch.fetch_file("bad", folder=tmp_path / "cache")


def test_registry_covers_every_loader():
    from remadom.datasets import REGISTRY

    assert set(REGISTRY) == set(FILES)
    assert all(REGISTRY[k].filename == FILES[k] for k in FILES)
    assert REGISTRY["pbmc_cite_mosaic"].url.startswith("https://files.pythonhosted.org/")
