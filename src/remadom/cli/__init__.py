"""Command line and reproducible runs (``remadom train|sweep|mock|evaluate|manifest|schema``).

``run_training`` is imported on first use, so ``remadom --help`` does not load torch.
"""

from ._errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_ENV_POLICY,
    EXIT_ENVIRONMENT,
    EXIT_TRAINING,
    ConfigurationError,
    DataError,
    EnvironmentMismatchError,
    EnvironmentPolicyError,
    TrainingFailure,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_ENVIRONMENT",
    "EXIT_ENV_POLICY",
    "EXIT_TRAINING",
    "ConfigurationError",
    "DataError",
    "EnvironmentMismatchError",
    "EnvironmentPolicyError",
    "TrainingFailure",
    "run_training",
]


def __getattr__(name: str):
    if name == "run_training":
        from ._run import run_training

        return run_training
    raise AttributeError(f"module 'remadom.cli' has no attribute {name!r}")
