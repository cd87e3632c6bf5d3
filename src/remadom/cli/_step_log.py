"""The per-step JSONL log of a run (``logs/steps.jsonl``), through Lightning's logging.

:class:`StepMetricsMixin` makes the training plan log each optimizer step's loss terms with
``self.log(..., on_step=True, on_epoch=False)`` under the prefix :data:`STEP_PREFIX`;
Lightning hands them, with the step's ``epoch`` and scvi-tools' ``kl_weight``, to every
logger at each step (``log_every_n_steps=1``). :class:`JSONLinesLogger`, a Lightning
``Logger``, writes one JSON object per step; the CSV epoch summary and scvi-tools'
``model.history`` leave the step keys out (:func:`without_step_metrics`).

Keys of a line (:data:`STEP_KEYS`, then one per extra metric of the module's ``LossOutput``):

``step``
    index of the optimizer step, from 0 (Lightning's logging step; continues across resumes)
``epoch``
    epoch of the step, from 0
``loss``
    the minimized loss of the minibatch (modality-weighted, with the KL weight and any
    alignment / cycle / consistency terms)
``elbo``
    negative ELBO per cell of the minibatch, ``reconstruction_loss + kl_local`` (as ``elbo_train``, unweighted KL)
``reconstruction_loss``
    summed modality NLLs (modality-weighted) per cell
``kl_local``
    KL divergence of the latent posterior from the prior, per cell
``kl_weight``
    KL warm-up weight of the step
``nll_<modality>``
    unweighted NLL per observed cell of each modality; ``mmd``, ``cycle``, ``consistency`` when those terms are on

Non-finite values are written as ``null`` (strict JSON).

Lightning ships CSV, TensorBoard, MLflow, Comet, Neptune and W&B loggers but none that writes
JSON lines; :class:`JSONLinesLogger` is the small ``Logger`` subclass that does, and the values
reach it through Lightning's own ``self.log`` / logger-connector path.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ._atomic import atomic_write

#: Prefix of the per-step keys in Lightning's logged metrics.
STEP_PREFIX = "step/"
#: Keys every line has.
STEP_KEYS = ("step", "epoch", "loss", "elbo", "reconstruction_loss", "kl_local", "kl_weight")


def step_terms(loss_output) -> dict[str, torch.Tensor]:
    """The per-step loss terms of a ``LossOutput`` (module docstring), as 0-d tensors."""
    n = loss_output.n_obs_minibatch
    rec = loss_output.reconstruction_loss_sum / n
    kl_local = loss_output.kl_local_sum / n
    terms = {"loss": loss_output.loss, "elbo": rec + kl_local + loss_output.kl_global_sum / n,
             "reconstruction_loss": rec, "kl_local": kl_local}
    for key, value in (loss_output.extra_metrics or {}).items():
        if torch.is_tensor(value) and value.dim() == 0:
            terms[key] = value
    return {k: v.detach().float() for k, v in terms.items()}


class StepMetricsMixin:
    """Training-plan mixin: log :func:`step_terms` of each training step (``on_step`` only)."""

    @torch.no_grad()
    def compute_and_log_metrics(self, loss_output, metrics, mode):
        """The plan's own logging, then the step terms of a training step."""
        out = super().compute_and_log_metrics(loss_output, metrics, mode)
        if mode == "train":
            self.log_dict({STEP_PREFIX + k: v for k, v in step_terms(loss_output).items()}, on_step=True,
                          on_epoch=False, batch_size=loss_output.n_obs_minibatch, sync_dist=self.use_sync_dist)
        return out


def with_step_metrics(plan_cls: type) -> type:
    """``plan_cls`` with :class:`StepMetricsMixin` (the class itself when it has it already)."""
    if issubclass(plan_cls, StepMetricsMixin):
        return plan_cls
    return type(f"StepMetrics{plan_cls.__name__}", (StepMetricsMixin, plan_cls), {})


def without_step_metrics(metrics: dict) -> dict:
    """``metrics`` less the per-step keys (for the epoch summary loggers)."""
    return {k: v for k, v in metrics.items() if not k.startswith(STEP_PREFIX)}


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


class JSONLinesLogger(Logger):
    """Lightning logger writing one JSON object per training step to ``path``.

    On a resumed run the lines of steps the new session logs again (after ``last.ckpt``)
    are dropped once, at its first write; then lines are appended.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._lines: list[str] = []
        self._trimmed = False

    @property
    def name(self) -> str:
        """Logger name."""
        return "steps"

    @property
    def version(self) -> str:
        """Logger version (one file per run)."""
        return ""

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Not recorded (the run's config is in config_resolved.yaml)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Queue a line when ``metrics`` hold step keys."""
        terms = {k[len(STEP_PREFIX):]: _number(v) for k, v in metrics.items() if k.startswith(STEP_PREFIX)}
        if not terms:
            return
        record = {"step": int(step) if step is not None else None,
                  "epoch": int(metrics["epoch"]) if "epoch" in metrics else None}
        for key in STEP_KEYS[2:]:
            if key in terms:
                record[key] = terms.pop(key)
        if "kl_weight" in metrics:
            record["kl_weight"] = _number(metrics["kl_weight"])
        record.update(sorted(terms.items()))
        self._lines.append(json.dumps(record))
        if not self._trimmed:
            self._trim_before(record["step"])

    def _trim_before(self, first_step: int | None) -> None:
        self._trimmed = True
        if first_step is None or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", -1) < first_step:
                    kept.append(line)
            except (json.JSONDecodeError, AttributeError, TypeError):
                continue  # a line cut by an interruption
        atomic_write(self.path, lambda fh: fh.write("".join(f"{line}\n" for line in kept)))

    @rank_zero_only
    def save(self) -> None:
        """Append the queued lines."""
        if not self._lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write("".join(f"{line}\n" for line in self._lines))
        self._lines = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is queued."""
        self.save()
