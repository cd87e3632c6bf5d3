"""Checks a ``remadom train`` run makes before it creates its run directory."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import ConfigurationError, EnvironmentMismatchError

#: Accelerator names the CLI accepts (Lightning's, for the devices REMADOM supports).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _writable_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (the folder that must be writable)."""
    p = path.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_run_environment(config) -> None:
    """Accelerator name, device count and a writable ``logging.save_dir``."""
    import torch

    acc = str(config.trainer.accelerator).lower()
    if acc not in ACCELERATORS:
        raise ConfigurationError(f"trainer.accelerator={config.trainer.accelerator!r} is not one of {list(ACCELERATORS)}.",
                                 "Use --set trainer.accelerator=auto (or cpu / gpu / mps).")
    devices = config.trainer.devices
    on_gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    available = torch.cuda.device_count() if on_gpu else 1
    if isinstance(devices, bool) or (isinstance(devices, int) and devices < 1 and devices != -1):
        raise ConfigurationError(f"trainer.devices={devices!r} must be a positive integer, a list of device "
                                 "indices, or 'auto'.", "Use --set trainer.devices=auto or 1.")
    wanted = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else None
    if wanted is not None and wanted != -1 and wanted > available:
        where = f"{available} CUDA device(s)" if on_gpu else "the CPU (one training process)"
        raise EnvironmentMismatchError(
            f"trainer.devices={devices!r} asks for {wanted} device(s) but this run has {where}; on the CPU "
            "several devices would start one process per device, each re-running the command.",
            "Use --set trainer.devices=1 (or auto).",
        )
    save_dir = Path(config.logging.save_dir)
    parent = _writable_parent(save_dir)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"logging.save_dir={str(save_dir)!r} cannot be written ({parent} is not a "
                                 "writable folder).", "Pass --save-dir with a folder you can write to.")


def check_train_config(model, config) -> None:
    """Training settings that need the model (its modality names): ConfigurationError when wrong."""
    from ..model._checks import check_modality_weights

    try:
        check_modality_weights(config.schedule.modality_weights, model.modality_names, "schedule.modality_weights")
    except (ValueError, TypeError) as e:
        raise ConfigurationError(str(e), "Fix schedule.modality_weights (keys are the model's modality names).") from e
