"""Mock data generator: shapes, dtypes, scenario masks, hidden zeros, seeding, MuData, files."""

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from remadom.data.mock import (
    PROBLEM_TYPES,
    generate_mock_dataset,
    main,
    mock_config_yaml,
    write_mock,
)

SMALL = {"n_cells": 200, "n_genes": 60, "n_peaks": 500, "n_proteins": 8}
EXPECTED_MODS = {
    "paired": {"rna", "adt"},
    "unpaired": {"rna", "atac"},
    "bridge": {"rna", "atac"},
    "mosaic": {"rna", "atac", "adt"},
    "prediction": {"rna", "atac"},
    "hierarchical": {"rna", "atac", "adt"},
}


def _masks(adata):
    return {m: adata.obs[f"has_{m}"].to_numpy() for m in ("rna", "atac", "adt") if f"has_{m}" in adata.obs}


@pytest.fixture(scope="module")
def datasets():
    return {p: generate_mock_dataset(p, return_truth=True, **SMALL) for p in PROBLEM_TYPES}


@pytest.mark.parametrize("problem", PROBLEM_TYPES)
def test_layout_shapes_and_dtypes(datasets, problem):
    adata, keys, truth = datasets[problem]
    n = SMALL["n_cells"]
    mods = EXPECTED_MODS[problem]
    assert adata.shape == (n, SMALL["n_genes"])
    assert set(_masks(adata)) == mods
    assert keys["mask_keys"] == {m: f"has_{m}" for m in ("rna", "atac", "adt") if m in mods}
    for mask in _masks(adata).values():
        assert mask.dtype == bool
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    assert sp.isspmatrix_csr(adata.layers["counts"]) and adata.layers["counts"].dtype == np.float32
    if "atac" in mods:
        atac = adata.obsm["X_atac"]
        assert sp.isspmatrix_csr(atac) and atac.dtype == np.float32 and atac.shape == (n, SMALL["n_peaks"])
        assert set(np.unique(atac.data)) == {1.0}
        assert 0.005 < atac.nnz / np.prod(atac.shape) < 0.2
    else:
        assert "X_atac" not in adata.obsm and keys["atac_obsm_key"] is None
    if "adt" in mods:
        adt = adata.obsm["X_adt"]
        assert isinstance(adt, np.ndarray) and adt.dtype == np.float32 and adt.shape == (n, SMALL["n_proteins"])
        assert len(adata.uns["adt_names"]) == SMALL["n_proteins"]
    else:
        assert "X_adt" not in adata.obsm and keys["adt_obsm_key"] is None
    for col in ("batch", "dataset", "cluster", "split"):
        assert adata.obs[col].dtype == "category"
    assert truth["z"].shape == (n, 8)
    assert np.array_equal(adata.obs["cluster"].cat.codes.to_numpy(), truth["cluster"])
    # counts are integers
    assert np.all(adata.X.data == np.round(adata.X.data))


@pytest.mark.parametrize("problem", PROBLEM_TYPES)
def test_hidden_entries_are_zero_and_truth_matches_observed(datasets, problem):
    adata, _, truth = datasets[problem]
    stored = {"rna": adata.layers["counts"], "atac": adata.obsm.get("X_atac"), "adt": adata.obsm.get("X_adt")}
    for mod, mask in _masks(adata).items():
        x = stored[mod]
        x = x.toarray() if sp.issparse(x) else x
        full = truth[mod].toarray() if sp.issparse(truth[mod]) else truth[mod]
        assert np.all(x[~mask] == 0)
        np.testing.assert_array_equal(x[mask], full[mask])
        assert np.all(truth["masks"][mod].to_numpy() == mask)
        # observed cells carry signal (no all-zero observed RNA/ADT rows in this regime)
        if mod in {"rna", "adt"}:
            assert np.all(x[mask].sum(1) > 0)


def test_scenario_definitions(datasets):
    m = {p: _masks(datasets[p][0]) for p in PROBLEM_TYPES}
    obs = {p: datasets[p][0].obs for p in PROBLEM_TYPES}
    # paired: CITE-like, two batches
    assert m["paired"]["rna"].all() and m["paired"]["adt"].all()
    assert obs["paired"]["batch"].nunique() == 2
    # unpaired: disjoint cohorts covering every cell
    assert not (m["unpaired"]["rna"] & m["unpaired"]["atac"]).any()
    assert (m["unpaired"]["rna"] | m["unpaired"]["atac"]).all()
    # bridge: ~5% paired cells
    both = m["bridge"]["rna"] & m["bridge"]["atac"]
    assert both.sum() == round(0.05 * SMALL["n_cells"])
    assert (obs["bridge"]["batch"][both] == "bridge").all()
    assert (m["bridge"]["rna"] | m["bridge"]["atac"]).all()
    # mosaic: every cell keeps something
    stacked = np.column_stack(list(m["mosaic"].values()))
    assert stacked.any(axis=1).all() and 0 < stacked.all(axis=1).sum() < SMALL["n_cells"]
    # prediction: train paired, eval RNA only
    split = obs["prediction"]["split"].to_numpy()
    assert set(split) == {"train", "eval"}
    assert m["prediction"]["rna"].all()
    assert m["prediction"]["atac"][split == "train"].all() and not m["prediction"]["atac"][split == "eval"].any()
    # hierarchical: per-study modality mixes
    study = obs["hierarchical"]["dataset"].to_numpy()
    h = m["hierarchical"]
    expected = {"studyA": (True, True, False), "studyB": (True, False, True), "studyC": (False, True, False)}
    for name, (rna, atac, adt) in expected.items():
        sel = study == name
        assert sel.any()
        assert (h["rna"][sel] == rna).all() and (h["atac"][sel] == atac).all() and (h["adt"][sel] == adt).all()
    assert obs["hierarchical"]["batch"].nunique() == 6


def test_mosaic_coverage_knob():
    adata, _ = generate_mock_dataset("mosaic", coverage=(1.0, 0.2, 0.2), n_cells=400, n_genes=20,
                                     n_peaks=50, n_proteins=4)
    masks = _masks(adata)
    assert masks["rna"].all()
    assert 0.1 < masks["atac"].mean() < 0.3
    with pytest.raises(ValueError, match="coverage"):
        generate_mock_dataset("mosaic", coverage=(0.0, 0.5, 0.5), **SMALL)


def test_seeding():
    a1, _ = generate_mock_dataset("mosaic", seed=3, **SMALL)
    a2, _ = generate_mock_dataset("mosaic", seed=3, **SMALL)
    a3, _ = generate_mock_dataset("mosaic", seed=4, **SMALL)
    assert (a1.X != a2.X).nnz == 0 and (a1.obsm["X_atac"] != a2.obsm["X_atac"]).nnz == 0
    np.testing.assert_array_equal(a1.obsm["X_adt"], a2.obsm["X_adt"])
    assert a1.obs.equals(a2.obs)
    assert (a1.X != a3.X).nnz > 0
    assert not np.array_equal(a1.obs["has_rna"], a3.obs["has_rna"])


def test_modalities_use_independent_streams():
    a1, _ = generate_mock_dataset("mosaic", **SMALL)
    a2, _ = generate_mock_dataset("mosaic", **{**SMALL, "n_peaks": 700})
    assert (a1.X != a2.X).nnz == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown problem_type"):
        generate_mock_dataset("bogus", **SMALL)
    with pytest.raises(TypeError, match="Unknown noise knobs"):
        generate_mock_dataset("paired", not_a_knob=1.0, **SMALL)


@pytest.mark.parametrize("problem", ["mosaic", "paired"])
def test_mudata_is_unpadded_equivalent(problem):
    adata, _ = generate_mock_dataset(problem, **SMALL)
    mdata, keys = generate_mock_dataset(problem, return_mudata=True, **SMALL)
    assert set(keys) == {"modalities", "batch_key", "labels_key"}
    assert set(mdata.mod) == EXPECTED_MODS[problem] == set(keys["modalities"])
    assert set(mdata.obs_names) == set(adata.obs_names)
    stored = {"rna": adata.layers["counts"], "atac": adata.obsm.get("X_atac"), "adt": adata.obsm.get("X_adt")}
    for mod, mask in _masks(adata).items():
        sub = mdata.mod[mod]
        assert set(sub.obs_names) == set(adata.obs_names[mask])
        rows = adata.obs_names.get_indexer(sub.obs_names)
        x = stored[mod][rows]
        x = x.toarray() if sp.issparse(x) else x
        assert sp.issparse(sub.X)
        np.testing.assert_array_equal(sub.X.toarray(), x)
    for col in ("batch", "dataset", "cluster", "split"):
        np.testing.assert_array_equal(mdata.obs.loc[adata.obs_names, col].astype(str), adata.obs[col].astype(str))


def test_keys_match_setup_signature():
    import inspect

    import remadom

    params = set(inspect.signature(remadom.REMADOM.setup_anndata).parameters)
    _, keys = generate_mock_dataset("mosaic", **SMALL)
    assert set(keys) <= params
    params = set(inspect.signature(remadom.REMADOM.setup_mudata).parameters)
    _, keys = generate_mock_dataset("mosaic", return_mudata=True, **SMALL)
    assert set(keys) <= params


def test_config_yaml_sections():
    _, keys = generate_mock_dataset("paired", **SMALL)
    cfg = yaml.safe_load(mock_config_yaml("mock_paired", "examples/mock/x.h5ad", keys))
    assert set(cfg) == {"name", "seed", "data", "optim"}
    assert cfg["data"] == {
        "path": "examples/mock/x.h5ad", "rna_layer": "counts", "adt_obsm_key": "X_adt",
        "mask_keys": {"rna": "has_rna", "adt": "has_adt"}, "batch_key": "batch", "labels_key": "cluster",
        "val_split": 0.1,
    }
    assert cfg["optim"] == {"max_epochs": 20, "batch_size": 128}
    no_rna = {**keys, "use_rna": False, "rna_layer": None, "mask_keys": {"adt": "has_adt"}}
    data = yaml.safe_load(mock_config_yaml("x", "x.h5ad", no_rna))["data"]
    assert data["use_rna"] is False and "rna_layer" not in data


def test_write_mock_and_cli(tmp_path):
    import anndata as ad

    files = write_mock("bridge", tmp_path / "b.h5ad", config_out=tmp_path / "b.yaml", **SMALL)
    back = ad.read_h5ad(files.data_path)
    assert sp.issparse(back.obsm["X_atac"]) and back.obs["has_atac"].dtype == bool
    assert yaml.safe_load(files.config_path.read_text())["data"]["path"] == str(tmp_path / "b.h5ad")
    out = tmp_path / "m.h5mu"
    assert main(["--problem", "mosaic", "--out", str(out), "--cells", "50", "--genes", "20",
                 "--peaks", "40", "--proteins", "4"]) == 0
    import mudata as md

    assert set(md.read_h5mu(out).mod) == {"rna", "atac", "adt"}
    with pytest.raises(ValueError, match="config_out"):
        write_mock("mosaic", tmp_path / "x.h5mu", config_out=tmp_path / "x.yaml", **SMALL)


def test_script_and_remadom_mock_are_one_command(tmp_path):
    """scripts/make_mock_multimodal.py flags are aliases of `remadom mock`'s; both write the same data."""
    import anndata as ad

    from remadom.cli.main import main as cli_main

    sizes = ["--genes", "20", "--peaks", "30", "--proteins", "4", "--seed", "3"]
    assert main(["--problem", "paired", "--out", str(tmp_path / "a.h5ad"), "--cells", "40", *sizes]) == 0
    assert cli_main(["mock", "paired", "--out", str(tmp_path / "b.h5ad"), "--n-cells", "40", "--n-genes", "20",
                     "--n-peaks", "30", "--n-proteins", "4", "--seed", "3"]) == 0
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    assert a.shape == b.shape == (40, 20)
    np.testing.assert_array_equal(a.layers["counts"].toarray(), b.layers["counts"].toarray())
