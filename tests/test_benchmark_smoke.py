"""Smoke test of benchmarks/run.py on a tiny subset of the shared BMMC CITE-seq starter data."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA  # ../shared/data or $REMADOM_DATA_DIR
BMMC_CITE = DATA / "bmmc_cite_neurips2021_starter.h5mu"

needs_bmmc = pytest.mark.skipif(not BMMC_CITE.exists(), reason=f"{BMMC_CITE} is absent (set $REMADOM_DATA_DIR)")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run  # benchmarks/run.py

    return run


@pytest.mark.realdata
@needs_bmmc
def test_mosaic3_scenario_hides_and_keeps_truth(bench):
    import mudata as md
    from _scenarios import build_scenario, padded_mudata

    scn = build_scenario("bmmc_cite_mosaic3", DATA)
    full = md.read_h5mu(BMMC_CITE)
    masks = scn.masks
    # first batch stays paired, second is split into RNA-only and ADT-only halves
    batch = scn.mdata.obs["batch"].astype(str).to_numpy()
    assert (masks["rna"] & masks["adt"])[batch == "s1d1"].all()
    second = batch == "s1d2"
    assert not (masks["rna"] & masks["adt"])[second].any()
    assert abs(masks["rna"][second].sum() - masks["adt"][second].sum()) <= 1
    # the hidden values are the original counts
    for m in ("rna", "adt"):
        truth = scn.truth[m]
        assert not masks[m][scn.hidden_idx(m)].any()
        np.testing.assert_array_equal(truth.X.toarray(), full.mod[m][truth.obs_names].X.toarray())
    # MULTIVI / TOTALVI layout: every cell in every modality, zero rows where hidden
    pad = padded_mudata(scn)
    assert all(pad.mod[m].n_obs == scn.mdata.n_obs for m in ("rna", "adt"))
    assert pad.mod["adt"].X[scn.hidden_idx("adt")].sum() == 0


@pytest.mark.realdata
@needs_bmmc
def test_runner_smoke(bench, tmp_path):
    """Runs the runner end to end (1 epoch, 120 cells, no scIB metrics) - only checks it completes."""

    methods = ["totalvi", "remadom"]
    argv = ["--scenarios", "bmmc_cite_mosaic3", "--methods", *methods, "--epochs", "1", "--n-cells", "120"]
    argv += [
        "--data-dir",
        str(DATA),
        "--out",
        str(tmp_path),
        "--no-readme",
        "--no-metrics",
        "--timeout",
        "120",
    ]
    assert bench.main(argv) == 0
    (day,) = list(tmp_path.iterdir())
    for m in methods:
        res = json.loads((day / f"bmmc_cite_mosaic3__{m}.json").read_text())
        assert res["status"] == "ok", res.get("traceback", res.get("reason"))
        assert res["epochs_run"] == 1
        assert res["peak_rss_mb"] > 0
    table = (day / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| bmmc_cite_mosaic3 |")]
    assert len(rows) == len(methods)
    assert "### Targets" in table and "| target | bmmc_cite_mosaic3 |" in table


def test_markdown_table_handles_skipped_runs(bench):
    rows = [{"scenario": "s", "method": "midas", "status": "skipped", "reason": "scmidas is not installed"}]
    table = bench.markdown_table(rows)
    assert "skipped: scmidas is not installed" in table
    assert len(table.splitlines()) == 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


def test_targets_table_compares_with_the_best_peer(bench):
    from _targets import targets_table

    def run(method, bio, fos, auroc, base, cells_s, rss, scenario="snare_mosaic3"):
        return {
            "scenario": scenario, "method": method, "status": "ok",
            "latent": {"bio_conservation": bio, "batch_correction": 0.5},
            "modality_mixing": {"ilisi_modality": 0.1},
            "foscttm_rna_atac": fos,
            "imputation": {"atac": {"model": {"auroc": auroc}, "mean_profile_baseline": {"auroc": base}}},
            "cells_per_s": cells_s, "peak_rss_mb": rss, "rss_after_load_mb": 700.0, "load_avg_1m": 2.0,
        }

    table = targets_table([
        run("remadom", 0.60, 0.10, 0.80, 0.70, 400.0, 1000.0),
        run("multivi", 0.65, 0.30, 0.60, 0.70, 100.0, 1000.0),
        run("midas", 0.50, 0.05, 0.70, 0.70, 50.0, 900.0),
    ])
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "❌ 0.600 vs 0.650 (multivi)" in rows["bio conservation ≥ best peer"]
    assert "❌ 0.100 vs 0.050 (midas)" in rows["FOSCTTM ≤ best peer"]  # lower is better
    assert "✅ 0.800 vs 0.700 (midas)" in rows["ATAC AUROC ≥ best peer"]
    assert "✅ atac AUROC 0.800 vs 0.700" in table
    assert "**4.00×** MULTIVI (✅" in table and "**1.00×** (❌" in table


def test_subset_metrics_score_the_cells_with_each_modality(bench):
    """REMADOM on the cells a peer embeds: one entry per modality some cells lack, on exactly those cells."""
    rng = np.random.default_rng(0)
    n = 90
    labels = np.tile(["a", "b", "c"], n // 3)  # every type in every availability group
    latent = rng.normal(size=(n, 4)) + (labels[:, None] == "a") * 3.0
    batch = np.tile(["s1", "s2"], n // 2)
    masks = {"rna": np.arange(n) < 60, "adt": np.arange(n) >= 30}  # 30 RNA-only, 30 paired, 30 ADT-only
    groups = np.where(masks["rna"] & masks["adt"], "rna+adt", np.where(masks["rna"], "rna", "adt"))
    out = bench.subset_metrics(latent, labels, batch, groups, masks)
    assert set(out) == {"with_rna", "with_adt"}
    assert out["with_rna"]["n_cells"] == 60 and 0 <= out["with_rna"]["total"] <= 1
    assert "modality_mixing" in out["with_rna"]
    masks["adt"] = np.ones(n, bool)  # measured everywhere: no subset for it
    assert set(bench.subset_metrics(latent, labels, batch, groups, masks)) == {"with_rna"}


def test_update_readme_replaces_only_the_results_block(bench, tmp_path, monkeypatch):
    """``run.py`` rewrites the table between the markers of ``benchmarks/README.md`` and nothing else."""
    readme = ROOT / "benchmarks" / "README.md"
    text = readme.read_text()
    assert text.count(bench.README_BEGIN) == 1 and text.count(bench.README_END) == 1
    (tmp_path / "README.md").write_text(text)
    monkeypatch.setattr(bench, "HERE", tmp_path)  # write into the copy, never the checkout
    bench.update_readme("| new | table |", "python benchmarks/run.py --x", "a machine", ROOT / "benchmarks" / "results" / "t")
    new = (tmp_path / "README.md").read_text()
    outside = lambda t: (t.split(bench.README_BEGIN)[0], t.split(bench.README_END)[1])  # noqa: E731
    assert outside(new) == outside(text)
    block = new.split(bench.README_BEGIN)[1].split(bench.README_END)[0]
    assert "| new | table |" in block and "`benchmarks/results/t`" in block and "| remadom |" not in block


def test_readme_index_links_every_results_file():
    """The "Results by topic" index of ``benchmarks/README.md`` links each split file, and each link exists."""
    import re

    bench_dir = ROOT / "benchmarks"
    index = (bench_dir / "README.md").read_text().split("## Results by topic", 1)[1]
    linked = set(re.findall(r"\]\((results_[a-z_]+\.md)\)", index))
    assert linked == {p.name for p in bench_dir.glob("results_*.md")}
    docs = ROOT / "docs"
    for name in linked:  # each one is a docs page too (docs/<name> includes ../benchmarks/<name>)
        assert f"../benchmarks/{name}" in (docs / name).read_text(), name
