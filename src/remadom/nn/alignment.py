"""Optional alignment losses in latent space."""

from __future__ import annotations

import torch

_BANDWIDTHS = (0.25, 1.0, 4.0, 16.0)


def _gaussian_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sq = torch.cdist(a, b).pow(2)
    return sum(torch.exp(-sq / (2.0 * bw)) for bw in _BANDWIDTHS)


def mmd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Biased maximum mean discrepancy with a multi-bandwidth Gaussian kernel."""
    return _gaussian_kernel(a, a).mean() + _gaussian_kernel(b, b).mean() - 2 * _gaussian_kernel(a, b).mean()


def batch_mmd(z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Mean MMD between each batch's cells and all other cells of the minibatch.

    Returns 0 when the minibatch holds a single batch.
    """
    batch_index = batch_index.view(-1)
    groups = torch.unique(batch_index)
    if len(groups) < 2:
        return z.new_zeros(())
    terms = []
    for g in groups:
        inside = batch_index == g
        if inside.sum() < 2 or (~inside).sum() < 2:
            continue
        terms.append(mmd(z[inside], z[~inside]))
    return torch.stack(terms).mean() if terms else z.new_zeros(())
