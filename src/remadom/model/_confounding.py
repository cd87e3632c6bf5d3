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

    The result overrides, per modality, the encoder input the module would otherwise use (the
    spec's ``encoder_input``, else its likelihood head's ``default_encoder_input``).

    ``"auto"``: :data:`CONFOUNDED_ENCODER_INPUT` for the modalities of those kinds when some batch
    is confounded, except a modality whose setup chose its own ``encoder_input`` or whose
    likelihood accepts negative values (a CLR of such data is undefined); else no override.
    ``None``: no override.
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
    return {
        s.name: CONFOUNDED_ENCODER_INPUT[s.kind]
        for s in specs
        if s.kind in CONFOUNDED_ENCODER_INPUT and s.encoder_input is None and s.head.needs_nonnegative()
    }


#: Weight of the paired-anchor term (:mod:`remadom.nn._alignment_anchor`) that
#: ``paired_anchor_weight="auto"`` uses when some batch is confounded with its modality set.
CONFOUNDED_PAIRED_ANCHOR_WEIGHT = 1.0


def resolve_paired_anchor_weight(weight, confounded: list) -> float:
    """Resolve ``paired_anchor_weight="auto"``.

    :data:`CONFOUNDED_PAIRED_ANCHOR_WEIGHT` when some batch is confounded, else 0; a number (>= 0)
    passes through.
    """
    if isinstance(weight, str):
        if weight != "auto":
            raise ValueError(f"paired_anchor_weight={weight!r}; use 'auto' or a number >= 0 (0 turns it off).")
        return CONFOUNDED_PAIRED_ANCHOR_WEIGHT if confounded else 0.0
    if not float(weight) >= 0:
        raise ValueError(f"paired_anchor_weight={weight!r} must be >= 0 (0 turns it off), or 'auto'.")
    return float(weight)


def resolve_fusion(fusion: str, confounded: list) -> str:
    """Resolve ``fusion="auto"``: ``"unshrunk"`` when some batch is confounded, else ``"poe"``."""
    from ..nn._alignment_anchor import FUSIONS

    if fusion == "auto":
        return "unshrunk" if confounded else "poe"
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r}; use 'auto' or one of {sorted(FUSIONS)}.")
    return fusion


#: What models saved before the paired anchor and the unshrunk fusion existed were trained with.
PRE_ANCHOR_INIT_PARAMS = {"fusion": "poe", "paired_anchor_weight": 0.0}


def with_pre_anchor_defaults(init_params: dict) -> dict:
    """Saved ``init_params_`` of a model from before the anchor: ``"auto"`` would now switch it on.

    A saved model must load with the latent it was trained to give, so a file without these
    arguments gets :data:`PRE_ANCHOR_INIT_PARAMS` (the PoE, no anchor) rather than ``"auto"``.
    """
    params = dict(init_params)
    if "non_kwargs" in params:
        params["non_kwargs"] = {**PRE_ANCHOR_INIT_PARAMS, **params["non_kwargs"]}
    else:
        params = {**PRE_ANCHOR_INIT_PARAMS, **params}
    return params
