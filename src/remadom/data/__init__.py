"""Data utilities: mock mosaic data and optional preprocessing hooks."""

from . import preprocess
from ._backed import read_h5ad_backed
from ._concat import concat_mosaic
from ._scale import write_scale_dataset
from .mock import PROBLEM_TYPES, generate_mock_dataset, write_mock

__all__ = ["PROBLEM_TYPES", "concat_mosaic", "generate_mock_dataset", "read_h5ad_backed", "write_mock", "write_scale_dataset", "preprocess"]
