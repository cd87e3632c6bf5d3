"""A CLI run stopped part-way: non-finite loss, SIGTERM, leftover partial checkpoint writes."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from remadom.cli import run_training
from remadom.cli._errors import TrainingFailure
from remadom.cli._signals import EXIT_INTERRUPTED, RunInterrupted
from remadom.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.mock.n_cells=80", "data.mock.n_genes=20", "data.mock.n_peaks=30", "data.mock.n_proteins=5",
        "model.n_latent=2", "model.n_hidden=8", "optim.batch_size=32", "optim.max_epochs=3",
        "logging.figures=false", "logging.snapshot_every=0"]


def _config(tmp_path, *extra):
    return resolve_config(ROOT / "configs" / "minimal.yaml", [*TINY, f"logging.save_dir={tmp_path}", *extra],
                          environ={})


def _only_run(tmp_path) -> Path:
    (run,) = [p for p in Path(tmp_path).iterdir() if p.is_dir()]
    return run


class PoisonHead(Callback):
    """At the start of ``epoch``, make modality ``name``'s likelihood head produce NaN."""

    def __init__(self, name: str, epoch: int):
        self.name, self.epoch = name, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                for p in pl_module.module.heads[self.name].parameters():
                    p.fill_(float("nan"))


class Terminate(Callback):
    """Send SIGTERM to this process at the start of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def test_non_finite_loss_names_the_modality_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg, raw = _config(tmp_path)
    with pytest.raises(TrainingFailure, match=r"in modality 'adt' at epoch 1, step \d+"):
        run_training(cfg, raw, progress_bar=False, extra_callbacks=[PoisonHead("adt", 1)])
    run = _only_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "modality 'adt'" in manifest["error"]
    assert manifest["checkpoints"]["last"] == "checkpoints/last.ckpt"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_sigterm_exits_143_marks_interrupted_and_resume_continues(tmp_path):
    cfg, raw = _config(tmp_path)
    with pytest.raises(RunInterrupted, match="SIGTERM") as info:
        run_training(cfg, raw, progress_bar=False, extra_callbacks=[Terminate(1)])
    assert info.value.exit_code == EXIT_INTERRUPTED == 143
    run = _only_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))

    # a kill during a checkpoint write leaves a partial file; resume removes it and finishes the run
    partial = run / "checkpoints" / ".tmp_best-epoch001.ckpt.abc123"
    partial.write_bytes(b"partial")
    resumed = run_training(cfg, raw, progress_bar=False, resume="auto")
    assert resumed == run and not partial.exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["sessions"] == 2
    assert manifest["metrics"]["epochs_trained"] == 3
