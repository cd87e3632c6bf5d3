"""Checks of model / training arguments and of data handed to a trained model.

Every check raises an error naming the argument and the fix. The data checks read the
stored values of a matrix in bounded chunks (no densifying and no full-size temporary).
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._ondisk import is_on_disk, stored_value_chunks
from ._validation import RemadomSetupError, check_masks, get_modality_matrix, read_mask

logger = logging.getLogger(__name__)

#: Values read at a time by the data checks.
_CHUNK = 4_000_000
#: Prefix of matrices REMADOM stores on the data in a loader-ready format (scvi-tools' ``_scvi_`` convention).
CONVERTED_PREFIX = "_scvi_remadom_"


# ----------------------------------------------------------------- numbers
def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1, allow_none: bool = False) -> None:
    """``value`` is an integer ``>= minimum`` (booleans refused)."""
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_float(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """``value`` is a finite real number in the given range (booleans and strings refused)."""
    if value is None and allow_none:
        return
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    v = float(value)
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {' and '.join(p for p in (lo, hi) if p)}, got {value!r}.")


def check_modality_weights(weights, names: list[str], what: str = "modality_weights") -> None:
    """A ``{modality: weight >= 0}`` dict over known modalities (a callable schedule is checked per call)."""
    if weights is None or callable(weights):
        return
    if not isinstance(weights, dict):
        raise TypeError(f"{what} must be a dict {{modality: weight}} or a callable epoch -> dict, "
                        f"got {type(weights).__name__}.")
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"{what} names unknown modalities {sorted(unknown)}; the model has {names}.")
    for m, w in weights.items():
        check_float(f"{what}[{m!r}]", w, low=0.0)


def check_model_args(n_latent, n_hidden, n_layers, dropout_rate, modality_dropout, consistency_weight,
                     modality_weights, names: list[str]) -> None:
    """Arguments of :class:`~remadom.REMADOM`."""
    check_int("n_latent", n_latent)
    check_int("n_hidden", n_hidden)
    check_int("n_layers", n_layers)
    check_float("dropout_rate", dropout_rate, 0.0, 1.0, high_open=True)
    check_float("modality_dropout", modality_dropout, 0.0, 1.0, high_open=True)
    check_float("consistency_weight", consistency_weight, low=0.0)
    check_modality_weights(modality_weights, names)


def check_train_args(model, *, max_epochs, lr, weight_decay, batch_size, train_size, validation_size, kl_weight,
                     kl_warmup_epochs, modality_weights, alignment_weight, accelerator, precision) -> None:
    """Arguments of :meth:`~remadom.REMADOM.train`."""
    check_int("max_epochs", max_epochs, allow_none=True)
    check_float("lr", lr, low=0.0, low_open=True)
    check_float("weight_decay", weight_decay, low=0.0)
    check_int("batch_size", batch_size)
    check_float("train_size", train_size, 0.0, 1.0, low_open=True, allow_none=True)
    check_float("validation_size", validation_size, 0.0, 1.0, allow_none=True)
    check_float("kl_weight", kl_weight, low=0.0)
    check_int("kl_warmup_epochs", kl_warmup_epochs, minimum=0, allow_none=True)
    check_modality_weights(modality_weights, model.modality_names)
    check_float("alignment_weight", alignment_weight, low=0.0)
    check_precision(accelerator, precision)


def check_precision(accelerator, precision) -> None:
    """fp16 mixed precision needs a GPU."""
    import torch

    if precision is None or str(precision) not in ("16", "16-mixed", "16-true"):
        return
    acc = str(accelerator).lower()
    if acc == "cpu" or (acc == "auto" and not torch.cuda.is_available()):
        raise ValueError(f"precision={precision!r} (float16) needs a GPU; this would train on the CPU. "
                         "Use precision='32' or 'bf16-mixed' on CPU.")


def has_validation_set(n_obs: int, train_size, validation_size) -> bool:
    """Whether scvi-tools' splitter leaves at least one validation cell."""
    if train_size is None:
        return True
    n_train = math.ceil(float(train_size) * n_obs)
    n_val = n_obs - n_train if validation_size is None else math.floor(float(validation_size) * n_obs)
    return n_val > 0


def check_indices(indices, n_obs: int) -> None:
    """``indices`` selects at least one existing cell."""
    if indices is None:
        return
    idx = np.asarray(indices)
    if idx.size == 0:
        raise ValueError("indices is empty; pass at least one cell index (or None for all cells).")
    if idx.dtype == bool:
        raise TypeError("indices must be integer positions, not a boolean mask; use np.where(mask)[0].")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be integer positions, got dtype {idx.dtype}.")
    if idx.min() < -n_obs or idx.max() >= n_obs:
        raise IndexError(f"indices must lie in [0, {n_obs}); got values from {idx.min()} to {idx.max()}.")


# ------------------------------------------------------------- setup args
def check_setup_keys(batch_key, labels_key, mask_keys, categorical_covariate_keys, continuous_covariate_keys) -> None:
    """Types of the obs-column arguments of ``setup_anndata``."""
    for name, key in (("batch_key", batch_key), ("labels_key", labels_key)):
        if key is not None and not isinstance(key, str):
            raise TypeError(f"{name} must be one obs column name (a string), got {key!r}. For several "
                            "covariates use categorical_covariate_keys=[...].")
    if mask_keys is not None and not isinstance(mask_keys, dict):
        raise TypeError(f"mask_keys must be a dict {{modality: obs column}}, got {mask_keys!r}.")
    for name, keys in (("categorical_covariate_keys", categorical_covariate_keys),
                       ("continuous_covariate_keys", continuous_covariate_keys)):
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise TypeError(f"{name} must be a list of obs column names, got {keys!r}.")


def check_data_shape(adata) -> None:
    """At least one cell."""
    if adata.n_obs == 0:
        raise RemadomSetupError("The data has no cells (n_obs == 0). Pass a non-empty AnnData/MuData.")


def check_continuous_covariates(adata, keys) -> None:
    """Continuous covariates are finite numbers."""
    for key in keys or []:
        if key not in adata.obs:
            continue  # reported by the column check
        col = adata.obs[key]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise RemadomSetupError(f"continuous covariate obs[{key!r}] is not numeric (dtype {col.dtype}). "
                                    "Convert it with pd.to_numeric, or pass it as a categorical covariate.")
        if not np.isfinite(col.to_numpy(dtype=float)).all():
            raise RemadomSetupError(f"continuous covariate obs[{key!r}] has NaN or infinite values. "
                                    "Replace them with finite numbers.")


def check_observed_somewhere(adata, specs) -> None:
    """Every modality is observed in at least one cell."""
    for spec in specs:
        if not read_mask(adata, spec).any():
            raise RemadomSetupError(
                f"Modality {spec.name!r} is observed in no cell (its mask {spec.mask_key!r} is all False). "
                "Leave the modality out of setup, or fix the mask."
            )


# -------------------------------------------------------------- data values
def _stored_chunks(matrix):
    """Stored values in chunks of at most :data:`_CHUNK` (sparse: ``.data``; dense: row blocks)."""
    if is_on_disk(matrix):
        yield from stored_value_chunks(matrix, _CHUNK)
        return
    if sp.issparse(matrix):
        data = np.asarray(matrix.data)
        for start in range(0, data.size, _CHUNK):
            yield data[start:start + _CHUNK]
        return
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    matrix = np.asarray(matrix)
    rows = max(1, _CHUNK // max(matrix.shape[1] if matrix.ndim > 1 else 1, 1))
    for start in range(0, matrix.shape[0], rows):
        yield matrix[start:start + rows]


def check_values(spec, matrix) -> None:
    """Numeric, finite, and what the likelihood head declares (non-negative, integer counts); chunk by chunk."""
    head = spec.head
    for chunk in _stored_chunks(matrix):
        if chunk.dtype == bool:
            continue
        if not np.issubdtype(chunk.dtype, np.number):
            raise RemadomSetupError(f"Modality {spec.name!r} holds non-numeric values ({chunk.dtype}).")
        if not np.isfinite(chunk).all():
            raise RemadomSetupError(
                f"Modality {spec.name!r} contains NaN or infinite values. Replace or remove them "
                "(a missing measurement is declared with the modality mask, not with NaN)."
            )
        if head.needs_nonnegative() and (chunk < 0).any():
            needs = "raw non-negative counts" if head.requires_counts or head.binary else "non-negative values"
            raise RemadomSetupError(
                f"Modality {spec.name!r} has negative values, but its likelihood {spec.likelihood!r} needs "
                f"{needs}. Pass the raw-count layer, not normalized/scaled data."
            )
        if head.requires_counts and np.issubdtype(chunk.dtype, np.floating) and (chunk != np.floor(chunk)).any():
            raise RemadomSetupError(
                f"Modality {spec.name!r} has non-integer values, but its likelihood {spec.likelihood!r} models "
                "raw counts. Pass the raw-count layer, or choose likelihood 'gaussian' for continuous data."
            )


# ------------------------------------------------------------- formats
def _needs_conversion(matrix) -> bool:
    if sp.issparse(matrix):
        return not isinstance(matrix, sp.csr_matrix) or matrix.dtype == bool
    return isinstance(matrix, np.ndarray) and matrix.dtype == bool


def _loader_ready(matrix):
    """CSR ``scipy.sparse.csr_matrix`` (float32 when boolean), or a float32 array for a boolean one; never densified."""
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix)
        return out.astype(np.float32) if out.dtype == bool else out
    return np.asarray(matrix, dtype=np.float32)


def registrable_specs(adata, specs) -> list:
    """Specs whose matrices the scvi-tools loader can read.

    A CSC matrix, a ``scipy.sparse`` *array* (``csr_array``...) or a boolean matrix is
    converted once (never densified) and stored beside the original under
    ``obsm/layers['_scvi_remadom_<key>']``, the scvi-tools convention for what a model adds
    to the data; the returned specs point at it. The user's own matrices are unchanged.
    """
    from dataclasses import replace

    out = []
    for spec in specs:
        matrix = get_modality_matrix(adata, spec)
        if not _needs_conversion(matrix):
            out.append(spec)
            continue
        key = f"{CONVERTED_PREFIX}{spec.key if spec.key is not None else 'X'}"
        store = adata.layers if spec.attr == "layers" else adata.obsm
        store[key] = _loader_ready(matrix)
        logger.info("modality %r: stored a CSR/float32 copy of its %s matrix as %r for the data loader",
                    spec.name, type(matrix).__name__, key)
        out.append(replace(spec, key=key))
    return out


def loader_ready_fields(adata, fields: list) -> list:
    """``fields`` with each :class:`~remadom.model.ModalityField` pointed at a loader-ready matrix.

    A field whose matrix needs no conversion is kept as it is (already validated); the others
    get a new field on the converted copy (see :func:`registrable_specs`).
    """
    from ._fields import ModalityField

    out = []
    for field in fields:
        if isinstance(field, ModalityField):
            (spec,) = registrable_specs(adata, [field.spec])
            if spec is not field.spec:
                field = ModalityField(spec)
        out.append(field)
    return out


def source_spec(spec):
    """The spec as registered by the user: ``spec`` itself, or, when it points at a converted copy, the original."""
    from dataclasses import replace

    if spec.key is None or not spec.key.startswith(CONVERTED_PREFIX):
        return spec
    key = spec.key[len(CONVERTED_PREFIX):]
    return replace(spec, key=None if spec.attr == "layers" and key == "X" else key)


# -------------------------------------------------------------- new data
def _shallow(adata, *, X=None, var=None, layers=None, obsm=None, uns=None, keep_x=True) -> AnnData:
    """A new AnnData sharing ``adata``'s matrices except those given (obs copied: it gets ``_scvi_`` columns)."""
    return AnnData(
        X=X if X is not None or not keep_x else adata.X, obs=adata.obs.copy(),
        var=adata.var if var is None else var,
        layers=dict(adata.layers) if layers is None else layers,
        obsm=dict(adata.obsm) if obsm is None else obsm, uns=dict(adata.uns) if uns is None else uns,
    )


def _reorder(adata, spec, order: np.ndarray, names: np.ndarray) -> AnnData:
    """``adata`` with modality ``spec``'s columns put in model order (only that matrix is copied)."""
    matrix = get_modality_matrix(adata, spec)
    if spec.attr == "layers":
        var = pd.DataFrame(index=pd.Index(names))
        if spec.key is None:
            return _shallow(adata, X=matrix[:, order], var=var, layers={})
        return _shallow(adata, var=var, layers={spec.key: matrix[:, order]}, keep_x=False)
    obsm = dict(adata.obsm)
    uns = dict(adata.uns)
    obsm[spec.key] = matrix.iloc[:, order] if isinstance(matrix, pd.DataFrame) else matrix[:, order]
    if f"{spec.name}_names" in uns:
        uns[f"{spec.name}_names"] = names
    return _shallow(adata, obsm=obsm, uns=uns)


def _loader_view(adata, spec, registered_key):
    """``adata`` whose registered key of ``spec`` holds a loader-ready matrix (shallow copy only if needed)."""
    matrix = get_modality_matrix(adata, spec)
    if registered_key == spec.key and not _needs_conversion(matrix):
        return adata
    ready = _loader_ready(matrix) if _needs_conversion(matrix) else matrix
    if spec.attr == "layers" and registered_key is None:  # the model reads X
        return _shallow(adata, X=ready)
    if spec.attr == "layers":
        layers = dict(adata.layers)
        layers[registered_key] = ready
        return _shallow(adata, layers=layers)
    obsm = dict(adata.obsm)
    obsm[registered_key] = ready
    return _shallow(adata, obsm=obsm)


def conform_new_data(model, adata):
    """Check data given to a trained model like setup does; reorder permuted features by name.

    Returns ``adata`` itself, or a new AnnData sharing its other matrices when a modality holds
    the model's features in another order or in a format the loader cannot read.
    """
    from ._cell_feature_masks import check_cell_mask_keys, registered_cell_masks, reorder_cell_mask
    from ._fields import feature_names

    check_data_shape(adata)
    cell_masks = registered_cell_masks(model.adata_manager)  # #11: per-cell feature masks
    check_cell_mask_keys(cell_masks, adata)
    for registered in model.specs:
        spec = source_spec(registered)  # the user's matrix, not the converted copy in the training data
        if spec.mask_key is not None and spec.mask_key not in adata.obs:
            raise RemadomSetupError(
                f"The model registers modality {spec.name!r} with the mask column obs[{spec.mask_key!r}], "
                "which this data lacks. Add it (True where the modality was measured) rather than let "
                "every cell count as measured."
            )
        saved = np.asarray(model.feature_names_[spec.name], dtype=str)
        found = feature_names(adata, spec)
        if len(found) != len(saved) or not np.array_equal(found, saved):
            if len(found) == len(saved) and len(set(found)) == len(found) and set(found) == set(saved):
                order = pd.Index(found).get_indexer(saved)
                logger.info("modality %r: reordering the data's features to the model's order", spec.name)
                adata = reorder_cell_mask(cell_masks, _reorder(adata, spec, order, saved), spec.name, order)
            else:
                missing = [f for f in saved if f not in set(found)][:3]
                raise RemadomSetupError(
                    f"The {spec.name!r} features of this data ({len(found)}) are not the {len(saved)} the model "
                    f"was trained on (e.g. missing {missing}). Subset the data to model.feature_names_"
                    f"[{spec.name!r}]."
                )
        matrix = get_modality_matrix(adata, spec)
        if matrix.shape[0] != adata.n_obs:
            raise RemadomSetupError(f"Modality {spec.name!r} has {matrix.shape[0]} rows for {adata.n_obs} cells.")
        check_values(spec, matrix)
        adata = _loader_view(adata, spec, registered.key)
    check_masks({s.name: read_mask(adata, s) for s in model.specs}, adata.obs_names)
    return adata


def check_registered_masks(registry: dict, adata) -> None:
    """``load``: the mask columns the model registered must be in the data's obs."""
    from .._constants import REMADOM_REGISTRY_KEYS
    from ._cell_feature_masks import check_cell_mask_keys

    cells = {}
    for name, field in (registry.get("field_registries") or {}).items():
        if name.startswith(REMADOM_REGISTRY_KEYS.CELL_FEATURE_MASK_PREFIX):
            cells[name[len(REMADOM_REGISTRY_KEYS.CELL_FEATURE_MASK_PREFIX):]] = (
                field.get("data_registry") or {}).get("attr_key")
        if not name.startswith("mask_"):
            continue
        col = (field.get("data_registry") or {}).get("attr_key")
        if col and col not in adata.obs:
            raise RemadomSetupError(
                f"The model was trained with the mask column obs[{col!r}] for modality {name[5:]!r}, which this "
                "data lacks. Add it (True where the modality was measured); without it every cell would count "
                "as measured."
            )
    check_cell_mask_keys({k: v for k, v in cells.items() if v}, adata)


def check_mudata_args(mdata, modalities, rna_layer, layers, batch_key, labels_key, mask_keys,
                      categorical_covariate_keys, continuous_covariate_keys) -> None:
    """Arguments of ``setup_mudata`` that would otherwise fail deep inside (or mean "all")."""
    from ..modalities import MODALITY_NAME_ALIASES

    check_setup_keys(batch_key, labels_key, mask_keys, categorical_covariate_keys, continuous_covariate_keys)
    if modalities is not None:
        if not isinstance(modalities, dict) or not modalities:
            raise RemadomSetupError(
                f"modalities={modalities!r} selects no modality. Pass {{model name: mdata.mod key}}, e.g. "
                "{'rna': 'rna', 'atac': 'atac'}, or leave it None to use the modalities with recognised names."
            )
    chosen = modalities
    if chosen is None:  # the default of setup_mudata: mdata.mod keys with a known name, under their kind
        chosen = {}
        for key in mdata.mod:
            kind = MODALITY_NAME_ALIASES.get(key.lower())
            if kind is not None and kind not in chosen:
                chosen[kind] = key
    wanted = dict(layers or {})
    if "rna" in chosen and "rna" not in wanted and rna_layer is not None:
        wanted["rna"] = rna_layer
    for name, entry in chosen.items():
        entry = {"mod": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            continue  # reported by setup_mudata
        mod = entry.get("mod", name)
        layer = entry.get("layer", wanted.get(name))
        if layer is None or mod not in mdata.mod:
            continue
        if layer not in mdata.mod[mod].layers:
            raise RemadomSetupError(
                f"Layer {layer!r} for modality {name!r} is not in mdata.mod[{mod!r}].layers (available: "
                f"{list(mdata.mod[mod].layers.keys())}). Pass the layer holding raw counts, or None for X."
            )
    if mdata.n_obs == 0:
        raise RemadomSetupError("The MuData has no cells (n_obs == 0).")


def mudata_fingerprint(mdata) -> tuple:
    """What a cached padded view of ``mdata`` depends on: cells, features and matrix / obsm objects of each modality.

    In-place edits of matrix *values* are not detected (that would need a pass over the data).
    """
    mods = tuple(
        (key, mod.shape, id(mod.X), tuple(sorted((k, id(v)) for k, v in mod.layers.items())),
         tuple(sorted((k, id(v)) for k, v in mod.obsm.items())),  # per-cell feature masks (#11)
         hash(tuple(mod.obs_names)), hash(tuple(mod.var_names)))
        for key, mod in mdata.mod.items()
    )
    return mdata.n_obs, hash(tuple(mdata.obs_names)), mods
