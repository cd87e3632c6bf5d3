"""Study-confounded benchmark scenarios (issue #13): whole batches measured different modalities."""

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
BMMC_CITE = SHARED_DATA / "bmmc_cite_neurips2021_starter.h5mu"
needs_bmmc = pytest.mark.skipif(not BMMC_CITE.exists(), reason=f"{BMMC_CITE} is absent (set $REMADOM_DATA_DIR)")


@pytest.fixture
def scenarios(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _scenarios

    return _scenarios


def test_study_layout_quarters(scenarios):
    libs = [f"lib{i:02d}" for i in range(12)]
    layout = scenarios.study_layout(libs[::-1], ["rna", "atac"], "study:quarters")
    kept = [tuple(layout[b]) for b in libs]  # sorted by name
    assert kept.count(("rna", "atac")) == 6
    assert kept.count(("rna",)) == 3 and kept.count(("atac",)) == 3
    assert scenarios.reference_batches(libs, ["rna", "atac"], "paired") == [libs[i] for i in range(12) if i % 4 < 2]


def test_study_layout_two_batches(scenarios):
    layout = scenarios.study_layout(["s1d2", "s1d1"], ["rna", "adt"], "study:adt")
    assert layout == {"s1d1": ["rna", "adt"], "s1d2": ["adt"]}
    with pytest.raises(ValueError, match="not one of the modalities"):
        scenarios.study_layout(["a", "b"], ["rna", "adt"], "study:atac")
    with pytest.raises(ValueError, match="at least 4 batches"):
        scenarios.study_layout(["a", "b"], ["rna", "adt"], "study:quarters")


@pytest.mark.realdata
@needs_bmmc
@pytest.mark.parametrize(("name", "kept"), [("bmmc_cite_study", "adt"), ("bmmc_cite_study_rna", "rna")])
def test_bmmc_cite_study_hides_whole_batch(scenarios, name, kept):
    scn = scenarios.build_scenario(name, SHARED_DATA)
    masks = scn.masks
    lost = "rna" if kept == "adt" else "adt"
    batch = scn.mdata.obs["batch"].astype(str).to_numpy()
    assert (masks["rna"] & masks["adt"])[batch == "s1d1"].all()
    assert masks[kept][batch == "s1d2"].all() and not masks[lost][batch == "s1d2"].any()
    # the whole second batch is the hidden truth, none of the first
    assert set(scn.truth) == {lost}
    hidden = scn.hidden_idx(lost)
    assert np.array_equal(np.sort(hidden), np.flatnonzero(batch == "s1d2"))
    assert scn.reference_batches == ["s1d1"]
    # a paired scenario transfers labels from the same reference batch
    assert scenarios.build_scenario("bmmc_cite_paired", SHARED_DATA).reference_batches == ["s1d1"]
