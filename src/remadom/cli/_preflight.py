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


def check_device_settings(config) -> None:
    """A GPU/MPS accelerator that exists, and a precision the device supports."""
    import torch

    acc = config.trainer.accelerator.lower()
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise EnvironmentMismatchError(
            f"trainer.accelerator={config.trainer.accelerator!r} but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}).",
            "Use --set trainer.accelerator=cpu (or auto), or run on a machine with a GPU and a CUDA build of torch.",
        )
    if acc == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentMismatchError("trainer.accelerator='mps' but MPS is not available.",
                                       "Use --set trainer.accelerator=cpu (or auto).")
    on_cpu = acc == "cpu" or (acc == "auto" and not torch.cuda.is_available())
    if on_cpu and config.trainer.precision == "16-mixed":
        raise EnvironmentMismatchError(
            "trainer.precision='16-mixed' needs a GPU; this run would train on the CPU.",
            "Use --set trainer.precision=32 (or bf16-mixed) on CPU.",
        )


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
