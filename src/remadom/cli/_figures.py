"""Run figures: loss curves, latent UMAPs and imputation/reconstruction snapshots."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from lightning.pytorch.callbacks import Callback

logger = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def epoch_metrics(metrics_csv: str | Path) -> pd.DataFrame:
    """Lightning's ``metrics.csv`` collapsed to one row per epoch (``epoch`` column)."""
    df = pd.read_csv(metrics_csv)
    if "epoch" not in df:
        return pd.DataFrame()
    df = df.drop(columns=[c for c in ("step",) if c in df])
    return df.groupby("epoch", as_index=False).last().sort_values("epoch")


def plot_loss_curves(metrics_csv: str | Path, out: str | Path) -> Path | None:
    """One panel per ELBO term (train and validation) plus the KL weight.

    Terms that are zero throughout (``kl_global`` of a model without global latents) get no
    panel; the KL weight is drawn once (Lightning logs it as ``kl_weight`` and
    ``kl_weight_epoch``, the same values); epochs are integer ticks.
    """
    df = epoch_metrics(metrics_csv)
    if df.empty:
        return None
    terms = sorted({c[: -len("_train")] for c in df.columns if c.endswith("_train")})
    terms = [t for t in terms if not _all_zero(df, [f"{t}_train", f"{t}_validation"])]
    kl_cols = [c for c in ("kl_weight", "kl_weight_epoch", "kl_weight_step") if c in df][:1]
    panels = terms + (["kl_weight"] if kl_cols else [])
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    for ax, term in zip(axes.ravel(), panels):
        if term == "kl_weight":
            ax.plot(df["epoch"], df[kl_cols[0]], marker=".")
        else:
            for split in ("train", "validation"):
                col = f"{term}_{split}"
                if col in df:
                    ax.plot(df["epoch"], df[col], marker=".", label=split)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if term != "kl_weight":
            ax.legend(fontsize=9)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _all_zero(df: pd.DataFrame, cols: list[str]) -> bool:
    values = df[[c for c in cols if c in df]].to_numpy(dtype=float)
    return values.size > 0 and bool(np.all(np.nan_to_num(values) == 0))


def modality_masks(model) -> dict[str, np.ndarray]:
    """Observed mask of each model modality on the model's (padded) AnnData."""
    return {m: np.asarray(v, dtype=bool) for m, v in model.get_modality_masks().items()}


def availability_labels(masks: dict[str, np.ndarray]) -> np.ndarray:
    """``"rna+atac"``-style label of the modalities each cell has (:func:`remadom.eval.availability_groups`)."""
    from ..eval import availability_groups

    return availability_groups(masks)


def plot_latent_umap(z, annotations: dict, out: str | Path, seed: int = 0) -> Path:
    """UMAP panels of the latent, one per annotation."""
    from remadom._threads import numba_threads
    from remadom.eval import plot_umap

    plt = _plt()
    with numba_threads():  # keep numba's thread pool from slowing later training (issue #14)
        fig = plot_umap(z, annotations, seed=seed, title="REMADOM latent")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def _like_with_like(head, obs: np.ndarray, pred: np.ndarray, library_size: float = 1e4):
    """Per-feature observed and predicted values of the same quantity, and their axis labels.

    ``head`` is the modality's likelihood head (class or instance); ``pred`` is
    ``impute(..., library_size=library_size, include_background=True)``, the mean of a new
    measurement.

    * binary heads (ATAC): fraction of cells with the feature open against the mean predicted
      probability;
    * count heads: ``log1p`` of the per-feature *mean* of counts on both axes: the observed
      counts, and the predicted mean counts of each cell (at the cell's observed library size
      for heads that scale with it, ``rna``). The mean of an expectation is the expectation of
      the mean, so a perfect model lies on the diagonal; the mean of ``log1p`` of counts, or
      counts rescaled per cell, would not. For ``nbmixture`` ADT the prediction includes the
      background, as the observed counts do;
    * other heads (Gaussian): per-feature means of the values as the head scores them (the
      CLR of the counts for ``gaussian_clr``) against the predicted means.
    """
    from ..nn.likelihoods import LikelihoodHead

    cls = head if isinstance(head, type) else type(head)
    if cls.binary:
        return ((obs > 0).mean(0), pred.mean(0), "fraction of cells with the feature open",
                "mean open probability")
    if cls.requires_counts:
        background = cls.observation_mean is not LikelihoodHead.observation_mean
        if cls.scales_with_library:
            pred = pred / library_size * obs.sum(1, keepdims=True)
            what = "log1p(feature mean of expected counts at the cell's library size)"
        else:
            what = "log1p(feature mean of expected counts" + (", background included)" if background else ")")
        return np.log1p(obs.mean(0)), np.log1p(pred.mean(0)), "log1p(feature mean of counts)", what
    score = getattr(cls, "_score_values_np", None)  # the Gaussian heads' scoring transform
    scored = np.asarray(score(obs)) if score is not None else obs
    scale = "CLR of counts" if cls.name == "gaussian_clr" else "values"
    return scored.mean(0), pred.mean(0), f"feature mean of {scale}", f"feature mean of predicted {scale}"


class ImputationSnapshot(Callback):
    """Every ``every`` epochs, plot predicted versus observed values on validation cells.

    For each modality, cells that have it and another modality are predicted from the
    others (imputation); if there are none, the modality is reconstructed from itself.
    Points are per-feature means of the same quantity on both axes (:func:`_like_with_like`):
    the predicted mean of a new measurement (background included) against the observations.
    """

    def __init__(self, model, val_idx: np.ndarray, out_dir: str | Path, every: int, max_cells: int = 300):
        self.model = model
        self.val_idx = np.asarray(val_idx)[:max_cells]
        self.out_dir = Path(out_dir)
        self.every = every
        self.written: list[Path] = []

    def on_train_epoch_end(self, trainer, pl_module):
        """Draw a snapshot when the epoch number is a multiple of ``every``."""
        epoch = trainer.current_epoch + 1
        if self.every and self.val_idx.size and (epoch % self.every == 0 or epoch == trainer.max_epochs):
            with torch.random.fork_rng():
                try:
                    self.written.append(self.snapshot(epoch))
                except Exception as e:  # noqa: BLE001 - a figure must never stop training
                    logger.warning("imputation snapshot at epoch %d failed: %s", epoch, e)

    def snapshot(self, epoch: int) -> Path:
        """Write ``snapshots/epoch_<epoch>.png``."""
        model = self.model
        masks = {m: v[self.val_idx] for m, v in modality_masks(model).items()}
        was_trained, was_training = model.is_trained_, model.module.training
        model.is_trained_ = True
        panels = []
        try:
            for spec in model.specs:
                m = spec.name
                others = [o for o in masks if o != m]
                cross = masks[m] & np.any([masks[o] for o in others], axis=0) if others else np.zeros_like(masks[m])
                cells = cross if cross.any() else masks[m]
                if not cells.any():
                    continue
                idx = self.val_idx[cells]
                source = [o for o in others if masks[o][cells].any()] if cross.any() else [m]
                pred = model.impute(m, from_modalities=source, indices=idx, library_size=1e4,
                                    include_background=True)
                matrix = model.get_modality_data(m)
                obs = _dense(matrix[idx])
                px, py, unit, what = _like_with_like(model.module.heads[m], obs, pred)
                panels.append((m, source, px, py, unit, idx.size, what))
        finally:
            model.is_trained_ = was_trained
            model.module.train(was_training)
        plt = _plt()
        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.4), squeeze=False)
        for ax, (m, source, px, py, unit, n, what) in zip(axes.ravel(), panels):
            r = np.corrcoef(px, py)[0, 1] if px.size > 1 and px.std() > 0 and py.std() > 0 else np.nan
            ax.scatter(px, py, s=6, alpha=0.7)
            lim = [min(px.min(), py.min()), max(px.max(), py.max())]
            ax.plot(lim, lim, color="grey", lw=0.8)
            ax.set_title(f"{m} from {'+'.join(source)} (n={n})\nr={r:.2f}", fontsize=8)
            ax.set_xlabel(f"observed: {unit}", fontsize=8)
            ax.set_ylabel(f"predicted: {what}", fontsize=8)
        fig.suptitle(f"validation cells, epoch {epoch}", fontsize=9)
        fig.tight_layout()
        out = self.out_dir / f"epoch_{epoch:03d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out


class LossCurveRefresh(Callback):
    """Redraw the loss curves from ``metrics.csv`` every ``every`` epochs."""

    def __init__(self, metrics_csv: Path, out: Path, every: int):
        self.metrics_csv, self.out, self.every = Path(metrics_csv), Path(out), every

    def on_train_epoch_end(self, trainer, pl_module):
        """Flush the CSV logger and redraw."""
        if self.every and (trainer.current_epoch + 1) % self.every == 0:
            for lg in trainer.loggers:
                lg.save()
            if self.metrics_csv.exists():
                try:
                    plot_loss_curves(self.metrics_csv, self.out)
                except Exception as e:  # noqa: BLE001
                    logger.warning("loss-curve refresh failed: %s", e)
