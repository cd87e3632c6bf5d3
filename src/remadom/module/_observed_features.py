"""Leave features filled in by query alignment out of the reconstruction loss.

A query model (:meth:`remadom.REMADOM.load_query_data`) may have modalities whose query data
lack some of the reference's features; alignment fills them with zeros. Those zeros are not
measurements, so the NLL is computed on the observed features only. Until feature-level masks
are registered per cell, the observed set is one per modality for the whole query, kept on the
module as ``observed_features`` (``{modality: feature indices}``; not part of the state dict,
it is restored from the model's ``query_`` record on load).
"""

from __future__ import annotations

import torch


def restrict_to_observed_features(
    module, modality: str, x: torch.Tensor, params: dict
) -> tuple[torch.Tensor, dict]:
    """``x`` and the per-feature likelihood parameters restricted to the observed features.

    Every head's NLL is a sum of per-feature terms, so scoring the selected columns of the
    data and of each ``(n_cells, n_features)`` parameter leaves the filled features out.
    Parameters of other shapes (e.g. a per-cell depth) are passed through.
    """
    keep = getattr(module, "observed_features", {}).get(modality)
    if keep is None:
        return x, params
    keep = keep.to(x.device)
    n_features = x.shape[-1]
    picked = {
        k: (
            v.index_select(-1, keep)
            if torch.is_tensor(v) and v.dim() == 2 and v.shape[-1] == n_features
            else v
        )
        for k, v in params.items()
    }
    return x.index_select(-1, keep), picked
