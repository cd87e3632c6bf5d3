r"""Paired cells as anchors: single-modality posteriors placed where the joint one is.

A cell measured in only one modality is embedded by that modality's expert times the prior,
``q_m(z | x_m) ∝ N(0, I) q_m``; a paired cell by the product of all its experts and the prior.
With precisions :math:`\Lambda` the fused means are

.. math::

    \mu_m = \frac{\Lambda_m \mu_{e,m}}{1 + \Lambda_m}, \qquad
    \mu_{\mathrm{joint}} = \frac{\sum_k \Lambda_k \mu_{e,k}}{1 + \sum_k \Lambda_k},

so even when every expert agrees (:math:`\mu_{e,k} = \mu_e`) a single-modality posterior is
shrunk further towards 0 by the prior expert than the joint one (factor
:math:`\Lambda_m / (1 + \Lambda_m)` against :math:`\sum\Lambda / (1 + \sum\Lambda)`). On a
study-confounded split (one batch paired, another single-modality) the single-modality study then
sits on a smaller, offset copy of the paired one: on ``bmmc_cite_study`` the ADT-only cells mix
with the *ADT-only encodings of the paired cells* (modality iLISI 0.54) but not with their joint
encodings (0.19), and the same paired cells encoded from ADT alone and from both modalities
already separate (iLISI 0.43, |z| 4.47 against 4.74). It is a unimodal-vs-joint mismatch of the
posterior, not a batch effect, and nothing in the ELBO penalises it: each posterior only has to
reconstruct the data and stay near the prior.

The anchor term uses the cells that *do* have several modalities: for each observed modality
``m`` of such a cell it penalises the squared distance between the mean of ``q_m`` and the mean of
the joint posterior (stop-gradient, so the joint embedding is the target and is not pulled
towards the weaker unimodal one). Unlike the consistency term ``KL(q_joint || q_m)``, whose mean
term is weighted by the *unimodal* precision and which a wider ``q_m`` makes cheaper (and so
drives unimodal posteriors towards the prior), this only moves means. Each cell is matched to
itself, so no assumption about the cell-type composition of the studies is made (MMD and OT
between groups need one). The encoders learn from the paired cells where a single modality
should place a cell, and apply that to the single-modality studies.
"""

from __future__ import annotations

import torch

from .poe import LOGVAR_RANGE, kl_between_gaussians, product_of_experts

#: The anchor distances: ``"mean"`` (squared Euclidean distance of the posterior means) and
#: ``"kl"`` (mode-seeking ``KL(q_m || sg q_joint)``: the mean term weighted by the joint precision,
#: plus the variance ratio).
ANCHOR_KINDS = ("mean", "kl")


def unshrunk_fusion(
    means: torch.Tensor, logvars: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fuse experts with the PoE's precision-weighted mean but without the prior expert's shrinkage.

    Mean :math:`\sum_m M_m \Lambda_m \mu_m / \sum_m M_m \Lambda_m` (0 for a cell with no
    expert), variance :math:`1 / (1 + \sum_m M_m \Lambda_m)` (the PoE's, prior included). A
    single expert's posterior mean is then its own mean, whatever its precision, so a cell embedded
    from one modality is not pulled towards 0 more than one embedded from several.

    Same arguments and returns as :func:`~remadom.nn.product_of_experts`.
    """
    masks = masks.to(means.dtype).unsqueeze(-1)
    logvars = logvars.clamp(*LOGVAR_RANGE)
    precisions = torch.exp(-logvars) * masks
    total = precisions.sum(0)
    weighted = (precisions * torch.where(masks > 0, means, torch.zeros_like(means))).sum(0)
    mean = torch.where(total > 0, weighted / total.clamp(min=torch.finfo(total.dtype).tiny), torch.zeros_like(weighted))
    return mean, -torch.log1p(total)


#: The fusions of :func:`paired_anchor_loss` and the module: the PoE with its prior expert, and
#: :func:`unshrunk_fusion`.
FUSIONS = {"poe": product_of_experts, "unshrunk": unshrunk_fusion}


def paired_anchor_loss(
    means: torch.Tensor,
    logvars: torch.Tensor,
    observed: torch.Tensor,
    *,
    kind: str = "mean",
    stop_gradient: bool = True,
    fusion: str = "poe",
) -> torch.Tensor:
    r"""Per-cell distance between each single-modality posterior and the joint one.

    Parameters
    ----------
    means, logvars
        ``(n_modalities, n_cells, n_latent)`` expert means and log-variances (every observed
        expert computed, as in training).
    observed
        ``(n_modalities, n_cells)`` availability (1 = measured).
    kind
        ``"mean"``: :math:`\sum_m \lVert \mu_m - \mu_{\mathrm{joint}} \rVert^2`;
        ``"kl"``: :math:`\sum_m \mathrm{KL}(q_m \,\|\, q_{\mathrm{joint}})`. ``q_m`` is expert
        ``m`` times the prior expert, ``q_joint`` the product of all observed experts and the prior.
    stop_gradient
        Treat the joint posterior as a fixed target (default), so only the unimodal posteriors move.
    fusion
        How experts are fused into the posteriors compared: a key of :data:`FUSIONS`.

    Returns
    -------
    torch.Tensor
        ``(n_cells,)``, summed over the cell's observed modalities; 0 for cells with fewer than two.
    """
    if kind not in ANCHOR_KINDS:
        raise ValueError(f"kind={kind!r}; use one of {ANCHOR_KINDS}.")
    if kind == "mean":
        def distance(uni_m, uni_lv, joint_m, joint_lv):
            return (uni_m - joint_m).pow(2).sum(-1)
    else:
        def distance(uni_m, uni_lv, joint_m, joint_lv):
            return kl_between_gaussians(uni_m, uni_lv, joint_m, joint_lv)
    return single_to_joint_sum(means, logvars, observed, distance, fuse=FUSIONS[fusion],
                               stop_gradient=stop_gradient)


def single_to_joint_sum(means, logvars, observed, distance, *, fuse=product_of_experts,
                        stop_gradient: bool = True) -> torch.Tensor:
    """Per-cell ``sum_m distance(q_m, q_joint)`` over the observed modalities of cells with two or more.

    ``q_m`` is expert ``m`` fused alone, ``q_joint`` all observed experts fused, both with ``fuse``;
    ``distance(uni_mean, uni_logvar, joint_mean, joint_logvar)`` returns one value per cell. The
    one loop behind the paired anchor and the module's consistency term. Cells with fewer than two
    modalities get 0.
    """
    observed = observed.to(means.dtype)
    joint_m, joint_lv = fuse(means, logvars, observed)
    if stop_gradient:
        joint_m, joint_lv = joint_m.detach(), joint_lv.detach()
    multi = (observed.sum(0) >= 2).to(means.dtype)
    total = means.new_zeros(means.shape[1])
    for i in range(means.shape[0]):
        single = observed[i : i + 1]
        uni_m, uni_lv = fuse(means[i : i + 1], logvars[i : i + 1], single)
        total = total + distance(uni_m, uni_lv, joint_m, joint_lv) * single[0]
    return total * multi
