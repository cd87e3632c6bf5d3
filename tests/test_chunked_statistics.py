"""Setup's initialization statistics, read in row chunks, equal those of the whole sample (#14)."""

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import make_mosaic_adata
from scvi import REGISTRY_KEYS

from remadom import REMADOM
from remadom.model import _setup
from remadom.model._feature_masks import feature_mask_tables, measured_statistics
from remadom.nn import likelihoods
from remadom.nn.likelihoods._statistics import EmptyStatistics, StackedStatistics, statistics_accumulator
from remadom.nn.networks import encoder_input_accumulator, encoder_input_statistics

SETUP = {"rna_layer": "counts", "atac_obsm_key": "X_atac", "adt_obsm_key": "X_adt", "batch_key": "batch",
         "mask_keys": {"rna": "has_rna", "atac": "has_atac", "adt": "has_adt"}}
BUILT_IN = ["nb", "zinb", "poisson", "nbmixture", "nbmixture_cellbg", "gaussian", "gaussian_clr",
            "bernoulli", "bernoulli_peakvi"]


def _assert_same(chunked: dict, whole: dict, rtol=1e-6):
    assert chunked.keys() == whole.keys()
    for key in whole:
        np.testing.assert_allclose(np.asarray(chunked[key]), np.asarray(whole[key]), rtol=rtol, atol=1e-7,
                                   err_msg=key)


def _accumulate(accumulator, x, chunk_rows):
    for start in range(0, x.shape[0], chunk_rows):
        accumulator.update(x[start:start + chunk_rows])
    return accumulator.result()


def _data(name, sparse, rng, n=53, f=9):
    head = likelihoods.get_likelihood(name)
    x = rng.poisson(rng.uniform(0.2, 6.0, f), (n, f)).astype(np.float32)
    x[rng.random((n, f)) < 0.3] = 0.0
    x[4] = 0.0  # a cell without counts
    if not head.needs_nonnegative():
        x = x - 2.5
    if head.binary:
        x = x > 0
    return head, (sp.csr_matrix(x) if sparse else x)


def test_every_built_in_head_has_a_test_case():
    built_in = {name for name, head in likelihoods.LIKELIHOODS.items() if head.__module__.startswith("remadom.")}
    assert set(BUILT_IN) == built_in  # (other tests register heads of their own)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", BUILT_IN)
def test_each_head_accumulated_over_chunks_equals_its_data_statistics(name, sparse, rng):
    head, x = _data(name, sparse, rng)
    whole = head.data_statistics(x)
    for chunk_rows in (1, 7, 10_000):
        _assert_same(_accumulate(statistics_accumulator(head), x, chunk_rows), whole)
    if name == "bernoulli":  # a feature-mask group's depth on the full-feature scale
        _assert_same(_accumulate(statistics_accumulator(head, measured_fraction=0.4), x, 7),
                     head.data_statistics(x, measured_fraction=0.4))


@pytest.mark.parametrize("sparse", [False, True])
def test_tfidf_idf_accumulated_over_chunks_equals_the_whole_sample(sparse, rng):
    x = rng.random((41, 12)) < 0.2
    x = sp.csr_matrix(x) if sparse else x
    _assert_same(_accumulate(encoder_input_accumulator("tfidf", 12), x, 5), encoder_input_statistics("tfidf", x))
    assert encoder_input_accumulator("tfidf", 12).result()["idf"].tolist() == [0.0] * 12  # no cell
    assert encoder_input_accumulator("log1p", 12).result() == {}


def test_streaming_statistics_are_only_used_where_they_match_data_statistics():
    """A head without statistics reads nothing; a subclass overriding data_statistics gets it called."""
    assert isinstance(statistics_accumulator(likelihoods.PeakVIBernoulliHead), EmptyStatistics)
    assert isinstance(statistics_accumulator(likelihoods.NegativeBinomialMixtureHead), StackedStatistics)

    class MedianBernoulli(likelihoods.BernoulliHead):
        @classmethod
        def data_statistics(cls, x_observed, measured_fraction: float = 1.0):
            return {"open_rate": np.median(np.asarray(x_observed.todense()), axis=0).astype(np.float32)}

    x = sp.csr_matrix(np.eye(6, 4) > 0)
    acc = statistics_accumulator(MedianBernoulli)
    assert isinstance(acc, StackedStatistics)
    _assert_same(_accumulate(acc, x, 2), MedianBernoulli.data_statistics(x))


def _unchunked(monkeypatch):
    """Replace the accumulators by the former computation: each head's data_statistics on the whole sample."""
    monkeypatch.setattr(_setup, "statistics_accumulator",
                        lambda head, **kw: StackedStatistics(functools.partial(head.data_statistics, **kw)))
    monkeypatch.setattr(_setup, "encoder_input_accumulator",
                        lambda transform, n: StackedStatistics(functools.partial(encoder_input_statistics, transform)))


def _mosaic_model(n, likelihood_choice=None, feature_masks=False):
    adata = make_mosaic_adata(n=n, seed=3)
    setup = dict(SETUP)
    if feature_masks:  # batch b2 measured half of each panel
        adt = pd.DataFrame(True, index=["b1", "b2"], columns=adata.obsm["X_adt"].columns)
        adt.iloc[1, 3:] = False
        atac = pd.DataFrame(True, index=["b1", "b2"], columns=[f"atac_{i}" for i in range(adata.obsm["X_atac"].shape[1])])
        atac.iloc[1, 30:] = False
        setup["feature_masks"] = {"adt": adt, "atac": atac}
    REMADOM.setup_anndata(adata, **setup)
    model = REMADOM(adata, n_hidden=8, n_latent=3, likelihoods=likelihood_choice)
    manager = model.adata_manager
    tables = feature_mask_tables(manager, manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
    codes = manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
    return adata, model.specs, tables, codes


@pytest.mark.parametrize("feature_masks", [False, True])
@pytest.mark.parametrize("likelihood_choice", [None, {"rna": "zinb", "adt": "gaussian_clr"},
                                               {"rna": "poisson", "adt": "nbmixture_cellbg"}])
def test_modality_statistics_in_chunks_equal_the_whole_sample(likelihood_choice, feature_masks, monkeypatch):
    """RNA (count shares), ATAC (open rates, depth, tfidf idf) and ADT, with and without feature masks."""
    adata, specs, tables, codes = _mosaic_model(400, likelihood_choice, feature_masks)
    assert any(s.resolved_encoder_input == "tfidf" for s in specs)
    assert feature_masks == bool(tables)
    chunked = _setup.modality_statistics(adata, specs, feature_masks=tables, batch_codes=codes, chunk_rows=7)
    default = _setup.modality_statistics(adata, specs, feature_masks=tables, batch_codes=codes)
    _unchunked(monkeypatch)
    whole = _setup.modality_statistics(adata, specs, feature_masks=tables, batch_codes=codes, chunk_rows=10**9)
    assert chunked.keys() == whole.keys() == {s.name for s in specs}
    for name in whole:
        for part in ("head", "encoder"):
            _assert_same(chunked[name][part], whole[name][part])
            _assert_same(default[name][part], whole[name][part])
    assert whole["atac"]["head"] and whole["atac"]["encoder"] and whole["rna"]["head"]


def test_measured_statistics_take_chunks_or_one_matrix():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix(rng.random((90, 8)) < 0.3)
    codes = rng.integers(0, 3, 90)
    table = np.ones((3, 8), dtype=bool)
    table[1, 4:] = False
    table[2, :2] = False
    spec = _setup.build_specs(make_mosaic_adata(n=10), {"atac": {"obsm": "X_atac"}}, None, None)[0]
    whole = measured_statistics(spec, x, codes, table)
    chunked = measured_statistics(spec, (x[i:i + 11] for i in range(0, 90, 11)), codes, table)
    for part in ("head", "encoder"):
        _assert_same(chunked[part], whole[part])
    with pytest.raises(ValueError, match="batch codes"):
        measured_statistics(spec, [x[:50]], codes, table)


class _RowRecorder:
    """A modality matrix that records how many rows each read takes."""

    def __init__(self, matrix, reads):
        self.matrix, self.reads, self.shape = matrix, reads, matrix.shape

    def __getitem__(self, index):
        self.reads.append(len(index))
        return self.matrix[index]


def test_statistics_read_the_sample_in_bounded_row_chunks(monkeypatch):
    adata, specs, tables, codes = _mosaic_model(400)
    reads = {}
    original = _setup.get_modality_matrix

    def recorded(data, spec):
        matrix = original(data, spec)
        matrix = matrix.to_numpy() if hasattr(matrix, "to_numpy") else matrix
        return _RowRecorder(matrix, reads.setdefault(spec.name, []))

    monkeypatch.setattr(_setup, "get_modality_matrix", recorded)
    monkeypatch.setattr(_setup, "_MAX_CELLS_FOR_STATS", 150)  # the sample, then its chunks
    _setup.modality_statistics(adata, specs, feature_masks=tables, batch_codes=codes, chunk_rows=40)
    assert set(reads) == {"rna", "atac", "adt"}
    for name, sizes in reads.items():
        assert max(sizes) <= 40, name
        assert sum(sizes) == 150, name  # every sampled cell once
    with pytest.raises(ValueError, match="chunk_rows"):
        _setup.modality_statistics(adata, specs, chunk_rows=0)


def test_stage_rss_benchmark_reports_each_stage(tmp_path):
    """``benchmarks/stage_rss.py`` (the profile behind this change) runs on a tiny backed file."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from remadom.data import write_scale_dataset

    path = write_scale_dataset(tmp_path / "tiny.h5ad", n_cells=200, n_genes=20, n_peaks=100, n_proteins=4, seed=0)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "stage_rss.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(path), "--backed", "--steps", "2",
                           "--out", str(tmp_path / "stages.jsonl")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "stages.jsonl").read_text())
    assert {"open", "setup_anndata", "statistics", "module", "train"} <= set(row["stage_peak_rss_mb"])
    assert row["peak_rss_mb"] >= max(row["stage_peak_rss_mb"].values()) * 0.99
