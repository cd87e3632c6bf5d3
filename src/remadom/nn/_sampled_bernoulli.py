"""Unbiased sampled Bernoulli likelihood for wide binary modalities (ATAC peaks).

The Bernoulli NLL of a cell ``c`` with logits ``l_cf = w_f . u_c + b_f`` splits into a data
term over its open features and a normaliser over all features::

    NLL_c = sum_f softplus(l_cf) - sum_{f : x_cf = 1} l_cf

:func:`sampled_bernoulli_nll` computes the data term exactly, over every observed-open entry
of the minibatch, as one sparse-dense product (``embedding_bag`` of the open features' weight
rows, i.e. ``X W`` without forming the logits). The normaliser is estimated from a random
subset ``S`` of ``k`` features drawn uniformly without replacement, shared by the minibatch
and reweighted by ``n_features / k`` (each feature's inclusion probability is ``k / n``), so
its expectation over ``S`` is the full sum, for every cell: the estimate of the NLL, and of
its gradient, is unbiased. Only the ``k`` sampled rows of the last linear layer (and the open
ones, through the data term) are touched, so the layer costs ``O(batch x k x hidden)``
instead of ``O(batch x n_features x hidden)``, forward and backward.

Why not the per-entry form ``sum_open BCE(l, 1) + reweighted sum_closed BCE(l, 0)``: it needs
the logit of every open entry, which with torch's CPU sparse kernels (``sampled_addmm``) costs
as much as the dense layer; the split above needs only sums of open weight rows, and it is
equally unbiased.

Used in training only (the validation ELBO, imputation and evaluation use the full
likelihood). Turned on by ``REMADOM(..., negative_sampling=fraction)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["sample_features", "sampled_bernoulli_nll", "configure_negative_sampling", "check_fraction"]


def check_fraction(fraction: float | None) -> float | None:
    """Validate a sampling fraction: ``None`` (full likelihood) or a number in ``(0, 1]``."""
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(
            f"negative_sampling={fraction!r}; use a fraction of features in (0, 1], e.g. 0.1, "
            "or None for the full likelihood."
        )
    return float(fraction)


def sample_features(n_features: int, fraction: float, device=None, generator=None) -> torch.Tensor:
    """``ceil(fraction * n_features)`` distinct feature indices, uniformly at random, sorted."""
    k = min(n_features, max(1, math.ceil(fraction * n_features)))
    if k == n_features:
        return torch.arange(n_features, device=device)
    perm = torch.randperm(n_features, device=device, generator=generator)
    return perm[:k].sort().values


def _open_entries(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(col_indices, crow_offsets)`` of the nonzero entries of a binary ``x`` (dense or sparse)."""
    csr = x.to_sparse_csr() if x.layout != torch.sparse_csr else x
    return csr.col_indices(), csr.crow_indices()[:-1]


def sampled_bernoulli_nll(
    x: torch.Tensor,
    inputs: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    fraction: float,
    features: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unbiased estimate of the per-cell Bernoulli NLL of binary ``x`` (see the module docstring).

    Parameters
    ----------
    x
        Binary data ``(n_cells, n_features)``, dense or sparse CSR.
    inputs
        Input of the last linear layer, ``(n_cells, n_in)``.
    weight, bias
        That layer's parameters, ``(n_features, n_in)`` and ``(n_features,)``.
    fraction
        Fraction of features sampled for the normaliser.
    features
        The sampled features (default: drawn with :func:`sample_features`).

    Returns
    -------
    ``(n_cells,)`` float32; its expectation over the sampled features is the full NLL.
    """
    n_features = weight.shape[0]
    if features is None:
        features = sample_features(n_features, fraction, device=inputs.device)
    u = inputs.float()
    # normaliser: sum_f softplus(l_cf) from the sampled features, reweighted
    logits = F.linear(u, weight[features].float(), bias[features].float())
    normaliser = F.softplus(logits).sum(-1) * (n_features / features.numel())
    # data term: sum over open entries of l_cf = u_c . (sum_open w_f) + sum_open b_f, exact
    cols, offsets = _open_entries(x)
    if cols.numel() == 0:
        return normaliser
    cols = cols.long()
    open_weight = F.embedding_bag(cols, weight.float(), offsets.long(), mode="sum")
    open_bias = F.embedding_bag(cols, bias.float().unsqueeze(1), offsets.long(), mode="sum").squeeze(1)
    return normaliser - (u * open_weight).sum(-1) - open_bias


def configure_negative_sampling(heads: nn.ModuleDict, fraction: float | None) -> None:
    """Set ``negative_sampling = fraction`` on every head that supports it.

    Raises
    ------
    ValueError
        If ``fraction`` is set but no modality's likelihood supports sampling.
    """
    fraction = check_fraction(fraction)
    supported = [name for name, head in heads.items() if hasattr(head, "negative_sampling")]
    if fraction is not None and not supported:
        raise ValueError(
            "negative_sampling is set but no modality has a likelihood that supports it "
            "(bernoulli, e.g. ATAC); leave negative_sampling=None."
        )
    for name in supported:
        heads[name].negative_sampling = fraction
