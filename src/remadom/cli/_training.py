"""Lightning/scvi-tools components that make a run reproducible and resumable.

* :class:`SeededDataSplitter` draws each epoch's minibatch order from ``(seed, epoch)``
  instead of the global random stream, and :class:`EpochSeed` re-seeds the global stream at
  the start of every epoch. An epoch therefore depends only on the weights, the optimizer
  state and its number, so resuming from ``last.ckpt`` reproduces an uninterrupted run.
* :class:`AtomicCheckpointIO` writes checkpoints to a temporary file and renames it.
* :class:`RunTrainRunner` uses a trainer that accepts a plain Lightning ``ModelCheckpoint``
  (scvi-tools' trainer otherwise adds its own ``SaveCheckpoint``).
* the training plan also logs each step's loss terms for ``logs/steps.jsonl``
  (:mod:`remadom.cli._step_log`).

They are installed on a model instance with :func:`install`, through the scvi-tools
class attributes ``_data_splitter_cls``, ``_train_runner_cls`` and ``_training_plan_cls``.
"""

from __future__ import annotations

import os

import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from scvi.train import SaveCheckpoint, Trainer, TrainRunner
from torch.utils.data import RandomSampler

from ..train import SparseBatchDataSplitter
from ._atomic import atomic_write
from ._checkpoints import RunModelCheckpoint, load_checkpoint
from ._step_log import JSONLinesLogger, with_step_metrics, without_step_metrics


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch`` of a run seeded with ``seed``."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


class _EpochRandomSampler(RandomSampler):
    """A random permutation drawn from ``(seed, epoch)`` at each iteration."""

    def __init__(self, data_source, seed: int, epoch_fn):
        super().__init__(data_source)
        self.seed = seed
        self.epoch_fn = epoch_fn

    def __iter__(self):
        gen = torch.Generator()
        gen.manual_seed(epoch_seed(self.seed, self.epoch_fn()) + 1)
        yield from torch.randperm(len(self.data_source), generator=gen).tolist()


class SeededDataSplitter(SparseBatchDataSplitter):
    """The library's :class:`~remadom.train.SparseBatchDataSplitter` with per-epoch seeded shuffling.

    Sparse minibatches stay sparse, as in :meth:`remadom.REMADOM.train`.

    Pass the split as ``external_indexing=[train_idx, val_idx, test_idx]`` and the run
    seed as ``seed``.
    """

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def _fixed_generator(self, dl):
        # the loader's base seed would otherwise be drawn from the global stream
        gen = torch.Generator()
        gen.manual_seed(self.seed)
        dl.generator = gen
        return dl

    def train_dataloader(self):
        """Training loader whose order depends only on ``(seed, epoch)``."""
        dl = super().train_dataloader()
        batch_sampler = dl.sampler
        batch_sampler.sampler = _EpochRandomSampler(batch_sampler.sampler.data_source, self.seed,
                                                    self._current_epoch)
        return self._fixed_generator(dl)

    def val_dataloader(self):
        """Validation loader (sequential)."""
        dl = super().val_dataloader()
        return self._fixed_generator(dl) if dl is not None else None


class EpochSeed(Callback):
    """Re-seed the global torch stream at the start of every training epoch."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module):
        """Seed from ``(seed, epoch)``."""
        torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then ``os.replace`` it."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        """Save atomically: readers see the old file or the complete new one, never a partial one."""
        atomic_write(path, lambda fh: torch.save(checkpoint, fh), binary=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        """Read with ``weights_only=True`` always (see :mod:`remadom.cli._checkpoints`)."""
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")


class _RunCSVWriter(ExperimentWriter):
    """Lightning's CSV experiment writer that keeps the rows of earlier sessions of the run.

    Lightning deletes an existing ``metrics.csv`` when its writer starts, so a resumed
    session would lose the epochs trained before the interruption. This writer reads the
    existing file instead, drops the earlier rows of any epoch the new session logs again
    (an epoch that was interrupted after ``last.ckpt`` is redone), and rewrites the whole
    file (earlier rows, then the new ones) atomically at each save.
    """

    def __init__(self, log_dir: str) -> None:
        self._rows: pd.DataFrame | None = None
        self._trimmed = False
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = self.metrics_file_path
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            try:
                self._rows = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                self._rows = None

    def log_metrics(self, metrics_dict, step=None) -> None:
        """Record epoch-summary metrics (the per-step keys go to ``steps.jsonl`` only)."""
        metrics_dict = without_step_metrics(metrics_dict)
        if metrics_dict:
            super().log_metrics(metrics_dict, step)

    def save(self) -> None:
        """Write earlier and new rows to ``metrics.csv``."""
        if not self.metrics:
            return
        new = pd.DataFrame(self.metrics)
        self.metrics = []
        rows = self._rows
        if rows is not None and not self._trimmed:
            self._trimmed = True
            if "epoch" in rows and "epoch" in new and new["epoch"].notna().any():
                rows = rows[~(rows["epoch"] >= new["epoch"].min())]
        rows = new if rows is None or rows.empty else pd.concat([rows, new], ignore_index=True)
        for col in ("epoch", "step"):  # keep integer columns integer through the concatenation
            if col in rows and rows[col].notna().all():
                rows[col] = rows[col].astype("int64")
        rows = rows[sorted(rows.columns)]
        self._rows = rows
        atomic_write(self.metrics_file_path, lambda fh: rows.to_csv(fh, index=False))


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see :class:`_RunCSVWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _RunCSVWriter:
        """The run's CSV writer."""
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _RunCSVWriter(log_dir=self.log_dir)
        return self._experiment


def make_loggers(run_dir):
    """scvi-tools' in-memory logger (``model.history``), a :class:`RunCSVLogger` and the step log in ``logs/``."""
    from remadom._compat import SimpleLogger

    class _CopyingSimpleLogger(SimpleLogger):
        # scvi's logger pops "epoch" from the shared dict; give it a copy so the CSV keeps it
        def log_metrics(self, metrics, step=None):
            metrics = without_step_metrics(metrics)
            if len(metrics) > ("epoch" in metrics):
                super().log_metrics(metrics, step)

    return [_CopyingSimpleLogger(), RunCSVLogger(save_dir=os.fspath(run_dir), name="logs", version=""),
            JSONLinesLogger(os.path.join(os.fspath(run_dir), "logs", "steps.jsonl"))]


def make_checkpoint_callback(dirpath, monitor: str) -> ModelCheckpoint:
    """Best-by-``monitor`` plus ``last.ckpt``, saved at the end of each training epoch."""
    return RunModelCheckpoint(
        dirpath=os.fspath(dirpath),
        filename="best-epoch{epoch:03d}",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        save_last=True,
        save_on_train_epoch_end=True,
        auto_insert_metric_name=False,
    )


class _RunTrainer(Trainer):
    """scvi-tools trainer that uses the caller's Lightning ``ModelCheckpoint`` only."""

    def __init__(self, *args, **kwargs):
        own = any(isinstance(c, ModelCheckpoint) for c in kwargs.get("callbacks", []))
        if own:
            kwargs["enable_checkpointing"] = True
        super().__init__(*args, **kwargs)
        if own:  # drop the SaveCheckpoint that scvi-tools adds when checkpointing is on
            self.callbacks[:] = [c for c in self.callbacks if type(c) is not SaveCheckpoint]


class RunTrainRunner(TrainRunner):
    """:class:`scvi.train.TrainRunner` with :class:`_RunTrainer`."""

    _trainer_cls = _RunTrainer


def install(model) -> None:
    """Use the reproducible data splitter and trainer for ``model.train``.

    Pass ``datasplitter_kwargs={"external_indexing": [...], "seed": seed}`` to ``train``.
    """
    model._data_splitter_cls = SeededDataSplitter
    model._train_runner_cls = RunTrainRunner
    model._training_plan_cls = with_step_metrics(model._training_plan_cls)
