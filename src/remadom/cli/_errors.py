"""Errors with a documented exit code and a one-paragraph, actionable message."""

from __future__ import annotations

#: Exit codes of the ``remadom`` command line (see docs/cli.md).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_ENVIRONMENT = 4
EXIT_TRAINING = 5
EXIT_ENV_POLICY = 6


class RemadomCLIError(Exception):
    """Base class: ``exit_code`` and a title naming the kind of problem."""

    exit_code = EXIT_FAILURE
    title = "Error"

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        """The message shown to the user: problem, then fix."""
        text = f"{self.title}: {self.message}"
        if self.fix:
            text += f" {self.fix}"
        return text


class ConfigurationError(RemadomCLIError):
    """Invalid configuration or command-line arguments (exit code 2)."""

    exit_code = EXIT_CONFIG
    title = "Configuration error"


class DataError(RemadomCLIError):
    """Missing, unreadable or inconsistent data (exit code 3)."""

    exit_code = EXIT_DATA
    title = "Data error"


class EnvironmentMismatchError(RemadomCLIError):
    """The software or hardware differs from what the run needs (exit code 4)."""

    exit_code = EXIT_ENVIRONMENT
    title = "Environment mismatch"


class EnvironmentPolicyError(EnvironmentMismatchError):
    """``--env-policy strict``: the environment differs from the one the run recorded (exit code 6)."""

    exit_code = EXIT_ENV_POLICY
    title = "Environment differs from the recorded run"


class TrainingFailure(RemadomCLIError):
    """Training diverged or crashed (exit code 5)."""

    exit_code = EXIT_TRAINING
    title = "Training failure"
