"""Every YAML config shipped in configs/ trains for one epoch as documented (exit code 0)."""

from pathlib import Path

import pytest
import yaml

from remadom.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
#: Configs on large real data: one epoch takes minutes.
LARGE = {"configs/snareseq.yaml"}


def _params():
    for name in CONFIGS:
        marks = [pytest.mark.realdata] if name in LARGE else []
        yield pytest.param(name, marks=marks, id=name)


def _skip_without_data(name):
    path = yaml.safe_load((ROOT / name).read_text()).get("data", {}).get("path")
    if path is not None and not (ROOT / path).is_file():
        pytest.skip(f"{name} reads {path}, which is absent")


def test_configs_found():
    assert "configs/minimal.yaml" in CONFIGS
    assert len([c for c in CONFIGS if c.startswith("configs/examples/")]) == 6


@pytest.mark.parametrize("name", list(_params()))
def test_shipped_config_resolves(name, monkeypatch, capsys):
    """Every config validates and its data file exists (or it generates mock data)."""
    _skip_without_data(name)
    monkeypatch.chdir(ROOT)
    assert main(["train", "--config", name, "--dry-run"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["data"]["path"] is None or (ROOT / resolved["data"]["path"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_params()))
def test_shipped_config_runs_one_epoch(name, tmp_path, monkeypatch):
    """Smoke test: `remadom train --config NAME` from the project root, 1 epoch, exits 0 (15-70 s each)."""
    _skip_without_data(name)
    monkeypatch.chdir(ROOT)  # paths in the configs are relative to the project root
    sets = ["optim.max_epochs=1", "logging.figures=false", "logging.snapshot_every=0",
            "schedule.kl_warmup_epochs=1"]
    code = main(["train", "--config", name, "--save-dir", str(tmp_path), "--no-progress",
                 *[a for s in sets for a in ("--set", s)]])
    assert code == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert (run_dir / "model" / "model.pt").is_file()
