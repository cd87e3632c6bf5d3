"""Unpadded mosaic MuData -> the padded AnnData layout REMADOM registers.

The user's MuData is never modified: a new AnnData is built whose rows are
``mdata.obs_names``, with the first modality in ``X`` and the others in
``obsm["X_<modality>"]`` (feature names in ``uns["<modality>_names"]``), each zero-filled
(sparse) for cells that lack it, and a ``has_<modality>`` mask in ``obs``. Sparse inputs stay sparse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._constants import mask_column
from ._feature_masks import FEATURE_MASKS_UNS_KEY, MEASURED_VARM_KEY
from ._validation import RemadomSetupError, mask_from_obs


def _pad_rows(matrix, row_positions: np.ndarray, n_rows: int):
    """Place the rows of ``matrix`` at ``row_positions`` of an ``n_rows`` matrix of zeros."""
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    if sp.issparse(matrix):
        coo = sp.coo_matrix(matrix)
        return sp.csr_matrix(
            (coo.data.astype(np.float32), (row_positions[coo.row], coo.col)), shape=(n_rows, matrix.shape[1])
        )
    out = np.zeros((n_rows, matrix.shape[1]), dtype=np.float32)
    out[row_positions] = np.asarray(matrix, dtype=np.float32)
    return out


@dataclass
class MosaicSlot:
    """Where one modality of the MuData goes in the padded AnnData."""

    #: ``mdata.mod`` key and layer (``None``: ``X``) the matrix is read from.
    mod: str
    layer: str | None
    #: For each row of ``mdata.mod[mod]``, its row in the padded AnnData (-1: the cell is left out).
    rows: np.ndarray
    #: ``obsm`` key of the padded matrix, or ``None`` for ``X`` (the first modality).
    obsm_key: str | None


@dataclass
class MosaicLayout:
    """Everything of the padded AnnData except the matrices: ``obs``, ``var``, ``uns`` and where each row goes."""

    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict
    slots: dict[str, MosaicSlot]
    #: ``setup_anndata(modalities=...)`` of the padded AnnData.
    registered: dict = field(default_factory=dict)

    @property
    def n_obs(self) -> int:
        """Number of rows of the padded AnnData."""
        return len(self.obs)


def mosaic_layout(
    mdata,
    modalities: dict[str, dict],
    obs_keys: list[str] | None = None,
    drop_cells_without_modalities: bool = False,
) -> MosaicLayout:
    """The layout of REMADOM's padded AnnData for ``mdata``, reading no matrix values.

    Takes the arguments of :func:`mudata_to_mosaic_anndata` and does all its checks; only the
    names, shapes and layer keys of ``mdata.mod`` are used, so ``mdata`` may hold placeholder
    matrices (the out-of-core converter, :mod:`remadom.data._backed_mudata`, streams the values).
    """
    for name, entry in modalities.items():
        mod = entry["mod"]
        if mod not in mdata.mod:
            raise RemadomSetupError(
                f"Modality {name!r} maps to mdata.mod[{mod!r}], which does not exist "
                f"(available: {list(mdata.mod.keys())})."
            )
    obs_names = mdata.obs_names
    present = {}
    for name, entry in modalities.items():
        mod = entry["mod"]
        mod_obs = mdata.mod[mod].obs_names
        unknown = ~mod_obs.isin(obs_names)
        if unknown.any():
            raise RemadomSetupError(
                f"{int(unknown.sum())} cells of mdata.mod[{mod!r}] are not in mdata.obs_names "
                f"(e.g. {list(mod_obs[unknown][:3])}). Call mdata.update() so the global obs is in sync."
            )
        if mod_obs.has_duplicates:
            raise RemadomSetupError(f"mdata.mod[{mod!r}] has duplicated obs_names; make them unique.")
        present[name] = obs_names.isin(mod_obs)

    keep = np.zeros(len(obs_names), dtype=bool)
    for p in present.values():
        keep |= p
    if not keep.all() and not drop_cells_without_modalities:
        bad = obs_names[~keep]
        used = {e["mod"] for e in modalities.values()}
        holders = [k for k in mdata.mod if k not in used and mdata.mod[k].obs_names.isin(bad).any()]
        if holders:
            raise RemadomSetupError(
                f"{len(bad)} cell(s) of mdata.obs are in none of the modalities set up "
                f"{sorted(used)} but in mdata.mod {holders}, which is not mapped to a model modality "
                f"(e.g. {list(bad[:3])}). Map it, e.g. modalities={{..., 'adt': {holders[0]!r}}} "
                f"(a name of its kind: rna, atac, adt, or any name with kind 'counts')."
            )
        raise RemadomSetupError(
            f"{len(bad)} cell(s) of mdata.obs are in none of the modalities {sorted(used)} "
            f"(e.g. {list(bad[:3])}). Pass drop_cells_without_modalities=True to leave them out."
        )
    obs_names = obs_names[keep]
    present = {k: v[keep] for k, v in present.items()}
    obs = mdata.obs.loc[obs_names, [k for k in (obs_keys or []) if k is not None]].copy()

    layout = MosaicLayout(obs=obs, var=pd.DataFrame(), uns={}, slots={})
    for name, entry in modalities.items():
        mod, layer = entry["mod"], entry.get("layer")
        sub = mdata.mod[mod]
        if layer is not None and layer not in sub.layers:
            raise RemadomSetupError(
                f"Layer {layer!r} of modality {name!r} is not in mdata.mod[{mod!r}].layers "
                f"(available: {list(sub.layers.keys())}). Fix it, or pass None to use X."
            )
        mask_col = mask_column(name)
        mask = present[name]
        user_key = entry.get("mask")
        if user_key is not None:
            user_mask = mask_from_obs(mdata.obs.loc[obs_names], user_key, name)
            contradicted = user_mask & ~mask
            if contradicted.any():
                raise RemadomSetupError(
                    f"Mask obs[{user_key!r}] says modality {name!r} is observed for "
                    f"{int(contradicted.sum())} cell(s) absent from mdata.mod[{mod!r}] "
                    f"(e.g. {list(obs_names[contradicted][:3])}). Fix the mask or add the cells' data."
                )
            mask = user_mask & mask
        obs[mask_col] = mask
        names = np.asarray(sub.var_names, dtype=str)
        if MEASURED_VARM_KEY in sub.varm:  # per-batch feature masks (remadom.data.concat_mosaic)
            layout.uns.setdefault(FEATURE_MASKS_UNS_KEY, {})[name] = pd.DataFrame(sub.varm[MEASURED_VARM_KEY]).T
        options = {k: entry[k] for k in ("kind", "likelihood", "encoder_input") if entry.get(k)}
        rows = obs_names.get_indexer(sub.obs_names)
        if not layout.slots:  # the first modality goes in X (as in views written before; var_names = its features)
            layout.var = pd.DataFrame(index=pd.Index(names))
            layout.slots[name] = MosaicSlot(mod, layer, rows, None)
            layout.registered[name] = {"layer": None, "mask": mask_col, **options}
            continue
        key = f"X_{name}"
        layout.slots[name] = MosaicSlot(mod, layer, rows, key)
        layout.uns[f"{name}_names"] = names
        layout.registered[name] = {"obsm": key, "mask": mask_col, **options}
    return layout


def mudata_to_mosaic_anndata(
    mdata,
    modalities: dict[str, dict],
    obs_keys: list[str] | None = None,
    drop_cells_without_modalities: bool = False,
) -> tuple[AnnData, dict]:
    """Build REMADOM's padded AnnData from an (unpadded) mosaic MuData.

    Parameters
    ----------
    mdata
        MuData; a cell absent from ``mdata.mod[key]`` has that modality missing.
    modalities
        Model modality name -> ``{"mod": mdata.mod key, "layer": layer of it (None: X),
        "kind", "likelihood", "encoder_input", "mask": optional extra mask column of mdata.obs}``.
        A mask saying "observed" for a cell absent from the modality is an error.
    obs_keys
        Columns of ``mdata.obs`` to carry over (batch, labels, covariates).
    drop_cells_without_modalities
        Leave out cells present in none of the chosen modalities instead of failing.

    Returns
    -------
    ``(adata, keys)``: the padded AnnData and the ``setup_anndata`` keyword arguments
    (``modalities=``) that register it.
    """
    layout = mosaic_layout(mdata, modalities, obs_keys, drop_cells_without_modalities)
    return padded_anndata(mdata, layout), {"modalities": layout.registered}


def padded_anndata(mdata, layout: MosaicLayout) -> AnnData:
    """The padded AnnData of ``layout`` (:func:`mosaic_layout`), with the matrices of ``mdata``."""
    adata_kwargs = {"obs": layout.obs, "var": layout.var, "obsm": {}, "uns": layout.uns}
    for slot in layout.slots.values():
        sub = mdata.mod[slot.mod]
        matrix = sub.X if slot.layer is None else sub.layers[slot.layer]
        ok = slot.rows >= 0
        matrix = matrix[np.where(ok)[0]] if not ok.all() else matrix
        padded = _pad_rows(matrix, slot.rows[ok], layout.n_obs)
        if slot.obsm_key is None:
            adata_kwargs["X"] = padded
        else:
            adata_kwargs["obsm"][slot.obsm_key] = padded
    return AnnData(**adata_kwargs)
