"""From ``setup_anndata`` arguments to modality specs, scvi-tools fields and data statistics.

``modalities=`` is the one registration path: :func:`sugar_to_modalities` turns the
older ``rna_layer`` / ``atac_obsm_key`` / ``adt_obsm_key`` / ``extra_modalities`` arguments
into the same mapping, and :func:`build_specs` turns the mapping into
:class:`~remadom.modalities.ModalitySpec` objects.
"""

from __future__ import annotations

import numpy as np
from scvi import REGISTRY_KEYS
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    NumericalJointObsField,
    NumericalObsField,
)

from .._constants import MASK_COLUMN_PREFIX, mask_key
from ..modalities import MODALITY_KINDS, ModalitySpec, kind_for_name
from ..nn.likelihoods._statistics import statistics_accumulator
from ..nn.networks import encoder_input_accumulator
from ._fields import ModalityField
from ._validation import RemadomSetupError, get_modality_matrix, read_mask

_MAX_CELLS_FOR_STATS = 20_000
#: Rows of the statistics sample read at a time (see :func:`modality_statistics`).
_STATS_CHUNK_ROWS = 2_000
#: Keys a ``modalities={name: {...}}`` entry may have.
MODALITY_ENTRY_KEYS = ("layer", "obsm", "kind", "likelihood", "mask", "encoder_input")


def sugar_to_modalities(
    rna_layer: str | None = None,
    atac_obsm_key: str | None = None,
    adt_obsm_key: str | None = None,
    use_rna: bool = True,
    extra_modalities: dict | None = None,
) -> dict[str, dict]:
    """The ``modalities=`` mapping that the older per-slot arguments stand for (model order: rna, atac, adt, extras)."""
    modalities: dict[str, dict] = {}
    if use_rna:
        modalities["rna"] = {"layer": rna_layer}
    if atac_obsm_key is not None:
        modalities["atac"] = {"obsm": atac_obsm_key}
    if adt_obsm_key is not None:
        modalities["adt"] = {"obsm": adt_obsm_key}
    for name, cfg in (extra_modalities or {}).items():
        if name in modalities:
            raise RemadomSetupError(f"extra_modalities repeats the modality name {name!r}; names must be unique.")
        unknown = set(cfg) - {"obsm_key", "kind", "likelihood"}
        if unknown or "obsm_key" not in cfg:
            raise RemadomSetupError(
                f"extra_modalities[{name!r}] must be a dict with 'obsm_key' and optional 'kind' "
                f"(one of {sorted(MODALITY_KINDS)}) and 'likelihood'; got keys {sorted(cfg)}."
            )
        modalities[name] = {"obsm": cfg["obsm_key"], "kind": cfg.get("kind", "counts"),
                            "likelihood": cfg.get("likelihood")}
    return modalities


def _location(name: str, entry: dict) -> tuple[str, str | None]:
    if "layer" in entry and "obsm" in entry:
        raise RemadomSetupError(
            f"modalities[{name!r}] gives both 'layer' and 'obsm'; a modality lives in one place."
        )
    if "obsm" in entry:
        if entry["obsm"] is None:
            raise RemadomSetupError(f"modalities[{name!r}]['obsm'] is None; give the obsm key.")
        return "obsm", entry["obsm"]
    layer = entry.get("layer")
    return "layers", None if layer in (None, "X") else layer


def build_specs(
    adata,
    modalities: dict,
    mask_keys: dict | None = None,
    likelihoods: dict | None = None,
) -> list[ModalitySpec]:
    """Modality specs for a ``modalities=`` mapping, in its order.

    Parameters
    ----------
    adata
        The AnnData being registered (mask columns are looked up in its ``obs``).
    modalities
        ``{name: {"layer" | "obsm": key, "kind": ..., "likelihood": ..., "mask": ..., "encoder_input": ...}}``;
        a string value is a layer name. The kind defaults to the name's
        (:func:`~remadom.modalities.kind_for_name`), the mask to ``obs["has_<name>"]`` when present.
    mask_keys, likelihoods
        ``{name: value}`` overrides of the entries' ``mask`` / ``likelihood``.
    """
    if not modalities:
        raise RemadomSetupError(
            "No modality was given. Pass modalities={'rna': {'layer': 'counts'}, ...} (or rna_layer=, "
            "atac_obsm_key=, adt_obsm_key=, extra_modalities=)."
        )
    if not isinstance(modalities, dict):
        raise RemadomSetupError(f"modalities must be a dict {{name: {{...}}}}, got {type(modalities).__name__}.")
    names = list(modalities)
    for what, overrides in (("mask_keys", mask_keys), ("likelihoods", likelihoods)):
        unknown = set(overrides or {}) - set(names)
        if unknown:
            raise RemadomSetupError(
                f"{what} names unknown modalities {sorted(unknown)}; the modalities set up are {names}."
            )
    specs = []
    for name, entry in modalities.items():
        if entry is None or isinstance(entry, str):
            entry = {"layer": entry}
        if not isinstance(entry, dict):
            raise RemadomSetupError(f"modalities[{name!r}] must be a dict, got {type(entry).__name__}.")
        unknown = set(entry) - set(MODALITY_ENTRY_KEYS)
        if unknown:
            raise RemadomSetupError(
                f"modalities[{name!r}] has unknown keys {sorted(unknown)}; allowed: {list(MODALITY_ENTRY_KEYS)}."
            )
        attr, key = _location(name, entry)
        mask = (mask_keys or {}).get(name, entry.get("mask"))
        if mask is not None and mask not in adata.obs:
            raise RemadomSetupError(
                f"Mask column {mask!r} for modality {name!r} is not in obs. Add it, or leave the "
                "modality's mask out to mark every cell as observed."
            )
        if mask is None and f"{MASK_COLUMN_PREFIX}{name}" in adata.obs:
            mask = f"{MASK_COLUMN_PREFIX}{name}"
        specs.append(ModalitySpec(
            name, entry.get("kind") or kind_for_name(name), attr, key, mask,
            (likelihoods or {}).get(name, entry.get("likelihood")), entry.get("encoder_input"),
        ))
    return specs


def apply_likelihoods(specs: list[ModalitySpec], likelihoods: dict | None) -> list[ModalitySpec]:
    """Override each modality's likelihood; validates names and choices."""
    likelihoods = likelihoods or {}
    names = [s.name for s in specs]
    unknown = set(likelihoods) - set(names)
    if unknown:
        raise RemadomSetupError(
            f"likelihoods names unknown modalities {sorted(unknown)}; the model has {names}."
        )
    return [ModalitySpec(**{**s.to_dict(), "likelihood": likelihoods.get(s.name, s.likelihood)}) for s in specs]


def registry_fields(
    specs: list[ModalitySpec],
    batch_key: str | None,
    labels_key: str | None,
    categorical_covariate_keys: list[str] | None,
    continuous_covariate_keys: list[str] | None,
) -> list:
    """scvi-tools fields registering every modality (a :class:`ModalityField`), its mask and the covariates."""
    fields = [
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
        NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys),
    ]
    for spec in specs:
        fields.append(ModalityField(spec))
        if spec.mask_key is not None:
            fields.append(NumericalObsField(mask_key(spec.name), spec.mask_key))
    return fields


def _observed_rows(adata, spec: ModalitySpec, seed: int = 0) -> np.ndarray:
    rows = np.where(read_mask(adata, spec))[0]
    if len(rows) > _MAX_CELLS_FOR_STATS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _MAX_CELLS_FOR_STATS, replace=False))
    return rows


def _row_chunks(matrix, rows: np.ndarray, chunk_rows: int, binary: bool):
    """The ``rows`` of ``matrix`` (sorted), ``chunk_rows`` at a time, binarized (``x > 0``) if ``binary``.

    Only one chunk is read at a time, also from an on-disk matrix (a backed AnnData's
    :class:`anndata.abc.CSRDataset` or :class:`h5py.Dataset`); a DataFrame in ``obsm`` gives its values.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    for start in range(0, len(rows), chunk_rows):
        index = rows[start:start + chunk_rows]
        chunk = matrix.iloc[index].to_numpy() if hasattr(matrix, "iloc") else matrix[index]
        yield chunk > 0 if binary else chunk


def modality_statistics(adata, specs: list[ModalitySpec], feature_masks: dict | None = None,
                        batch_codes: np.ndarray | None = None,
                        chunk_rows: int = _STATS_CHUNK_ROWS) -> dict[str, dict]:
    """Initialization statistics of each modality, computed on its observed cells.

    Returns ``{name: {"head": ..., "encoder": ...}}``: what the likelihood head's
    :meth:`~remadom.nn.LikelihoodHead.data_statistics` and the encoder input
    (:func:`~remadom.nn.networks.encoder_input_statistics`) compute. A modality with a feature mask
    (``feature_masks``: ``{name: (n_batch, n_features) bool}``, with the cells' ``batch_codes``) is
    summarized over its measured entries only (:func:`~remadom.model._feature_masks.measured_statistics`).

    The statistics use at most ``_MAX_CELLS_FOR_STATS`` (20,000) observed cells of each modality,
    read ``chunk_rows`` rows at a time and accumulated
    (:func:`~remadom.nn.likelihoods._statistics.statistics_accumulator`), so the sample is never
    held at once (for a head whose statistics need every cell at once, e.g. percentiles, it is):
    the result is the whole sample's, to float rounding.
    """
    from ._feature_masks import measured_statistics

    stats = {}
    for spec in specs:
        matrix = get_modality_matrix(adata, spec)
        rows = _observed_rows(adata, spec)
        chunks = _row_chunks(matrix, rows, chunk_rows, spec.is_binary)
        if (feature_masks or {}).get(spec.name) is not None and batch_codes is not None:
            stats[spec.name] = measured_statistics(
                spec, chunks, np.asarray(batch_codes)[rows], feature_masks[spec.name]
            )
            continue
        head = statistics_accumulator(spec.head)
        encoder = encoder_input_accumulator(spec.resolved_encoder_input, matrix.shape[1])
        for chunk in chunks:
            head.update(chunk)
            encoder.update(chunk)
        # no observed cell (e.g. a query without this modality): the head keeps its default initialization
        stats[spec.name] = {"head": head.result() if len(rows) else {}, "encoder": encoder.result()}
    return stats
