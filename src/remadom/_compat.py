"""The one place where REMADOM touches scvi-tools internals.

scvi-tools keeps a few useful helpers private. Wrapping them here means an upstream
rename breaks this file only.
"""

from __future__ import annotations

from scvi.data._utils import _verify_and_correct_data_format  # noqa: F401  (private in scvi-tools)
from scvi.model.base._save_load import _load_saved_files  # noqa: F401  (private in scvi-tools)
from scvi.train._logger import SimpleLogger  # noqa: F401  (private in scvi-tools)

try:
    from scvi.model.base._base_model import _SETUP_ARGS_KEY  # noqa: F401
except ImportError:  # pragma: no cover
    from scvi.data._constants import _SETUP_ARGS_KEY  # noqa: F401

__all__ = ["_load_saved_files", "_verify_and_correct_data_format", "SimpleLogger", "_SETUP_ARGS_KEY"]
