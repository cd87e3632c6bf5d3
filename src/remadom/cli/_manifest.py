"""The run manifest (``manifest.json``, schema ``schema/manifest.v1.json``) and atomic writes."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ._atomic import atomic_write

MANIFEST_VERSION = 1
#: JSON Schema of the manifest, shipped with the package and mirrored in schema/manifest.v1.json.
MANIFEST_SCHEMA_RESOURCE = "manifest.v1.json"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    return atomic_write(path, lambda fh: fh.write(text))


def utc_now() -> str:
    """ISO-8601 UTC time stamp with a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment_info() -> dict:
    """Versions of Python and the libraries a run depends on, and the CUDA setup."""
    import torch

    cuda = torch.version.cuda if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "remadom": _pkg_version("remadom"),
        "torch": torch.__version__,
        "scvi_tools": _pkg_version("scvi-tools"),
        "lightning": _pkg_version("lightning"),
        "numpy": _pkg_version("numpy"),
        "anndata": _pkg_version("anndata"),
        "cuda": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


def git_info(path: str | Path | None = None) -> dict | None:
    """Commit, dirtiness and origin URL of the git checkout holding ``path`` (default: this package)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args):
        out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        if commit is None:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": commit, "dirty": bool(status), "remote": git("remote", "get-url", "origin")}
    except (OSError, subprocess.SubprocessError):
        return None


def manifest_schema() -> dict:
    """The manifest JSON Schema (v1)."""
    text = resources.files("remadom.cli").joinpath(MANIFEST_SCHEMA_RESOURCE).read_text()
    return json.loads(text)


def validate_manifest(manifest: dict) -> list[str]:
    """Schema violations of ``manifest`` (empty list: valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}"
        for err in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    ]


def write_manifest(path: str | Path, manifest: dict) -> Path:
    """Validate and atomically write ``manifest``."""
    errors = validate_manifest(manifest)
    if errors:
        raise ValueError("manifest does not match schema v1: " + "; ".join(errors))
    return atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")


def sys_argv() -> list[str]:
    """The command line of this process."""
    return list(sys.argv)
