"""Imputation metrics for a hidden modality, and the mean-profile baseline."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._cell_specific import per_feature_auroc


def _is_binary(kind: str) -> bool:
    """Whether ``kind`` (a modality kind or a likelihood name) is scored as presence/absence.

    Asks the likelihood registry: a kind is binary when its default likelihood is.
    """
    from ..modalities import MODALITY_KINDS
    from ..nn.likelihoods import LIKELIHOODS

    if kind in LIKELIHOODS:
        return LIKELIHOODS[kind].binary
    if kind in MODALITY_KINDS:
        return LIKELIHOODS[MODALITY_KINDS[kind].default_likelihood].binary
    raise ValueError(
        f"Unknown kind {kind!r}; use a modality kind ({sorted(MODALITY_KINDS)}) or a likelihood "
        f"({sorted(LIKELIHOODS)})."
    )

#: Per-cell total every profile is scaled to before ``log1p`` in the count metrics.
TARGET_SUM = 1e4


def _dense(x) -> np.ndarray:
    if sparse.issparse(x):
        x = x.toarray()
    return np.asarray(x, dtype=np.float64)


def log1p_normalize(x, target_sum: float = TARGET_SUM) -> np.ndarray:
    """Scale each cell (row) to ``target_sum`` total, then ``log1p``.

    Rows that sum to zero stay zero.

    Parameters
    ----------
    x
        Counts or expected counts, ``(n_cells, n_features)``, dense or sparse.
    target_sum
        Total of every row after scaling.

    Returns
    -------
    numpy.ndarray
        Dense ``float64`` array of the same shape.
    """
    x = _dense(x)
    tot = x.sum(axis=1, keepdims=True)
    scale = np.divide(target_sum, tot, out=np.zeros_like(tot), where=tot > 0)
    return np.log1p(x * scale)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between matching rows; NaN where either row is constant."""

    def _constant(x):  # relative test, robust to float round-off of a broadcast profile
        return np.ptp(x, axis=1) <= 1e-6 * (1.0 + np.abs(x).max(axis=1))

    const = _constant(a) | _constant(b)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = np.sum(a * b, axis=1)
    den = np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[const | (den <= 1e-12)] = np.nan
    return r


def _summary(r: np.ndarray, prefix: str) -> dict[str, float]:
    defined = ~np.isnan(r)
    return {
        f"{prefix}_mean": float(np.nanmean(r)) if defined.any() else float("nan"),
        f"{prefix}_median": float(np.nanmedian(r)) if defined.any() else float("nan"),
        f"{prefix}_n_defined": int(defined.sum()),
    }


def imputation_metrics(
    pred,
    truth,
    kind: str,
    *,
    max_entries: int = 5_000_000,
    seed: int = 0,
) -> dict[str, float]:
    """Compare an imputed modality with the hidden ground truth.

    Parameters
    ----------
    pred
        Imputed values, ``(n_cells, n_features)``: expected counts (``rna``, ``adt``; any scale,
        rows are renormalized) or accessibility probabilities/scores (``atac``).
    truth
        Observed raw counts of the same cells and features, dense or scipy sparse.
    kind
        A modality kind (``"rna"``, ``"adt"``, ``"counts"``, ``"atac"``) or a likelihood name; the
        likelihood registry says whether it is binary. Count kinds (``rna``, ``adt``, ``counts``):
        both matrices are scaled to the same per-cell total
        (:data:`TARGET_SUM`) and ``log1p``-transformed, then Pearson correlation is computed per
        feature (across cells) and per cell (across features). Binary (``"atac"``): the truth is binarized
        (``> 0``) and AUROC and AUPRC of ``pred`` as a score are computed over all entries, or over
        ``max_entries`` entries drawn uniformly at random when the matrix is larger.
    max_entries
        Entry cap for ``atac`` metrics.
    seed
        Seed of the entry subsample.

    Returns
    -------
    dict
        ``rna``/``adt``: ``pearson_feature_mean``, ``pearson_feature_median``,
        ``pearson_feature_n_defined`` and the same for ``pearson_cell``; constant rows/columns
        (e.g. a prediction identical for every cell, as the mean-profile baseline) have an undefined
        correlation, excluded from the mean and counted out of ``*_n_defined``.
        ``atac``: ``auroc``, ``auprc``, ``positive_rate`` (AUPRC of a random score) and ``n_entries``
        (pooled over entries), plus the within-peak AUROC of :func:`~remadom.eval.per_feature_auroc`
        (``auroc_per_feature_mean`` ...: 0.5 for any prediction that is the same in every cell).
    """
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}.")
    if _is_binary(kind):
        out = _binary_metrics(pred, truth, max_entries=max_entries, seed=seed)
        out.update(per_feature_auroc(pred, truth))
        return out
    p = log1p_normalize(pred)
    t = log1p_normalize(truth)
    out = _summary(_rowwise_pearson(p.T, t.T), "pearson_feature")
    out.update(_summary(_rowwise_pearson(p, t), "pearson_cell"))
    return out


def _binary_metrics(pred, truth, *, max_entries: int, seed: int) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_cells, n_feat = truth.shape
    n_total = n_cells * n_feat
    if n_total <= max_entries:
        y = _dense(truth).ravel() > 0
        s = _dense(pred).ravel()
    else:
        rng = np.random.default_rng(seed)
        flat = rng.choice(n_total, size=max_entries, replace=False)
        rows, cols = np.divmod(flat, n_feat)
        y = _take(truth, rows, cols) > 0
        s = _take(pred, rows, cols)
    if y.all() or not y.any():
        raise ValueError("AUROC is undefined: the binarized truth has a single class.")
    return {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "positive_rate": float(y.mean()),
        "n_entries": int(y.size),
    }


def _take(x, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if sparse.issparse(x):
        return np.asarray(sparse.csr_matrix(x)[rows, cols], dtype=np.float64).ravel()
    return np.asarray(x)[rows, cols].astype(np.float64)


def mean_profile_baseline(observed, n_cells: int, kind: str, target_sum: float = TARGET_SUM) -> np.ndarray:
    """Predict every cell by the mean profile of the cells where the modality was observed.

    The naive baseline any imputation must beat. It carries no cell-specific information, so its
    per-feature correlation is undefined; its per-cell correlation and ATAC AUROC measure how much
    of the signal is explained by the average profile alone.

    Parameters
    ----------
    observed
        Raw counts of the modality in the cells where it was observed (training cells),
        ``(n_observed, n_features)``, dense or sparse.
    n_cells
        Number of cells to predict.
    kind
        ``"rna"``/``"adt"``: mean of the profiles scaled to ``target_sum`` per cell (expected
        counts). ``"atac"``: fraction of observed cells in which each peak is open.
    target_sum
        Per-cell total for ``rna``/``adt``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_features)`` ``float32``, every row identical.
    """
    if _is_binary(kind):
        x = sparse.csr_matrix(observed)
        profile = np.asarray((x > 0).mean(axis=0)).ravel()
    else:
        x = sparse.csr_matrix(observed, dtype=np.float64)
        tot = np.asarray(x.sum(axis=1)).ravel()
        scale = np.divide(target_sum, tot, out=np.zeros_like(tot), where=tot > 0)
        profile = np.asarray((sparse.diags(scale) @ x).mean(axis=0)).ravel()
    return np.broadcast_to(profile.astype(np.float32), (n_cells, profile.size)).copy()
