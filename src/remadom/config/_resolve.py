"""Resolve a run configuration: defaults < YAML file < environment < command-line overrides."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ._models import RunConfig

#: Prefix of environment variables that override configuration values.
ENV_PREFIX = "REMADOM__"
#: Separator of nested keys in environment variable names.
ENV_SEPARATOR = "__"


class ConfigError(ValueError):
    """An invalid, unreadable or inconsistent configuration."""


def parse_scalar(text: str) -> Any:
    """Parse an override value as a YAML scalar (``32`` -> int, ``null`` -> None, ``[a, b]`` -> list)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _set_path(tree: dict, path: Sequence[str], value: Any, origin: str) -> None:
    node = tree
    for i, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path[: i + 1])} is a value, not a section.")
        node = child
    node[path[-1]] = value


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML config file into a dict (empty file -> ``{}``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}.") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not a {type(data).__name__}.")
    return data


def env_overrides(environ: Mapping[str, str] | None = None) -> dict:
    """Nested overrides from ``REMADOM__SECTION__KEY=value`` environment variables.

    Names are case-insensitive (lower-cased); ``__`` separates levels, e.g.
    ``REMADOM__MODEL__N_LATENT=32`` sets ``model.n_latent`` and ``REMADOM__SEED=1`` sets
    ``seed``. Values are parsed as YAML scalars.

    Not pydantic-settings (not a dependency): its environment source parses complex values as
    JSON and strings otherwise, while here environment values are YAML scalars exactly as
    ``--set`` values are, and they sit between the YAML file and ``--set`` in one merge
    validated once by :class:`RunConfig`.
    """
    environ = os.environ if environ is None else environ
    tree: dict = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR)]
        if not all(path):
            raise ConfigError(f"Environment variable {name}: empty key segment.")
        _set_path(tree, path, parse_scalar(environ[name]), f"environment variable {name}")
    return tree


def cli_overrides(assignments: Sequence[str] | None) -> dict:
    """Nested overrides from ``section.key=value`` strings (values parsed as YAML scalars)."""
    tree: dict = {}
    for item in assignments or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.n_latent=32.")
        path = [p.strip() for p in key.strip().split(".")]
        if not all(path):
            raise ConfigError(f"--set {item!r}: empty key segment.")
        _set_path(tree, path, parse_scalar(value), f"--set {item}")
    return tree


def deep_merge(base: dict, override: Mapping) -> dict:
    """Recursive merge; mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {json.dumps(e.get('input'), default=str)[:80]})")
    return f"Invalid configuration ({origin}):\n" + "\n".join(lines)


def validate_config(raw: Mapping, origin: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`, raising :class:`ConfigError` on failure."""
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, origin)) from e


def resolve_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[RunConfig, dict]:
    """Resolve a configuration: defaults < YAML file < ``REMADOM__*`` environment < ``overrides``.

    Parameters
    ----------
    path
        YAML file; ``None`` starts from the defaults.
    overrides
        ``section.key=value`` strings, as given to ``--set``.
    environ
        Environment to read (default :data:`os.environ`).

    Returns
    -------
    The validated config and the raw YAML mapping as read from ``path``.
    """
    raw = load_yaml(path) if path is not None else {}
    merged = deep_merge(raw, env_overrides(environ))
    merged = deep_merge(merged, cli_overrides(overrides))
    origin = f"{path} + environment + --set" if path is not None else "defaults + environment + --set"
    return validate_config(merged, origin), raw


def config_json_schema() -> dict:
    """JSON Schema of :class:`RunConfig`."""
    schema = RunConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The JSON Schema as committed in ``schema/config.schema.json``."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n"


def dump_config(config: RunConfig) -> str:
    """The fully resolved configuration as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
