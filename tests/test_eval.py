import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import sparse

from remadom.eval import (
    availability_groups,
    foscttm,
    imputation_metrics,
    log1p_normalize,
    mean_profile_baseline,
    plot_imputation,
    plot_metrics,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- FOSCTTM -------------------------------------------------------------------------------------


def test_foscttm_identical_is_zero(rng):
    z = rng.normal(size=(300, 8))
    assert foscttm(z, z) == 0.0


def test_foscttm_random_is_half(rng):
    z_a = rng.normal(size=(600, 8))
    z_b = rng.normal(size=(600, 8))
    assert foscttm(z_a, z_b) == pytest.approx(0.5, abs=0.03)


def test_foscttm_blocks_do_not_change_result(rng):
    z_a = rng.normal(size=(257, 5))
    z_b = z_a + rng.normal(scale=0.5, size=z_a.shape)
    full = foscttm(z_a, z_b, block_size=1000)
    assert 0.0 < full < 0.5
    assert foscttm(z_a, z_b, block_size=7) == pytest.approx(full)


def test_foscttm_known_value():
    # 1-D, three cells; from a's side cell 0 has 1 of 2 others closer than its match, others none
    z_a = np.array([[0.0], [10.0], [20.0]])
    z_b = np.array([[11.0], [10.0], [20.0]])
    # a->b: cell0 dist to match 11, to b1=10 (closer), b2=20 -> 1/2; cell1: 0; cell2: 0
    # b->a: b0 (11) to match a0 = 11, a1 = 1 (closer), a2 = 9 (closer) -> 2/2; b1, b2: 0
    assert foscttm(z_a, z_b) == pytest.approx(0.5 * (1 / 6 + 2 / 6))


def test_foscttm_shape_mismatch(rng):
    with pytest.raises(ValueError, match="same shape"):
        foscttm(rng.normal(size=(5, 2)), rng.normal(size=(6, 2)))


# --- imputation ---------------------------------------------------------------------------------


def test_log1p_normalize_rows_same_total():
    x = np.array([[1.0, 3.0], [10.0, 30.0], [0.0, 0.0]])
    y = log1p_normalize(x, target_sum=4.0)
    np.testing.assert_allclose(y[0], np.log1p([1.0, 3.0]))
    np.testing.assert_allclose(y[1], y[0])  # same composition -> same profile
    np.testing.assert_array_equal(y[2], 0.0)


def test_pearson_perfect_and_scale_invariant(rng):
    truth = rng.poisson(5.0, size=(50, 20)).astype(float) + 1
    m = imputation_metrics(truth * 3.0, sparse.csr_matrix(truth), "rna")
    assert m["pearson_cell_mean"] == pytest.approx(1.0)
    assert m["pearson_feature_mean"] == pytest.approx(1.0)
    assert m["pearson_feature_n_defined"] == 20


def test_pearson_known_value():
    # two features / two cells: every correlation is +-1; swapping the cells makes all of them -1
    truth = np.array([[1.0, 3.0], [3.0, 1.0]])
    m = imputation_metrics(truth[::-1], truth, "adt")
    assert m["pearson_cell_mean"] == pytest.approx(-1.0)
    assert m["pearson_feature_mean"] == pytest.approx(-1.0)


def test_pearson_matches_scipy(rng):
    from scipy.stats import pearsonr

    truth = rng.poisson(4.0, size=(30, 12)).astype(float) + 1
    pred = truth + rng.poisson(3.0, size=truth.shape)
    m = imputation_metrics(pred, truth, "rna")
    p, t = log1p_normalize(pred), log1p_normalize(truth)
    per_cell = [pearsonr(p[i], t[i])[0] for i in range(30)]
    per_feat = [pearsonr(p[:, j], t[:, j])[0] for j in range(12)]
    assert m["pearson_cell_mean"] == pytest.approx(np.mean(per_cell))
    assert m["pearson_feature_median"] == pytest.approx(np.median(per_feat))


def test_baseline_has_undefined_feature_correlation(rng):
    lam = np.geomspace(0.5, 50.0, 15)  # features differ in mean, cells do not
    truth = rng.poisson(lam, size=(40, 15)).astype(float)
    base = mean_profile_baseline(truth, n_cells=40, kind="rna")
    assert base.shape == (40, 15)
    np.testing.assert_allclose(base.sum(1), 1e4, rtol=1e-4)
    m = imputation_metrics(base, truth, "rna")
    assert m["pearson_feature_n_defined"] == 0
    assert np.isnan(m["pearson_feature_mean"])
    assert m["pearson_cell_mean"] > 0.5


def test_auroc_perfect_scores(rng):
    truth = sparse.random(60, 40, density=0.2, format="csr", random_state=0)
    truth.data[:] = rng.integers(1, 4, size=truth.nnz)
    pred = (truth.toarray() > 0) * 0.9 + 0.05
    m = imputation_metrics(pred, truth, "atac")
    assert m["auroc"] == pytest.approx(1.0)
    assert m["auprc"] == pytest.approx(1.0)
    assert m["positive_rate"] == pytest.approx(truth.nnz / (60 * 40))


def test_auroc_subsampled_random_is_half(rng):
    truth = sparse.random(400, 300, density=0.1, format="csr", random_state=1)
    pred = rng.random((400, 300))
    m = imputation_metrics(pred, truth, "atac", max_entries=20_000)
    assert m["n_entries"] == 20_000
    assert m["auroc"] == pytest.approx(0.5, abs=0.03)


def test_atac_baseline_is_peak_frequency():
    truth = sparse.csr_matrix(np.array([[1, 0, 2], [0, 0, 1], [3, 0, 0], [1, 0, 5]], dtype=float))
    base = mean_profile_baseline(truth, n_cells=2, kind="atac")
    np.testing.assert_allclose(base, [[0.75, 0.0, 0.75]] * 2)


def test_imputation_errors(rng):
    with pytest.raises(ValueError, match="same shape"):
        imputation_metrics(np.zeros((3, 2)), np.zeros((3, 3)), "rna")
    with pytest.raises(ValueError, match="Unknown kind"):
        imputation_metrics(np.zeros((3, 2)), np.zeros((3, 2)), "h3k27ac")
    with pytest.raises(ValueError, match="single class"):
        imputation_metrics(np.zeros((3, 2)), np.zeros((3, 2)), "atac")


# --- availability groups ------------------------------------------------------------------------


def test_availability_groups():
    masks = {"rna": np.array([1, 1, 0, 0], bool), "atac": np.array([1, 0, 1, 0], bool)}
    np.testing.assert_array_equal(availability_groups(masks), ["rna+atac", "rna", "atac", "none"])


def test_availability_groups_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        availability_groups({"rna": np.ones(3, bool), "atac": np.ones(4, bool)})


# --- scIB-based metrics (need scib-metrics; jax compiles on first call) --------------------------


def _two_group_latent(rng, mixed: bool, n_per: int = 150):
    """Three cell types; two availability groups either overlapping or shifted apart."""
    centers = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    labels = np.repeat(np.arange(3), 2 * n_per)
    groups = np.tile(np.repeat(["rna+atac", "rna"], n_per), 3)
    z = centers[labels] + rng.normal(scale=1.0, size=(labels.size, 2))
    if not mixed:
        z[groups == "rna"] += np.array([3.0, 3.0])
    return z, groups, labels


def test_modality_mixing_well_mixed_beats_separated(rng):
    pytest.importorskip("scib_metrics")
    from remadom.eval import modality_mixing

    z_mix, groups, labels = _two_group_latent(rng, mixed=True)
    z_sep, _, _ = _two_group_latent(rng, mixed=False)
    m_mix = modality_mixing(z_mix, groups, labels)
    m_sep = modality_mixing(z_sep, groups, labels)
    assert set(m_mix) == {"silhouette_modality", "ilisi_modality", "modality_mixing"}
    assert m_mix["ilisi_modality"] > 0.8
    assert m_sep["ilisi_modality"] < 0.2
    assert m_mix["silhouette_modality"] > m_sep["silhouette_modality"] + 0.2
    assert m_mix["modality_mixing"] > m_sep["modality_mixing"]


def test_modality_mixing_single_group_is_nan(rng):
    pytest.importorskip("scib_metrics")
    from remadom.eval import modality_mixing

    z, _, labels = _two_group_latent(rng, mixed=True, n_per=20)
    m = modality_mixing(z, np.full(labels.size, "rna"), labels)
    assert np.isnan(m["modality_mixing"])


def test_integration_metrics_ranks_batch_effect(rng):
    pytest.importorskip("scib_metrics")
    from remadom.eval import integration_metrics

    z_good, batch, labels = _two_group_latent(rng, mixed=True)
    z_bad, _, _ = _two_group_latent(rng, mixed=False)
    good = integration_metrics(z_good, labels, batch)
    bad = integration_metrics(z_bad, labels, batch)
    for k in ("nmi", "ari", "silhouette_label", "clisi", "silhouette_batch", "ilisi", "graph_connectivity"):
        assert 0.0 <= good[k] <= 1.0
    assert good["nmi"] > 0.8
    assert good["batch_correction"] > bad["batch_correction"]
    assert good["total"] == pytest.approx(0.6 * good["bio_conservation"] + 0.4 * good["batch_correction"])


# --- plots (smoke) ------------------------------------------------------------------------------


def test_plots_return_figures_smoke(rng):
    from matplotlib.figure import Figure

    truth = rng.poisson(3.0, size=(30, 10)).astype(float)
    assert isinstance(plot_imputation(truth + 1, truth, "rna"), Figure)
    atac = (rng.random((30, 10)) < 0.3).astype(float)
    assert isinstance(plot_imputation(rng.random((30, 10)), sparse.csr_matrix(atac), "atac"), Figure)
    fig = plot_metrics({"a": {"nmi": 0.5, "ari": 0.4}, "b": {"nmi": 0.6, "ari": 0.3}})
    assert isinstance(fig, Figure)


def test_plot_umap_does_not_mutate_input(rng):
    from remadom.eval import plot_umap

    z = rng.normal(size=(60, 5)).astype(np.float32)
    z0 = z.copy()
    fig = plot_umap(z, {"cell type": np.repeat(["a", "b", "c"], 20)})
    assert len(fig.axes) == 1
    np.testing.assert_array_equal(z, z0)


# --- evaluate_model on a real (tiny) fit --------------------------------------------------------


@pytest.mark.realdata
def test_evaluate_model_on_bmmc_multiome(rng):
    from conftest import SHARED_DATA

    import remadom

    path = SHARED_DATA / "bmmc_multiome_neurips2021_starter.h5mu"
    if not path.exists():
        pytest.skip("shared data not available")
    pytest.importorskip("scib_metrics")
    import mudata as md

    from remadom.eval import evaluate_model

    full = md.read_h5mu(path)
    mdata = full[np.sort(rng.choice(full.n_obs, 150, replace=False))].copy()
    drop_atac = mdata.obs_names[:40]  # 40 RNA-only cells
    mdata = md.MuData(
        {"rna": mdata.mod["rna"].copy(), "atac": mdata.mod["atac"][~mdata.obs_names.isin(drop_atac)].copy()}
    )
    mdata.obs = mdata.obs.join(full.obs[["batch", "cell_type"]], how="left")
    remadom.REMADOM.setup_mudata(mdata, modalities={"rna": "rna", "atac": "atac"}, batch_key="batch")
    model = remadom.REMADOM(mdata, n_latent=8, n_hidden=32)
    model.train(max_epochs=1, batch_size=64)
    res = evaluate_model(model, mdata, labels="cell_type", batch="batch")
    assert res["n_availability_groups"] == 2
    for k in ("total", "modality_mixing", "foscttm_rna_atac"):
        assert 0.0 <= res[k] <= 1.0


def test_umap_embedding_beyond_scanpy_dense_limit():
    # regression: scanpy's sparse-neighbour path (> 4,096 cells) failed with scipy >= 1.17
    from remadom.eval import umap_embedding

    z = np.random.default_rng(0).normal(size=(4200, 4)).astype(np.float32)
    emb = umap_embedding(z)
    assert emb.shape == (4200, 2) and np.isfinite(emb).all()
