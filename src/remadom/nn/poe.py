"""Product of Gaussian experts with a standard-normal prior expert.

Pure functions, no parameters: the algebra is tested against the closed form in
``tests/test_poe.py``.
"""

from __future__ import annotations

import torch

#: Log-variances of experts are clamped to this range before fusion.
LOGVAR_RANGE = (-12.0, 12.0)


def product_of_experts(
    means: torch.Tensor,
    logvars: torch.Tensor,
    masks: torch.Tensor,
    include_prior: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fuse diagonal Gaussian experts, using only the experts each cell has.

    With precisions :math:`\Lambda_m = e^{-\log\sigma^2_m}` and a prior expert
    :math:`\mathcal N(0, I)`, the product is Gaussian with

    .. math::

        \Lambda = 1 + \sum_m M_m \Lambda_m, \qquad
        \mu = \Lambda^{-1} \sum_m M_m \Lambda_m \mu_m .

    Parameters
    ----------
    means
        Expert means, shape ``(n_experts, n_cells, n_latent)``.
    logvars
        Expert log-variances, same shape. Clamped to :data:`LOGVAR_RANGE`.
    masks
        ``(n_experts, n_cells)``; 1 where a cell has that expert, 0 where not.
        A masked expert contributes nothing, and receives exactly zero gradient.
    include_prior
        Add the standard-normal prior expert. Without it, a cell with no expert
        has an undefined posterior (precision 0), so the prior is on by default.

    Returns
    -------
    ``(mean, logvar)`` of the fused Gaussian, each ``(n_cells, n_latent)``.
    """
    masks = masks.to(means.dtype).unsqueeze(-1)
    logvars = logvars.clamp(*LOGVAR_RANGE)
    precisions = torch.exp(-logvars) * masks
    total_precision = precisions.sum(0)
    weighted_means = (precisions * torch.where(masks > 0, means, torch.zeros_like(means))).sum(0)
    if include_prior:
        total_precision = total_precision + 1.0
    fused_var = 1.0 / total_precision
    fused_mean = weighted_means * fused_var
    return fused_mean, torch.log(fused_var)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last dimension."""
    return 0.5 * (torch.exp(logvar) + mean.pow(2) - 1.0 - logvar).sum(-1)


def kl_between_gaussians(
    mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(q || p) between diagonal Gaussians, summed over the last dimension."""
    var_ratio = torch.exp(logvar_q - logvar_p)
    mean_term = (mean_q - mean_p).pow(2) * torch.exp(-logvar_p)
    return 0.5 * (var_ratio + mean_term - 1.0 - (logvar_q - logvar_p)).sum(-1)
