"""Names in the likelihood and modality-kind registries, read without importing torch.

The config validates likelihood / kind / encoder-input names against the registries in
:mod:`remadom.nn.likelihoods`, :mod:`remadom.modalities` and :mod:`remadom.nn.networks`.
Those modules import torch (seconds), which ``remadom schema`` and ``remadom train
--dry-run`` do not need; so the built-in names are read from the source with :mod:`ast`
(``tests/test_quiet_and_fast.py`` checks they equal the registries). A name that is not
built in is looked up in the imported registry, so heads added with
:func:`remadom.nn.register_likelihood` (or kinds added to ``MODALITY_KINDS``) still validate.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

__all__ = ["builtin_encoder_inputs", "builtin_likelihoods", "builtin_modality_kinds",
           "known_likelihood", "known_kind"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _tree(relative: str) -> ast.Module:
    return ast.parse((_PACKAGE / relative).read_text())


@cache
def builtin_likelihoods() -> tuple[str, ...]:
    """``name`` of every ``@register_likelihood`` class in the ``nn/likelihoods`` package, sorted."""
    names = []
    files = sorted((_PACKAGE / "nn" / "likelihoods").glob("*.py"))
    nodes = [node for f in files for node in _tree(f"nn/likelihoods/{f.name}").body]
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(isinstance(d, ast.Name) and d.id == "register_likelihood" for d in node.decorator_list):
            continue
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)):
                names.append(ast.literal_eval(stmt.value))
    return tuple(sorted(names))


def _assigned(relative: str, target: str) -> ast.expr:
    for node in _tree(relative).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == target:
            return node.value
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == target for t in node.targets):
            return node.value
    raise LookupError(f"{target} not found in {relative}")  # pragma: no cover


@cache
def builtin_modality_kinds() -> tuple[str, ...]:
    """Keys of ``MODALITY_KINDS`` in ``modalities.py``, sorted."""
    value = _assigned("modalities.py", "MODALITY_KINDS")
    return tuple(sorted(ast.literal_eval(k) for k in value.keys))


@cache
def builtin_encoder_inputs() -> tuple[str, ...]:
    """``ENCODER_INPUTS`` of ``nn/networks.py``, in order."""
    return tuple(ast.literal_eval(_assigned("nn/networks.py", "ENCODER_INPUTS")))


def known_likelihood(name: str) -> str:
    """``name`` if it is a registered likelihood; the registry's error otherwise."""
    if name not in builtin_likelihoods():
        from ..nn.likelihoods import get_likelihood

        get_likelihood(name)  # the head registry is the one list of likelihoods
    return name


def known_kind(name: str) -> str:
    """``name`` if it is a modality kind; a ValueError listing the kinds otherwise."""
    if name not in builtin_modality_kinds():
        from ..modalities import MODALITY_KINDS

        if name not in MODALITY_KINDS:
            raise ValueError(f"unknown modality kind {name!r}; choose one of {sorted(MODALITY_KINDS)}")
    return name
