"""Feature-level (per-entry) masks: which (cell, feature) entries of a modality were measured.

A batch that measured only part of a modality's features (a smaller antibody panel, its own peak
set, a different gene filter) is stated with a per-batch *feature mask* (``n_batch x n_features``,
``True`` = measured). :class:`FeatureMaskBank` keeps these masks as module buffers, so they are
saved with the state dict, and gathers them per minibatch into a ``(n_cells, n_features)`` entry
mask by batch index. The functions here are the maths the likelihood heads and the encoder use:

* :func:`masked_feature_sum`: per-cell sum of per-entry NLL terms over measured entries only
  (``torch.where``, so masked entries add nothing and get an exactly zero gradient);
* :func:`masked_library`: library size / depth from measured features only;
* :func:`renormalize_scale`: a softmax scale renormalized over the measured features, so the
  expected counts of the measured features sum to their observed library;
* :func:`masked_encoder_input`: the encoder's view of a partly measured cell (zero-fill of the
  unmeasured entries, measured entries rescaled by ``n_features / n_measured``).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_feature_sum(per_entry: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum ``per_entry`` (``n_cells x n_features``) over features, skipping masked entries.

    ``mask`` is boolean (or 0/1), ``True`` where measured; ``None`` sums everything.
    """
    if mask is None:
        return per_entry.sum(-1)
    return torch.where(mask.bool(), per_entry, torch.zeros_like(per_entry)).sum(-1)


def masked_library(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-cell total of the measured entries of dense ``x`` (float32)."""
    if mask is None:
        return x.sum(-1).float()
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum(-1).float()


def measured_fraction(mask: torch.Tensor | None, n_cells: int, device=None) -> torch.Tensor:
    """Fraction of features measured per cell, shape ``(n_cells,)`` (ones without a mask)."""
    if mask is None:
        return torch.ones(n_cells, device=device)
    return mask.float().mean(-1).clamp(min=1.0 / mask.shape[-1])


def renormalize_scale(scale: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Factor ``1 / sum_measured(scale)`` per cell, shape ``(n_cells, 1)`` (ones without a mask).

    Multiplying a softmax-scaled mean ``scale * library`` by it makes the measured features' means
    sum to the library of the measured features.
    """
    if mask is None:
        return torch.ones_like(scale[:, :1])
    kept = torch.where(mask.bool(), scale, torch.zeros_like(scale)).sum(-1, keepdim=True)
    return 1.0 / kept.clamp(min=1e-8)


def masked_encoder_input(x_in: torch.Tensor, mask: torch.Tensor | None, rescale: bool = True) -> torch.Tensor:
    """Encoder input with unmeasured entries set to 0 and measured ones scaled by ``1 / fraction``.

    The rescaling keeps the expected first-layer pre-activation of a partly measured cell equal to
    that of a fully measured one (inverted-dropout scaling). It is skipped (``rescale=False``) for
    inputs already normalized per cell over the measured entries (TF-IDF).
    """
    if mask is None:
        return x_in
    out = torch.where(mask.bool(), x_in, torch.zeros_like(x_in))
    if rescale:
        out = out / measured_fraction(mask, x_in.shape[0], x_in.device).unsqueeze(-1).to(out.dtype)
    return out


class FeatureMaskBank(nn.Module):
    """Per-batch feature masks of the modalities that have them, as buffers.

    Parameters
    ----------
    masks
        ``{modality: (n_batch, n_features) bool array}``; modalities without an entry are fully
        measured in every batch.
    """

    def __init__(self, masks: dict | None = None):
        super().__init__()
        self.modalities = sorted(masks or {})
        for name in self.modalities:
            self.register_buffer(self._buffer(name), torch.as_tensor(masks[name], dtype=torch.bool))

    @staticmethod
    def _buffer(name: str) -> str:
        return f"mask_{name}"

    def __contains__(self, name: str) -> bool:
        return name in self.modalities

    def batch_masks(self, name: str) -> torch.Tensor | None:
        """The ``(n_batch, n_features)`` mask of ``name``, or ``None``."""
        return getattr(self, self._buffer(name)) if name in self.modalities else None

    def entry_mask(self, name: str, batch_index: torch.Tensor | None) -> torch.Tensor | None:
        """``(n_cells, n_features)`` bool mask of modality ``name`` for cells of ``batch_index``."""
        table = self.batch_masks(name)
        if table is None:
            return None
        if batch_index is None:
            raise ValueError(f"Modality {name!r} has feature masks, which need the cells' batch index.")
        return table[batch_index.view(-1).long().to(table.device)]

    def shared_mask(self, name: str, n_cells: int) -> torch.Tensor | None:
        """``(n_cells, n_features)`` mask of the features measured in every batch (same for all cells).

        Rows of batches without the modality are all ``True`` and do not shrink the intersection.
        """
        table = self.batch_masks(name)
        if table is None:
            return None
        return table.all(0, keepdim=True).expand(n_cells, -1)


def cell_entry_masks(bank: FeatureMaskBank, names, batch_index: torch.Tensor | None,
                     cell_masked, cell_masks: dict | None) -> dict[str, torch.Tensor]:
    """``{modality: (n_cells, n_features) bool}`` entry masks: the per-batch table AND the per-cell mask.

    ``cell_masked`` are the modalities with a per-cell mask, given in ``cell_masks`` (nonzero =
    measured; dense or sparse); the other modalities use the per-batch table alone.
    """
    out = {}
    for name in names:
        mask = bank.entry_mask(name, batch_index) if name in bank else None
        if name in cell_masked:
            if not cell_masks or name not in cell_masks:
                raise ValueError(f"Modality {name!r} has a per-cell feature mask, which the minibatch lacks.")
            cell = cell_masks[name]
            cell = (cell.to_dense() if cell.is_sparse or cell.layout == torch.sparse_csr else cell) != 0
            mask = cell if mask is None else mask.to(cell.device) & cell
        if mask is not None:
            out[name] = mask
    return out
