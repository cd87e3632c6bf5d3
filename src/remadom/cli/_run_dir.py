"""The run directory: creating it, finding the run to resume, configs and the seeded split.

``<save_dir>/<UTC timestamp>_<name>/`` holds everything a run writes (docs/cli.md). A resumed
run continues in its own directory; only the fields in :data:`RESUME_MUTABLE` may differ
from the configuration it was started with.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..config import RunConfig, dump_config, validate_config
from ._checkpoints import remove_partial_writes
from ._data import make_split
from ._errors import ConfigurationError, DataError

logger = logging.getLogger(__name__)

#: Config fields that may differ between a run and its resumption.
RESUME_MUTABLE = {("optim", "max_epochs"), ("logging", "figure_every"), ("logging", "snapshot_every"),
                  ("logging", "figures"), ("trainer", "devices"), ("trainer", "accelerator")}


def new_run_dir(save_dir: str | Path, name: str) -> Path:
    """Create ``<save_dir>/<UTC timestamp>_<name>/`` (suffix ``-1``, ``-2``... on a clash)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(save_dir) / f"{stamp}_{name}"
    path, k = base, 0
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


def find_resume_dir(save_dir: str | Path, name: str) -> Path | None:
    """Most recent run directory of ``name`` under ``save_dir`` with ``checkpoints/last.ckpt``."""
    candidates = sorted(p for p in Path(save_dir).glob(f"*_{name}*")
                        if (p / "checkpoints" / "last.ckpt").is_file())
    return candidates[-1] if candidates else None


def config_diff(a: dict, b: dict, prefix=()) -> list[tuple]:
    """``(dotted key tuple, value in a, value in b)`` for each leaf where two config dumps differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, (*prefix, key))
        elif va != vb:
            out.append(((*prefix, key), va, vb))
    return out


@dataclass(frozen=True)
class ResumeTarget:
    """The run directory a ``--resume`` continues, and the checkpoint it starts from."""

    run_dir: Path
    checkpoint: Path


def resolve_resume_target(config: RunConfig, resume: str | None) -> ResumeTarget | None:
    """What ``--resume`` points at; ``None`` for a new run (also ``auto`` without an earlier run).

    Raises
    ------
    ConfigurationError
        If the target has no checkpoint.
    """
    if resume is None:
        return None
    if resume == "auto":
        found = find_resume_dir(config.logging.save_dir, config.run_name)
        if found is None:
            logger.info("--resume auto: no earlier run of %r in %s; starting a new run.",
                        config.run_name, config.logging.save_dir)
            return None
        target = found
    else:
        target = Path(resume)
    if target.is_file() and target.suffix == ".ckpt":
        ckpt, run_dir = target, target.parent.parent
    else:
        ckpt, run_dir = target / "checkpoints" / "last.ckpt", target
    if not ckpt.is_file():
        raise ConfigurationError(f"--resume {resume}: no checkpoint at {ckpt}.",
                                 "Pass a run directory that has checkpoints/last.ckpt, a .ckpt file, or 'auto'.")
    return ResumeTarget(run_dir, ckpt)


def check_same_config(run_dir: Path, config: RunConfig) -> None:
    """Refuse to resume ``run_dir`` with a config that differs outside :data:`RESUME_MUTABLE`."""
    path = run_dir / "config_resolved.yaml"
    if not path.is_file():
        return
    old = validate_config(yaml.safe_load(path.read_text()), str(path)).model_dump(mode="json")
    new = config.model_dump(mode="json")
    diffs = [d for d in config_diff(old, new) if d[0] not in RESUME_MUTABLE]
    if diffs:
        listing = ", ".join(f"{'.'.join(k)}: {a!r} -> {b!r}" for k, a, b in diffs[:6])
        raise ConfigurationError(
            f"resuming {run_dir} with a different configuration ({listing}).",
            "Resume with the run's own config (omit --config to use its config_resolved.yaml) or start a "
            "new run without --resume; only optim.max_epochs and logging/device settings may change.",
        )


def prepare_run_dir(config: RunConfig, target: ResumeTarget | None) -> Path:
    """A new run directory, or the resumed one with its partial checkpoint writes removed."""
    if target is None:
        return new_run_dir(config.logging.save_dir, config.run_name)
    remove_partial_writes(target.run_dir / "checkpoints")
    return target.run_dir


def read_manifest(run_dir: Path) -> dict | None:
    """``run_dir/manifest.json`` as a dict, or ``None`` when there is none."""
    path = Path(run_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_configs(run_dir: Path, raw_config: dict, config: RunConfig, resuming: bool) -> None:
    """``config_raw.yaml`` (new runs only) and ``config_resolved.yaml``."""
    if not resuming:
        (run_dir / "config_raw.yaml").write_text(yaml.safe_dump(raw_config, sort_keys=False))
    (run_dir / "config_resolved.yaml").write_text(dump_config(config))


def write_splits(run_dir: Path, n_obs: int, obs_names, val_split: float, seed: int,
                 resuming: bool) -> tuple[np.ndarray, np.ndarray]:
    """The seeded train/validation split, written to ``splits/``; a resumed run must get the same one."""
    train_idx, val_idx = make_split(n_obs, val_split, seed)
    split_dir = run_dir / "splits"
    if resuming and (split_dir / "train.csv").is_file():
        old_train = pd.read_csv(split_dir / "train.csv")["index"].to_numpy()
        if not np.array_equal(np.sort(old_train), train_idx):
            raise DataError(f"the data differ from those of {run_dir}: the train split does not match.",
                            "Resume with the same data file and seed, or start a new run.")
    split_dir.mkdir(exist_ok=True)
    for name, idx in (("train", train_idx), ("val", val_idx)):
        pd.DataFrame({"index": idx, "obs_name": np.asarray(obs_names)[idx]}).to_csv(
            split_dir / f"{name}.csv", index=False)
    return train_idx, val_idx
