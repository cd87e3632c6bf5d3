"""Detect when batch is confounded with the set of modalities a batch measured."""

from __future__ import annotations

import numpy as np


def availability_codes(masks: dict[str, np.ndarray]) -> np.ndarray:
    """One integer per cell naming its set of observed modalities (bit ``i`` = modality ``i``)."""
    stacked = np.stack([np.asarray(v, dtype=bool) for v in masks.values()])
    return (stacked * (2 ** np.arange(stacked.shape[0]))[:, None]).sum(0)


def confounded_batches(batch_codes: np.ndarray, masks: dict[str, np.ndarray]) -> list:
    """Batches none of whose cells share their modality set with a cell of another batch.

    Such a batch (e.g. a study that measured only ADT, next to studies with RNA+ADT) can only be
    tied to the others through its own modalities' encoders: nothing in the ELBO says where its
    cells belong relative to the other batches. An empty list means every batch shares at least
    one availability group with another batch (the usual mosaic, or a single batch).

    Parameters
    ----------
    batch_codes
        Batch of each cell.
    masks
        ``{modality: boolean availability mask}`` over the same cells.

    Returns
    -------
    list
        The confounded batches, sorted.
    """
    batch_codes = np.asarray(batch_codes).ravel()
    groups = availability_codes(masks)
    batches = np.unique(batch_codes)
    if batches.size < 2:
        return []
    out = []
    for b in batches:
        inside = batch_codes == b
        elsewhere = set(groups[~inside].tolist())
        if not elsewhere.intersection(groups[inside].tolist()):
            out.append(b.item() if hasattr(b, "item") else b)
    return sorted(out)


#: Encoder input used for a modality kind when batches are confounded with modality sets: CLR
#: removes each cell's total from its ADT profile, so the ADT expert alone places a cell by its
#: protein *composition* (log1p keeps per-cell depth, which differs between studies).
CONFOUNDED_ENCODER_INPUT = {"adt": "clr"}


def resolve_encoder_inputs(encoder_inputs, confounded: list, specs) -> dict[str, str]:
    """Resolve ``encoder_inputs="auto"`` from the confounding; a dict or ``None`` passes through.

    ``"auto"``: :data:`CONFOUNDED_ENCODER_INPUT` for the modalities of those kinds when some batch
    is confounded, else no override. ``None``: every kind's default.
    """
    if encoder_inputs is None:
        return {}
    if isinstance(encoder_inputs, dict):
        unknown = set(encoder_inputs) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"encoder_inputs names unknown modalities {sorted(unknown)}.")
        return dict(encoder_inputs)
    if encoder_inputs != "auto":
        raise ValueError(f"encoder_inputs={encoder_inputs!r}; use 'auto', None or {{modality: transform}}.")
    if not confounded:
        return {}
    return {s.name: CONFOUNDED_ENCODER_INPUT[s.kind] for s in specs if s.kind in CONFOUNDED_ENCODER_INPUT}


def single_modality_set_batches(batch_codes: np.ndarray, masks: dict[str, np.ndarray]) -> list:
    """Confounded batches whose cells all measured one and the same incomplete set of modalities.

    E.g. a study that measured only ADT next to a CITE-seq study; not a batch split between an
    RNA-only and an ADT-only half (``bmmc_cite_mosaic3``).
    """
    batch_codes = np.asarray(batch_codes).ravel()
    groups = availability_codes(masks)
    full = 2 ** len(masks) - 1
    out = []
    for b in confounded_batches(batch_codes, masks):
        sets = np.unique(groups[batch_codes == b])
        if sets.size == 1 and sets[0] != full:
            out.append(b)
    return out


def resolve_batch_effect(batch_effect: str, batch_codes: np.ndarray, masks: dict[str, np.ndarray]) -> tuple[str, list]:
    """Resolve ``batch_effect="auto"`` from the data; other values pass through.

    ``"additive"`` when some batch measured one incomplete set of modalities that no other batch
    shares (:func:`single_modality_set_batches`: a whole study without paired cells), else
    ``"nonlinear"``. On ``bmmc_cite_study`` additive decoders raised bio conservation and mixing;
    on ``bmmc_cite_mosaic3`` (a batch split into RNA-only and ADT-only halves) they lowered both,
    hence the narrower rule.

    Returns
    -------
    tuple
        ``(batch_effect, confounded batches)`` (:func:`confounded_batches`).
    """
    confounded = confounded_batches(batch_codes, masks)
    if batch_effect not in ("auto", "nonlinear", "additive"):
        raise ValueError(f"batch_effect={batch_effect!r}; use 'auto', 'nonlinear' or 'additive'.")
    if batch_effect != "auto":
        return batch_effect, confounded
    return ("additive" if single_modality_set_batches(batch_codes, masks) else "nonlinear"), confounded
