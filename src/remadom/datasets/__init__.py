"""Real multi-omic datasets (small public subsets) and mosaic-making helpers."""

from ._fetch import REGISTRY, RemoteFile, cache_dir, fetch_file
from ._loaders import (
    DATA_DIR_ENV,
    FILES,
    load_bmmc_cite,
    load_bmmc_multiome,
    load_mouse_cortex_snareseq,
    load_pbmc_cite_mosaic,
    load_pbmc_reapseq,
    resolve_data_file,
)
from ._mosaic import hide_modality, make_mosaic3

__all__ = [
    "DATA_DIR_ENV",
    "FILES",
    "resolve_data_file",
    "REGISTRY",
    "RemoteFile",
    "cache_dir",
    "fetch_file",
    "load_pbmc_cite_mosaic",
    "load_bmmc_cite",
    "load_bmmc_multiome",
    "load_mouse_cortex_snareseq",
    "load_pbmc_reapseq",
    "hide_modality",
    "make_mosaic3",
]
