"""Sphinx configuration for the REMADOM documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` from the project root.
Notebooks are never executed by the build (``nb_execution_mode = "off"``); they are
copied from ``../tutorials`` into ``docs/tutorials`` at build time (see ``_copy_tutorials``).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from datetime import date
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
# Prefer the installed package; fall back to the source tree (e.g. docs built without `pip install -e .`).
try:
    import remadom  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(ROOT / "src"))

# sphinx-autodoc-typehints 3.6 calls an API that Sphinx 9 deprecates; harmless, and not ours to fix.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated", category=DeprecationWarning)

# -- Project information -----------------------------------------------------
project = "REMADOM"
author = "REMADOM developers"
copyright = f"{date.today():%Y}, {author}"
try:
    release = _pkg_version("remadom")
except PackageNotFoundError:  # pragma: no cover
    release = "0.0.0"
version = release

# -- General configuration ---------------------------------------------------
extensions = [
    "myst_nb",  # Markdown (MyST) pages and notebooks; provides myst_parser
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # must come before sphinx_autodoc_typehints
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "schema_doc",  # local: renders ../schema/config.schema.json (docs/_ext/schema_doc.py)
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "jupyter_execute",
    "README.md",  # how to build the docs; not a page
    "dev/**",  # internal development notes
    "_generated/**",  # included from other pages, not pages themselves
]

# -- MyST / myst-nb ------------------------------------------------------------
myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_image",
    "html_admonition",
    "substitution",
]
myst_heading_anchors = 3
nb_execution_mode = "off"  # never execute tutorials during the docs build
nb_merge_streams = True
nb_output_stderr = "remove-warn"

# -- autodoc / autosummary / napoleon -----------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": False}  # members come from the autosummary templates
autodoc_typehints = "description"
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "comma"
always_document_param_types = False
# Heavy optional imports are mocked only if they are missing, so the API pages still build.
autodoc_mock_imports: list[str] = []
for _mod in ("scib_metrics",):
    try:
        __import__(_mod)
    except ImportError:
        autodoc_mock_imports.append(_mod)

# -- intersphinx ----------------------------------------------------------------
# Links to the libraries REMADOM builds on. Builds run offline too: an inventory that cannot be
# fetched is reported as an "intersphinx.external" warning (filtered below, so -W still passes) and
# its links render as plain text.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable", None),
}
intersphinx_timeout = 5


def _online(host: str = "docs.python.org") -> bool:
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


if os.environ.get("REMADOM_DOCS_OFFLINE") or not _online():
    # offline (CI sandboxes, this project's machines): Sphinx would warn once per inventory and
    # -W would fail; without inventories the cross-references render as plain text
    print("intersphinx: no network, building without external inventories")
    intersphinx_mapping = {}


def _own_methods() -> dict[str, list[str]]:
    """``{class fullname: methods defined in remadom}``: the class template lists these first."""
    out: dict[str, list[str]] = {}
    try:
        import remadom as _rm

        classes = {"remadom.REMADOM": _rm.REMADOM}
    except Exception:  # noqa: BLE001 - the API pages then list methods in one block
        return out
    for fullname, cls in classes.items():
        names = []
        for name in dir(cls):
            attr = getattr(cls, name, None)
            func = getattr(attr, "__func__", attr)
            if not name.startswith("_") and callable(func) and (getattr(func, "__module__", "") or "").startswith("remadom"):
                names.append(name)
        out[fullname] = names
    return out


autosummary_context = {"remadom_own_methods": _own_methods()}

# -- HTML output ---------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "REMADOM"
html_static_path = ["_static"]
html_theme_options = {
    "use_download_button": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

# -- Build-time hooks ------------------------------------------------------------
TUTORIALS_SRC = ROOT / "tutorials"
TUTORIALS_DST = HERE / "tutorials"
TUTORIALS_TOC = HERE / "_generated" / "tutorials_toc.md"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _copy_tutorials(app) -> None:
    """Copy ``../tutorials/*.ipynb`` into ``docs/tutorials/`` and write their toctree.

    The copies are gitignored. Only changed files are rewritten (so unchanged notebooks are not
    re-read), and copies whose source notebook was removed are deleted. The toctree is generated
    (``_generated/tutorials_toc.md``, included by ``tutorials/index.md``) so that a checkout
    without notebooks builds without a warning. Nothing is executed.
    """
    TUTORIALS_DST.mkdir(exist_ok=True)
    sources = {p.name: p for p in sorted(TUTORIALS_SRC.glob("*.ipynb"))} if TUTORIALS_SRC.is_dir() else {}
    for stale in TUTORIALS_DST.glob("*.ipynb"):
        if stale.name not in sources:
            stale.unlink()
    for name, src in sources.items():
        dst = TUTORIALS_DST / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    if sources:
        entries = "\n".join(Path(name).stem for name in sources)
        toc = f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"
    else:
        toc = ":::{note}\nNo tutorial notebooks were found in `tutorials/` when these docs were built.\n:::\n"
    _write_if_changed(TUTORIALS_TOC, toc)


def _skip_framework_members(app, what, name, obj, skip, options):
    """Leave out members inherited from ``torch.nn.Module``, Lightning and pydantic (documented upstream)."""
    target = obj.fget if isinstance(obj, property) else obj
    module = getattr(target, "__module__", None) or ""
    if module.split(".")[0] in {"torch", "lightning", "pytorch_lightning", "pydantic", "pydantic_core"}:
        return True
    try:
        from torch.nn import Module
    except ImportError:  # pragma: no cover
        return None
    # plain class attributes of nn.Module (training, dump_patches, ...) have no __module__
    if not callable(obj) and (hasattr(Module, name) or name in Module.__annotations__):
        return True
    return None


def _data_docstring_from_source(app, what, name, obj, options, lines):
    """Use the ``#:`` comment of re-exported module-level constants instead of their type's docstring.

    ``remadom.nn.LIKELIHOODS`` is defined (and documented with ``#:``) in a private submodule;
    autodoc looks for the comment only in the re-exporting module and would otherwise show the
    docstring of ``dict``.
    """
    if what not in ("data", "attribute") or "." not in name:
        return
    type_doc = type(obj).__doc__
    type_doc = type_doc.strip() if isinstance(type_doc, str) else ""
    if lines and "\n".join(lines).strip() != type_doc:
        return
    from sphinx.pycode import ModuleAnalyzer

    attr = name.rsplit(".", 1)[1]
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith("remadom.") or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001 - no source: keep looking
            continue
        if ("", attr) in docs:
            lines[:] = list(docs[("", attr)])
            return
    lines[:] = []  # never show the docstring of dict/list/...


def setup(app) -> None:
    """Register the build-time hooks."""
    app.connect("builder-inited", _copy_tutorials)
    app.connect("autodoc-skip-member", _skip_framework_members)
    app.connect("autodoc-process-docstring", _data_docstring_from_source)
