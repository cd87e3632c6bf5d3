"""Command line and reproducible runs (``remadom train|mock|evaluate|manifest|schema``)."""

from ._errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_ENVIRONMENT,
    EXIT_TRAINING,
    ConfigurationError,
    DataError,
    EnvironmentMismatchError,
    TrainingFailure,
)
from ._run import run_training

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_ENVIRONMENT",
    "EXIT_TRAINING",
    "ConfigurationError",
    "DataError",
    "EnvironmentMismatchError",
    "TrainingFailure",
    "run_training",
]
