"""Cross-modal cycle consistency for cells that lack a modality.

A cell measured only in modality A (say ADT) is encoded, ``z = E_A(x_A)``; modality B (RNA) is
drawn from the decoder, ``x_B ~ p(x_B | z, s)`` with the batch code ``s`` of a cell that did
measure B; and re-encoded by B's own encoder, ``z' = E_B(x_B)``. The loss ``|z - sg(z')|^2`` pulls
``z`` to where B's encoder, which is trained on the paired cells, would place such a cell: it ties
the single-modality cohort to the paired cells' latent space without assuming that the cohorts
have the same cell-type composition (each cell is matched to its own translation, not to a group
mean as in MMD).

``z'`` is computed without gradient (the draw is not differentiable anyway), so the term moves the
encoders of the observed modalities only; decoders and B's encoder learn from the ELBO alone.
"""

from __future__ import annotations

import torch


def cycle_targets(module, inference_outputs: dict, batch_index: torch.Tensor | None, cat_covs, cont_covs):
    """Pairs ``(z, z')`` for every (cell, missing modality) of the minibatch.

    For missing modality ``m`` of a cell, the decode uses the batch code, covariates and library
    of a cell of the same minibatch that observed ``m`` (chosen at random); a minibatch in which
    nobody observed ``m`` contributes nothing for it.

    Returns
    -------
    list of (torch.Tensor, torch.Tensor)
        ``(z, z_cycle)`` with ``z_cycle`` detached, each ``(n_rows, n_latent)``.
    """
    from ..module._constants import MODULE_KEYS as K  # here: the module package imports this file

    observed = inference_outputs[K.OBSERVED_KEY]
    z_all = inference_outputs[K.QZ_MEAN_KEY]
    n = observed.shape[1]
    if batch_index is None:
        batch_index = torch.zeros(n, 1, device=z_all.device, dtype=torch.long)
    pairs = []
    for i, m in enumerate(module.modality_names):
        lacking = ((observed[i] == 0) & (observed.sum(0) > 0)).nonzero(as_tuple=True)[0]
        having = (observed[i] > 0).nonzero(as_tuple=True)[0]
        if lacking.numel() == 0 or having.numel() == 0:
            continue
        donor = having[torch.randint(having.numel(), (lacking.numel(),), device=z_all.device)]
        with torch.no_grad():
            cats = [] if cat_covs is None else [c[donor] for c in torch.split(cat_covs, 1, dim=1)]
            library = {k: v[donor] for k, v in inference_outputs[K.LIBRARY_KEY].items()}
            gen = module.generative(
                z_all[lacking], library, batch_index[donor],
                None if cat_covs is None else torch.cat(cats, dim=1),
                None if cont_covs is None else cont_covs[donor],
                target_modalities=[m],
            )
            x_m = module.heads[m].sample(gen[K.PARAMS_KEY][m])
            encoder = module.encoders[m]
            z_cycle, _ = encoder.encode(encoder.input(x_m))
        pairs.append((z_all[lacking], z_cycle.float()))
    return pairs


def cycle_consistency_loss(pairs) -> torch.Tensor:
    """Mean over rows of ``sum_d (z - z')^2``; zero when every cell re-encodes to itself."""
    if not pairs:
        return torch.zeros(())
    sq = torch.cat([(z - zc).pow(2).sum(-1) for z, zc in pairs])
    return sq.mean()
