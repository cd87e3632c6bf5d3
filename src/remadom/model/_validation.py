"""Input checks run by ``setup_anndata`` / ``setup_mudata``.

Every check raises an error that names the problem and the fix; none modifies data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._ondisk import is_on_disk, on_disk_format_problem
from ..modalities import ModalitySpec


class RemadomSetupError(ValueError):
    """Raised when data handed to REMADOM cannot be used as given."""


def _values(matrix) -> np.ndarray:
    """Stored values of a dense, sparse or DataFrame matrix, without densifying."""
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    if isinstance(matrix, pd.DataFrame):
        return matrix.to_numpy()
    return np.asarray(matrix)


def get_modality_matrix(adata, spec: ModalitySpec):
    """Return the matrix registered for ``spec``; a clear error if the key is unknown."""
    if spec.attr == "layers":
        if spec.key is None:
            return adata.X
        if spec.key not in adata.layers:
            raise RemadomSetupError(
                f"Layer {spec.key!r} for modality {spec.name!r} is not in adata.layers "
                f"(available: {list(adata.layers.keys())}). Fix the layer, or pass layer None "
                "(rna_layer=None) to use adata.X."
            )
        return adata.layers[spec.key]
    if spec.key not in adata.obsm:
        raise RemadomSetupError(
            f"obsm key {spec.key!r} for modality {spec.name!r} is not in adata.obsm "
            f"(available: {list(adata.obsm.keys())}). Fix the key or leave the modality out."
        )
    return adata.obsm[spec.key]


def check_modality_matrix(adata, spec: ModalitySpec, matrix) -> None:
    """Shape, finiteness and count checks for one modality."""
    if matrix is None:
        raise RemadomSetupError(
            f"Modality {spec.name!r} has no data (adata.X is None). Pass the layer holding the counts."
        )
    if matrix.shape[0] != adata.n_obs:
        raise RemadomSetupError(
            f"Modality {spec.name!r} has {matrix.shape[0]} rows but the data has {adata.n_obs} cells. "
            "Each row must be one cell, in adata.obs order."
        )
    if isinstance(matrix, pd.DataFrame) and not matrix.index.equals(adata.obs_names):
        raise RemadomSetupError(
            f"The rows of modality {spec.name!r} (DataFrame index) do not match adata.obs_names. "
            "Reindex it: adata.obsm[key] = df.loc[adata.obs_names]."
        )
    if matrix.shape[1] == 0:
        raise RemadomSetupError(
            f"Modality {spec.name!r} has zero features. Remove it from setup or pass the right key."
        )
    if is_on_disk(matrix):  # backed data (remadom.data.read_h5ad_backed): checked chunk by chunk, never loaded
        check_on_disk_matrix(spec, matrix)
        return
    values = _values(matrix)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise RemadomSetupError(f"Modality {spec.name!r} holds non-numeric values ({values.dtype}).")
    if not np.all(np.isfinite(values)):
        raise RemadomSetupError(
            f"Modality {spec.name!r} contains NaN or infinite values. Replace or remove them "
            "(a missing measurement is declared with the modality mask, not with NaN)."
        )
    head = spec.head
    if head.needs_nonnegative() and np.any(values < 0):
        needs = "raw non-negative counts" if head.requires_counts or head.binary else "non-negative values"
        raise RemadomSetupError(
            f"Modality {spec.name!r} has negative values, but its likelihood {spec.likelihood!r} "
            f"needs {needs}. Pass the raw-count layer, not normalized/scaled data, or choose "
            "likelihood 'gaussian' for real-valued data."
        )
    if head.requires_counts and np.any(np.mod(values, 1) != 0):
        raise RemadomSetupError(
            f"Modality {spec.name!r} has non-integer values, but its likelihood {spec.likelihood!r} "
            "models raw counts. Pass the raw-count layer (e.g. {'layer': 'counts'}), or choose "
            "likelihood 'gaussian' for continuous data."
        )


def check_on_disk_matrix(spec: ModalitySpec, matrix) -> None:
    """Format and values of a modality matrix left on disk, read a bounded chunk at a time."""
    from ._checks import check_values

    problem = on_disk_format_problem(matrix)
    if problem is not None:
        raise RemadomSetupError(
            f"Modality {spec.name!r} {problem}. Write it as a float CSR matrix (e.g. load it, "
            "convert with scipy.sparse.csr_matrix(m, dtype='float32') and write the file again), or "
            "load it into memory."
        )
    check_values(spec, matrix)


def read_mask(adata, spec: ModalitySpec) -> np.ndarray:
    """Boolean availability mask of ``spec`` (all True when it has no mask column).

    The mask the model registers; see :func:`mask_from_obs` for the checks.
    """
    if spec.mask_key is None:
        return np.ones(adata.n_obs, dtype=bool)
    return mask_from_obs(adata.obs, spec.mask_key, spec.name)


def mask_from_obs(obs: pd.DataFrame, column: str, modality: str) -> np.ndarray:
    """Boolean availability mask of ``modality`` from ``obs[column]``: the one place a mask column is read.

    Setup validation, the model (:meth:`~remadom.REMADOM.get_modality_masks`), the MuData view,
    the evaluation and the preprocessing helpers all use it.

    Raises
    ------
    RemadomSetupError
        If the column is absent, has missing values or is neither boolean nor 0/1.
    """
    if column not in obs:
        raise RemadomSetupError(
            f"Mask column {column!r} for modality {modality!r} is not in obs. Add it, or leave "
            "the mask out to mark every cell as observed."
        )
    col = obs[column]
    if col.isna().any():
        raise RemadomSetupError(
            f"Mask column obs[{column!r}] of modality {modality!r} has missing values. "
            "Fill it with True (measured) or False (not measured)."
        )
    values = col.to_numpy()
    if values.dtype != bool:
        if not np.isin(values, [0, 1]).all():
            raise RemadomSetupError(
                f"Mask column obs[{column!r}] must be boolean (or 0/1), got values like "
                f"{pd.unique(values)[:5].tolist()}."
            )
        values = values.astype(bool)
    return values


def check_masks(masks: dict[str, np.ndarray], obs_names) -> None:
    """Every cell must have at least one observed modality."""
    any_observed = np.zeros(len(obs_names), dtype=bool)
    for m in masks.values():
        any_observed |= m
    if not any_observed.all():
        bad = np.asarray(obs_names)[~any_observed]
        raise RemadomSetupError(
            f"{len(bad)} cell(s) have no observed modality (e.g. {bad[:3].tolist()}). "
            "Remove them before setup, e.g. adata = adata[keep].copy(), or with setup_mudata pass "
            "drop_cells_without_modalities=True."
        )


def check_categorical_key(adata, key: str | None, what: str) -> None:
    """Obs column exists and has no missing values."""
    if key is None:
        return
    if key not in adata.obs:
        raise RemadomSetupError(
            f"{what} {key!r} is not a column of obs (available: {list(adata.obs.columns)[:20]})."
        )
    if adata.obs[key].isna().any():
        raise RemadomSetupError(
            f"{what} obs[{key!r}] has {int(adata.obs[key].isna().sum())} missing values. "
            "Fill them (e.g. with 'unknown') before setup."
        )
