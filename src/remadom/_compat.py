"""The one place where REMADOM touches scvi-tools internals.

scvi-tools keeps a few useful helpers private. Wrapping them here means an upstream
rename breaks this file only.
"""

from __future__ import annotations

# anndata's concrete on-disk CSR matrix (``sparse_dataset`` returns one; ``anndata.abc.CSRDataset``
# is its abstract interface): subclassed by remadom._row_reads for one-read minibatches
from anndata._core.sparse_dataset import _CSRDataset as AnnDataCSRDataset  # private in anndata
from scvi.data._constants import _FIELD_REGISTRIES_KEY, _STATE_REGISTRY_KEY  # private in scvi-tools
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


def mutable_state_registry(adata_manager, registry_key: str) -> dict:
    """The state registry of one field as the live dict (``get_state_registry`` returns a frozen copy)."""
    return adata_manager.registry[_FIELD_REGISTRIES_KEY][registry_key][_STATE_REGISTRY_KEY]


__all__ = ["AnnDataCSRDataset", "mutable_state_registry", "parse_device_args", "_initialize_model", "_verify_and_correct_data_format", "SimpleLogger", "_SETUP_ARGS_KEY"]
