"""Data utilities: mock mosaic data and optional preprocessing hooks."""

from . import preprocess
from ._backed import read_h5ad_backed
from ._backed_mudata import mudata_to_backed_h5ad, stored_setup_kwargs
from ._concat import concat_mosaic
from ._scale import write_scale_dataset
from .mock import PROBLEM_TYPES, generate_mock_dataset, write_mock

__all__ = ["PROBLEM_TYPES", "concat_mosaic", "generate_mock_dataset", "mudata_to_backed_h5ad", "read_h5ad_backed",
           "stored_setup_kwargs", "write_mock", "write_scale_dataset", "preprocess"]
