"""``data.feature_masks`` of the run configuration: read the tables, check the ``from_data`` entries."""

from __future__ import annotations

from pathlib import Path

from ..config._models import FEATURE_MASKS_FROM_DATA
from ._errors import DataError


def _mod_key(config_data, modality: str) -> str:
    entry = (config_data.modalities or {}).get(modality)
    if isinstance(entry, str):
        return entry
    return getattr(entry, "mod", None) or modality


def _cell_mask_key(config_data, data, modality: str, key: str) -> str:
    """The ``obsm`` key of a per-cell mask, after checking the data holds it (else a ``DataError``)."""
    if hasattr(data, "mod"):  # MuData: the modality's own obsm (rows = its cells)
        mod = _mod_key(config_data, modality)
        holder, where = (data.mod[mod] if mod in data.mod else None), f"mdata.mod[{mod!r}].obsm"
    else:
        holder, where = data, "obsm"
    if holder is None or key not in holder.obsm:
        keys = sorted(holder.obsm) if holder is not None else []
        raise DataError(
            f"data.feature_masks.{modality}.obsm={key!r} is not in {where} (keys: {keys[:15]}).",
            "Store the boolean cells x features mask there (True = measured), or fix the key.",
        )
    return key


def configured_feature_masks(config_data, data) -> dict:
    """``feature_masks=`` for setup from ``data.feature_masks``: ``{modality: DataFrame | obsm key}``.

    A table file is read into a batch x feature DataFrame; a ``"from_data"`` entry is checked to be
    stated by ``data`` (then setup reads it from there, as it does for unlisted modalities); an
    ``{obsm: key}`` entry (a per-cell mask) is checked to exist and passed on as the key.
    """
    from ..model._feature_masks import (
        FEATURE_MASKS_UNS_KEY,
        MEASURED_VARM_KEY,
        data_states_feature_mask,
        read_feature_mask_table,
    )
    from ..model._validation import RemadomSetupError

    tables = {}
    for modality, source in (config_data.feature_masks or {}).items():
        if not isinstance(source, str):  # {obsm: key}: a per-cell mask, read by setup from the data
            tables[modality] = _cell_mask_key(config_data, data, modality, source.obsm)
            continue
        if source == FEATURE_MASKS_FROM_DATA:
            if not data_states_feature_mask(data, modality, _mod_key(config_data, modality)):
                raise DataError(
                    f"data.feature_masks.{modality} is {FEATURE_MASKS_FROM_DATA!r}, but the data states no feature "
                    f"mask for {modality!r} (uns[{FEATURE_MASKS_UNS_KEY!r}][{modality!r}] or "
                    f"varm[{MEASURED_VARM_KEY!r}] of its features).",
                    "Join the inputs with remadom.data.concat_mosaic (it writes the masks), or give a "
                    "batch x feature table file instead.",
                )
            continue
        path = Path(source)
        try:
            tables[modality] = read_feature_mask_table(path)
        except RemadomSetupError as e:
            raise DataError(f"data.feature_masks.{modality}: {e}",
                            "Fix the path (resolved from the working directory) or the table's contents.") from e
    return tables
