"""Quiet by default (remadom.settings), lazy imports for the fast CLI commands, --version."""

import inspect
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import remadom
from remadom._settings import NOISY_WARNINGS, RemadomSettings
from remadom.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["schema", "--check", "--out-dir", "schema"],
                                  ["manifest", "validate", "/nonexistent"], ["train", "--dry-run"]])
def test_fast_commands_do_not_import_torch(argv):
    code = ("import sys; from remadom.cli.main import main; rc = main(%r); "
            "assert 'torch' not in sys.modules and 'scvi' not in sys.modules, 'imported torch'; print('rc', rc)")
    proc = _run(code % argv if "schema" not in argv else f"import os; os.chdir({str(ROOT)!r}); " + code % argv)
    assert "imported torch" not in proc.stderr and "rc " in proc.stdout, proc.stderr[-2000:]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"remadom {remadom.__version__}"


def test_config_defaults_match_the_model_signatures():
    """The config reads the model's defaults from source (no torch import); they must agree."""
    from remadom.config._signature_defaults import signature_defaults
    from remadom.model import REMADOM

    for method in ("__init__", "train"):
        params = inspect.signature(getattr(REMADOM, method)).parameters
        for name, value in signature_defaults(method).items():
            assert value == params[name].default, (method, name)


def test_config_registry_names_match_the_registries():
    """The config reads likelihood / kind / encoder-input names from source (no torch import); they must agree."""
    from remadom.config._registry_names import (
        builtin_encoder_inputs,
        builtin_likelihoods,
        builtin_modality_kinds,
    )
    from remadom.modalities import MODALITY_KINDS
    from remadom.nn.likelihoods import LIKELIHOODS
    from remadom.nn.networks import ENCODER_INPUTS

    assert builtin_likelihoods() == tuple(sorted(LIKELIHOODS))
    assert builtin_modality_kinds() == tuple(sorted(MODALITY_KINDS))
    assert builtin_encoder_inputs() == ENCODER_INPUTS


def test_config_accepts_a_likelihood_registered_at_run_time(monkeypatch):
    from pydantic import ValidationError

    from remadom.config import RunConfig
    from remadom.nn.likelihoods import LIKELIHOODS

    config = {"model": {"likelihoods": {"rna": "my_head"}}}
    with pytest.raises(ValidationError, match="Unknown likelihood 'my_head'"):
        RunConfig.model_validate(config)
    monkeypatch.setitem(LIKELIHOODS, "my_head", LIKELIHOODS["nb"])  # as register_likelihood does
    assert RunConfig.model_validate(config).model.likelihoods == {"rna": "my_head"}


def test_verbosity_hides_and_restores_library_messages():
    s = RemadomSettings("warning")
    s.apply()
    assert logging.getLogger("lightning.pytorch").level == logging.WARNING
    category, message = NOISY_WARNINGS[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        s.apply()  # filters go in front
        warnings.warn("From 0.4 .update() will not pull obs/var columns from individual modalities", category, stacklevel=2)
        warnings.warn("a real problem", UserWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["a real problem"]
    s.verbosity = "info"
    assert logging.getLogger("lightning.pytorch").level == logging.INFO
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        s.apply()
        warnings.warn("From 0.4 .update() will not pull obs/var columns from individual modalities", category, stacklevel=2)
    assert len(caught) == 1
    remadom.settings.apply()  # back to the session's setting


def test_bad_verbosity_is_refused():
    with pytest.raises(ValueError, match="verbosity must be one of"):
        RemadomSettings("loud")


@pytest.mark.slow
def test_training_prints_no_library_banner():
    """Smoke test of the default output: no Lightning banner, tip or known warning (a fresh process, 15-60 s)."""
    code = """
import sys
sys.path.insert(0, {!r})
from conftest import make_mosaic_adata
from remadom import REMADOM
adata = make_mosaic_adata(n=60)
REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
REMADOM(adata, n_latent=4, n_hidden=16).train(max_epochs=1, enable_progress_bar=False)
""".format(str(ROOT / "tests"))
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "log_every_n_steps", "Seed set"):
        assert noise not in out, out


def test_view_anndata_setup_describes_the_mudata_modalities(mosaic_mdata, capsys):
    from remadom import REMADOM

    REMADOM.setup_mudata(mosaic_mdata, modalities={"rna": "rna", "atac": "atac", "adt": "adt"}, batch_key="batch")
    model = REMADOM(mosaic_mdata, n_latent=4, n_hidden=16)
    model.view_anndata_setup()  # scvi-tools 1.4.2 + rich 15: AttributeError 'rich' has no 'pretty' without the fix
    out = capsys.readouterr().out
    n_adt = mosaic_mdata.mod["adt"].n_obs
    assert "mdata.mod['adt'].X" in out and f"{n_adt} / {mosaic_mdata.n_obs}" in out
    assert "_remadom" not in out and "setup_mudata" in out  # the user's terms, not the padded view's


def test_view_anndata_setup_for_anndata_keeps_the_scvi_registry(mosaic_adata, capsys):
    from remadom import REMADOM

    REMADOM.setup_anndata(mosaic_adata, rna_layer="counts", atac_obsm_key="X_atac", adt_obsm_key="X_adt",
                          batch_key="batch")
    REMADOM(mosaic_adata, n_latent=4, n_hidden=16).view_anndata_setup()
    out = capsys.readouterr().out
    assert "adata.obsm['X_atac']" in out and "(obs['has_atac'])" in out and "Data Registry" in out


def test_load_reads_the_model_file_once(monkeypatch):
    """REMADOM.load reads model.pt once (scvi-tools' load read it twice: "already downloaded" twice)."""
    import torch
    from conftest import make_mosaic_adata

    from remadom import REMADOM
    from remadom.model import _io

    saved = Path(__file__).parent / "data" / "tiny_model_plain_format"
    reads, loads = [], []
    real_read, real_load = _io._read, torch.load
    monkeypatch.setattr(_io, "_read", lambda path, trusted: reads.append(path) or real_read(path, trusted))
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(str(f)) or real_load(f, *a, **k))
    REMADOM.load(saved, adata=make_mosaic_adata(n=60, seed=3))
    assert [Path(p).name for p in reads] == ["model.pt"]
    assert [Path(p).name for p in loads] == ["model.pt"]
