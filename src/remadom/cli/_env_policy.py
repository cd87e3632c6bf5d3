"""The software environment a run records, and ``--env-policy`` checks against a recorded one.

What is recorded (``manifest.json`` ``environment``): the library versions of
:func:`~remadom.cli._manifest.environment_info`, the installed distributions
(``packages``: name -> version, from :mod:`importlib.metadata`) with the SHA-256 of that list
(``packages_sha256``), and the lockfile, when one is found (``lockfile``: name and SHA-256).
The project ships no lockfile (its dependencies are ranges in ``pyproject.toml``; the torch
build differs between machines), so the installed package set is the record that always
exists; a lockfile is found through ``$REMADOM_LOCKFILE`` or by name (:data:`LOCKFILE_NAMES`)
in the working directory and the remadom checkout.

When a run is resumed (``--resume``) or re-run from a run directory's config
(``--config RUN_DIR/config_resolved.yaml``), :func:`check_environment` compares the current
environment with the run's manifest under a policy:

``strict``
    any difference (a package added, removed or at another version, another lockfile) stops
    with :class:`EnvironmentPolicyError` (exit code 6), unless ``force``;
``warn`` (default)
    differences are logged as a warning; resuming with other torch / scvi-tools / lightning
    versions still stops (exit code 4, the resumed run could not reproduce the checkpoint's),
    unless ``force``;
``ignore``
    nothing is compared.

The package set comes from :mod:`importlib.metadata` (what ``pip freeze`` reads) so that it
works under pip, uv or conda alike; writing a lockfile is left to those tools (``uv pip
compile``, ``pip-compile``, ``conda-lock``), whose file is then recorded by hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from importlib import metadata
from pathlib import Path

from ._errors import EnvironmentMismatchError, EnvironmentPolicyError
from ._manifest import environment_info

logger = logging.getLogger(__name__)

#: Values of ``--env-policy``.
ENV_POLICIES = ("strict", "warn", "ignore")
#: Lockfile names looked for, in this order (``$REMADOM_LOCKFILE`` names one explicitly).
LOCKFILE_NAMES = ("pylock.toml", "uv.lock", "poetry.lock", "pdm.lock", "requirements.lock",
                  "requirements-lock.txt", "constraints.txt")
#: Libraries whose version a resumed run must share with the run it continues (``warn`` policy).
RESUME_CRITICAL = ("torch", "scvi_tools", "lightning")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> dict[str, str]:
    """Installed distributions, ``{normalized name: version}`` (the first on ``sys.path`` wins)."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(_normalize(name), dist.version)
    return dict(sorted(out.items()))


def packages_sha256(packages: dict[str, str]) -> str:
    """SHA-256 of the ``name==version`` lines of ``packages``, sorted by name."""
    text = "".join(f"{n}=={v}\n" for n, v in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checkout_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def find_lockfile() -> Path | None:
    """``$REMADOM_LOCKFILE``, else the first of :data:`LOCKFILE_NAMES` in the working directory or the checkout."""
    explicit = os.environ.get("REMADOM_LOCKFILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise EnvironmentMismatchError(f"REMADOM_LOCKFILE={explicit!r} is not a file.",
                                           "Point it at the lockfile of this environment, or unset it.")
        return path
    folders = [Path.cwd()]
    root = _checkout_root()
    if root is not None and root != Path.cwd():
        folders.append(root)
    for folder in folders:
        for name in LOCKFILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def current_environment() -> dict:
    """The manifest's ``environment``: library versions, installed packages and their hash, the lockfile."""
    env = environment_info()
    packages = installed_packages()
    lock = find_lockfile()
    env["lockfile"] = {"name": lock.name, "sha256": _sha256_file(lock)} if lock is not None else None
    env["packages"] = packages
    env["packages_sha256"] = packages_sha256(packages)
    return env


def environment_differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between a recorded and the current ``environment``.

    Packages are compared when both record them; otherwise the named library versions are.
    """
    diffs = []
    old_pk, new_pk = recorded.get("packages"), current.get("packages")
    if isinstance(old_pk, dict) and isinstance(new_pk, dict):
        for name in sorted(set(old_pk) | set(new_pk)):
            a, b = old_pk.get(name), new_pk.get(name)
            if a != b:
                diffs.append(f"{name} {a or '(not installed)'} -> {b or '(not installed)'}")
    else:
        for key in ("python", "torch", "scvi_tools", "lightning", "numpy", "anndata"):
            a, b = recorded.get(key), current.get(key)
            if a and a != b:
                diffs.append(f"{key} {a} -> {b}")
    old_lock, new_lock = recorded.get("lockfile"), current.get("lockfile")
    if "lockfile" in recorded and old_lock != new_lock:
        def show(lock):
            return f"{lock['name']} (sha256 {lock['sha256'][:12]})" if lock else "(none)"

        diffs.append(f"lockfile {show(old_lock)} -> {show(new_lock)}")
    return diffs


def _critical_differences(recorded: dict, current: dict) -> list[str]:
    return [f"{k} {recorded.get(k)} -> {current.get(k)}" for k in RESUME_CRITICAL
            if recorded.get(k) and recorded.get(k) != current.get(k)]


def check_environment(recorded: dict | None, current: dict, policy: str = "warn", force: bool = False,
                      source: str = "the recorded run", resuming: bool = False) -> dict | None:
    """Compare ``current`` with a run's ``recorded`` environment under ``policy``.

    Parameters
    ----------
    recorded
        The ``environment`` of the run's manifest (``None``: nothing recorded, nothing to check).
    current
        :func:`current_environment`.
    policy
        ``"strict"``, ``"warn"`` or ``"ignore"`` (module docstring).
    force
        Warn instead of stopping.
    source
        Where ``recorded`` comes from, for the messages.
    resuming
        Whether the run continues ``recorded``'s checkpoint (``warn`` then stops on other
        torch / scvi-tools / lightning versions).

    Returns
    -------
    The manifest's ``environment_check`` (policy, reference, differences, forced), or ``None``
    when nothing was compared.

    Raises
    ------
    EnvironmentPolicyError
        ``strict`` and any difference, without ``force`` (exit code 6).
    EnvironmentMismatchError
        ``warn``, resuming with other versions of :data:`RESUME_CRITICAL` libraries, without ``force`` (exit 4).
    """
    if policy not in ENV_POLICIES:
        raise ValueError(f"env policy must be one of {list(ENV_POLICIES)}, not {policy!r}.")
    if policy == "ignore" or recorded is None:
        return None
    diffs = environment_differences(recorded, current)
    listing = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
    if diffs and policy == "strict" and not force:
        raise EnvironmentPolicyError(
            f"the environment differs from the one {source} recorded ({len(diffs)} difference(s): {listing}).",
            "Install the recorded versions (manifest.json 'environment.packages'), or pass --force to run "
            "anyway (recorded in the manifest), or --env-policy warn.",
        )
    critical = _critical_differences(recorded, current) if resuming else []
    if critical and policy == "warn" and not force:
        raise EnvironmentMismatchError(
            f"{source} was trained with different library versions ({'; '.join(critical)}); "
            "resuming could not reproduce it.",
            "Resume in the original environment (see manifest.json 'environment'), start a new run "
            "(omit --resume), or pass --force.",
        )
    if diffs:
        logger.warning("the environment differs from the one %s recorded%s: %s", source,
                       " (--force)" if force else "", listing)
    return {"policy": policy, "reference": source, "differences": diffs, "forced": bool(force and diffs)}


def reference_manifest_path(config_source: str | None, resume_dir: Path | None) -> Path | None:
    """The manifest a run is compared with: the resumed run's, or that beside a run's config file."""
    if resume_dir is not None:
        path = Path(resume_dir) / "manifest.json"
        return path if path.is_file() else None
    if config_source:
        path = Path(config_source).resolve().parent / "manifest.json"
        if path.is_file():
            return path
    return None
