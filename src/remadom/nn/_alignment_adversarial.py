"""Adversarial mixing of groups of cells on the latent (issue #13c, an option).

TOTALVI and MULTIVI mix batches with a classifier that predicts each cell's batch from its latent
sample while the encoder is trained to fool it (:class:`scvi.train.AdversarialTrainingPlan`). This
module is that idea inside REMADOM's single-optimizer training step:

* the **discriminator** (an :class:`scvi.module.Classifier`, owned by the training plan, not by the
  module, so saved models are unchanged) is trained by cross-entropy on the *detached* latent: its
  loss moves the classifier only;
* the **fool** term moves the encoders only (the classifier's parameters enter detached). It is the
  per-cell ``KL(pi || p(. | z))`` between the groups' share ``pi`` in the minibatch and the
  classifier's prediction. It is 0 exactly when the classifier cannot do better than the groups'
  sizes, so a small group is mixed in proportion to its size rather than pushed to an equal share
  (scvi-tools' target is the uniform distribution over the *other* classes).

A cell type that only one group has is still pulled towards the others, as with any adversarial or
MMD alignment: the weight trades mixing against bio conservation (``benchmarks/results_defaults.md``, "#13c:
CITE at convergence against TOTALVI").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module import Classifier
from torch import nn
from torch.func import functional_call

#: What the classifier predicts: the cell's batch, or its set of observed modalities.
ADVERSARIAL_GROUPS = ("batch", "availability")
#: How the fool term's weight evolves: constant (MULTIVI), or ``1 - kl_weight`` (TOTALVI's "auto":
#: on while the KL weight warms up, off after).
ADVERSARIAL_SCHEDULES = ("constant", "warmup")


def group_classifier(n_latent: int, n_groups: int) -> nn.Module:
    """The discriminator TOTALVI uses: 2 hidden layers of 32 units, logits out."""
    return Classifier(n_input=n_latent, n_hidden=32, n_labels=n_groups, n_layers=2, logits=True)


def adversarial_losses(classifier: nn.Module, z: torch.Tensor, groups: torch.Tensor,
                       n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fool, discriminate)`` for latents ``z`` (cells x latent) of integer ``groups``.

    ``fool``: mean over cells of ``KL(pi || softmax(classifier(z)))`` with ``pi`` the groups'
    share in this minibatch; gradients reach ``z`` only. ``discriminate``: the classifier's
    cross-entropy on ``z.detach()``; gradients reach the classifier only. Both are 0-dimensional;
    with fewer than two groups present both are 0 (and so are their gradients).

    Sync-free: no value is read back to the host (no ``int()``/``.item()``, no boolean-mask
    indexing, no ``bincount``), so on a GPU a step does not wait for the device here. Groups absent
    from the minibatch are masked out of the KL, and the "fewer than two groups" case is selected
    with :func:`torch.where` instead of an early return.
    """
    groups = groups.view(-1).long()
    zero = z.sum() * 0.0
    if n_groups < 2:  # a Python int: no group can be mixed with another
        return zero, zero
    # counts per group as a sum over a (cells x groups) comparison: exact, deterministic, no sync
    counts = (groups.unsqueeze(1) == torch.arange(n_groups, device=groups.device)).sum(0).to(z.dtype)
    present = counts > 0
    mixed = present.sum() >= 2  # a 0-d bool tensor, kept on the device
    pi = counts / counts.sum()
    frozen = {name: p.detach() for name, p in classifier.named_parameters()}
    log_p = F.log_softmax(functional_call(classifier, frozen, (z,)).float(), dim=-1)
    safe_pi = torch.where(present, pi, torch.ones_like(pi))  # log(1) = 0 where the group is absent
    kl = torch.where(present, pi * (safe_pi.log() - log_p), torch.zeros_like(log_p))
    fool = torch.where(mixed, kl.sum(-1).mean(), zero)
    discriminate = torch.where(mixed, F.cross_entropy(classifier(z.detach()).float(), groups), 0.0)
    return fool, discriminate
