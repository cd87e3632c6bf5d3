"""Configuration of reproducible runs: a validated model tree and its resolution order.

Resolution order, later wins: defaults (the classes in this module) < YAML file <
``REMADOM__SECTION__KEY`` environment variables < ``--set section.key=value`` overrides.
"""

from ._models import (
    DataConfig,
    LoggingConfig,
    MockDataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainerConfig,
)
from ._resolve import (
    ENV_PREFIX,
    ConfigError,
    cli_overrides,
    config_json_schema,
    deep_merge,
    dump_config,
    env_overrides,
    load_yaml,
    parse_scalar,
    resolve_config,
    schema_text,
    validate_config,
)

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "DataConfig",
    "LoggingConfig",
    "MockDataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainerConfig",
    "cli_overrides",
    "config_json_schema",
    "deep_merge",
    "dump_config",
    "env_overrides",
    "load_yaml",
    "parse_scalar",
    "resolve_config",
    "schema_text",
    "validate_config",
]
