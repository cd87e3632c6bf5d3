"""Plots for evaluation: UMAP panels, imputed-vs-observed scatter, metric bars.

Every function returns a :class:`matplotlib.figure.Figure` and never modifies its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _figure(n_panels: int, panel_size: float = 4.0):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(panel_size * n_panels + 1.5, panel_size), squeeze=False)
    return fig, axes[0]


def umap_embedding(z, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-D UMAP of a latent, with umap-learn (scanpy's layout defaults: ``min_dist=0.5``).

    umap-learn is called directly rather than through ``scanpy.pp.neighbors``: scanpy 1.11's
    sparse-neighbour path fails with scipy >= 1.17 (``csr_array`` has no ``getnnz``) as soon
    as there are more than 4,096 cells.

    Parameters
    ----------
    z
        Latent representation, ``(n_cells, n_latent)``.
    n_neighbors
        Neighbours of the kNN graph.
    seed
        Random state of the UMAP layout.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, 2)``.
    """
    import umap

    z = np.array(z, dtype=np.float32, copy=True)
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, z.shape[0] - 1), min_dist=0.5, random_state=seed)
    return np.asarray(reducer.fit_transform(z))


def plot_umap(
    z,
    annotations: Mapping[str, Sequence] | pd.DataFrame,
    *,
    embedding: np.ndarray | None = None,
    point_size: float | None = None,
    title: str | None = None,
    seed: int = 0,
):
    """UMAP panels of a latent coloured by categorical annotations.

    Parameters
    ----------
    z
        Latent representation, ``(n_cells, n_latent)``; ignored when ``embedding`` is given.
    annotations
        Panel title -> per-cell categories, e.g. ``{"cell type": labels, "batch": batch,
        "modalities": availability_groups(masks)}``, or a DataFrame whose columns are used.
    embedding
        Precomputed 2-D embedding (e.g. from :func:`umap_embedding`), to reuse across calls.
    point_size
        Marker size; defaults to a value scaled by the number of cells.
    title
        Figure title.
    seed
        Random state of the UMAP layout.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(annotations, pd.DataFrame):
        annotations = {c: annotations[c].to_numpy() for c in annotations.columns}
    if not annotations:
        raise ValueError("`annotations` is empty.")
    emb = umap_embedding(z, seed=seed) if embedding is None else np.asarray(embedding)
    n = emb.shape[0]
    size = point_size if point_size is not None else max(0.5, min(20.0, 3e4 / n))
    fig, axes = _figure(len(annotations))
    order = np.random.default_rng(seed).permutation(n)  # avoid the last category hiding the others
    for ax, (name, values) in zip(axes, annotations.items()):
        cats = pd.Categorical(np.asarray(values).astype(str))
        if len(cats) != n:
            raise ValueError(f"Annotation {name!r} has {len(cats)} values for {n} cells.")
        cmap = _palette(len(cats.categories))
        codes = cats.codes[order]
        ax.scatter(emb[order, 0], emb[order, 1], c=cmap[codes], s=size, linewidths=0, rasterized=True)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(cats.categories) <= 30:
            handles = [
                ax.scatter([], [], color=cmap[i], s=20, label=str(c)) for i, c in enumerate(cats.categories)
            ]
            ax.legend(
                handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, frameon=False
            )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _palette(k: int) -> np.ndarray:
    import matplotlib as mpl

    base = mpl.colormaps["tab20"].colors if k > 10 else mpl.colormaps["tab10"].colors
    if k <= len(base):
        return np.asarray(base[:k])
    return mpl.colormaps["nipy_spectral"](np.linspace(0.05, 0.95, k))[:, :3]


def plot_imputation(
    pred, truth, kind: str, *, max_points: int = 20_000, seed: int = 0, title: str | None = None
):
    """Imputed versus observed values of a hidden modality.

    Left: per-feature mean of prediction versus truth. Right: a random sample of individual
    entries. ``rna``/``adt`` values are per-cell normalized and ``log1p``-transformed first (as in
    :func:`~remadom.eval.imputation_metrics`); for ``atac`` the truth is binarized, so the right
    panel shows predicted probabilities of closed versus open entries.

    Parameters
    ----------
    pred
        Imputed values, ``(n_cells, n_features)``.
    truth
        Observed raw counts, same shape, dense or sparse.
    kind
        A modality kind (``"rna"``, ``"adt"``, ``"counts"``, ``"atac"``) or a likelihood name.
    max_points
        Entries drawn for the right panel.
    seed
        Seed of the entry sample.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ._imputation import _binary_metrics, _is_binary, _take, log1p_normalize

    rng = np.random.default_rng(seed)
    n_cells, n_feat = truth.shape
    flat = rng.choice(n_cells * n_feat, size=min(max_points, n_cells * n_feat), replace=False)
    rows, cols = np.divmod(flat, n_feat)
    fig, (ax0, ax1) = _figure(2)
    binary = _is_binary(kind)  # raises on an unknown kind
    if not binary:
        p, t = log1p_normalize(pred), log1p_normalize(truth)
        ax0.scatter(t.mean(0), p.mean(0), s=4, alpha=0.6)
        ax1.scatter(t[rows, cols], p[rows, cols], s=2, alpha=0.3, rasterized=True)
        for ax in (ax0, ax1):
            lim = [0, max(ax.get_xlim()[1], ax.get_ylim()[1])]
            ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
        ax0.set_xlabel("observed mean log1p(norm.)")
        ax0.set_ylabel("imputed mean log1p(norm.)")
        ax1.set_xlabel("observed log1p(norm.)")
        ax1.set_ylabel("imputed log1p(norm.)")
    else:
        t_bin = truth > 0
        obs_rate = np.asarray(t_bin.mean(axis=0)).ravel()
        pred_mean = np.asarray(pred.mean(axis=0)).ravel()
        ax0.scatter(obs_rate, pred_mean, s=4, alpha=0.6)
        ax0.set_xlabel("observed open fraction per peak")
        ax0.set_ylabel("mean imputed probability")
        y = _take(truth, rows, cols) > 0
        s = _take(pred, rows, cols)
        ax1.boxplot([s[~y], s[y]], tick_labels=["closed", "open"], showfliers=False)
        ax1.set_ylabel("imputed probability")
        if y.any() and not y.all():
            m = _binary_metrics(pred, truth, max_entries=max_points, seed=seed)
            ax1.set_title(f"AUROC {m['auroc']:.3f}, AUPRC {m['auprc']:.3f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics(
    results: Mapping[str, Mapping[str, float]], metrics: Sequence[str] | None = None, title: str | None = None
):
    """Grouped bar chart of metrics per method.

    Parameters
    ----------
    results
        Method name -> {metric name -> value}.
    metrics
        Metrics to show, in order; default all metrics present in every method.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    df = pd.DataFrame({m: dict(v) for m, v in results.items()})
    if metrics is None:
        metrics = [k for k in df.index if df.loc[k].notna().all()]
    df = df.loc[list(metrics)]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(df) * max(1, df.shape[1]) / 2 + 2), 3.5))
    df.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, frameon=False)
    ax.tick_params(axis="x", labelrotation=45)
    for lbl in ax.get_xticklabels():
        lbl.set_horizontalalignment("right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
