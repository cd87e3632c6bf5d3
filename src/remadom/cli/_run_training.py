"""The training driver of a run: callbacks, loggers, the seeded split and ``model.train``.

:func:`train_run` calls :meth:`remadom.REMADOM.train` with the config's ``optim`` and
``schedule`` sections and Lightning's components for a reproducible, resumable run
(:mod:`remadom.cli._training`); :func:`training_errors` turns what training raises into the
CLI's errors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import RunConfig
from . import _training
from ._errors import ConfigurationError, RemadomCLIError, TrainingFailure
from ._figures import ImputationSnapshot, LossCurveRefresh
from ._signals import NonFiniteLossGuard, RunInterrupted


@dataclass
class TrainingSession:
    """What training leaves for the outputs: the checkpoint callback and the metric it monitors."""

    checkpoint_callback: object
    monitor: str
    callbacks: list = field(default_factory=list)


def train_run(model, config: RunConfig, run_dir: Path, train_idx, val_idx, ckpt_path: Path | None = None,
              extra_callbacks=(), progress_bar: bool = True) -> TrainingSession:
    """Train ``model`` on the run's split, writing checkpoints and logs into ``run_dir``.

    Raises
    ------
    ConfigurationError
        ``optim.early_stopping`` without validation cells.
    """
    cfg = config
    has_val = len(val_idx) > 0
    monitor = "elbo_validation" if has_val else "elbo_train"
    if cfg.optim.early_stopping is True and not has_val:
        raise ConfigurationError("optim.early_stopping needs validation cells but data.val_split is 0.",
                                 "Set data.val_split > 0 (e.g. 0.1) or optim.early_stopping=false.")
    ckpt_cb = _training.make_checkpoint_callback(run_dir / "checkpoints", monitor)
    callbacks = [_training.EpochSeed(cfg.seed), NonFiniteLossGuard(), ckpt_cb]
    if cfg.logging.snapshot_every and has_val:
        callbacks.append(ImputationSnapshot(model, val_idx, run_dir / "figures" / "snapshots",
                                            cfg.logging.snapshot_every))
    if cfg.logging.figure_every:
        callbacks.append(LossCurveRefresh(run_dir / "logs" / "metrics.csv",
                                          run_dir / "figures" / "loss_curves.png", cfg.logging.figure_every))
    callbacks += list(extra_callbacks)
    rem = len(train_idx) % cfg.optim.batch_size
    splitter = {"external_indexing": [np.asarray(train_idx), np.asarray(val_idx), np.array([], dtype=int)],
                "seed": cfg.seed, "drop_last": 0 < rem < 3}
    trainer_kwargs = {
        "callbacks": callbacks,
        "logger": _training.make_loggers(run_dir),
        "plugins": [_training.AtomicCheckpointIO()],
        "enable_progress_bar": progress_bar,
        "deterministic": True,
        "benchmark": False,
        "log_every_n_steps": 1,
    }
    if cfg.trainer.strategy != "auto":
        trainer_kwargs["strategy"] = cfg.trainer.strategy
    if ckpt_path is not None:
        trainer_kwargs["ckpt_path"] = str(ckpt_path)
    # optim and schedule are model.train's own arguments (early_stopping_patience goes to the trainer)
    optim = cfg.optim.model_dump()
    if optim["early_stopping_patience"] is None:  # null: REMADOM.train's own patience
        del optim["early_stopping_patience"]
    model.train(
        **optim, **cfg.schedule.model_dump(), accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices, precision=cfg.trainer.precision, datasplitter_kwargs=splitter,
        **trainer_kwargs,
    )
    return TrainingSession(ckpt_cb, monitor, callbacks)


@contextlib.contextmanager
def training_errors(fail):
    """Translate what training raises into CLI errors, calling ``fail(reason)`` to mark the manifest.

    SIGTERM becomes :class:`RunInterrupted` (exit 143); a non-finite loss caught by
    :class:`NonFiniteLossGuard` its :class:`TrainingFailure`; any other exception a
    :class:`TrainingFailure` whose fix suggests a lower learning rate when the model diverged.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException as e:
        raise RunInterrupted("the run received SIGTERM and stopped.",
                             "Continue it from its last checkpoint with --resume auto.") from e
    except RunInterrupted:
        raise
    except RemadomCLIError as e:
        fail(e.message)
        raise
    except Exception as e:
        if isinstance(e.__cause__, TrainingFailure) or isinstance(e.__context__, TrainingFailure):
            fail("non-finite loss")
            raise (e.__cause__ if isinstance(e.__cause__, TrainingFailure) else e.__context__) from e
        fail(f"{type(e).__name__}: {e}")
        diverged = any(w in str(e).lower() for w in ("nan", "inf", "expected parameter"))
        fix = ("The model diverged: lower optim.lr (e.g. --set optim.lr=1e-4) or check the data for extreme "
               "values; " if diverged else "") + "rerun with --debug for the traceback; resume with --resume auto."
        raise TrainingFailure(f"training stopped with {type(e).__name__}: {str(e)[:300]}.", fix) from e
