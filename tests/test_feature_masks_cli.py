"""``data.feature_masks`` of the run configuration: table files, ``from_data``, bad sources."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from pydantic import ValidationError

from remadom.cli.main import main
from remadom.config import RunConfig
from remadom.data import concat_mosaic

ARGS = ["--set", "optim.max_epochs=1", "--set", "optim.batch_size=32", "--set", "model.n_latent=4",
        "--set", "model.n_hidden=16", "--set", "logging.figures=false", "--set", "logging.snapshot_every=0",
        "--set", "data.batch_key=batch", "--no-progress"]


def _panels(rng, n=40):
    """Two CITE-seq inputs joined by concat_mosaic: overlapping antibody panels, one per batch."""
    import mudata as md

    def _adata(prefix, features, rate):
        x = sp.csr_matrix(rng.poisson(rate, size=(n, len(features))).astype(np.float32))
        return ad.AnnData(X=x, obs=pd.DataFrame(index=[f"{prefix}{i}" for i in range(n)]),
                          var=pd.DataFrame(index=list(features)))

    genes = [f"g{i}" for i in range(12)]
    inputs = {name: md.MuData({"rna": _adata(name, genes, 3.0), "adt": _adata(name, panel, 8.0)})
              for name, panel in (("panelA", [f"p{i}" for i in range(6)]), ("panelB", [f"p{i}" for i in range(3, 9)]))}
    return concat_mosaic(inputs, batch_key="batch")


def _masks_of_run(save_dir):
    (run_dir,) = [p for p in save_dir.iterdir() if p.is_dir()]
    state = torch.load(run_dir / "model" / "model.pt", map_location="cpu", weights_only=False)
    return {k: v for k, v in state["model_state_dict"].items() if k.startswith("feature_masks.")}


@pytest.mark.parametrize("source", ["table", pytest.param("from_data", marks=pytest.mark.slow)])
def test_cli_train_with_feature_masks(tmp_path, rng, source):
    """One epoch of `remadom train` on two antibody panels; the mask reaches the saved model."""
    mdata = _panels(rng)
    measured = mdata.mod["adt"].varm["remadom_measured"].T  # batch x protein
    if source == "table":
        del mdata.mod["adt"].varm["remadom_measured"]  # only the table states the mask
        table = tmp_path / "adt_panels.csv"
        measured.to_csv(table)
        value = str(table)
    else:
        value = "from_data"
    path = tmp_path / "panels.h5mu"
    mdata.write(path)
    save_dir = tmp_path / "runs"
    code = main(["train", "--set", f"data.path={path}", "--set", f"data.feature_masks.adt={value}",
                 "--save-dir", str(save_dir), *ARGS])
    assert code == 0
    masks = _masks_of_run(save_dir)
    np.testing.assert_array_equal(masks["feature_masks.mask_adt"].numpy(), measured.to_numpy())


def test_cli_feature_masks_from_data_without_a_mask_is_a_data_error(tmp_path, rng, capsys):
    mdata = _panels(rng)
    del mdata.mod["adt"].varm["remadom_measured"]
    path = tmp_path / "panels.h5mu"
    mdata.write(path)
    code = main(["train", "--set", f"data.path={path}", "--set", "data.feature_masks.adt=from_data",
                 "--save-dir", str(tmp_path / "runs"), *ARGS])
    assert code == 3
    assert "states no feature mask for 'adt'" in capsys.readouterr().err


def test_cli_feature_mask_table_must_exist(tmp_path, rng, capsys):
    path = tmp_path / "panels.h5mu"
    _panels(rng).write(path)
    code = main(["train", "--set", f"data.path={path}", "--set", f"data.feature_masks.adt={tmp_path / 'no.csv'}",
                 "--save-dir", str(tmp_path / "runs"), *ARGS])
    assert code == 3
    assert "no.csv does not exist" in capsys.readouterr().err


def test_config_feature_masks_validation():
    with pytest.raises(ValidationError, match="table file ending in"):
        RunConfig.model_validate({"data": {"feature_masks": {"adt": "panels.xlsx"}, "batch_key": "batch"}})
    with pytest.raises(ValidationError, match="set data.batch_key"):
        RunConfig.model_validate({"data": {"feature_masks": {"adt": "from_data"}}})
    cfg = RunConfig.model_validate({"data": {"feature_masks": {"adt": "a.parquet"}, "batch_key": "b"}})
    assert cfg.data.feature_masks == {"adt": "a.parquet"}


def _per_cell_panels(rng, tmp_path):
    mdata = _panels(rng)
    adt = mdata.mod["adt"]
    measured = (mdata.obs.loc[adt.obs_names, "batch"].to_numpy()[:, None] == "panelA") == (
        np.arange(adt.n_vars) < 6)[None, :]  # each cell measured its own panel
    measured[:, 3:6] = True  # the shared proteins
    del adt.varm["remadom_measured"]  # only the per-cell mask states what was measured
    adt.obsm["adt_measured"] = measured
    path = tmp_path / "panels.h5mu"
    mdata.write(path)
    return path


@pytest.mark.slow  # ~6-11 s
def test_cli_train_with_a_per_cell_mask(tmp_path, rng):
    """One epoch with `data.feature_masks.adt.obsm=<key>`: the modality's own obsm of an .h5mu."""
    from remadom import REMADOM
    from remadom.model._feature_masks import FEATURE_MASKS_REGISTRY_KEY

    path = _per_cell_panels(rng, tmp_path)
    save_dir = tmp_path / "runs"
    code = main(["train", "--set", f"data.path={path}", "--set", "data.feature_masks.adt.obsm=adt_measured",
                 "--save-dir", str(save_dir), *ARGS])
    assert code == 0
    (run_dir,) = [p for p in save_dir.iterdir() if p.is_dir()]
    fields = REMADOM.load_registry(run_dir / "model")["field_registries"]
    assert fields[FEATURE_MASKS_REGISTRY_KEY]["state_registry"]["cell_masks"] == {"adt": "adt:adt_measured"}


def test_cli_per_cell_mask_key_must_exist(tmp_path, rng, capsys):
    path = _per_cell_panels(rng, tmp_path)
    code = main(["train", "--set", f"data.path={path}", "--set", "data.feature_masks.adt.obsm=other",
                 "--save-dir", str(tmp_path / "runs2"), *ARGS])
    assert code == 3
    assert "data.feature_masks.adt.obsm='other' is not in mdata.mod['adt'].obsm" in capsys.readouterr().err


def test_config_per_cell_feature_mask_validation():
    cfg = RunConfig.model_validate({"data": {"feature_masks": {"adt": {"obsm": "adt_measured"}}}})  # no batch_key
    assert cfg.data.feature_masks["adt"].obsm == "adt_measured"
    assert RunConfig.model_validate(cfg.model_dump()).data.feature_masks["adt"].obsm == "adt_measured"
    with pytest.raises(ValidationError, match="obsm"):
        RunConfig.model_validate({"data": {"feature_masks": {"adt": {"layer": "m"}}}})
