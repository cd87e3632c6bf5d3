"""Render the REMADOM configuration JSON Schema into a Markdown reference at build time.

On ``builder-inited`` this reads ``schema_doc_source`` (default ``../schema/config.schema.json``)
and writes ``schema_doc_output`` (default ``docs/_generated/config_schema.md``, gitignored), which
``config.md`` pulls in with a MyST ``{include}``. One table is written per object in the schema
(top level first, nested objects as dotted paths), with each key's type, default, allowed values
and description. A missing or unreadable schema produces a placeholder note instead of a warning,
so the ``-W`` build passes before the schema exists.

The renderer understands what pydantic v2 and hand-written schemas use: ``$ref`` into
``$defs``/``definitions``, ``allOf`` with one member, ``anyOf``/``oneOf`` (including the
``X | None`` pattern), ``enum``/``const``, ``items`` and ``additionalProperties``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_DEPTH = 8


def _resolve(schema: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Follow ``$ref`` (and a single-member ``allOf``), merging sibling keywords such as defaults."""
    node = dict(schema)
    while True:
        if "$ref" in node:
            ref = node.pop("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
                return node
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            seen = (*seen, ref)
            node = {**target, **node}  # keywords next to the $ref win (e.g. description, default)
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            inner = node.pop("allOf")[0]
            node = {**inner, **node}
        else:
            return node


def _type_str(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> str:
    """A short human-readable type for one schema node."""
    if depth > MAX_DEPTH:
        return "…"
    node = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            parts = []
            for sub in node[key]:
                text = _type_str(sub, root, depth + 1)
                if text not in parts:
                    parts.append(text)
            return " | ".join(parts)
    if "const" in node:
        return json.dumps(node["const"])
    typ = node.get("type")
    if isinstance(typ, list):
        return " | ".join(str(t) for t in typ)
    if typ == "array":
        items = node.get("items")
        return f"array of {_type_str(items, root, depth + 1)}" if isinstance(items, dict) else "array"
    if typ == "object" or "properties" in node:
        title = node.get("title")
        addl = node.get("additionalProperties")
        if "properties" not in node and isinstance(addl, dict):
            return f"mapping of str → {_type_str(addl, root, depth + 1)}"
        return f"object ({title})" if title else "object"
    if "enum" in node and typ is None:
        return "enum"
    return str(typ) if typ else "any"


def _allowed(node: dict[str, Any], root: dict[str, Any]) -> list[Any]:
    """Allowed values from ``enum``/``const``, also inside ``anyOf``/``oneOf``."""
    node = _resolve(node, root)
    values: list[Any] = []
    if isinstance(node.get("enum"), list):
        values.extend(node["enum"])
    if "const" in node:
        values.append(node["const"])
    for key in ("anyOf", "oneOf"):
        for sub in node.get(key, []) or []:
            for value in _allowed(sub, root):
                if value not in values:
                    values.append(value)
    return values


def _constraints(node: dict[str, Any]) -> list[str]:
    out = []
    for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node and not isinstance(node[key], bool):
            out.append(f"{sym} {node[key]}")
    return out


def _cell(text: str) -> str:
    """Make text safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _object_props(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    """Properties of a node that is an object (directly or as the non-null member of ``anyOf``)."""
    node = _resolve(node, root)
    if isinstance(node.get("properties"), dict):
        return node
    for key in ("anyOf", "oneOf"):
        subs = [_resolve(s, root) for s in node.get(key, []) or []]
        objs = [s for s in subs if isinstance(s.get("properties"), dict)]
        rest = [s for s in subs if s.get("type") != "null" and not isinstance(s.get("properties"), dict)]
        if len(objs) == 1 and not rest:
            return objs[0]
    return None


def _sections(
    node: dict[str, Any], root: dict[str, Any], path: str, out: list[tuple[str, dict[str, Any]]], depth: int
) -> None:
    """Collect ``(dotted path, object schema)`` for this object and every nested one."""
    out.append((path, node))
    if depth >= MAX_DEPTH:
        return
    for name, sub in node.get("properties", {}).items():
        child = _object_props(sub, root)
        if child is not None:
            _sections(child, root, f"{path}.{name}" if path else name, out, depth + 1)
            continue
        addl = _resolve(sub, root).get("additionalProperties")
        if isinstance(addl, dict):
            child = _object_props(addl, root)
            if child is not None:
                _sections(child, root, f"{path}.{name}.<name>" if path else f"{name}.<name>", out, depth + 1)


def render_schema(schema: dict[str, Any]) -> str:
    """Render a JSON Schema document as Markdown (one heading and table per object)."""
    root = schema
    top = _resolve(schema, root)
    lines: list[str] = []
    if top.get("description"):
        lines += [" ".join(str(top["description"]).split()), ""]
    sections: list[tuple[str, dict[str, Any]]] = []
    _sections(top, root, "", sections, 0)
    for path, node in sections:
        props = node.get("properties", {})
        if not props:
            continue
        title = f"`{path}`" if path else "Top level"
        lines += [f"### {title}", ""]
        if path and node.get("description"):
            lines += [" ".join(str(node["description"]).split()), ""]
        required = set(node.get("required", []))
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, sub in props.items():
            resolved = _resolve(sub, root)
            typ = _type_str(sub, root)
            if "default" in resolved:
                default = _code(resolved["default"])
            elif name in required:
                default = "*required*"
            else:
                default = ""
            desc = str(resolved.get("description") or "")  # pydantic titles just repeat the key
            extras = []
            allowed = _allowed(sub, root)
            if allowed and len(allowed) > 1:
                extras.append("one of " + ", ".join(_code(v) for v in allowed))
            extras += _constraints(resolved)
            if _object_props(sub, root) is not None:
                extras.append(f"see `{path + '.' if path else ''}{name}`")
            if extras:
                note = "; ".join(extras)
                desc = (desc.rstrip(".") + ". " if desc else "") + note[0].upper() + note[1:] + "."
            lines.append(f"| `{name}` | {_cell(typ)} | {default} | {_cell(desc)} |")
        lines.append("")
    if len(lines) == 0 or all(not line.startswith("|") for line in lines):
        lines += ["The schema defines no properties.", ""]
    return "\n".join(lines)


PLACEHOLDER = """:::{{note}}
The configuration schema (`schema/config.schema.json`) was not found when these docs were built{reason}.
It is generated from the configuration models in `remadom.config`; rebuild the docs once it exists.
:::
"""


def build_markdown(source: Path) -> str:
    """Markdown for ``source``; a placeholder note when the file is missing or not valid JSON."""
    if not source.is_file():
        return PLACEHOLDER.format(reason="")
    try:
        schema = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return PLACEHOLDER.format(reason=f" (it could not be read: {type(err).__name__})")
    if not isinstance(schema, dict):
        return PLACEHOLDER.format(reason=" (it is not a JSON object)")
    return render_schema(schema)


def _generate(app) -> None:
    confdir = Path(app.confdir)
    source = (confdir / app.config.schema_doc_source).resolve()
    output = confdir / app.config.schema_doc_output
    text = build_markdown(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.exists() or output.read_text(encoding="utf-8") != text:
        output.write_text(text, encoding="utf-8")  # rewritten only on change, so incremental builds stay cheap


def setup(app):
    """Sphinx entry point."""
    app.add_config_value("schema_doc_source", "../schema/config.schema.json", "env")
    app.add_config_value("schema_doc_output", "_generated/config_schema.md", "env")
    app.connect("builder-inited", _generate)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
