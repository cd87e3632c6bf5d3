"""REMADOM: mosaic single-cell multi-omic integration on scvi-tools.

The model and the subpackages are imported on first use (``remadom.REMADOM``,
``remadom.datasets``, ...), so ``import remadom`` and the command line's ``--help`` do
not load torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from ._settings import settings

try:
    __version__ = version("remadom")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "REMADOM": ".model",
    "RemadomSetupError": ".model",
    "MODALITY_KINDS": ".modalities",
    "MODALITY_NAME_ALIASES": ".modalities",
    "ModalitySpec": ".modalities",
    "transfer_labels": ".tools",
}
_SUBPACKAGES = ("data", "datasets", "eval", "modalities", "model", "module", "nn", "tools")

__all__ = [
    "REMADOM",
    "RemadomSetupError",
    "MODALITY_KINDS",
    "MODALITY_NAME_ALIASES",
    "ModalitySpec",
    "data",
    "datasets",
    "nn",
    "transfer_labels",
    "settings",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'remadom' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
