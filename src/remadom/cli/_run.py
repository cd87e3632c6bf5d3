"""A training run: config -> run directory with checkpoints, logs, model, latent, figures, manifest.

:class:`Run` orders the steps; each lives in its own module: checks before anything is
written (:mod:`._preflight`, :mod:`._env_policy`), the run directory, configs and split
(:mod:`._run_dir`), the manifest (:mod:`._run_record`), training (:mod:`._run_training`) and
the outputs of a finished run (:mod:`._run_outputs`).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from ..config import RunConfig
from . import _training
from ._data import load_data, setup_model_data
from ._env_policy import check_environment, current_environment, reference_manifest_path
from ._errors import ConfigurationError, RemadomCLIError
from ._preflight import check_device_settings, check_run_environment, check_train_config
from ._run_dir import (
    RESUME_MUTABLE,
    check_same_config,
    prepare_run_dir,
    read_manifest,
    resolve_resume_target,
    write_configs,
    write_splits,
)
from ._run_outputs import checkpoint_summary, load_best, write_outputs
from ._run_record import RunRecord, final_metrics
from ._run_training import train_run, training_errors
from ._signals import RunInterrupted, sigterm_interrupts

__all__ = ["RESUME_MUTABLE", "Run", "run_training"]


class Run:
    """One training run; ``execute()`` returns the run directory."""

    def __init__(self, config: RunConfig, raw_config: dict, config_source: str | None = None,
                 resume: str | None = None, extra_callbacks=None, progress_bar: bool = True,
                 env_policy: str = "warn", force: bool = False):
        self.config = config
        self.env_policy = env_policy
        self.force = force
        self.raw_config = raw_config
        self.config_source = config_source
        self.resume = resume
        self.extra_callbacks = list(extra_callbacks or [])
        self.progress_bar = progress_bar
        self.record = RunRecord()
        self.run_dir: Path | None = None

    def execute(self) -> Path:
        """Run the whole pipeline; SIGTERM stops it with exit code 143 and an ``interrupted`` manifest."""
        with sigterm_interrupts():
            try:
                return self._execute()
            except RunInterrupted as e:
                self.record.fail(e.message, status="interrupted")
                raise

    def _execute(self) -> Path:
        import scvi
        import torch

        cfg = self.config
        check_device_settings(cfg)
        check_run_environment(cfg)
        from .. import REMADOM as model_cls

        target = resolve_resume_target(cfg, self.resume)
        if target is not None:
            check_same_config(target.run_dir, cfg)
        environment, env_check = self._check_environment(target)
        # data problems fail here, before a run directory exists
        scvi.settings.seed = cfg.seed
        data = load_data(cfg)
        setup_model_data(model_cls, data)
        if target is not None:
            self.record = RunRecord.continuing(read_manifest(target.run_dir))
        run_dir = self.run_dir = prepare_run_dir(cfg, target).resolve()
        record = self.record
        record.run_id = record.run_id or f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        ckpt_path = target.checkpoint if target else None
        t0 = time.perf_counter()
        write_configs(run_dir, self.raw_config, cfg, resuming=target is not None)
        train_idx, val_idx = write_splits(run_dir, data.n_obs, data.obs.index, cfg.data.val_split, cfg.seed,
                                          resuming=target is not None)
        record.start(run_dir, data.info, self.config_source, ckpt_path, environment, env_check)

        scvi.settings.seed = cfg.seed
        try:
            model = model_cls(data.data, **cfg.model.model_dump())  # the config section is the model's signature
        except (ValueError, KeyError, TypeError) as e:
            record.fail(f"cannot build the model: {e}")
            raise ConfigurationError(f"cannot build the model: {e}", "Check the model section of the config.") from e
        _training.install(model)
        try:
            check_train_config(model, cfg)
        except ConfigurationError as e:
            record.fail(e.message)
            raise
        with training_errors(record.fail):
            session = train_run(model, cfg, run_dir, train_idx, val_idx, ckpt_path, self.extra_callbacks,
                                self.progress_bar)
        torch.set_grad_enabled(True)

        metrics = final_metrics(run_dir / "logs" / "metrics.csv")
        try:
            best = load_best(model, session.checkpoint_callback, run_dir)
        except RemadomCLIError as e:
            record.fail(e.message)
            raise
        artifacts = write_outputs(model, cfg, run_dir, data.setup_kwargs, val_idx)
        record.complete(time.perf_counter() - t0,
                        checkpoint_summary(run_dir, best, session.checkpoint_callback, session.monitor),
                        artifacts, metrics)
        return run_dir

    def _check_environment(self, target) -> tuple[dict, dict | None]:
        """The current environment, checked under the env policy against the run it resumes or re-runs."""
        environment = current_environment()
        ref = reference_manifest_path(self.config_source, target.run_dir if target else None)
        recorded = (read_manifest(ref.parent) or {}).get("environment") if ref is not None else None
        check = check_environment(recorded, environment, self.env_policy, self.force,
                                  source=f"the run in {ref.parent}" if ref else "", resuming=target is not None)
        return environment, check


def run_training(config: RunConfig, raw_config: dict | None = None, *, config_source: str | None = None,
                 resume: str | None = None, extra_callbacks=None, progress_bar: bool = True,
                 env_policy: str = "warn", force: bool = False) -> Path:
    """Train from a resolved config and return the run directory.

    Parameters
    ----------
    config
        Resolved configuration.
    raw_config
        The mapping read from the YAML file (written to ``config_raw.yaml``).
    config_source
        Path of the YAML file, recorded in the manifest.
    resume
        ``"auto"``, a run directory or a ``.ckpt`` path.
    extra_callbacks
        More Lightning callbacks (e.g. for tests).
    progress_bar
        Show scvi-tools' progress bar.
    env_policy
        ``"strict"``, ``"warn"`` or ``"ignore"``: how a difference from the environment recorded by
        the run being resumed or re-run is handled (:mod:`remadom.cli._env_policy`).
    force
        Run despite such a difference (recorded in the manifest's ``environment_check``).
    """
    run = Run(config, raw_config if raw_config is not None else config.model_dump(mode="json"),
              config_source, resume, extra_callbacks, progress_bar, env_policy, force)
    return run.execute()
