"""One-call evaluation of a fitted REMADOM model's latent space."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ._latent import availability_groups, foscttm, integration_metrics, modality_mixing


def observed_masks(data, modalities: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Per-modality observation masks of a MuData or AnnData, in REMADOM's conventions.

    Parameters
    ----------
    data
        An unpadded mosaic :class:`~mudata.MuData` (a cell is observed for a modality when it is
        present in that modality's AnnData) or an :class:`~anndata.AnnData` with boolean
        ``obs["has_<name>"]`` columns.
    modalities
        Model modality name -> ``data.mod`` key (MuData) or ``obs`` mask column (AnnData).
        Default: every ``data.mod`` key (MuData) or every ``has_<name>`` column (AnnData).

    Returns
    -------
    dict
        Modality name -> boolean array ``(n_cells,)``.
    """
    if hasattr(data, "mod"):
        modalities = modalities or {m: m for m in data.mod}
        return {
            name: np.asarray(data.obs_names.isin(data.mod[key].obs_names)) for name, key in modalities.items()
        }
    from .._constants import MASK_COLUMN_PREFIX
    from ..model._validation import mask_from_obs

    if modalities is None:
        modalities = {c[len(MASK_COLUMN_PREFIX) :]: c for c in data.obs.columns if c.startswith(MASK_COLUMN_PREFIX)}
    return {name: mask_from_obs(data.obs, col, name) for name, col in modalities.items()}


def _model_modality_map(model) -> dict[str, str] | None:
    """Model modality name -> MuData key, read from the model's ``setup_mudata`` arguments."""
    mods = (getattr(model, "mudata_setup_", None) or {}).get("modalities")
    if isinstance(mods, dict):
        return {k: (v if isinstance(v, str) else v.get("mod", k)) for k, v in mods.items()
                if k in model.modality_names}
    return None


def evaluate_model(
    model,
    adata=None,
    *,
    labels: str | np.ndarray,
    batch: str | np.ndarray,
    masks: dict[str, np.ndarray] | None = None,
    compute_foscttm: bool = True,
    n_jobs: int = 1,
) -> dict[str, float]:
    """Latent-space metrics of a fitted :class:`~remadom.REMADOM` model.

    Computes :func:`~remadom.eval.integration_metrics` on the joint latent,
    :func:`~remadom.eval.modality_mixing` when cells differ in measured modalities, and, for every
    pair of modalities measured together in some cells, :func:`~remadom.eval.foscttm` between the
    latents inferred from each modality alone (keys ``foscttm_<a>_<b>``).

    Parameters
    ----------
    model
        A trained REMADOM model.
    adata
        The AnnData/MuData to evaluate; default the one the model was set up with.
    labels, batch
        Cell types and batches: ``obs`` column names of the evaluated data, or arrays
        ``(n_cells,)``. Note that ``model.adata`` of a model set up from a MuData is REMADOM's own
        padded AnnData, which only keeps registered columns: pass ``adata=mdata`` or arrays
        (e.g. ``mdata.obs["cell_type"].to_numpy()``) for unregistered ones.
    masks
        Modality name -> boolean observation mask; default derived with :func:`observed_masks`.
    compute_foscttm
        Whether to compute FOSCTTM on paired cells.
    n_jobs
        Parallel jobs for neighbour searches.

    Returns
    -------
    dict
        Flat metric name -> value.
    """
    data = adata if adata is not None else model.adata
    if masks is None:
        mapping = _model_modality_map(model) if hasattr(data, "mod") else None
        masks = observed_masks(data, mapping)
        masks = {m: masks[m] for m in model.modality_names if m in masks}
    labels = data.obs[labels].to_numpy() if isinstance(labels, str) else np.asarray(labels)
    batch = data.obs[batch].to_numpy() if isinstance(batch, str) else np.asarray(batch)
    z = model.get_latent_representation(adata=adata)
    out = integration_metrics(z, labels, batch, n_jobs=n_jobs)
    groups = availability_groups(masks)
    out["n_availability_groups"] = int(np.unique(groups).size)
    if np.unique(groups).size > 1:
        out.update(modality_mixing(z, groups, labels, n_jobs=n_jobs))
    if compute_foscttm:
        for a, b in combinations(list(masks), 2):
            idx = np.flatnonzero(masks[a] & masks[b])
            if idx.size < 2:
                continue
            za = model.get_latent_representation(adata=adata, indices=idx, modalities=[a])
            zb = model.get_latent_representation(adata=adata, indices=idx, modalities=[b])
            out[f"foscttm_{a}_{b}"] = foscttm(za, zb)
    return out
