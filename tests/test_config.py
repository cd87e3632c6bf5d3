"""Run configuration: validation, resolution order, schema, example configs."""

import json
from pathlib import Path

import pytest
import yaml

from remadom.config import (
    ConfigError,
    RunConfig,
    cli_overrides,
    env_overrides,
    resolve_config,
    schema_text,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]

MOCK_EXAMPLE = """
name: mock_mosaic
seed: 0
data: {path: examples/mock/mock_mosaic_multiome.h5ad, rna_layer: counts, atac_obsm_key: X_atac, adt_obsm_key: X_adt, mask_keys: {rna: has_rna, atac: has_atac, adt: has_adt}, batch_key: batch, labels_key: cluster, val_split: 0.1}
optim: {max_epochs: 20, batch_size: 128}
"""


def test_defaults_live_in_the_models():
    cfg = RunConfig()
    assert cfg.model.n_latent == 20 and cfg.optim.lr == 4e-3 and cfg.trainer.precision == "32"
    assert cfg.data.path is None and cfg.data.mock.problem == "mosaic"
    assert cfg.run_name == "remadom"
    # stopping follows REMADOM.train: null = its epoch heuristic, early stopping when there are validation cells
    assert cfg.optim.max_epochs is None and cfg.optim.early_stopping is None
    assert cfg.optim.early_stopping_patience is None


def test_mock_example_shape_validates():
    cfg = validate_config(yaml.safe_load(MOCK_EXAMPLE))
    assert cfg.data.mask_keys == {"rna": "has_rna", "atac": "has_atac", "adt": "has_adt"}
    assert cfg.optim.max_epochs == 20 and cfg.optim.batch_size == 128 and cfg.data.val_split == 0.1


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_committed_configs_validate(path):
    resolve_config(path, environ={})


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"model": {"n_latnet": 3}}, r"model\.n_latnet: unknown key"),
        ({"colour": "red"}, r"colour: unknown key"),
        ({"data": {"mock": {"n_cels": 3}}}, r"data\.mock\.n_cels: unknown key"),
        ({"model": {"n_latent": 0}}, r"model\.n_latent: Input should be greater than 0"),
        ({"data": {"val_split": 1.5}}, r"data\.val_split"),
        ({"data": {"path": "cells.csv"}}, r"data\.path.*\.h5ad or \.h5mu"),
        ({"trainer": {"precision": "64"}}, r"trainer\.precision"),
        ({"model": {"likelihoods": {"rna": "gamma"}}}, r"model\.likelihoods\.rna"),
        ({"data": {"path": "x.h5ad", "modalities": {"rna": {"mod": "rna"}}}}, r"MuData"),
        ({"data": {"modalities": {"h3": {"obsm": "X_h3", "likelihood": "negbin"}}}}, r"Unknown likelihood 'negbin'"),
        ({"data": {"modalities": {"h3": {"obsm": "X_h3", "kind": "chromatin"}}}}, r"unknown modality kind"),
        ({"data": {"modalities": {"h3": {"obsm": "X_h3", "layer": "c"}}}}, r"not both"),
        ({"data": {"modalities": {"rna": {}}, "rna_layer": "counts"}}, r"not both"),
        ({"name": "bad name/with slash"}, r"name"),
        ({"model": {"fusion": "sum"}}, r"model\.fusion"),
        ({"model": {"paired_anchor_weight": -1}}, r"model\.paired_anchor_weight"),
        ({"model": {"paired_anchor_weight": "on"}}, r"model\.paired_anchor_weight"),
        ({"model": {"decoder_rank": {"atac": 0}}}, r"model\.decoder_rank\.atac"),
        ({"model": {"encoder_rank": {"atac": "high"}}}, r"model\.encoder_rank\.atac"),
    ],
)
def test_validation_errors(raw, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(raw)


def test_data_modalities_register_any_modality():
    cfg = validate_config({"data": {"modalities": {
        "rna": {"layer": "counts"},
        "h3k27me3": {"obsm": "X_chip", "kind": "counts", "likelihood": "nb", "mask": "has_chip"},
    }}})
    assert cfg.data.modalities["h3k27me3"].setup_entry() == {
        "obsm": "X_chip", "kind": "counts", "likelihood": "nb", "mask": "has_chip"}
    mu = validate_config({"data": {"path": "x.h5mu", "modalities": {"rna": "gex", "adt": {"mod": "prot"}}}})
    assert mu.data.modalities["rna"] == "gex" and mu.data.modalities["adt"].mod == "prot"


def test_schema_lists_the_registered_likelihoods():
    from remadom.nn import LIKELIHOODS

    schema = json.loads(schema_text())
    assert schema["$defs"]["ModalityConfig"]["properties"]["likelihood"]["anyOf"][0]["enum"] == sorted(LIKELIHOODS)


def test_precision_int_is_accepted_as_string():
    assert validate_config({"trainer": {"precision": 32}}).trainer.precision == "32"


def test_resolution_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\nmodel: {n_latent: 8, n_hidden: 64}\noptim: {lr: 0.01}\n")
    env = {"REMADOM__MODEL__N_LATENT": "16", "REMADOM__MODEL__N_LAYERS": "3", "REMADOM__SEED": "5",
           "OTHER": "x", "REMADOM_DATA_DIR": "/ignored"}
    cfg, raw = resolve_config(path, ["model.n_latent=32", "optim.batch_size=64"], environ=env)
    assert cfg.model.n_latent == 32  # --set beats env beats file
    assert cfg.model.n_layers == 3  # env beats default
    assert cfg.seed == 5  # env beats file
    assert cfg.model.n_hidden == 64 and cfg.optim.lr == 0.01  # file beats default
    assert cfg.optim.batch_size == 64
    assert cfg.model.dropout_rate == 0.1  # default
    assert raw == {"seed": 1, "model": {"n_latent": 8, "n_hidden": 64}, "optim": {"lr": 0.01}}


def test_overrides_are_yaml_scalars():
    tree = cli_overrides(["model.n_latent=32", "data.path=null", "optim.early_stopping=true",
                          "data.categorical_covariate_keys=[a, b]", "name=run1", "optim.lr=1e-4"])
    assert tree["model"]["n_latent"] == 32 and tree["data"]["path"] is None
    assert tree["optim"]["early_stopping"] is True and tree["data"]["categorical_covariate_keys"] == ["a", "b"]
    assert tree["name"] == "run1"
    assert env_overrides({"REMADOM__MODEL__LIKELIHOODS__RNA": "zinb"}) == {"model": {"likelihoods": {"rna": "zinb"}}}


def test_unknown_override_key_errors():
    with pytest.raises(ConfigError, match=r"model\.n_latnet: unknown key"):
        resolve_config(None, ["model.n_latnet=3"], environ={})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cli_overrides(["model.n_latent"])
    with pytest.raises(ConfigError, match="not a section"):
        cli_overrides(["seed=1", "seed.x=2"])


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(path, environ={})
    path.write_text("model: {n_latent: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(path, environ={})


def test_schema_file_is_up_to_date():
    committed = (ROOT / "schema" / "config.schema.json").read_text()
    assert committed == schema_text(), "run `remadom schema` and commit schema/config.schema.json"


def test_schema_rejects_unknown_keys():
    import json

    import jsonschema

    schema = json.loads(schema_text())
    jsonschema.validate(yaml.safe_load(MOCK_EXAMPLE), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model": {"n_latnet": 3}}, schema)


def test_schema_command_check(tmp_path):
    from remadom.cli.main import main

    assert main(["schema", "--out-dir", str(tmp_path)]) == 0
    assert main(["schema", "--out-dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "config.schema.json").write_text("{}")
    assert main(["schema", "--out-dir", str(tmp_path), "--check"]) == 2


def test_model_optim_schedule_sections_are_the_api_signatures():
    """The CLI calls REMADOM(data, **cfg.model) and model.train(**cfg.optim, **cfg.schedule)."""
    import inspect

    from remadom import REMADOM
    from remadom.config._models import ModelConfig, OptimConfig, ScheduleConfig

    assert set(ModelConfig.model_fields) <= set(inspect.signature(REMADOM.__init__).parameters)
    train = set(inspect.signature(REMADOM.train).parameters)
    # early_stopping_patience is a Lightning/scvi Trainer argument (train's **trainer_kwargs)
    assert set(OptimConfig.model_fields) - {"early_stopping_patience"} <= train
    assert set(ScheduleConfig.model_fields) <= train


def test_confounded_alignment_switches_are_in_the_config():
    """``model.fusion`` / ``model.paired_anchor_weight`` reach REMADOM; the choices are the fusions it has."""
    import typing

    from remadom.config._models import ModelConfig
    from remadom.nn._alignment_anchor import FUSIONS

    cfg = RunConfig()
    assert cfg.model.fusion == "auto" and cfg.model.paired_anchor_weight == "auto"
    off = validate_config({"model": {"fusion": "poe", "paired_anchor_weight": 0}})
    assert off.model.fusion == "poe" and off.model.paired_anchor_weight == 0.0
    choices = set(typing.get_args(ModelConfig.model_fields["fusion"].annotation))
    assert choices == {"auto", *FUSIONS}


def test_low_rank_options_are_in_the_config():
    """``model.decoder_rank`` / ``model.encoder_rank`` parse to ``{modality: rank}`` and default to full rank."""
    cfg = RunConfig()
    assert cfg.model.decoder_rank is None and cfg.model.encoder_rank is None
    ranked = validate_config({"model": {"decoder_rank": {"atac": 32}, "encoder_rank": {"atac": 16}}})
    assert ranked.model.decoder_rank == {"atac": 32} and ranked.model.encoder_rank == {"atac": 16}
