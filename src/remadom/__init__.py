"""REMADOM: mosaic single-cell multi-omic integration on scvi-tools."""

from importlib.metadata import PackageNotFoundError, version

from . import nn
from .model import REMADOM, RemadomSetupError
from .modalities import MODALITY_KINDS, ModalitySpec

try:
    __version__ = version("remadom")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["REMADOM", "RemadomSetupError", "MODALITY_KINDS", "ModalitySpec", "nn", "__version__"]
