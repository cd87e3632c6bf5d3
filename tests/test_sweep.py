"""remadom sweep: one resolved config per grid point, printed or run in sequence."""

import json
from pathlib import Path

import pytest
import yaml

from remadom.cli._sweep import grid_points
from remadom.cli.main import main
from remadom.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = {
    "name": "tiny",
    "data": {"mock": {"n_cells": 80, "n_genes": 20, "n_peaks": 30, "n_proteins": 5}},
    "model": {"n_latent": 2, "n_hidden": 8},
    "optim": {"batch_size": 32, "max_epochs": 1},
    "logging": {"figures": False, "snapshot_every": 0},
}


def _grid(tmp_path, grid, base=None, **extra) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": base if base is not None else TINY_BASE, "grid": grid, **extra}))
    return path


def test_grid_points_are_the_cartesian_product_in_key_order():
    points = grid_points({"model.n_latent": [2, 4], "optim.lr": [0.1, 0.01, 0.001]})
    assert len(points) == 6
    assert points[0] == {"model.n_latent": 2, "optim.lr": 0.1}
    assert points[-1] == {"model.n_latent": 4, "optim.lr": 0.001}


def test_print_writes_one_resolved_config_per_point_and_prints_the_commands(tmp_path, capsys):
    grid = _grid(tmp_path, {"model.n_latent": [2, 4], "optim.lr": [0.01, 0.001]}, tag="size_lr")
    assert main(["sweep", "--grid", str(grid), "--save-dir", str(tmp_path / "runs"), "--print"]) == 0
    sweep_dir = tmp_path / "runs" / "sweeps" / "size_lr"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"remadom train --config {sweep_dir / f'point_{i:03d}.yaml'}" for i in range(4)]
    seen = set()
    for i in range(4):
        cfg, _ = resolve_config(sweep_dir / f"point_{i:03d}.yaml", environ={})
        seen.add((cfg.model.n_latent, cfg.optim.lr))
        assert cfg.name == f"tiny-size_lr-{i:03d}" and cfg.logging.save_dir == str(sweep_dir)
        assert cfg.model.n_hidden == 8  # the base config's values stay
    assert seen == {(2, 0.01), (2, 0.001), (4, 0.01), (4, 0.001)}
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [p["status"] for p in record["points"]] == ["pending"] * 4
    assert not [p for p in sweep_dir.iterdir() if p.is_dir()]  # nothing trained

    smaller = _grid(tmp_path, {"model.n_latent": [3]}, tag="size_lr")  # rerun with a smaller grid
    assert main(["sweep", "--grid", str(smaller), "--save-dir", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert sorted(p.name for p in sweep_dir.glob("point_*.yaml")) == ["point_000.yaml"]


def test_base_config_file_is_read_relative_to_the_grid(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))
    grid = tmp_path / "configs" / "my_grid.yaml"
    grid.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"seed": [1, 2]}}))
    assert main(["sweep", "--grid", str(grid), "--save-dir", str(tmp_path / "runs"), "--print"]) == 0
    cfg, _ = resolve_config(tmp_path / "runs" / "sweeps" / "my_grid" / "point_001.yaml", environ={})
    assert cfg.seed == 2 and cfg.data.mock.n_cells == 80


@pytest.mark.parametrize(("grid", "extra", "message"), [
    ({"model.n_latnet": [2]}, {}, "n_latnet"),
    ({"model.n_latent": []}, {}, "non-empty list"),
    ({"model.n_latent": 2}, {}, "non-empty list"),
    ({"model.n_latent": [-1]}, {}, "n_latent"),
    ({"model.n_latent": [2]}, {"tag": "a/b"}, "tag"),
    ({"model.n_latent": [2]}, {"runs": 3}, "unknown key"),
])
def test_bad_grid_files_exit_2_naming_the_problem(tmp_path, capsys, grid, extra, message):
    path = _grid(tmp_path, grid, **extra)
    assert main(["sweep", "--grid", str(path), "--save-dir", str(tmp_path / "runs"), "--print"]) == 2
    assert message in capsys.readouterr().err


def test_sweep_runs_each_point_in_sequence(tmp_path, capsys):
    """A one-point, one-epoch sweep on mock data trains and records its run directory."""
    grid = _grid(tmp_path, {"optim.max_epochs": [1]}, tag="one")
    assert main(["sweep", "--grid", str(grid), "--save-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    sweep_dir = tmp_path / "runs" / "sweeps" / "one"
    (point,) = json.loads((sweep_dir / "sweep.json").read_text())["points"]
    assert point["status"] == "completed" and point["exit_code"] == 0
    run_dir = Path(point["run_dir"])
    assert run_dir.parent == sweep_dir.resolve() and run_dir.name.endswith("_tiny-one-000")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["metrics"]["epochs_trained"] == 1
    assert manifest["config"]["source"] == str(sweep_dir / "point_000.yaml")
    assert "completed" in capsys.readouterr().out
