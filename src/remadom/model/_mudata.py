"""Unpadded mosaic MuData -> the padded AnnData layout REMADOM registers.

The user's MuData is never modified: a new AnnData is built whose rows are
``mdata.obs_names``, with RNA in ``X`` and the other modalities in ``obsm``, each
zero-filled (sparse) for cells that lack it, and a ``has_<modality>`` mask in ``obs``.
Sparse inputs stay sparse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._feature_masks import FEATURE_MASKS_UNS_KEY, MEASURED_VARM_KEY
from ._validation import RemadomSetupError, read_mask

#: Prefix of the mask columns of the internal AnnData.
MUDATA_MASK_PREFIX = "has_"


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
    modalities: dict[str, str],
    kinds: dict[str, str],
    layers: dict[str, str | None] | None = None,
    obs_keys: list[str] | None = None,
    mask_keys: dict[str, str] | None = None,
    drop_cells_without_modalities: bool = False,
) -> tuple[AnnData, dict]:
    """Build REMADOM's padded AnnData from an (unpadded) mosaic MuData.

    Parameters
    ----------
    mdata
        MuData; a cell absent from ``mdata.mod[key]`` has that modality missing.
    modalities
        Model modality name -> ``mdata.mod`` key.
    kinds
        Model modality name -> kind (``rna``, ``atac``, ``adt``, ``counts``).
    layers
        Model modality name -> layer of ``mdata.mod[key]`` (``None``: ``X``).
    obs_keys
        Columns of ``mdata.obs`` to carry over (batch, labels, covariates).
    mask_keys
        Optional extra mask columns of ``mdata.obs``; a mask saying "observed" for a
        cell absent from the modality is an error.
    drop_cells_without_modalities
        Leave out cells present in none of the chosen modalities instead of failing.

    Returns
    -------
    ``(adata, keys)``: the padded AnnData and the ``setup_anndata`` keyword arguments
    that register it.
    """
    layers = layers or {}
    mask_keys = mask_keys or {}
    for name, mod in modalities.items():
        if mod not in mdata.mod:
            raise RemadomSetupError(
                f"Modality {name!r} maps to mdata.mod[{mod!r}], which does not exist "
                f"(available: {list(mdata.mod.keys())})."
            )
    obs_names = mdata.obs_names
    present = {}
    for name, mod in modalities.items():
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
        raise RemadomSetupError(
            f"{len(bad)} cell(s) of mdata.obs are in none of the modalities {list(modalities.values())} "
            f"(e.g. {list(bad[:3])}). Pass drop_cells_without_modalities=True to leave them out."
        )
    obs_names = obs_names[keep]
    present = {k: v[keep] for k, v in present.items()}
    obs = mdata.obs.loc[obs_names, [k for k in (obs_keys or []) if k is not None]].copy()

    adata_kwargs = {"obs": obs, "obsm": {}, "uns": {}}
    setup = {"use_rna": False, "mask_keys": {}}
    extra = {}
    for name, mod in modalities.items():
        sub = mdata.mod[mod]
        layer = layers.get(name)
        matrix = sub.X if layer is None else sub.layers[layer]
        positions = obs_names.get_indexer(sub.obs_names)
        ok = positions >= 0
        matrix = matrix[np.where(ok)[0]] if not ok.all() else matrix
        padded = _pad_rows(matrix, positions[ok], len(obs_names))
        mask_col = f"{MUDATA_MASK_PREFIX}{name}"
        mask = present[name]
        if name in mask_keys:
            user_mask = read_mask(_ObsView(mdata.obs.loc[obs_names]), _MaskSpec(name, mask_keys[name]))
            contradicted = user_mask & ~mask
            if contradicted.any():
                raise RemadomSetupError(
                    f"Mask obs[{mask_keys[name]!r}] says modality {name!r} is observed for "
                    f"{int(contradicted.sum())} cell(s) absent from mdata.mod[{mod!r}] "
                    f"(e.g. {list(obs_names[contradicted][:3])}). Fix the mask or add the cells' data."
                )
            mask = user_mask & mask
        obs[mask_col] = mask
        setup["mask_keys"][name] = mask_col
        names = np.asarray(sub.var_names, dtype=str)
        if MEASURED_VARM_KEY in sub.varm:  # per-batch feature masks (remadom.data.concat_mosaic)
            adata_kwargs["uns"].setdefault(FEATURE_MASKS_UNS_KEY, {})[name] = pd.DataFrame(sub.varm[MEASURED_VARM_KEY]).T
        if kinds[name] == "rna" and name == "rna":
            adata_kwargs["X"] = padded
            adata_kwargs["var"] = pd.DataFrame(index=pd.Index(names))
            setup["use_rna"] = True
            setup["rna_layer"] = None
            continue
        key = f"X_{name}"
        adata_kwargs["obsm"][key] = padded
        adata_kwargs["uns"][f"{name}_names"] = names
        extra[name] = {"obsm_key": key, "kind": kinds[name]}
    if extra:
        setup["extra_modalities"] = extra
    if "X" not in adata_kwargs:
        adata_kwargs["X"] = sp.csr_matrix((len(obs_names), 0), dtype=np.float32)
    adata = AnnData(**adata_kwargs)
    return adata, setup


class _ObsView:
    """Minimal object with ``obs`` / ``n_obs`` so mask reading is shared with AnnData."""

    def __init__(self, obs: pd.DataFrame):
        self.obs = obs
        self.n_obs = len(obs)


class _MaskSpec:
    def __init__(self, name: str, mask_key: str):
        self.name = name
        self.mask_key = mask_key
