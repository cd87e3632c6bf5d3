"""Data utilities: mock mosaic data and optional preprocessing hooks."""

from . import preprocess
from .mock import PROBLEM_TYPES, generate_mock_dataset, write_mock

__all__ = ["PROBLEM_TYPES", "generate_mock_dataset", "write_mock", "preprocess"]
