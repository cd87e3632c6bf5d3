"""Posterior-predictive spread of imputed modalities (``REMADOM.impute(..., return_uncertainty=True)``).

Each draw takes ``z ~ q(z | from_modalities)``, decodes it and draws an observation from the
target's likelihood (``head.sample``), so the spread holds both the posterior uncertainty of the
cell's state and the measurement noise of the modality. Quantiles of the draws give a predictive
interval for a *new measurement* of the cell (for ADT's ``nbmixture``: raw counts, background
included), while ``impute``'s values stay the denoised expected value.
"""

from __future__ import annotations

import numpy as np
import torch

from ..module import MODULE_KEYS as K

#: Largest number of sampled values held at once (draws x cells x features), so that a wide
#: modality (25k ATAC peaks) is processed a few cells at a time.
_MAX_DRAWN_VALUES = 20_000_000


def _decode_library(head, library: torch.Tensor, n: int, library_size: float) -> torch.Tensor:
    """Library the draws are made at.

    ``library_size`` for library-scaled heads (as ``impute``'s values), the training cells'
    reference depth for a depth-aware Bernoulli head, else the cell's own observed library.
    """
    if head.scales_with_library:
        return torch.full((n,), float(library_size), device=library.device)
    ref = getattr(head, "log_depth_ref", None)  # depth-aware head: draw at the reference depth
    if ref is not None:
        return torch.full((n,), float(torch.expm1(ref)), device=library.device)
    return library


@torch.inference_mode()
def predictive_summary(
    model,
    target: str,
    from_modalities,
    adata,
    indices,
    *,
    n_samples: int = 100,
    interval: float = 0.9,
    library_size: float = 1e4,
    batch_size: int | None = None,
) -> dict[str, np.ndarray | float]:
    """Mean, standard deviation and central ``interval`` of the posterior predictive of ``target``.

    A cell decodes with its own batch when ``target`` was measured in it; otherwise draw ``s`` uses
    the ``s``-th (cyclically) of the batches where it was measured, so the spread includes the
    between-batch differences that the model cannot resolve for that cell.

    Parameters
    ----------
    model
        A trained :class:`~remadom.REMADOM`.
    target, from_modalities, adata, indices, library_size
        As in :meth:`remadom.REMADOM.impute` (``adata`` already validated).
    n_samples
        Number of posterior-predictive draws per cell.
    interval
        Central probability mass of the interval (0.9: the 5 % and 95 % quantiles).
    batch_size
        Cells per minibatch; reduced automatically so that at most ``_MAX_DRAWN_VALUES`` draws
        are held at once.

    Returns
    -------
    dict
        ``mean``, ``std``, ``lower``, ``upper`` (each ``(n_cells, n_features)``), ``interval``
        and ``n_samples``.
    """
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval={interval}; it is a probability mass strictly between 0 and 1.")
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples}; a predictive spread needs at least 2 draws.")
    module = model.module
    head = module.heads[target]
    n_features = head.n_features
    fit = max(1, _MAX_DRAWN_VALUES // (n_samples * n_features))
    batch_size = min(batch_size or fit, fit)
    valid = torch.as_tensor(model._valid_decode_batches(target))
    q_lo, q_hi = (1.0 - interval) / 2.0, 1.0 - (1.0 - interval) / 2.0
    parts: dict[str, list] = {"mean": [], "std": [], "lower": [], "upper": []}
    module.eval()
    for tensors in model._loader(adata, indices, batch_size):
        inf = module.inference(**module._get_inference_input(tensors), use_modalities=from_modalities)
        gen_in = module._get_generative_input(tensors, inf)
        own = gen_in[K.BATCH_INDEX_KEY]
        own_ok = torch.isin(own.view(-1).cpu(), valid).to(own.device).view(own.shape)
        n = own.shape[0]
        library = {**gen_in[K.LIBRARY_KEY], target: _decode_library(head, gen_in[K.LIBRARY_KEY][target], n, library_size)}
        draws = []
        for s in range(n_samples):
            code = int(valid[s % len(valid)])
            batch_index = torch.where(own_ok, own, torch.full_like(own, code))
            gen = module.generative(
                inf[K.QZ_KEY].sample(), library, batch_index, gen_in[K.CAT_COVS_KEY], gen_in[K.CONT_COVS_KEY],
                target_modalities=[target],
            )
            draws.append(head.sample(gen[K.PARAMS_KEY][target]).float())
        d = torch.stack(draws)  # (n_samples, n, n_features)
        parts["mean"].append(d.mean(0).cpu())
        parts["std"].append(d.std(0).cpu())
        ordered = d.sort(dim=0).values
        parts["lower"].append(ordered[int(np.floor(q_lo * (n_samples - 1)))].cpu())
        parts["upper"].append(ordered[int(np.ceil(q_hi * (n_samples - 1)))].cpu())
    out = {k: torch.cat(v).numpy() for k, v in parts.items()}
    out.update(interval=float(interval), n_samples=int(n_samples))
    return out
