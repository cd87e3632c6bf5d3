"""Unpadded mosaic MuData -> the padded AnnData layout REMADOM registers.

The user's MuData is never modified: a new AnnData is built whose rows are
``mdata.obs_names``, with the first modality in ``X`` and the others in
``obsm["X_<modality>"]`` (feature names in ``uns["<modality>_names"]``), each zero-filled
(sparse) for cells that lack it, and a ``has_<modality>`` mask in ``obs``. Sparse inputs stay sparse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._constants import mask_column
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

    adata_kwargs = {"obs": obs, "obsm": {}, "uns": {}}
    registered = {}
    for name, entry in modalities.items():
        mod, layer = entry["mod"], entry.get("layer")
        sub = mdata.mod[mod]
        if layer is not None and layer not in sub.layers:
            raise RemadomSetupError(
                f"Layer {layer!r} of modality {name!r} is not in mdata.mod[{mod!r}].layers "
                f"(available: {list(sub.layers.keys())}). Fix it, or pass None to use X."
            )
        matrix = sub.X if layer is None else sub.layers[layer]
        positions = obs_names.get_indexer(sub.obs_names)
        ok = positions >= 0
        matrix = matrix[np.where(ok)[0]] if not ok.all() else matrix
        padded = _pad_rows(matrix, positions[ok], len(obs_names))
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
        options = {k: entry[k] for k in ("kind", "likelihood", "encoder_input") if entry.get(k)}
        if not registered:  # the first modality goes in X (as in views written before; var_names = its features)
            adata_kwargs["X"] = padded
            adata_kwargs["var"] = pd.DataFrame(index=pd.Index(names))
            registered[name] = {"layer": None, "mask": mask_col, **options}
            continue
        key = f"X_{name}"
        adata_kwargs["obsm"][key] = padded
        adata_kwargs["uns"][f"{name}_names"] = names
        registered[name] = {"obsm": key, "mask": mask_col, **options}
    adata = AnnData(**adata_kwargs)
    return adata, {"modalities": registered}

