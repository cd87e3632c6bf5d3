"""``remadom evaluate`` output: a readable metric table and a figure in the run directory."""

from __future__ import annotations

import math
import re
from pathlib import Path

__all__ = ["METRIC_MEANINGS", "format_metrics_table", "meaning", "plot_metrics_figure"]

#: Metric name (or ``foscttm_<a>_<b>`` pattern) -> one line saying what it measures.
METRIC_MEANINGS = {
    "nmi": "cell types recovered by clustering the latent (NMI, 0-1, higher is better)",
    "ari": "cell types recovered by clustering the latent (ARI, 0-1, higher is better)",
    "silhouette_label": "cell types form compact, separated groups (scaled ASW, 0-1, higher is better)",
    "clisi": "neighbours share the cell's type (scaled cLISI, 0-1, higher is better)",
    "silhouette_batch": "batches overlap within each cell type (batch ASW, 0-1, higher is better)",
    "ilisi": "neighbours come from several batches (scaled iLISI, 0-1, higher is better)",
    "graph_connectivity": "each cell type is one connected kNN component across batches (0-1, higher is better)",
    "bio_conservation": "mean of nmi, ari, silhouette_label, clisi (scIB bio score)",
    "batch_correction": "mean of silhouette_batch, ilisi, graph_connectivity (scIB batch score)",
    "total": "0.6 x bio_conservation + 0.4 x batch_correction (scIB overall score)",
    "silhouette_modality": "cells measured with different modalities overlap within a type (ASW, higher is better)",
    "ilisi_modality": "neighbours were measured with different modalities (iLISI, higher is better)",
    "modality_mixing": "mean of silhouette_modality and ilisi_modality",
    "n_availability_groups": "number of distinct sets of measured modalities among the cells",
}
_FOSCTTM = re.compile(r"foscttm_(\w+?)_(\w+)$")


def meaning(name: str) -> str:
    """One line saying what metric ``name`` measures ('' if unknown)."""
    if name in METRIC_MEANINGS:
        return METRIC_MEANINGS[name]
    m = _FOSCTTM.match(name)
    if m:
        return (
            f"paired cells: fraction closer to a cell's {m.group(1)} embedding than its own {m.group(2)} "
            "one (0 is perfect, 0.5 random)"
        )
    return ""


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) > 1):
        return f"{int(value)}"
    return f"{value:.3f}"


def format_metrics_table(metrics: dict) -> str:
    """Plain-text table: metric, value, meaning; one line per metric."""
    width = max(len(k) for k in metrics) if metrics else 6
    lines = [f"{'metric':<{width}}  {'value':>7}  meaning", f"{'-' * width}  {'-' * 7}  {'-' * 7}"]
    lines += [f"{k:<{width}}  {_fmt(v):>7}  {meaning(k)}" for k, v in metrics.items()]
    return "\n".join(lines)


def plot_metrics_figure(metrics: dict, path: str | Path) -> Path:
    """Horizontal bars of the 0-1 scores (scIB groups, modality mixing, FOSCTTM), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [
        (k, float(v))
        for k, v in metrics.items()
        if k != "n_availability_groups" and v is not None and not math.isnan(float(v))
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1.2), dpi=150)
    colors = [
        "#bbbbbb"
        if _FOSCTTM.match(k)
        else "#4c72b0"
        if k in ("bio_conservation", "batch_correction", "total", "modality_mixing")
        else "#8da0cb"
        for k, _ in rows
    ]
    ax.barh([k for k, _ in rows], [v for _, v in rows], color=colors)
    for i, (_, v) in enumerate(rows):
        ax.text(min(v, 1.0) + 0.01, i, f"{v:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.invert_yaxis()
    ax.set_xlabel("score (higher is better; FOSCTTM, grey: lower is better)")
    ax.set_title("remadom evaluate")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
