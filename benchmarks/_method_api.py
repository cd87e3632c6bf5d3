"""What every benchmark method adapter takes and returns (see ``_methods.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from _scenarios import Scenario


class MethodUnavailable(Exception):
    """The method cannot run here (not installed, or the scenario is outside its scope)."""


@dataclass
class RunConfig:
    epochs: int | None  # None: the method's own default
    batch_size: int = 256
    seed: int = 0
    accelerator: str = "auto"
    #: ``run.py --epochs default``: every ``train()`` setting is the method's own, early stopping
    #: included (REMADOM's, TOTALVI's and MULTIVI's defaults stop on the validation ELBO)
    own_defaults: bool = False


@dataclass
class MethodOutput:
    latent: np.ndarray  # joint latent of the evaluated cells
    latent_single: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> latent of paired cells
    imputed: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> prediction for hidden cells
    train_time_s: float = float("nan")
    epochs_run: int = 0
    eval_idx: np.ndarray | None = None  # positions in scn.mdata of evaluated cells (None = all)
    notes: list[str] = field(default_factory=list)
    # modality -> (lower, upper) 90 % posterior-predictive interval of the hidden raw values
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _other(scn: Scenario, m: str) -> str:
    return next(x for x in scn.modalities if x != m)


def _epochs_run(model, fallback: int | None) -> int:
    hist = getattr(model, "history", None) or {}
    for key in ("elbo_train", "reconstruction_loss_train", "train_loss_epoch"):
        if key in hist:
            return len(hist[key])
    return fallback or 0


def train_timed(model, cfg: RunConfig, **train_kwargs) -> float:
    """``model.train`` (scvi-tools API) with the run's epochs, batch size and accelerator, early
    stopping off unless ``cfg.own_defaults``; returns the wall time of training alone."""
    if cfg.epochs is not None:
        train_kwargs["max_epochs"] = cfg.epochs
    if not cfg.own_defaults:
        train_kwargs.setdefault("early_stopping", False)
    t0 = time.perf_counter()
    model.train(batch_size=cfg.batch_size, accelerator=cfg.accelerator, **train_kwargs)
    return time.perf_counter() - t0
