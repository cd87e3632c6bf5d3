"""Default Lightning precision for REMADOM.train: bf16 mixed precision on GPUs that support it."""

from __future__ import annotations

import torch

__all__ = ["default_precision"]

_GPU_ACCELERATORS = ("gpu", "cuda")


def default_precision(accelerator: str = "auto") -> str | None:
    """Precision used when ``train(precision=None)``.

    ``"bf16-mixed"`` when training runs on a CUDA GPU that supports bfloat16 (Ampere or
    newer): matrix products in bf16, while every likelihood is still evaluated in float32
    (the heads cast their parameters to float32). ``None`` (Lightning's float32) on CPU and
    on GPUs without bf16.

    Parameters
    ----------
    accelerator
        The ``accelerator`` given to :meth:`remadom.REMADOM.train` (``"auto"`` means a GPU
        when one is visible, as in Lightning).
    """
    accelerator = str(accelerator).lower()
    if accelerator not in (*_GPU_ACCELERATORS, "auto") or not torch.cuda.is_available():
        return None
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else None
