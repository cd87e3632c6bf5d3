"""benchmarks/_methods.py: per-method interpreters and the install hint of a missing method."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def methods(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _methods

    _methods._import_problem.cache_clear()
    yield _methods
    _methods._import_problem.cache_clear()


@pytest.mark.parametrize(
    ("method", "script"),
    [("multigrate", "setup_multigrate.sh"), ("midas", "setup_midas.sh")],
)
def test_missing_interpreter_gives_install_hint(methods, monkeypatch, method, script):
    var = f"REMADOM_BENCH_PYTHON_{method.upper()}"
    monkeypatch.setenv(var, "/nonexistent/bin/python")
    assert methods.method_python(method) == "/nonexistent/bin/python"
    reason = methods.precheck(method, ["rna", "adt"])
    package = {"multigrate": "multigrate", "midas": "scmidas"}[method]
    assert reason.startswith(f"{package} is not installed: run bash benchmarks/envs/{script}")
    assert "/nonexistent/bin/python" in reason and var in reason
    assert (ROOT / "benchmarks" / "envs" / script).exists()


def test_interpreter_without_the_package_gives_install_hint(methods, monkeypatch):
    """An interpreter that exists but cannot import the package (here: this one, for a fake package)."""
    monkeypatch.setitem(methods._PACKAGES, "multigrate", "remadom_no_such_package")
    monkeypatch.setenv("REMADOM_BENCH_PYTHON_MULTIGRATE", sys.executable)
    reason = methods.precheck("multigrate", ["rna", "atac"])
    assert reason.startswith(
        "remadom_no_such_package is not installed: run bash benchmarks/envs/setup_multigrate.sh"
    )
    assert "ModuleNotFoundError" in reason


def test_interpreter_with_the_package_passes(methods, monkeypatch):
    monkeypatch.setenv("REMADOM_BENCH_PYTHON_TOTALVI", sys.executable)
    assert methods.method_python("totalvi") == sys.executable
    assert methods.precheck("totalvi", ["rna", "adt"]) is None
    assert methods.precheck("totalvi", ["rna", "atac"]) == "TOTALVI needs RNA+ADT data"


def test_default_interpreter_is_the_venv_when_present(methods, monkeypatch):
    monkeypatch.delenv("REMADOM_BENCH_PYTHON_MIDAS", raising=False)
    venv = ROOT / "benchmarks" / ".venvs" / "midas" / "bin" / "python"
    expected = str(venv) if venv.exists() else None
    assert methods.method_python("midas") == expected


def test_chromosome_chunks(methods):
    order, sizes = methods._chromosome_chunks(
        ["chr2-1-5", "chr1-3-4", "GL000205.2-67850-68750", "chrX-1-2", "chr10-1-2", "chr1_9_10"]
    )
    assert order.tolist() == [1, 5, 0, 4, 3, 2]  # chr1, chr1, chr2, chr10, chrX, other contigs
    assert sizes == [2, 1, 1, 1, 1]
    assert methods._chromosome_chunks(["CD3", "CD4"]) is None


def test_clr_matches_muon_formula(methods):
    import numpy as np

    x = np.array([[0.0, 10.0], [3.0, 0.0], [5.0, 2.0]], dtype=np.float32)
    clr, scale = methods._clr(x)
    g = np.exp(np.log1p(x).mean(axis=0))
    np.testing.assert_allclose(clr, np.log1p(x / g), rtol=1e-6)
    np.testing.assert_allclose(np.expm1(clr) * scale, x, rtol=1e-5, atol=1e-5)


def test_no_venv_and_no_package_in_this_interpreter(methods, monkeypatch, tmp_path):
    """Without benchmarks/.venvs/<method> the method runs in this interpreter, which lacks it."""
    monkeypatch.setattr(methods, "HERE", tmp_path)  # no .venvs here
    monkeypatch.delenv("REMADOM_BENCH_PYTHON_MULTIGRATE", raising=False)
    monkeypatch.setitem(methods._PACKAGES, "multigrate", "remadom_no_such_package")
    assert methods.method_python("multigrate") is None
    assert methods.precheck("multigrate", ["rna", "adt"]) == (
        "remadom_no_such_package is not installed: run bash benchmarks/envs/setup_multigrate.sh"
    )


def test_worker_in_its_own_venv_imports_this_checkouts_remadom(methods, monkeypatch):
    import run  # benchmarks/run.py (on sys.path through the fixture)

    monkeypatch.setenv("REMADOM_BENCH_PYTHON_MIDAS", sys.executable)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = run._worker_env("midas")
    assert env["PYTHONPATH"].split(":") == [str(ROOT / "src"), "/elsewhere"]
    monkeypatch.delenv("REMADOM_BENCH_PYTHON_MIDAS")
    monkeypatch.setattr(methods, "method_python", lambda method: None)
    assert run._worker_env("midas") is None
