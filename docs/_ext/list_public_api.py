"""Print the public API (``__all__``) of each documented REMADOM module.

Used to keep ``docs/api.md`` in step with the code::

    python docs/_ext/list_public_api.py            # list names
    python docs/_ext/list_public_api.py --check    # exit 1 if a public name is missing from api.md
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from pathlib import Path

#: Modules whose ``__all__`` is documented in ``docs/api.md``.
PUBLIC_MODULES = (
    "remadom",
    "remadom.data",
    "remadom.data.mock",
    "remadom.data.preprocess",
    "remadom.datasets",
    "remadom.eval",
    "remadom.nn",
    "remadom.config",
)
API_MD = Path(__file__).resolve().parents[1] / "api.md"
SKIP = {"__version__"}


def public_names() -> dict[str, list[str] | None]:
    """``{module: names}``; ``None`` when the module cannot be imported."""
    out: dict[str, list[str] | None] = {}
    for mod in PUBLIC_MODULES:
        try:
            module = importlib.import_module(mod)
        except Exception:  # noqa: BLE001 - report, do not fail
            out[mod] = None
            continue
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n in vars(module) if not n.startswith("_")]
        out[mod] = [n for n in names if n not in SKIP]
    return out


def documented() -> set[str]:
    """Fully qualified names listed in autosummary blocks of ``api.md``."""
    text = API_MD.read_text(encoding="utf-8")
    names: set[str] = set()
    current = "remadom"
    for line in text.splitlines():
        m = re.match(r"\s*(?:\.\.\s+)?(?:```)?\{?currentmodule\}?(?:::)?\s+([\w.]+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^\s{0,3}(?:~)?([A-Za-z_][\w.]*)\s*$", line)
        if m and not line.startswith("#"):
            names.add(f"{current}.{m.group(1)}")
    return names


def missing_from_docs() -> list[str]:
    """Public names (``module.name``) that ``api.md`` does not list.

    A name re-exported by a parent package (``remadom.ModalitySpec``) counts as documented when it
    is listed under any module of the same package tree. Submodules are not listed.
    """
    have = documented()
    missing = []
    for mod, names in public_names().items():
        module = importlib.import_module(mod) if names else None
        for name in names or []:
            if isinstance(getattr(module, name, None), types.ModuleType):
                continue
            full = f"{mod}.{name}"
            if full in have or any(h.endswith("." + name) and (h.startswith(mod) or mod.startswith(h.rsplit(".", 1)[0])) for h in have):
                continue
            missing.append(full)
    return missing


if __name__ == "__main__":
    for mod, names in public_names().items():
        print(f"{mod}: {'<not importable>' if names is None else ', '.join(names) or '<empty>'}")
    if "--check" in sys.argv:
        missing = missing_from_docs()
        if missing:
            print("\nNot in docs/api.md:\n  " + "\n  ".join(missing))
            sys.exit(1)
        print("\napi.md lists every public name.")
