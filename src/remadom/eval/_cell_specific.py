"""Metrics a method-free mean profile cannot score on: within-feature AUROC, coverage, transfer.

Within-feature AUROC, coverage of predictive intervals and label transfer between groups of cells.

The pooled ATAC AUROC of :func:`~remadom.eval.imputation_metrics` ranks every (cell, peak) entry
together, so a prediction that only knows each peak's overall open rate already reaches ~0.8. The
AUROC computed *within each peak, across cells* is 0.5 for any prediction that is the same for
every cell: what it measures above 0.5 is cell-specific signal.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

__all__ = ["interval_coverage", "label_transfer_accuracy", "per_feature_auroc"]


def _column_block(x, start: int, stop: int) -> np.ndarray:
    if sparse.issparse(x):
        return np.asarray(sparse.csc_matrix(x[:, start:stop]).toarray(), dtype=np.float64)
    return np.asarray(x[:, start:stop], dtype=np.float64)


def per_feature_auroc(
    pred,
    truth,
    *,
    min_positives: int = 5,
    min_negatives: int = 5,
    chunk_size: int = 2048,
) -> dict[str, float]:
    """AUROC of ``pred`` within each feature (column), across cells, against ``truth > 0``.

    Computed from ranks (Mann-Whitney U with average ranks for ties), column block by column
    block, so a large sparse truth is never densified whole. A prediction that is constant
    within a column (the mean-profile baseline) scores exactly 0.5 on it.

    Parameters
    ----------
    pred
        Scores, ``(n_cells, n_features)`` (e.g. imputed accessibility probabilities).
    truth
        Observed values of the same cells and features (dense or scipy sparse); binarized ``> 0``.
    min_positives, min_negatives
        A feature enters the summary only when its truth has at least this many positive and
        negative cells (an AUROC over a handful of cells is noise).
    chunk_size
        Number of columns per block.

    Returns
    -------
    dict
        ``auroc_per_feature_mean``, ``auroc_per_feature_median``, ``auroc_per_feature_n_defined``
        (features that passed the filters) and ``auroc_per_feature_share_above_half`` (share of
        those features with AUROC > 0.5). NaN summaries when no feature qualifies.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}.")
    if sparse.issparse(truth):
        truth = sparse.csc_matrix(truth)
    n_features = truth.shape[1]
    values = []
    for start in range(0, n_features, chunk_size):
        stop = min(start + chunk_size, n_features)
        y = _column_block(truth, start, stop) > 0
        n_pos = y.sum(0)
        n_neg = y.shape[0] - n_pos
        keep = (n_pos >= min_positives) & (n_neg >= min_negatives)
        if not keep.any():
            continue
        s = _column_block(pred, start, stop)[:, keep]
        y, n_pos, n_neg = y[:, keep], n_pos[keep], n_neg[keep]
        ranks = rankdata(s, axis=0)  # average ranks: ties count one half
        u = (ranks * y).sum(0) - n_pos * (n_pos + 1) / 2.0
        values.append(u / (n_pos * n_neg))
    auc = np.concatenate(values) if values else np.empty(0)
    if auc.size == 0:
        nan = float("nan")
        return {
            "auroc_per_feature_mean": nan,
            "auroc_per_feature_median": nan,
            "auroc_per_feature_n_defined": 0,
            "auroc_per_feature_share_above_half": nan,
        }
    return {
        "auroc_per_feature_mean": float(auc.mean()),
        "auroc_per_feature_median": float(np.median(auc)),
        "auroc_per_feature_n_defined": int(auc.size),
        "auroc_per_feature_share_above_half": float((auc > 0.5).mean()),
    }


def interval_coverage(lower, upper, truth) -> dict[str, float]:
    """Share of ``truth`` values inside the predictive interval ``[lower, upper]``.

    Parameters
    ----------
    lower, upper
        Interval bounds, ``(n_cells, n_features)``, on the scale of ``truth`` (for counts: the
        posterior-predictive quantiles of the raw counts, from
        ``REMADOM.impute(..., return_uncertainty=True)``).
    truth
        Held-out observed values, dense or scipy sparse.

    Returns
    -------
    dict
        ``coverage`` (over all entries), ``coverage_per_feature_min`` / ``_max`` (the least and
        most covered feature), ``mean_width`` (mean ``upper - lower``) and ``n_entries``.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    t = truth.toarray() if sparse.issparse(truth) else np.asarray(truth)
    t = t.astype(np.float64)
    if not (lower.shape == upper.shape == t.shape):
        raise ValueError(f"lower, upper and truth shapes differ: {lower.shape}, {upper.shape}, {t.shape}.")
    if np.any(lower > upper):
        raise ValueError("lower > upper for some entries; pass (lower, upper) in that order.")
    inside = (t >= lower) & (t <= upper)
    per_feature = inside.mean(0)
    return {
        "coverage": float(inside.mean()),
        "coverage_per_feature_min": float(per_feature.min()),
        "coverage_per_feature_max": float(per_feature.max()),
        "mean_width": float((upper - lower).mean()),
        "n_entries": int(inside.size),
    }


def label_transfer_accuracy(
    latent: np.ndarray,
    labels,
    source: np.ndarray,
    target: np.ndarray,
    n_neighbors: int = 15,
) -> dict[str, float]:
    """Accuracy of a kNN classifier fit on the ``source`` cells, applied to the ``target`` cells.

    With source = the batches that measured every modality and target = a batch that measured
    only one, it asks whether that batch's cells land on the paired cells of their own type.

    Parameters
    ----------
    latent
        ``(n_cells, n_latent)`` embedding.
    labels
        Cell-type label of every cell.
    source, target
        Boolean masks or integer positions of the labelled and the predicted cells.
    n_neighbors
        Neighbours of the classifier (fewer when the source is smaller).

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy`` (mean per-class recall over the classes present in the
        target), ``majority_rate`` (accuracy of always predicting the source's most common label),
        ``n_source`` and ``n_target``.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    latent = np.asarray(latent)
    labels = np.asarray(labels).astype(str)
    src = np.flatnonzero(source) if np.asarray(source).dtype == bool else np.asarray(source)
    tgt = np.flatnonzero(target) if np.asarray(target).dtype == bool else np.asarray(target)
    if src.size == 0 or tgt.size == 0:
        raise ValueError(f"label transfer needs source and target cells, got {src.size} and {tgt.size}.")
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, src.size)).fit(latent[src], labels[src])
    pred = knn.predict(latent[tgt])
    values, counts = np.unique(labels[src], return_counts=True)
    with warnings.catch_warnings():  # classes predicted but absent from the target
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(labels[tgt], pred)
    return {
        "accuracy": float((pred == labels[tgt]).mean()),
        "balanced_accuracy": float(balanced),
        "majority_rate": float((labels[tgt] == values[counts.argmax()]).mean()),
        "n_source": int(src.size),
        "n_target": int(tgt.size),
    }
