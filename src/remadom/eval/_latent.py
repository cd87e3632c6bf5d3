"""Latent-space metrics: scIB bio conservation / batch correction, modality mixing, FOSCTTM.

The scIB metrics are computed by :mod:`scib_metrics` (an optional dependency, ``pip install
remadom[eval]``); this module only wires them together around one shared kNN graph.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

import numpy as np

#: Weights of the scIB aggregate score (Luecken et al. 2022).
BIO_WEIGHT = 0.6
BATCH_WEIGHT = 0.4

BIO_METRICS = ("nmi", "ari", "silhouette_label", "clisi")
BATCH_METRICS = ("silhouette_batch", "ilisi", "graph_connectivity")

_EVAL_HINT = "pip install 'remadom[eval]'"


def _import_scib() -> ModuleType:
    """Import :mod:`scib_metrics` lazily, with an actionable error message."""
    try:
        return importlib.import_module("scib_metrics")
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"remadom.eval needs the optional dependency scib-metrics; install it with `{_EVAL_HINT}`."
        ) from err


def _as_latent(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"Expected a 2-D latent (n_cells, n_latent), got shape {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise ValueError("The latent representation contains NaN or infinite values.")
    return z


def _as_labels(x, n: int, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), got {x.shape}.")
    return x.astype(str)


def knn_graph(z: np.ndarray, n_neighbors: int = 90, n_jobs: int = 1, method: str = "exact"):
    """Nearest-neighbour graph of a latent, in the form scib-metrics expects.

    Parameters
    ----------
    z
        Latent representation, ``(n_cells, n_latent)``.
    n_neighbors
        Number of neighbours including the cell itself; capped at ``n_cells - 1``.
    n_jobs
        Number of parallel jobs for the neighbour search.
    method
        ``"exact"`` (:class:`sklearn.neighbors.NearestNeighbors`, deterministic; fastest for
        latents of ~20 dimensions and up to a few 10^4 cells) or ``"pynndescent"`` (approximate,
        what :class:`scib_metrics.benchmark.Benchmarker` uses).

    Returns
    -------
    :class:`scib_metrics.nearest_neighbors.NeighborsResults`
    """
    scib = _import_scib()
    z = _as_latent(z)
    k = int(min(n_neighbors, z.shape[0] - 1))
    if k < 2:
        raise ValueError("At least 3 cells are needed to build a neighbour graph.")
    if method == "exact":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k, n_jobs=n_jobs).fit(z)
        distances, indices = nn.kneighbors(z)
        return scib.nearest_neighbors.NeighborsResults(indices=indices, distances=distances)
    if method == "pynndescent":
        return scib.nearest_neighbors.pynndescent(z, n_neighbors=k, random_state=0, n_jobs=n_jobs)
    raise ValueError(f"Unknown kNN method {method!r}; use 'exact' or 'pynndescent'.")


def _nan_mean(values) -> float:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def integration_metrics(
    z,
    labels,
    batch,
    *,
    n_jobs: int = 1,
    clustering: str = "leiden",
    knn_method: str = "exact",
    seed: int = 0,
) -> dict[str, float]:
    """Compute scIB bio-conservation and batch-correction metrics of a latent representation.

    One kNN graph (90 neighbours, subset to 15 where scIB uses 15) is computed once and shared by
    all graph metrics, which is what :class:`scib_metrics.benchmark.Benchmarker` does internally
    but without its per-embedding PCA and AnnData overhead. Measured on 2 CPU cores with a
    10k-cell, 20-dimensional latent, exact sklearn kNN is faster than pynndescent (see
    ``benchmarks/README.md``).

    Parameters
    ----------
    z
        Latent representation, ``(n_cells, n_latent)``.
    labels
        Cell-type labels, ``(n_cells,)``.
    batch
        Batch labels, ``(n_cells,)``.
    n_jobs
        Parallel jobs for the kNN search and Leiden resolution sweep.
    clustering
        ``"leiden"`` (Leiden on the kNN graph, best NMI over a resolution sweep, as scIB) or
        ``"kmeans"`` (k-means with k = number of labels; jax, compiles on first call).
    knn_method
        See :func:`knn_graph`.
    seed
        Seed of the Leiden clustering.

    Returns
    -------
    dict
        ``nmi``, ``ari``, ``silhouette_label``, ``clisi`` (bio conservation), ``silhouette_batch``,
        ``ilisi``, ``graph_connectivity`` (batch correction), their means ``bio_conservation`` and
        ``batch_correction`` and ``total = 0.6 * bio_conservation + 0.4 * batch_correction``.
        All metrics are scaled to [0, 1], higher is better. ``ilisi`` and ``silhouette_batch``
        are NaN when there is a single batch.
    """
    scib = _import_scib()
    z = _as_latent(z)
    n = z.shape[0]
    labels = _as_labels(labels, n, "labels")
    batch = _as_labels(batch, n, "batch")
    nn90 = knn_graph(z, 90, n_jobs=n_jobs, method=knn_method)
    nn15 = nn90.subset_neighbors(min(15, nn90.n_neighbors))

    out: dict[str, float] = {}
    if clustering == "leiden":
        res = scib.nmi_ari_cluster_labels_leiden(
            nn15, labels, optimize_resolution=True, n_jobs=n_jobs, seed=seed
        )
    elif clustering == "kmeans":
        res = scib.nmi_ari_cluster_labels_kmeans(z, labels)
    else:
        raise ValueError(f"Unknown clustering {clustering!r}; use 'leiden' or 'kmeans'.")
    out["nmi"], out["ari"] = float(res["nmi"]), float(res["ari"])
    out["silhouette_label"] = float(scib.silhouette_label(z, labels))
    out["clisi"] = float(scib.clisi_knn(nn90, labels))
    out.update(_batch_mixing(scib, z, nn90, labels, batch, prefix=""))
    out["graph_connectivity"] = float(scib.graph_connectivity(nn15, labels))
    out["bio_conservation"] = _nan_mean(out[k] for k in BIO_METRICS)
    out["batch_correction"] = _nan_mean(out[k] for k in BATCH_METRICS)
    out["total"] = BIO_WEIGHT * out["bio_conservation"] + BATCH_WEIGHT * out["batch_correction"]
    return out


def _batch_mixing(scib, z, nn90, labels, groups, prefix: str) -> dict[str, float]:
    """Batch silhouette and iLISI for an arbitrary grouping; NaN when there is one group."""
    if np.unique(groups).size < 2:
        return {
            f"silhouette_{prefix or 'batch'}": float("nan"),
            f"ilisi{prefix and '_' + prefix}": float("nan"),
        }
    return {
        f"silhouette_{prefix or 'batch'}": float(scib.silhouette_batch(z, labels, groups)),
        f"ilisi{prefix and '_' + prefix}": float(scib.ilisi_knn(nn90, groups)),
    }


def availability_groups(masks: Mapping[str, np.ndarray], sep: str = "+") -> np.ndarray:
    """Name each cell's modality-availability group, e.g. ``"rna+atac"``, ``"rna"``, ``"atac"``.

    Parameters
    ----------
    masks
        Modality name -> boolean array ``(n_cells,)`` that is ``True`` where the modality was
        observed. The group name lists observed modalities in the order of ``masks``.
    sep
        Separator between modality names.

    Returns
    -------
    numpy.ndarray
        String array ``(n_cells,)``; a cell with no observed modality is ``"none"``.
    """
    if not masks:
        raise ValueError("`masks` is empty.")
    names = list(masks)
    arrs = [np.asarray(masks[m]).astype(bool).ravel() for m in names]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ValueError("All masks must have the same length.")
    stacked = np.stack(arrs, axis=1)
    out = np.empty(n, dtype=object)
    for pattern in np.unique(stacked, axis=0):
        rows = np.all(stacked == pattern, axis=1)
        name = sep.join(m for m, on in zip(names, pattern) if on) or "none"
        out[rows] = name
    return out.astype(str)


def modality_mixing(z, groups, labels, *, n_jobs: int = 1, knn_method: str = "exact") -> dict[str, float]:
    """How well cells with different measured modalities mix in the latent.

    The scIB batch-correction metrics are computed with the modality-availability group (see
    :func:`availability_groups`) in place of the batch: a latent where RNA-only, ATAC-only and
    paired cells of one cell type overlap scores high.

    Parameters
    ----------
    z
        Latent representation, ``(n_cells, n_latent)``.
    groups
        Availability group of each cell, ``(n_cells,)``.
    labels
        Cell-type labels, ``(n_cells,)``; silhouette is computed within each cell type.
    n_jobs
        Parallel jobs for the kNN search.
    knn_method
        See :func:`knn_graph`.

    Returns
    -------
    dict
        ``silhouette_modality`` (batch silhouette over groups), ``ilisi_modality`` (iLISI over
        groups, scaled to [0, 1]) and their mean ``modality_mixing``; all NaN with one group.
    """
    scib = _import_scib()
    z = _as_latent(z)
    n = z.shape[0]
    groups = _as_labels(groups, n, "groups")
    labels = _as_labels(labels, n, "labels")
    nn90 = knn_graph(z, 90, n_jobs=n_jobs, method=knn_method)
    out = _batch_mixing(scib, z, nn90, labels, groups, prefix="modality")
    out["modality_mixing"] = _nan_mean(out.values())
    return out


def foscttm(z_a, z_b, block_size: int = 512) -> float:
    """Fraction Of Samples Closer Than the True Match (lower is better, 0 is perfect).

    Row ``i`` of ``z_a`` and ``z_b`` embed the same cell from two different inputs (e.g. from RNA
    alone and from ATAC alone). For every cell, the fraction of other cells of the other embedding
    that are closer (Euclidean) than its true match is computed in both directions and averaged.
    Random embeddings give about 0.5. Distances are computed in row blocks, so memory is
    ``O(block_size * n_cells)``.

    Parameters
    ----------
    z_a, z_b
        Embeddings of the same cells, ``(n_cells, n_latent)`` each.
    block_size
        Rows per block.

    Returns
    -------
    float
    """
    z_a = np.asarray(z_a, dtype=np.float64)
    z_b = np.asarray(z_b, dtype=np.float64)
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"z_a and z_b must be 2-D with the same shape, got {z_a.shape} and {z_b.shape}.")
    n = z_a.shape[0]
    if n < 2:
        raise ValueError("FOSCTTM needs at least 2 cells.")

    def _frac_closer(x, y):
        sq_y = np.sum(y**2, axis=1)
        total = 0.0
        for start in range(0, n, block_size):
            xb = x[start : start + block_size]
            d = np.sum(xb**2, axis=1)[:, None] + sq_y[None, :] - 2.0 * xb @ y.T
            rows = np.arange(xb.shape[0])
            # the true match's distance, taken from the same matrix so rounding is consistent
            true_d = d[rows, start + rows]
            total += np.sum(d < true_d[:, None])
        return total / (n * (n - 1))

    return float(0.5 * (_frac_closer(z_a, z_b) + _frac_closer(z_b, z_a)))
