"""``remadom sweep --grid grid.yaml``: one resolved config per grid point, run in sequence or printed.

A grid file names a base config and lists values per dotted config key::

    base: ../configs/minimal.yaml      # a config file (relative to the grid file) or an inline mapping
    tag: latent_size                   # optional; default: the grid file's name without .yaml
    grid:
      model.n_latent: [8, 16]
      optim.lr: [0.001, 0.0003]

The points are the Cartesian product of the lists, in the order the keys are given. Point
``i`` is the base config (with ``REMADOM__*`` environment overrides) plus its values, named
``<name>-<tag>-<i:03d>``, with ``logging.save_dir`` set to the sweep folder
``<save_dir>/sweeps/<tag>/``; it is validated and written there as ``point_<i:03d>.yaml``
(every value resolved), beside ``sweep.json`` (points, commands, run directories, status).

Not Hydra's multirun or an Optuna study: both bring their own config composition or search
loop, while a REMADOM run is one Pydantic-validated config resolved by
:func:`remadom.config.resolve_config`; a grid is ``itertools.product`` over that. Use
``--print`` to hand the commands to a scheduler, or Optuna around :func:`remadom.cli.run_training`
for a search.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shlex
from pathlib import Path

from ..config import ConfigError, deep_merge, dump_config, env_overrides, load_yaml, validate_config
from ._errors import ConfigurationError, RemadomCLIError
from ._manifest import atomic_write_text

logger = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9_.-]+$")
_GRID_KEYS = {"base", "tag", "grid"}


def _nested(dotted: str, value) -> dict:
    out: dict = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_grid(path: str | Path) -> tuple[dict, dict[str, list], str]:
    """The base config mapping, the grid (dotted key -> values) and the tag of a grid file.

    Raises
    ------
    ConfigurationError
        If the file, its base or its grid is malformed.
    """
    path = Path(path)
    fix = "See 'Sweeps' in docs/cli.md for the grid file format."
    try:
        spec = load_yaml(path)
    except ConfigError as e:
        raise ConfigurationError(str(e), fix) from e
    unknown = sorted(set(spec) - _GRID_KEYS)
    if unknown:
        raise ConfigurationError(f"{path}: unknown key(s) {unknown}; a grid file has {sorted(_GRID_KEYS)}.", fix)
    base = spec.get("base", {})
    if isinstance(base, str):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        try:
            base = load_yaml(base_path)
        except ConfigError as e:
            raise ConfigurationError(f"{path}: base config: {e}", fix) from e
    elif base is None:
        base = {}
    elif not isinstance(base, dict):
        raise ConfigurationError(f"{path}: 'base' must be a config file path or a mapping.", fix)
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ConfigurationError(f"{path}: 'grid' must map dotted config keys to lists of values.", fix)
    for key, values in grid.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigurationError(f"{path}: grid key {key!r} is not a dotted config key (e.g. model.n_latent).", fix)
        if not isinstance(values, list) or not values:
            raise ConfigurationError(f"{path}: grid.{key} must be a non-empty list of values.", fix)
    tag = str(spec.get("tag") or path.stem)
    if not _TAG.match(tag):
        raise ConfigurationError(f"{path}: tag {tag!r} may only hold letters, digits, '_', '.' and '-'.", fix)
    return base, grid, tag


def grid_points(grid: dict[str, list]) -> list[dict]:
    """The Cartesian product of the grid's values, as ``{dotted key: value}`` per point."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def write_sweep(grid_path: str | Path, save_dir: str | None = None, environ=None,
                train_args: tuple[str, ...] = ()) -> tuple[Path, list[dict]]:
    """Write one resolved config per grid point under ``<save_dir>/sweeps/<tag>/``.

    Parameters
    ----------
    grid_path
        The grid file.
    save_dir
        Parent of ``sweeps/`` (default: the base config's ``logging.save_dir``).
    environ
        Environment for ``REMADOM__*`` overrides (default :data:`os.environ`).
    train_args
        Extra ``remadom train`` arguments for the printed commands.

    Returns
    -------
    The sweep folder and its points (``index``, ``values``, ``config``, ``command``).
    """
    base, grid, tag = read_grid(grid_path)
    try:
        base = deep_merge(base, env_overrides(environ))
        base_cfg = validate_config(base, f"{grid_path} base")
    except (ConfigError, ValueError) as e:
        raise ConfigurationError(str(e), "Fix the base config of the grid file.") from e
    sweep_dir = Path(save_dir or base_cfg.logging.save_dir) / "sweeps" / tag
    sweep_dir.mkdir(parents=True, exist_ok=True)
    points = []
    for i, values in enumerate(grid_points(grid)):
        raw = base
        for key, value in values.items():
            raw = deep_merge(raw, _nested(key, value))
        raw = deep_merge(raw, {"name": f"{base_cfg.name}-{tag}-{i:03d}", "logging": {"save_dir": str(sweep_dir)}})
        try:
            cfg = validate_config(raw, f"{grid_path} point {i} ({values})")
        except (ConfigError, ValueError) as e:
            raise ConfigurationError(str(e), "Fix the grid values or keys named above.") from e
        config_path = sweep_dir / f"point_{i:03d}.yaml"
        atomic_write_text(config_path, dump_config(cfg))
        points.append({"index": i, "values": values, "config": config_path.name,
                       "command": ["remadom", "train", "--config", str(config_path), *train_args],
                       "run_dir": None, "status": "pending", "exit_code": None})
    keep = {p["config"] for p in points}
    for stale in sweep_dir.glob("point_*.yaml"):  # from an earlier, larger grid of this tag
        if stale.name not in keep:
            stale.unlink()
    _write_record(sweep_dir, grid_path, tag, grid, points)
    return sweep_dir, points


def _write_record(sweep_dir: Path, grid_path, tag: str, grid: dict, points: list[dict]) -> None:
    record = {"tag": tag, "grid_file": str(grid_path), "keys": list(grid), "points": points}
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(record, indent=2, default=str) + "\n")


def run_sweep(grid_path: str | Path, save_dir: str | None = None, print_only: bool = False,
              progress_bar: bool = True, env_policy: str = "warn", force: bool = False) -> int:
    """Write the sweep's configs, then print their commands or run them one after the other.

    A failing point is recorded in ``sweep.json`` and the next one runs; the return value is
    0 when every point completed, else the exit code of the first failure.
    """
    from ..config import resolve_config

    train_args = ("--no-progress",) if not progress_bar else ()
    if env_policy != "warn":
        train_args += ("--env-policy", env_policy)
    if force:
        train_args += ("--force",)
    sweep_dir, points = write_sweep(grid_path, save_dir, train_args=train_args)
    _, grid, tag = read_grid(grid_path)
    if print_only:
        for p in points:
            print(shlex.join(p["command"]))
        return 0
    from ._run import run_training

    first_failure = 0
    for p in points:
        config_path = sweep_dir / p["config"]
        logger.info("sweep %s: point %d/%d %s", tag, p["index"] + 1, len(points), p["values"])
        try:
            cfg, raw = resolve_config(config_path, [])
            run_dir = run_training(cfg, raw, config_source=str(config_path), progress_bar=progress_bar,
                                   env_policy=env_policy, force=force)
            p.update(run_dir=str(run_dir), status="completed", exit_code=0)
        except RemadomCLIError as e:
            logger.error("sweep %s: point %d failed: %s", tag, p["index"], e.render())
            p.update(status="failed", exit_code=e.exit_code)
            first_failure = first_failure or e.exit_code
        except ConfigError as e:
            logger.error("sweep %s: point %d failed: %s", tag, p["index"], e)
            p.update(status="failed", exit_code=ConfigurationError.exit_code)
            first_failure = first_failure or ConfigurationError.exit_code
        _write_record(sweep_dir, grid_path, tag, grid, points)
    for p in points:
        print(f"{p['index']:>3}  {p['status']:<9}  {p['values']}  {p['run_dir'] or ''}")
    print(f"sweep record: {sweep_dir / 'sweep.json'}")
    return first_failure
