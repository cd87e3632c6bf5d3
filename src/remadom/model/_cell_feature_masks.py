"""Per-cell feature masks: which features of a modality each *cell* measured.

A per-cell mask is stated as ``feature_masks={"adt": "adt_measured"}``: a string value names an
``adata.obsm`` entry, a boolean ``(n_cells, n_features)`` matrix (numpy array, scipy sparse or a
``DataFrame`` whose columns are the modality's features), ``True`` = measured. It is registered
as a scvi-tools :class:`~scvi.data.fields.ObsmField`, so it reaches the module as a minibatch
tensor, is saved with the data like the ``has_<modality>`` columns (a loaded model or new data
need the same ``obsm`` key) and is never guessed from zeros.

With ``setup_mudata`` the key is read from the modality's own AnnData,
``mdata.mod[<mod key>].obsm[key]`` (one row per cell *of that modality*, like its counts), and
copied into REMADOM's padded view as ``obsm["<mod key>:<key>"]`` (the name errors and
``view_anndata_setup`` show); a cell absent from the modality gets an all-``False`` row. The view
is rebuilt from the MuData by ``load``, new data and queries, so they need the same key there.

The likelihood scores an entry only where the per-cell mask (AND the per-batch table, when a
modality has both) says measured; the encoder sees the cell's unmeasured entries as missing.

Rules (each broken rule is a :class:`~remadom.model._validation.RemadomSetupError`): the matrix
has one row per cell and one column per feature of the modality, holds booleans (``bool`` dtype),
and no cell that has the modality has every feature masked (mark that cell missing instead, with
``obs["has_<modality>"] = False``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scvi.data.fields import ObsmField

from .._constants import cell_feature_mask_key, mask_column
from ._validation import RemadomSetupError, read_mask


def split_feature_masks(feature_masks: dict | None) -> tuple[dict, dict[str, str]]:
    """``feature_masks`` split into per-batch tables and per-cell ``{modality: obsm key}``."""
    tables, cells = {}, {}
    for name, value in (feature_masks or {}).items():
        (cells if isinstance(value, str) else tables)[name] = value
    return tables, cells


def _bool_matrix(adata, key: str, modality: str, features: np.ndarray, owner: str = "adata"):
    where = f"feature_masks[{modality!r}] = {key!r}"
    if key not in adata.obsm:
        raise RemadomSetupError(
            f"{where} names {owner}.obsm[{key!r}], which does not exist. A string in feature_masks names an "
            f"obsm entry: a boolean (n_cells x n_features) matrix, True = measured. Keys: {sorted(adata.obsm)}."
        )
    matrix = adata.obsm[key]
    if isinstance(matrix, pd.DataFrame):
        if list(matrix.columns.astype(str)) != list(np.asarray(features).astype(str)):
            raise RemadomSetupError(
                f"The columns of obsm[{key!r}] ({where}) are not the features of modality {modality!r} "
                "in their order; reorder the DataFrame's columns to the modality's features."
            )
        if not all(pd.api.types.is_bool_dtype(dtype) for dtype in matrix.dtypes):
            raise RemadomSetupError(f"obsm[{key!r}] ({where}) must hold booleans (True = measured).")
        matrix = matrix.to_numpy()
    if matrix.shape != (adata.n_obs, len(features)):
        raise RemadomSetupError(
            f"obsm[{key!r}] ({where}) has shape {matrix.shape}; a per-cell feature mask of modality "
            f"{modality!r} needs ({adata.n_obs}, {len(features)}): one row per cell, one column per feature."
        )
    if matrix.dtype != bool:
        raise RemadomSetupError(
            f"obsm[{key!r}] ({where}) has dtype {matrix.dtype}; a per-cell feature mask must be boolean "
            "(True = measured): pass matrix.astype(bool)."
        )
    return matrix


def mudata_view_mask_key(mod: str, key: str) -> str:
    """``obsm`` key of the padded view holding ``mdata.mod[mod].obsm[key]`` (MuData's ``mod:key`` naming)."""
    return f"{mod}:{key}"


def pad_mudata_cell_masks(mdata, modalities: dict[str, dict], cells: dict[str, str], view) -> dict[str, str]:
    """Copy each per-cell mask of a MuData into the padded view; return ``{modality: view obsm key}``.

    ``cells`` is ``{modality: key}``, the key naming ``mdata.mod[<the modality's mod>].obsm[key]``
    (rows = that modality's cells). Its shape, dtype and (for a DataFrame) columns are checked there;
    in the view (rows ``view.obs_names``) a cell absent from the modality gets an all-``False`` row
    (it measured none of the features; its ``has_<modality>`` is ``False``). ``view`` gains the
    entries ``obsm["<mod>:<key>"]``; the MuData is not modified.
    """
    out = {}
    for name, key in cells.items():
        if name not in modalities:
            continue  # reported with the other unknown names by the FeatureMaskField
        mod = modalities[name]["mod"]
        sub = mdata.mod[mod]
        matrix = _bool_matrix(sub, key, name, np.asarray(sub.var_names), owner=f"mdata.mod[{mod!r}]")
        rows = view.obs_names.get_indexer(sub.obs_names)
        keep = np.flatnonzero(rows >= 0)  # cells left out of the view (none of its modalities) are dropped
        if sp.issparse(matrix):
            coo = sp.coo_matrix(sp.csr_matrix(matrix)[keep])
            padded = sp.csr_matrix((coo.data.astype(bool), (rows[keep][coo.row], coo.col)),
                                   shape=(view.n_obs, matrix.shape[1]), dtype=bool)
        else:
            padded = np.zeros((view.n_obs, matrix.shape[1]), dtype=bool)
            padded[rows[keep]] = np.asarray(matrix)[keep]
        _refuse_empty_cells(view, name, padded, f"mdata.mod[{mod!r}].obsm[{key!r}]", (
            f"remove those cells from mdata.mod[{mod!r}], or mark {name!r} missing for them with "
            f"mask_keys={{{name!r}: '<boolean mdata.obs column>'}}"
        ))
        out[name] = mudata_view_mask_key(mod, key)
        view.obsm[out[name]] = padded
    return out


def _refuse_empty_cells(adata, name: str, matrix, where: str, fix: str) -> None:
    """Error for cells set up as having modality ``name`` whose mask row has no measured feature."""
    counts = np.asarray(matrix.sum(1)).ravel()
    _raise_for_empty(adata.obs_names, np.asarray(adata.obs[mask_column(name)], dtype=bool) & (counts == 0),
                     name, where, fix)


def _raise_for_empty(obs_names, empty: np.ndarray, name: str, where: str, fix: str) -> None:
    """The one error for observed cells of modality ``name`` (``empty``) with no measured feature."""
    if empty.any():
        cells = obs_names[empty]
        shown = ", ".join(map(str, cells[:5])) + (f" ... ({len(cells)} in all)" if len(cells) > 5 else "")
        raise RemadomSetupError(
            f"{where} (feature_masks[{name!r}]) masks every feature of modality {name!r} in cell(s) {shown}, "
            f"which are set up as having {name!r}. A cell that measured none of its features does not have "
            f"the modality: {fix}."
        )


def check_cell_feature_mask(adata, spec, key: str, features: np.ndarray, table: np.ndarray | None,
                            codes: np.ndarray | None) -> None:
    """Validate modality ``spec``'s per-cell mask ``adata.obsm[key]``.

    ``table`` is the modality's ``(n_batches, n_features)`` per-batch mask and ``codes`` each
    cell's batch code, or both ``None``; the check that no observed cell has every feature masked
    applies to the two together (:func:`any_measured_feature`).
    """
    matrix = _bool_matrix(adata, key, spec.name, features)
    observed = read_mask(adata, spec)
    measured = any_measured_feature(table, matrix, codes)
    _raise_for_empty(adata.obs_names, observed & ~measured, spec.name, f"obsm[{key!r}]",
                     f"mark it missing (obs['has_{spec.name}'] = False)")


def cell_feature_mask_fields(cells: dict[str, str]) -> list:
    """One scvi-tools ``ObsmField`` per modality with a per-cell mask (a minibatch tensor)."""
    return [ObsmField(cell_feature_mask_key(name), key) for name, key in cells.items()]


def registered_cell_masks(adata_manager) -> dict[str, str]:
    """``{modality: obsm key}`` of the per-cell feature masks in the registry (empty if none)."""
    from ._feature_masks import FEATURE_MASKS_REGISTRY_KEY

    try:
        state = adata_manager.get_state_registry(FEATURE_MASKS_REGISTRY_KEY)
    except KeyError:  # set up before feature masks existed
        return {}
    return dict(state.get("cell_masks", {}) or {})


def reference_cell_mask_keys(reference) -> dict[str, str]:
    """``{modality: key}`` of a trained model's per-cell masks, as the user named them.

    For a model set up with ``setup_anndata`` the ``obsm`` key; with ``setup_mudata`` the key in
    the modality's ``mdata.mod[...].obsm`` (the padded view's ``"<mod>:<key>"`` stripped).
    """
    registered = registered_cell_masks(reference.adata_manager)
    setup = getattr(reference, "mudata_setup_", None)
    if not setup:
        return registered
    given = split_feature_masks(setup.get("feature_masks"))[1]
    return {name: given[name] for name in registered if name in given}


def align_query_cell_mask(holder, key: str, modality: str, names, reference_features, owner: str = "adata"):
    """A query's per-cell mask ``holder.obsm[key]`` with the columns of the reference's features.

    Columns are matched by name like the counts (:func:`~remadom.model._query_align.align_features`):
    reordered, the query's extra features dropped, and features the query lacks ``False`` (not
    measured). Sparse stays sparse. The reference registered the mask, so a query without it is an
    error (a mask is never assumed).
    """
    from ._query_align import align_features

    if key not in holder.obsm:
        raise RemadomSetupError(
            f"The reference was set up with a per-cell feature mask for {modality!r} (feature_masks="
            f"{{{modality!r}: {key!r}}}), but the query has no {owner}.obsm[{key!r}]. Add it: a boolean "
            f"(n_cells x n_features) matrix over the query's {modality!r} features, True = measured "
            "(all True if every query cell measured every feature it has)."
        )
    matrix = _bool_matrix(holder, key, modality, np.asarray(names), owner=owner)
    matrix = sp.csr_matrix(matrix, dtype=np.float32) if sp.issparse(matrix) else np.asarray(matrix, np.float32)
    with warnings.catch_warnings():  # the overlap warning is given once, for the counts
        warnings.simplefilter("ignore", UserWarning)
        aligned, _ = align_features(matrix, names, reference_features, modality)
    return aligned.astype(bool) if sp.issparse(aligned) else np.asarray(aligned) != 0


def check_cell_mask_keys(cells: dict[str, str], adata) -> None:
    """New data for a model with per-cell masks (``{modality: obsm key}``) must hold each key."""
    for name, key in cells.items():
        if key not in adata.obsm:
            raise RemadomSetupError(
                f"The model was set up with the per-cell feature mask obsm[{key!r}] for modality {name!r}, "
                "which this data lacks. Add it (a boolean cells x features matrix, True = measured; for a "
                "MuData, in the modality's mdata.mod[...].obsm) rather than let every entry count as measured."
            )


def reorder_cell_mask(cells: dict[str, str], adata, name: str, order: np.ndarray):
    """``adata`` with modality ``name``'s per-cell mask columns in model order (when its features were permuted)."""
    from ._checks import _shallow

    if name not in cells:
        return adata
    obsm = dict(adata.obsm)
    matrix = obsm[cells[name]]
    obsm[cells[name]] = matrix.iloc[:, order] if isinstance(matrix, pd.DataFrame) else matrix[:, order]
    return _shallow(adata, obsm=obsm)


def any_measured_feature(table, cell, codes: np.ndarray) -> np.ndarray:
    """Whether each cell's batch ``table`` row AND its per-cell mask ``cell`` leave a measured feature.

    ``table`` is a batch x feature mask or ``None``, ``cell`` a cells x features mask (dense,
    sparse or a DataFrame) or ``None``, not both ``None``. Counted batch by batch, so a sparse
    per-cell mask is never densified (an ATAC modality can have 100k+ peaks).
    """
    if cell is not None:
        cell = cell.to_numpy() if hasattr(cell, "to_numpy") else cell
        cell = sp.csr_matrix(cell, dtype=bool) if sp.issparse(cell) else np.asarray(cell, dtype=bool)
    if table is None:
        return np.asarray(cell.sum(1)).ravel() > 0
    table = np.asarray(table, dtype=bool)
    if cell is None:
        return table.any(1)[codes]
    counts = np.zeros(len(codes), dtype=np.int64)
    for b in np.unique(codes):
        rows = np.flatnonzero(codes == b)
        counts[rows] = np.asarray(cell[rows] @ table[b].astype(np.int64)).ravel()
    return counts > 0
