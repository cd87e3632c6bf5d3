"""What stops a run part-way: SIGTERM from a scheduler, and a loss that is no longer finite.

* :func:`sigterm_interrupts` turns SIGTERM into :class:`RunInterrupted` (exit code 143, the
  shell's code for "terminated by SIGTERM"), so the run marks its manifest ``interrupted``
  instead of exiting 0 as if it had succeeded. ``--resume`` continues from ``last.ckpt``.
* :class:`NonFiniteLossGuard` checks every minibatch loss *before* the optimizer step, so the
  weights and ``last.ckpt`` stay those of the last good step, and names the modality whose
  term is not finite.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager

import torch
from lightning.pytorch.callbacks import Callback

from ._errors import RemadomCLIError, TrainingFailure

#: Exit code of a run stopped by SIGTERM (128 + 15).
EXIT_INTERRUPTED = 143


class RunInterrupted(RemadomCLIError):
    """The run received SIGTERM (exit code 143); the manifest says ``interrupted``."""

    exit_code = EXIT_INTERRUPTED
    title = "Interrupted"


@contextmanager
def sigterm_interrupts(resume_hint: str = "remadom train --resume auto"):
    """Raise :class:`RunInterrupted` in the main thread when SIGTERM arrives (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise RunInterrupted("the run received SIGTERM and stopped.",
                             f"Continue it from its last checkpoint with: {resume_hint}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finite(value) -> bool:
    value = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return bool(torch.isfinite(value).all())


class NonFiniteLossGuard(Callback):
    """Stop with :class:`TrainingFailure` at the first non-finite loss, before the weights change.

    The message names the modality (or the KL term) that is not finite, the epoch and the
    global step.
    """

    def __init__(self):
        self._batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        """Keep a reference to the minibatch, to attribute a non-finite loss."""
        self._batch = batch

    def on_before_backward(self, trainer, pl_module, loss):
        """Check the loss before backward and the optimizer step."""
        if loss is not None and not _finite(loss):
            self._fail(trainer, pl_module, float(loss.detach()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Catch losses that skipped backward (e.g. manual optimisation)."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not _finite(loss):
            self._fail(trainer, pl_module, float(loss.detach()))

    def _culprits(self, pl_module) -> list[str]:
        module = getattr(pl_module, "module", None)
        if module is None or self._batch is None:
            return []
        try:
            with torch.no_grad():
                _, _, out = module(self._batch, loss_kwargs=dict(getattr(pl_module, "loss_kwargs", {}) or {}))
        except Exception:  # noqa: BLE001 - attribution is best effort; the failure itself is certain
            return []
        names = [f"modality {m!r}" for m, v in (out.reconstruction_loss or {}).items() if not _finite(v)]
        kl = out.kl_local if isinstance(out.kl_local, dict) else {"kl": out.kl_local}
        names += [f"KL term {k!r}" for k, v in kl.items() if v is not None and not _finite(v)]
        return names

    def _fail(self, trainer, pl_module, value: float):
        culprits = self._culprits(pl_module)
        where = f" in {', '.join(culprits)}" if culprits else ""
        raise TrainingFailure(
            f"the training loss became {value if not math.isnan(value) else 'nan'}{where} at epoch "
            f"{trainer.current_epoch}, step {trainer.global_step}; training stopped before that step changed "
            "the weights, and checkpoints/last.ckpt holds the last completed epoch.",
            "Lower optim.lr (e.g. --set optim.lr=1e-4), check that modality for non-count or extreme values, "
            "or use trainer.precision='32' if a mixed precision was set.",
        )
