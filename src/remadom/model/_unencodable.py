"""Cells that have none of the modalities a query encodes from get NaN, with a warning.

``get_latent_representation(modalities=...)`` and ``impute(..., from_modalities=...)``
encode each cell from the listed modalities it has. A cell with none of them has no
posterior to speak of: the product of experts returns the prior (a zero vector) and
decoding it gives the prior's prediction (ADT values ~1e-5 against ~19 on real rows).
Those rows are set to NaN instead, so that they cannot pass for predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["UnencodableCellsWarning", "blank_unencodable"]


class UnencodableCellsWarning(UserWarning):
    """Some cells have none of the modalities asked for; their rows are NaN."""


def blank_unencodable(
    values: np.ndarray, encodable: np.ndarray, modalities: Sequence[str] | None, what: str
) -> np.ndarray:
    """Set the rows of cells with nothing to encode to NaN and warn how many there are.

    Parameters
    ----------
    values
        ``(n_cells, ...)`` float array, modified in place.
    encodable
        ``(n_cells,)`` bool: the cell has at least one of the modalities encoded from.
    modalities
        The modalities asked for (``None``: each cell's own).
    what
        The method's name, for the message.
    """
    missing = ~np.asarray(encodable, dtype=bool)
    n = int(missing.sum())
    if n:
        values[missing] = np.nan
        asked = "no modality" if modalities is None else f"none of {list(modalities)}"
        warnings.warn(
            f"{what}: {n} of {len(missing)} cells have {asked}, so there is nothing to encode them from; "
            "their rows are NaN. Select the cells that have them (e.g. with the model's masks) or encode "
            "from modalities they have.",
            UnencodableCellsWarning,
            stacklevel=3,
        )
    return values
