"""Within-feature AUROC, predictive-interval coverage and label transfer (remadom.eval)."""

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score

from remadom.eval import (
    imputation_metrics,
    interval_coverage,
    label_transfer_accuracy,
    mean_profile_baseline,
    per_feature_auroc,
)


@pytest.fixture
def binary_data(rng):
    n_cells, n_peaks = 300, 40
    logits = rng.normal(size=(n_cells, n_peaks)) - 1.0
    truth = (rng.random((n_cells, n_peaks)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return logits, truth


def test_per_feature_auroc_matches_sklearn(binary_data):
    logits, truth = binary_data
    out = per_feature_auroc(logits, sparse.csr_matrix(truth), chunk_size=7, min_positives=1, min_negatives=1)
    expected = [roc_auc_score(truth[:, j], logits[:, j]) for j in range(truth.shape[1])]
    assert out["auroc_per_feature_mean"] == pytest.approx(np.mean(expected), abs=1e-10)
    assert out["auroc_per_feature_n_defined"] == truth.shape[1]


def test_per_feature_auroc_of_mean_profile_is_half(binary_data):
    """The floor: a prediction constant within each peak has no cell-specific signal."""
    _, truth = binary_data
    base = mean_profile_baseline(truth, n_cells=truth.shape[0], kind="atac")
    assert per_feature_auroc(base, truth)["auroc_per_feature_mean"] == pytest.approx(0.5)
    # ... while its pooled AUROC is above 0.5, since peaks differ in open rate
    skewed = truth.copy()
    skewed[:, :10] = 1.0 * (np.random.default_rng(1).random((truth.shape[0], 10)) < 0.9)
    base = mean_profile_baseline(skewed, n_cells=truth.shape[0], kind="atac")
    met = imputation_metrics(base, skewed, "atac")
    assert met["auroc"] > 0.6
    assert met["auroc_per_feature_mean"] == pytest.approx(0.5)


def test_per_feature_auroc_skips_rare_features(binary_data):
    logits, truth = binary_data
    truth = truth.copy()
    truth[:, 0] = 0
    truth[:3, 0] = 1  # 3 positives < min_positives
    out = per_feature_auroc(logits, truth, min_positives=5)
    assert out["auroc_per_feature_n_defined"] == truth.shape[1] - 1
    assert np.isnan(per_feature_auroc(logits[:, :1], truth[:, :1])["auroc_per_feature_mean"])


def test_interval_coverage_of_true_quantiles(rng):
    """Intervals from the true distribution cover the stated share of fresh draws."""
    mean = rng.normal(size=(2000, 5))
    truth = mean + rng.normal(size=mean.shape)
    z = 1.6448536269514722  # 90 % central interval of N(0, 1)
    out = interval_coverage(mean - z, mean + z, truth)
    assert out["coverage"] == pytest.approx(0.90, abs=0.015)
    too_narrow = interval_coverage(mean - 0.5, mean + 0.5, truth)["coverage"]
    assert too_narrow < 0.5
    with pytest.raises(ValueError, match="lower > upper"):
        interval_coverage(mean + z, mean - z, truth)


def test_label_transfer_accuracy(rng):
    labels = np.repeat(["a", "b", "c"], 100)
    centers = {"a": 0.0, "b": 5.0, "c": 10.0}
    z = np.array([[centers[x], 0.0] for x in labels]) + rng.normal(scale=0.5, size=(300, 2))
    source = np.arange(300) % 2 == 0
    out = label_transfer_accuracy(z, labels, source, ~source)
    assert out["accuracy"] == pytest.approx(1.0)
    assert out["majority_rate"] == pytest.approx(1 / 3, abs=0.02)
    # a target shifted onto the wrong cluster is misclassified
    shifted = z.copy()
    shifted[~source, 0] += 5.0
    assert label_transfer_accuracy(shifted, labels, source, ~source)["accuracy"] < 0.5
    with pytest.raises(ValueError, match="source and target"):
        label_transfer_accuracy(z, labels, np.zeros(300, bool), ~source)
