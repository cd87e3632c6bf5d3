"""--env-policy: the environment recorded in manifest.json, compared when a run is resumed or re-run."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from remadom.cli._env_policy import (
    check_environment,
    current_environment,
    environment_differences,
    find_lockfile,
    packages_sha256,
)
from remadom.cli._errors import EXIT_ENV_POLICY, EnvironmentMismatchError, EnvironmentPolicyError
from remadom.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.mock.n_cells=80", "data.mock.n_genes=20", "data.mock.n_peaks=30", "data.mock.n_proteins=5",
        "model.n_latent=2", "model.n_hidden=8", "optim.batch_size=32", "optim.max_epochs=1",
        "logging.figures=false", "logging.snapshot_every=0"]


def _env(**packages):
    return {"torch": "2.13.0", "scvi_tools": "1.4.2", "lightning": "2.6.6", "packages": dict(packages),
            "lockfile": None}


# ------------------------------------------------------------------ comparison
def test_differences_name_changed_added_and_removed_packages():
    recorded = _env(numpy="2.0.0", scipy="1.17.1", gone="1.0")
    current = _env(numpy="2.4.6", scipy="1.17.1", new="0.3")
    diffs = environment_differences(recorded, current)
    assert diffs == ["gone 1.0 -> (not installed)", "new (not installed) -> 0.3", "numpy 2.0.0 -> 2.4.6"]
    assert environment_differences(recorded, recorded) == []


def test_differences_include_the_lockfile_hash():
    recorded = {**_env(a="1"), "lockfile": {"name": "uv.lock", "sha256": "a" * 64}}
    current = {**_env(a="1"), "lockfile": {"name": "uv.lock", "sha256": "b" * 64}}
    (diff,) = environment_differences(recorded, current)
    assert diff.startswith("lockfile uv.lock (sha256 aaaaaaaaaaaa) -> uv.lock (sha256 bbbbbbbbbbbb)")


def test_old_manifest_without_packages_compares_library_versions():
    recorded = {"torch": "2.12.0", "scvi_tools": "1.4.2", "lightning": "2.6.6"}
    assert environment_differences(recorded, _env()) == ["torch 2.12.0 -> 2.13.0"]


def test_strict_stops_with_exit_code_6_naming_the_packages():
    with pytest.raises(EnvironmentPolicyError, match=r"numpy 2\.0\.0 -> 2\.4\.6") as info:
        check_environment(_env(numpy="2.0.0"), _env(numpy="2.4.6"), "strict", source="the run in R")
    assert info.value.exit_code == EXIT_ENV_POLICY == 6
    assert "--force" in info.value.fix
    assert check_environment(_env(numpy="1"), _env(numpy="1"), "strict")["differences"] == []


def test_strict_with_force_and_warn_log_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="remadom"):
        check = check_environment(_env(numpy="2.0.0"), _env(numpy="2.4.6"), "strict", force=True)
    assert check == {"policy": "strict", "reference": "the recorded run", "differences": ["numpy 2.0.0 -> 2.4.6"],
                     "forced": True}
    assert "numpy 2.0.0 -> 2.4.6" in caplog.text and "--force" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remadom"):
        check = check_environment(_env(numpy="2.0.0"), _env(numpy="2.4.6"), "warn")
    assert check["forced"] is False and "numpy 2.0.0 -> 2.4.6" in caplog.text


def test_warn_still_refuses_to_resume_with_other_core_libraries():
    recorded, current = {**_env(), "torch": "2.12.0"}, _env()
    with pytest.raises(EnvironmentMismatchError, match="torch 2.12.0 -> 2.13.0") as info:
        check_environment(recorded, current, "warn", resuming=True)
    assert info.value.exit_code == 4
    assert check_environment(recorded, current, "warn", resuming=False)["differences"] == []  # packages equal
    assert check_environment(recorded, current, "warn", force=True, resuming=True) is not None


def test_ignore_compares_nothing():
    assert check_environment(_env(numpy="1"), _env(numpy="2"), "ignore") is None
    assert check_environment({**_env(), "torch": "0"}, _env(), "ignore", resuming=True) is None
    assert check_environment(None, _env(), "strict") is None
    with pytest.raises(ValueError, match="env policy must be one of"):
        check_environment(_env(), _env(), "lenient")


# ------------------------------------------------------------------ recording
def test_current_environment_records_packages_their_hash_and_the_lockfile(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("REMADOM_LOCKFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    assert find_lockfile() == tmp_path / "uv.lock"
    env = current_environment()
    assert env["lockfile"] == {"name": "uv.lock", "sha256": hashlib.sha256(b"version = 1\n").hexdigest()}
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages_sha256"] == packages_sha256(env["packages"])
    assert packages_sha256({**env["packages"], "torch": "0"}) != env["packages_sha256"]

    other = tmp_path / "elsewhere.txt"
    other.write_text("x")
    monkeypatch.setenv("REMADOM_LOCKFILE", str(other))
    assert find_lockfile() == other
    monkeypatch.setenv("REMADOM_LOCKFILE", str(tmp_path / "missing.lock"))
    with pytest.raises(EnvironmentMismatchError, match="REMADOM_LOCKFILE"):
        find_lockfile()


# ------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    save = tmp_path_factory.mktemp("env_runs")
    args = ["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", str(save), "--no-progress",
            *[a for t in TINY for a in ("--set", t)]]
    assert main(args) == 0
    (run,) = list(save.iterdir())
    return run


def _drifted_copy(finished_run, tmp_path) -> Path:
    run = tmp_path / "runs" / finished_run.name
    shutil.copytree(finished_run, run)
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["environment"]["packages"]["numpy"] = "0.0.1"
    manifest["environment"]["packages"]["an-uninstalled-package"] = "9.9"
    path.write_text(json.dumps(manifest))
    return run


def test_manifest_records_the_environment(finished_run):
    env = json.loads((finished_run / "manifest.json").read_text())["environment"]
    assert "torch" in env["packages"] and len(env["packages_sha256"]) == 64 and "lockfile" in env
    assert main(["manifest", "validate", str(finished_run)]) == 0


def test_strict_resume_fails_on_a_recorded_difference_unless_forced(finished_run, tmp_path, capsys):
    run = _drifted_copy(finished_run, tmp_path)
    before = sorted(p.name for p in run.rglob("*"))
    code = main(["train", "--resume", str(run), "--set", "optim.max_epochs=2", "--no-progress",
                 "--env-policy", "strict"])
    assert code == 6
    err = capsys.readouterr().err
    assert "numpy 0.0.1 -> " in err and "an-uninstalled-package 9.9 -> (not installed)" in err
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written

    assert main(["train", "--resume", str(run), "--set", "optim.max_epochs=2", "--no-progress",
                 "--env-policy", "strict", "--force"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["metrics"]["epochs_trained"] == 2
    check = manifest["environment_check"]
    assert check["policy"] == "strict" and check["forced"] is True
    assert any(d.startswith("numpy 0.0.1 -> ") for d in check["differences"])
    assert main(["manifest", "validate", str(run)]) == 0


def test_rerun_from_a_run_config_checks_its_manifest(finished_run, tmp_path, capsys):
    run = _drifted_copy(finished_run, tmp_path)
    out = tmp_path / "new_runs"
    args = ["train", "--config", str(run / "config_resolved.yaml"), "--save-dir", str(out), "--no-progress"]
    assert main([*args, "--env-policy", "strict"]) == 6
    assert "an-uninstalled-package" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--env-policy", "ignore"]) == 0
    (new_run,) = list(out.iterdir())
    assert json.loads((new_run / "manifest.json").read_text())["environment_check"] is None
