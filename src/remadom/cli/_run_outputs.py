"""What a finished run writes beside its checkpoints: the best model, the latent and the figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._constants import LATENT_OBSM_KEY
from ._checkpoints import load_best_state
from ._figures import availability_labels, modality_masks, plot_latent_umap, plot_loss_curves


def load_best(model, checkpoint_callback, run_dir: Path) -> str | None:
    """Load the best checkpoint's weights into ``model`` (read weights-only, inside ``checkpoints/``)."""
    best = checkpoint_callback.best_model_path
    if not best or not os.path.isfile(best):
        return None
    model.module.load_state_dict(load_best_state(best, run_dir / "checkpoints"))
    return best


def write_outputs(model, config, run_dir: Path, setup_kwargs: dict, val_idx) -> dict:
    """Save ``model/``, ``latent.h5ad`` and the figures; return the manifest's ``artifacts``."""
    import anndata as ad

    artifacts = {}
    model.module.eval()
    model.save(str(run_dir / "model"), overwrite=True, save_anndata=False)
    artifacts["model"] = "model"

    z = model.get_latent_representation()
    obs = model.adata.obs.loc[:, [c for c in model.adata.obs.columns if not c.startswith("_scvi")]].copy()
    obs["split"] = "train"
    obs.iloc[np.asarray(val_idx), obs.columns.get_loc("split")] = "val"
    masks = modality_masks(model)
    for m, mask in masks.items():
        obs[f"remadom_has_{m}"] = mask
    latent = ad.AnnData(obs=obs)
    latent.obsm[LATENT_OBSM_KEY] = z
    latent.write_h5ad(run_dir / "latent.h5ad")
    artifacts["latent"] = "latent.h5ad"
    artifacts["metrics_csv"] = "logs/metrics.csv"
    artifacts["splits_train"] = "splits/train.csv"
    artifacts["splits_val"] = "splits/val.csv"

    if config.logging.figures:
        if plot_loss_curves(run_dir / "logs" / "metrics.csv", run_dir / "figures" / "loss_curves.png"):
            artifacts["loss_curves"] = "figures/loss_curves.png"
        annotations = {}
        for key, title in ((setup_kwargs.get("labels_key"), "cell type"), (setup_kwargs.get("batch_key"), "batch")):
            if key is not None and key in obs:
                annotations[f"{title} ({key})"] = obs[key].astype(str).to_numpy()
        annotations["modality availability"] = availability_labels(masks)
        plot_latent_umap(z, annotations, run_dir / "figures" / "umap.png", seed=config.seed)
        artifacts["umap"] = "figures/umap.png"
    if (run_dir / "figures" / "snapshots").is_dir():
        for p in sorted((run_dir / "figures" / "snapshots").glob("*.png")):
            artifacts[f"snapshot_{p.stem}"] = p.relative_to(run_dir).as_posix()
    return artifacts


def checkpoint_summary(run_dir: Path, best: str | None, checkpoint_callback, monitor: str) -> dict:
    """The manifest's ``checkpoints`` entry (paths relative to the run directory)."""
    def rel(p):
        return Path(p).relative_to(run_dir).as_posix() if p else None

    last = run_dir / "checkpoints" / "last.ckpt"
    score = checkpoint_callback.best_model_score
    return {"best": rel(best), "last": rel(last) if last.is_file() else None, "monitor": monitor,
            "best_score": float(score) if score is not None else None}
