"""The run's ``manifest.json`` record: written when a run starts, fails, is interrupted or completes."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ._figures import epoch_metrics
from ._manifest import environment_info, git_info, manifest_schema, sys_argv, utc_now, write_manifest

logger = logging.getLogger(__name__)


def final_metrics(metrics_csv: Path) -> dict:
    """``epochs_trained`` and the last epoch's logged values from ``logs/metrics.csv``."""
    if not metrics_csv.is_file():
        return {"epochs_trained": 0}
    df = epoch_metrics(metrics_csv)
    if df.empty:
        return {"epochs_trained": 0}
    last = df.iloc[-1]
    out = {"epochs_trained": int(last["epoch"]) + 1}
    for col, val in last.items():
        if col != "epoch" and pd.notna(val):
            out[col] = float(val)
    return out


class RunRecord:
    """The manifest of one run (schema ``manifest.v1.json``), rewritten atomically at each change.

    Parameters
    ----------
    created_at, run_id, sessions
        Carried over from the previous manifest of a resumed run.
    """

    def __init__(self, created_at: str | None = None, run_id: str | None = None, sessions: int = 1):
        self.created_at = created_at or utc_now()
        self.run_id = run_id
        self.sessions = sessions
        self.run_dir: Path | None = None
        self.manifest: dict | None = None

    @classmethod
    def continuing(cls, previous: dict | None) -> RunRecord:
        """A record that continues ``previous`` (a resumed run's manifest), or a fresh one."""
        if previous is None:
            return cls()
        return cls(previous.get("created_at"), previous.get("run_id"), int(previous.get("sessions", 1)) + 1)

    def start(self, run_dir: Path, dataset_info: dict, config_source: str | None,
              resumed_from: Path | None, environment: dict | None = None,
              environment_check: dict | None = None) -> None:
        """Write the ``running`` manifest."""
        manifest_schema()  # fail early if the schema resource is missing
        self.run_dir = run_dir
        self.manifest = {
            "manifest_version": 1,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "updated_at": utc_now(),
            "status": "running",
            "command": sys_argv(),
            "resumed_from": str(resumed_from) if resumed_from else None,
            "sessions": self.sessions,
            "wall_time_s": None,
            "git": git_info(),
            "environment": environment if environment is not None else environment_info(),
            "environment_check": environment_check,
            "dataset": dataset_info,
            "config": {"source": config_source, "raw": "config_raw.yaml", "resolved": "config_resolved.yaml"},
            "checkpoints": {"best": None, "last": None, "monitor": "elbo_validation", "best_score": None},
            "artifacts": {},
            "metrics": {"epochs_trained": 0},
            "error": None,
        }
        self._write()

    def complete(self, wall_time_s: float, checkpoints: dict, artifacts: dict, metrics: dict) -> None:
        """Write the ``completed`` manifest."""
        self.manifest.update(status="completed", updated_at=utc_now(), wall_time_s=round(wall_time_s, 3),
                             checkpoints=checkpoints, artifacts=artifacts, metrics=metrics)
        self._write()

    def fail(self, reason: str, status: str = "failed") -> None:
        """Mark the run ``failed`` (or ``interrupted``); a no-op before the run directory exists."""
        if self.manifest is None:
            return
        self.manifest.update(status=status, updated_at=utc_now(), error=reason)
        if (self.run_dir / "checkpoints" / "last.ckpt").is_file():
            self.manifest["checkpoints"]["last"] = "checkpoints/last.ckpt"
        try:
            self._write()
        except Exception as e:  # noqa: BLE001 - a failing run must still report its own error
            logger.warning("could not update the manifest: %s", e)

    def _write(self) -> None:
        write_manifest(self.run_dir / "manifest.json", self.manifest)
