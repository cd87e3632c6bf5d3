"""The one place where REMADOM touches scvi-tools internals.

scvi-tools keeps a few useful helpers private. Wrapping them here means an upstream
rename breaks this file only.
"""

from __future__ import annotations

from scvi.data._utils import _verify_and_correct_data_format  # private in scvi-tools
from scvi.model._utils import parse_device_args  # private in scvi-tools

# scvi's _load_saved_files is deliberately not wrapped: it unpickles with weights_only=False;
# remadom.model._io.load_saved_files is the safe reader (issue #15).
from scvi.model.base._save_load import _initialize_model  # private in scvi-tools
from scvi.train._logger import SimpleLogger  # private in scvi-tools

try:
    from scvi.model.base._base_model import _SETUP_ARGS_KEY
except ImportError:  # pragma: no cover
    from scvi.data._constants import _SETUP_ARGS_KEY

__all__ = ["parse_device_args", "_initialize_model", "_verify_and_correct_data_format", "SimpleLogger", "_SETUP_ARGS_KEY"]
