"""Documentation checks.

The full Sphinx build is slow (tens of seconds) and opt-in::

    pytest -m slow tests/test_docs.py

The schema renderer is checked in the fast suite: it runs on every docs build, and a broken
table would only show up as a garbled page.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _schema_doc():
    spec = importlib.util.spec_from_file_location("schema_doc", DOCS / "_ext" / "schema_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_doc_renders_nested_refs_enums_and_defaults():
    schema = {
        "description": "A run.",
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "description": "Path | to data."},
            "model": {"$ref": "#/$defs/Model", "default": {"n_latent": 20}},
            "train": {"anyOf": [{"$ref": "#/$defs/Train"}, {"type": "null"}], "default": None},
        },
        "$defs": {
            "Model": {
                "type": "object",
                "properties": {"n_latent": {"type": "integer", "minimum": 1, "default": 20}},
            },
            "Train": {
                "type": "object",
                "properties": {"precision": {"enum": ["32", "bf16-mixed"], "type": "string"}},
            },
        },
    }
    text = _schema_doc().render_schema(schema)
    assert text.startswith("A run.")
    assert "| `data` | string | *required* | Path \\| to data. |" in text
    assert "### `model`" in text and "### `train`" in text
    assert "| `n_latent` | integer | `20` | ≥ 1. |" in text
    assert 'One of `"32"`, `"bf16-mixed"`.' in text
    assert "object \\| null" in text


def test_schema_doc_placeholder_when_missing_or_invalid(tmp_path):
    schema_doc = _schema_doc()
    assert "was not found" in schema_doc.build_markdown(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "could not be read" in schema_doc.build_markdown(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"properties": {"a": {"type": "integer"}}}))
    assert "| `a` | integer |" in schema_doc.build_markdown(good)


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    for page in ("index", "user_guide", "api", "config", "cli", "tutorials/index", "changelog", "benchmarks", "results_scale"):
        assert (out / f"{page}.html").is_file(), page


@pytest.mark.slow
def test_api_page_lists_every_public_name():
    spec = importlib.util.spec_from_file_location("list_public_api", DOCS / "_ext" / "list_public_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.missing_from_docs() == [], "add these to docs/api.md"


def _python_blocks(path: Path) -> list[str]:
    import re

    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "block"), [("README.md", 0), ("docs/quickstart.md", 0)])
def test_example_runs_on_a_fresh_machine(doc, block, tmp_path):
    """Smoke test: the example runs from an empty folder with no ../shared/data (2 epochs, ~30 s)."""
    import os

    code = _python_blocks(ROOT / doc)[block]
    code = code.replace("max_epochs=100", "max_epochs=2").replace("max_epochs=200", "max_epochs=2")
    env = {k: v for k, v in os.environ.items() if k not in ("REMADOM_DATA_DIR", "REMADOM_DATA_URL")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]  # quiet: and no NaN-row warning either
