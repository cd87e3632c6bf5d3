"""Defaults of :meth:`remadom.REMADOM.train` that depend on the data (issue #13, defaults at convergence).

Measured on the shared benchmark scenarios (``benchmarks/convergence.py``,
``benchmarks/results_defaults.md`` "Defaults against defaults"): at the former defaults (learning
rate 1e-3, at most 200 epochs, no schedule) the validation ELBO was still falling at epoch 400 on
the 600-cell BMMC CITE-seq mosaic (best at epoch 390) and batch mixing kept rising with it: the
model was under-trained on small data, where an epoch is only a few optimizer steps. The defaults
now follow what scvi-tools' TOTALVI does: a 4x larger learning rate that is reduced when the
validation ELBO plateaus, scvi-tools' epoch heuristic (up to 400), and early stopping on the
validation ELBO so that large or quickly converging data do not pay for epochs that no longer help.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from ..train._precision import default_precision
from . import _checks

#: scvi-tools' ``get_max_epochs_heuristic`` ceiling (400 epochs up to 20,000 cells, fewer above)
MAX_EPOCHS_CAP = 400
#: epochs without a better validation ELBO before training stops (scvi-tools' default)
EARLY_STOPPING_PATIENCE = 45
#: ``train(adversarial_weight="auto")`` when a batch is confounded with its modality set (issue #13c;
#: ``benchmarks/results_defaults.md``, "#13c: CITE at convergence against TOTALVI")
CONFOUNDED_ADVERSARIAL_WEIGHT = 1.0


def resolve_adversarial_weight(weight, confounded: list) -> float:
    """Resolve ``train(adversarial_weight="auto")``.

    :data:`CONFOUNDED_ADVERSARIAL_WEIGHT` when some batch is confounded (``model.confounded_batches_``),
    else 0 (off); a number (>= 0) passes through.
    """
    if isinstance(weight, str):
        if weight != "auto":
            raise ValueError(f"adversarial_weight={weight!r}; use 'auto' or a number >= 0 (0 turns it off).")
        return CONFOUNDED_ADVERSARIAL_WEIGHT if confounded else 0.0
    if isinstance(weight, bool) or not float(weight) >= 0:
        raise ValueError(f"adversarial_weight={weight!r} must be a number >= 0 (0 turns it off), or 'auto'.")
    return float(weight)


def default_max_epochs(n_obs: int) -> int:
    """scvi-tools' epoch heuristic: 400 epochs up to 20,000 cells, ``400 * 20000 / n_obs`` above."""
    return int(min(MAX_EPOCHS_CAP, np.ceil(20_000 / max(n_obs, 1) * 400)))


def default_kl_warmup_epochs(max_epochs: int) -> int:
    """A quarter of ``max_epochs``, at most 50 (at least 1)."""
    return min(50, max(1, max_epochs // 4))


def stopping_defaults(has_validation: bool, early_stopping: bool | None, reduce_lr_on_plateau: bool | None,
                      kl_warmup_epochs: int, trainer_kwargs: dict, plan: dict) -> bool:
    """Resolve early stopping and the plateau schedule; both need a validation set.

    ``None`` means on exactly when there are validation cells. Early stopping waits for the KL
    warm-up to end (the ELBO is not comparable while beta rises) and then for
    :data:`EARLY_STOPPING_PATIENCE` epochs without improvement; a user's ``early_stopping_*``
    trainer arguments and ``plan_kwargs`` win. Returns ``early_stopping``; edits
    ``trainer_kwargs`` and ``plan`` in place.
    """
    for name, value in (("early_stopping", early_stopping), ("reduce_lr_on_plateau", reduce_lr_on_plateau)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}={value!r}; pass True, False or None (None: on when there are validation cells).")
    if early_stopping is None:
        early_stopping = has_validation
    if reduce_lr_on_plateau is None:
        reduce_lr_on_plateau = has_validation
    if early_stopping:
        trainer_kwargs.setdefault("early_stopping_patience", EARLY_STOPPING_PATIENCE)
        trainer_kwargs.setdefault("early_stopping_warmup_epochs", kl_warmup_epochs)
        monitor = trainer_kwargs.get("early_stopping_monitor", "elbo_validation")
        best = RestoreBestState(monitor, trainer_kwargs["early_stopping_warmup_epochs"])
        trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), best]
    plan.setdefault("reduce_lr_on_plateau", bool(reduce_lr_on_plateau))
    return bool(early_stopping)


def resolve_train_arguments(model, *, max_epochs, lr, weight_decay, batch_size, train_size, validation_size,
                            kl_weight, kl_warmup_epochs, modality_weights, alignment_weight, alignment_on,
                            adversarial_weight, early_stopping, reduce_lr_on_plateau, accelerator, precision,
                            load_sparse_tensor, datasplitter_kwargs, plan_kwargs, trainer_kwargs: dict):
    """Check :meth:`remadom.REMADOM.train`'s arguments and fill in the defaults that depend on the data.

    Returns ``(max_epochs, early_stopping, load_sparse_tensor, plan)``, ``plan`` being the training
    plan's keyword arguments (``plan_kwargs`` win over the train arguments). Edits ``trainer_kwargs``
    in place: precision, the per-epoch validation loop, early stopping and its best-state callback.
    """
    _checks.check_train_args(
        model, max_epochs=max_epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
        train_size=train_size, validation_size=validation_size, kl_weight=kl_weight,
        kl_warmup_epochs=kl_warmup_epochs, modality_weights=modality_weights,
        alignment_weight=alignment_weight, accelerator=accelerator, precision=precision,
    )
    if max_epochs is None:
        max_epochs = default_max_epochs(model.adata.n_obs)
    if kl_warmup_epochs is None:
        kl_warmup_epochs = default_kl_warmup_epochs(max_epochs)
    if load_sparse_tensor is None:
        load_sparse_tensor = model._has_sparse_modality()
    plan = {
        "lr": lr, "weight_decay": weight_decay, "max_kl_weight": kl_weight,
        "n_epochs_kl_warmup": kl_warmup_epochs, "modality_weights": modality_weights,
        "alignment_weight": alignment_weight, "alignment_on": alignment_on,
        "adversarial_weight": resolve_adversarial_weight(adversarial_weight, model.confounded_batches_),
        **(plan_kwargs or {}),
    }
    if precision is None:
        precision = default_precision(accelerator)
    if precision is not None:
        trainer_kwargs["precision"] = precision
    external = (datasplitter_kwargs or {}).get("external_indexing")
    has_val = (len(external[1]) > 0 if external is not None
               else _checks.has_validation_set(model.adata.n_obs, train_size, validation_size))
    if has_val:  # Lightning fails on a forced validation loop without validation cells
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    early_stopping = stopping_defaults(has_val, early_stopping, reduce_lr_on_plateau, kl_warmup_epochs,
                                       trainer_kwargs, plan)
    return max_epochs, early_stopping, load_sparse_tensor, plan


class RestoreBestState(Callback):
    """Keep the module's weights at its best ``monitor`` epoch and load them when training ends.

    Only epochs after ``warmup_epochs`` count. Early stopping ends ``patience`` epochs after the
    best validation ELBO, and on small data the validation ELBO rises again over those epochs
    (mild over-fitting); this returns the model the stopping rule selected. Measured effect on
    the benchmark metrics is small (``benchmarks/results_defaults.md``, "Defaults against defaults",
    ``remadom`` vs ``remadom_last``). The copy lives in memory; nothing is written to disk.
    """

    def __init__(self, monitor: str = "elbo_validation", warmup_epochs: int = 0):
        self.monitor, self.warmup_epochs = monitor, int(warmup_epochs)
        self.best, self.best_epoch, self._state = float("inf"), None, None

    def on_validation_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or trainer.current_epoch < self.warmup_epochs:
            return
        value = float(value)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch + 1
            self._state = {k: t.detach().clone() for k, t in pl_module.module.state_dict().items()}

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, so a resumed run (CLI ``--resume``) ends on the same best epoch."""
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self._state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self._state = state_dict["state"]

    def on_train_end(self, trainer, pl_module):
        if self._state is not None:
            with torch.no_grad():
                pl_module.module.load_state_dict(self._state)
            self._state = None
