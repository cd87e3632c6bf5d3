"""From ``setup_anndata`` arguments to modality specs, scvi-tools fields and data statistics."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scvi import REGISTRY_KEYS
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    LayerField,
    NumericalJointObsField,
    NumericalObsField,
    ObsmField,
)

from .._constants import mask_key, modality_key
from ..modalities import MODALITY_KINDS, ModalitySpec
from ..nn.likelihoods import LIKELIHOODS
from ._validation import RemadomSetupError, get_modality_matrix, read_mask

_MAX_CELLS_FOR_STATS = 20_000


def build_specs(
    adata,
    rna_layer: str | None,
    atac_obsm_key: str | None,
    adt_obsm_key: str | None,
    use_rna: bool,
    extra_modalities: dict | None,
    mask_keys: dict | None,
    likelihoods: dict | None = None,
) -> list[ModalitySpec]:
    """Modality specs for the given setup arguments (model order: rna, atac, adt, extras)."""
    specs = []
    if use_rna:
        specs.append(ModalitySpec("rna", "rna", "layers", rna_layer))
    if atac_obsm_key is not None:
        specs.append(ModalitySpec("atac", "atac", "obsm", atac_obsm_key))
    if adt_obsm_key is not None:
        specs.append(ModalitySpec("adt", "adt", "obsm", adt_obsm_key))
    for name, cfg in (extra_modalities or {}).items():
        if name in {s.name for s in specs}:
            raise RemadomSetupError(f"extra_modalities repeats the modality name {name!r}; names must be unique.")
        unknown = set(cfg) - {"obsm_key", "kind", "likelihood"}
        if unknown or "obsm_key" not in cfg:
            raise RemadomSetupError(
                f"extra_modalities[{name!r}] must be a dict with 'obsm_key' and optional 'kind' "
                f"(one of {sorted(MODALITY_KINDS)}) and 'likelihood'; got keys {sorted(cfg)}."
            )
        specs.append(ModalitySpec(name, cfg.get("kind", "counts"), "obsm", cfg["obsm_key"],
                                  likelihood=cfg.get("likelihood")))
    if not specs:
        raise RemadomSetupError(
            "No modality was given. Pass at least one of rna (default adata.X), atac_obsm_key, "
            "adt_obsm_key or extra_modalities."
        )
    mask_keys = dict(mask_keys or {})
    unknown = set(mask_keys) - {s.name for s in specs}
    if unknown:
        raise RemadomSetupError(
            f"mask_keys names unknown modalities {sorted(unknown)}; the modalities set up are "
            f"{[s.name for s in specs]}."
        )
    for spec in specs:
        if spec.name in mask_keys:
            key = mask_keys[spec.name]
            if key not in adata.obs:
                raise RemadomSetupError(
                    f"Mask column {key!r} for modality {spec.name!r} is not in obs. Add it, or leave "
                    "the modality out of mask_keys to mark every cell as observed."
                )
            spec.mask_key = key
        elif f"has_{spec.name}" in adata.obs:
            spec.mask_key = f"has_{spec.name}"
    return apply_likelihoods(specs, likelihoods)


def apply_likelihoods(specs: list[ModalitySpec], likelihoods: dict | None) -> list[ModalitySpec]:
    """Override each modality's likelihood; validates names and choices."""
    likelihoods = likelihoods or {}
    names = [s.name for s in specs]
    unknown = set(likelihoods) - set(names)
    if unknown:
        raise RemadomSetupError(
            f"likelihoods names unknown modalities {sorted(unknown)}; the model has {names}."
        )
    return [
        ModalitySpec(s.name, s.kind, s.attr, s.key, s.mask_key, likelihoods.get(s.name, s.likelihood))
        for s in specs
    ]


def registry_fields(
    adata,
    specs: list[ModalitySpec],
    batch_key: str | None,
    labels_key: str | None,
    categorical_covariate_keys: list[str] | None,
    continuous_covariate_keys: list[str] | None,
) -> list:
    """scvi-tools fields registering every modality, its mask and the covariates."""
    fields = [
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
        NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys),
    ]
    for spec in specs:
        if spec.attr == "layers":
            fields.append(LayerField(modality_key(spec.name), spec.key, is_count_data=False))
        else:
            names_key = f"{spec.name}_names"
            fields.append(
                ObsmField(modality_key(spec.name), spec.key,
                          colnames_uns_key=names_key if names_key in adata.uns else None)
            )
        if spec.mask_key is not None:
            fields.append(NumericalObsField(mask_key(spec.name), spec.mask_key))
    return fields


def feature_names(adata, spec: ModalitySpec) -> np.ndarray:
    """Feature names of a modality (var_names, DataFrame columns, ``uns['<name>_names']`` or indices)."""
    matrix = get_modality_matrix(adata, spec)
    if spec.attr == "layers":
        return np.asarray(adata.var_names, dtype=str)
    if hasattr(matrix, "columns"):
        return np.asarray(matrix.columns, dtype=str)
    if f"{spec.name}_names" in adata.uns:
        return np.asarray(adata.uns[f"{spec.name}_names"], dtype=str)
    return np.asarray([f"{spec.name}_{i}" for i in range(matrix.shape[1])])


def _observed_rows(adata, spec: ModalitySpec, seed: int = 0) -> np.ndarray:
    rows = np.where(read_mask(adata, spec))[0]
    if len(rows) > _MAX_CELLS_FOR_STATS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _MAX_CELLS_FOR_STATS, replace=False))
    return rows


def modality_statistics(adata, specs: list[ModalitySpec]) -> dict[str, dict]:
    """Initialization statistics of each modality, computed on its observed cells.

    Mean feature proportions (count likelihoods), ATAC inverse document frequency, open rate and
    mean log depth, ADT background level.
    """
    stats = {}
    for spec in specs:
        scaled = LIKELIHOODS[spec.likelihood].scales_with_library  # NB / ZINB / Poisson
        binary = spec.encoder_input == "tfidf" or spec.likelihood == "bernoulli"
        if not (scaled or binary or spec.likelihood == "nbmixture"):
            continue
        matrix = get_modality_matrix(adata, spec)
        if hasattr(matrix, "to_numpy"):
            matrix = matrix.to_numpy()
        rows = _observed_rows(adata, spec)
        if len(rows) == 0 and not binary:  # e.g. a query without this modality: keep the default initialization
            continue
        sub = matrix[rows]
        if scaled:
            lib = np.asarray(sub.sum(1)).ravel().astype(np.float64)
            inv = np.divide(1.0, lib, out=np.zeros_like(lib), where=lib > 0)
            share = sp.diags(inv) @ sub if sp.issparse(sub) else np.asarray(sub) * inv[:, None]
            stats[spec.name] = {"mean_proportion": np.asarray(share.mean(0)).ravel().astype(np.float32)}
        elif binary:
            is_open = sub > 0
            open_cells = np.asarray(is_open.sum(0)).ravel()
            n_open = np.asarray(is_open.sum(1)).ravel()
            stats[spec.name] = {
                "idf": (len(rows) / (1.0 + open_cells)).astype(np.float32),
                "open_rate": (open_cells / max(len(rows), 1)).astype(np.float32),
                "log_depth_ref": float(np.log1p(n_open).mean()) if len(n_open) else 0.0,
            }
        else:
            # nbmixture is a protein likelihood: tens to hundreds of features, dense is cheap
            dense = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
            low = np.percentile(dense, 25, axis=0) if len(dense) else np.zeros(dense.shape[1])
            stats[spec.name] = {"background_init": np.log1p(low).astype(np.float32)}
    return stats
