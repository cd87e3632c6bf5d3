"""Execute the tutorial notebooks in ``tutorials/`` with nbclient.

The default suite runs every notebook in fast mode (``REMADOM_TUTORIAL_FAST=1``: few epochs, few
cells), which checks that the code in the tutorials still runs against the package; the numbers
are not checked. ``-m slow`` runs them in full mode, as they are committed. A notebook whose data
file is missing is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from remadom.datasets import DATA_DIR_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))

#: Real-data files each notebook reads (from $REMADOM_DATA_DIR or ../shared/data).
#: No notebook may open with silencing code: the library is quiet by default.
SILENCERS = ("warnings.filterwarnings", "setLevel(", "scvi.settings.verbosity", '"figure.dpi": 72')
NEEDED_FILES = {
    "01_mosaic_pbmc_rna_adt.ipynb": [],  # the PBMC mosaic ships with the package
    "02_snareseq_rna_atac_mosaic.ipynb": ["mouse_cortex_snareseq_chen2019.h5mu"],
    "03_mock_scenarios.ipynb": [],
    "04_reproducible_cli_runs.ipynb": [],
    "05_reference_mapping.ipynb": [],  # the PBMC mosaic ships with the package
    "06_antibody_panels.ipynb": [],  # the PBMC mosaic ships with the package
}


def _data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or ROOT.parent / "shared" / "data").resolve()


def _execute(name: str, fast: bool, monkeypatch) -> None:
    missing = [f for f in NEEDED_FILES.get(name, []) if not (_data_dir() / f).is_file()]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} in {_data_dir()} (set ${DATA_DIR_ENV})")
    if fast:
        monkeypatch.setenv("REMADOM_TUTORIAL_FAST", "1")
    else:
        monkeypatch.delenv("REMADOM_TUTORIAL_FAST", raising=False)
    monkeypatch.setenv(DATA_DIR_ENV, str(_data_dir()))
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    # the "python3" kernel spec is ipykernel's own; jupyter_client launches it with sys.executable
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors


def test_notebooks_found():
    assert set(NOTEBOOKS) == set(NEEDED_FILES), "update NEEDED_FILES when adding or renaming a tutorial"
    for name in NOTEBOOKS:
        nb = nbformat.read(TUTORIALS / name, as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# "), f"{name}: needs a '# ' title"
        code = next(c for c in nb.cells if c.cell_type == "code")
        assert 'os.environ.get("REMADOM_TUTORIAL_FAST") == "1"' in code.source, f"{name}: no FAST switch"
        assert not [s for s in SILENCERS if s in code.source], f"{name}: silencing code in the first cell"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs_fast(name, monkeypatch):
    """Smoke test: the tutorial executes without error in fast mode."""
    _execute(name, fast=True, monkeypatch=monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs_full(name, monkeypatch):
    """Smoke test: the tutorial executes without error as committed (minutes each)."""
    _execute(name, fast=False, monkeypatch=monkeypatch)
