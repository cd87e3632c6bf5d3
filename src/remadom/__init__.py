"""REMADOM: mosaic single-cell multi-omic integration on scvi-tools."""

from importlib.metadata import PackageNotFoundError, version

from . import data, datasets, nn
from .modalities import MODALITY_KINDS, MODALITY_NAME_ALIASES, ModalitySpec
from .model import REMADOM, RemadomSetupError

try:
    __version__ = version("remadom")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = [
    "REMADOM",
    "RemadomSetupError",
    "MODALITY_KINDS",
    "MODALITY_NAME_ALIASES",
    "ModalitySpec",
    "data",
    "datasets",
    "nn",
    "__version__",
]
