"""Defaults of ``REMADOM.__init__`` and ``REMADOM.train`` read without importing the model.

The config classes take their defaults from the model's signatures (one home for every
default). Importing the model loads torch and scvi-tools (seconds), which ``remadom schema``
and ``remadom train --dry-run`` do not need; so the signatures are read from the source
with :mod:`ast`. A default that is not a literal falls back to importing the model.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

__all__ = ["REMADOM", "signature_defaults"]

_SOURCE = Path(__file__).resolve().parents[1] / "model" / "_remadom.py"
_MISSING = object()


def signature_defaults(method_name: str, path: Path = _SOURCE, class_name: str = "REMADOM") -> dict:
    """``{parameter: default}`` of ``class_name.method_name`` in ``path``, literals only.

    Parameters whose default is not a Python literal map to a sentinel that makes
    :class:`_Method` fall back to :func:`inspect.signature` on the imported class.
    """
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method_name)
    args = fn.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
    out = {}
    for arg, node in pairs:
        try:
            out[arg.arg] = ast.literal_eval(node)
        except ValueError:
            out[arg.arg] = _MISSING
    return out


class _Method:
    def __init__(self, name: str):
        self.name = name
        self._defaults: dict | None = None

    @property
    def defaults(self) -> _Defaults:
        if self._defaults is None:
            self._defaults = signature_defaults(self.name)
        return _Defaults(self.name, self._defaults)


class _Defaults:
    def __init__(self, method: str, values: dict):
        self.method, self.values = method, values

    def __getitem__(self, name: str):
        value = self.values.get(name, _MISSING)
        if value is _MISSING:  # not a literal (or not found): ask the imported class
            from ..model import REMADOM as model_cls

            return inspect.signature(getattr(model_cls, self.method)).parameters[name].default
        return value


class _LazyModel:
    """Stands in for the REMADOM class where only its signature defaults are needed."""

    __init__ = _Method("__init__")  # type: ignore[assignment]
    train = _Method("train")


REMADOM = _LazyModel
