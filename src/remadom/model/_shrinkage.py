"""Shrinkage of a cross-modal prediction towards the modality's population profile.

When ``impute`` predicts a modality a cell did not encode from (the cell never measured it, or
``from_modalities`` leaves it out), the prediction is only as good as the map from the source
modalities to the target, and that map can over-fit: on the 500-cell BMMC Multiome file, RNA
predicted from ATAC correlates 0.72 (per-cell Pearson) with the truth on the *training* cells but
0.51 on the held-out validation cells, below the mean profile (0.53;
``benchmarks/impute_shrinkage.py``). Decoding the posterior mean then commits
each cell to a profile the data do not support, and the prediction scores below the method-free
mean-profile floor.

The hedge is the predictive mixture ``(1 - w) * model + w * profile``: the model's prediction and
the population profile of the target (mean per-cell proportion for count heads, open rate for
binary heads) over the training cells that measured it. ``w`` is fitted as a stacking weight, by
maximizing the held-out log-likelihood of the target on the model's *validation* cells that
measured the target and a source, predicted from the sources alone (multinomial log-likelihood of
the counts for count heads, Bernoulli for binary heads; a grid of 21 values in [0, 1]). The fit
uses neither the cells being imputed nor any hidden truth; where the cross-modal map generalizes,
the held-out likelihood is best at ``w`` near 0 and the prediction is unchanged.

``w`` is 0 (no shrinkage) when the model has fewer than :data:`MIN_CELLS` such validation cells
(e.g. trained with ``train_size=1.0``), when the target has feature masks (its profile would mix
unmeasured zeros), and for heads that are neither count (``scales_with_library``) nor binary heads
(ADT ``nbmixture``, Gaussian heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._constants import modality_key
from ..module import MODULE_KEYS
from ..nn.networks import to_dense

K = MODULE_KEYS

#: Shrinkage weights tried by the fit.
GRID = np.linspace(0.0, 1.0, 21)
#: Fewest held-out validation cells (with the target and a source) the weight is fitted on.
MIN_CELLS = 10


@dataclass
class Shrinkage:
    """A fitted shrinkage of ``target``'s cross-modal predictions towards ``profile``.

    Attributes
    ----------
    weight
        ``w`` in ``(1 - w) * prediction + w * profile``; 0 leaves the prediction unchanged.
    profile
        ``(n_features,)`` population profile on :meth:`LikelihoodHead.expected`'s scale
        (``None`` when ``weight`` is 0 for lack of data).
    n_cells
        Number of held-out cells the weight was fitted on.
    loglik
        Mean held-out log-likelihood at each weight of :data:`GRID` (``None`` when not fitted).
    reason
        Why the weight is 0 without a fit, or ``""``.
    """

    weight: float
    profile: torch.Tensor | None = None
    n_cells: int = 0
    loglik: np.ndarray | None = None
    reason: str = ""

    def apply(self, pred: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``pred`` with the rows ``rows`` (a boolean mask) shrunk; a new tensor, ``pred`` untouched."""
        if self.weight <= 0.0 or self.profile is None or not bool(rows.any()):
            return pred
        w = float(self.weight)
        prof = self.profile.to(device=pred.device, dtype=pred.dtype)
        return torch.where(rows.view(-1, 1), (1.0 - w) * pred + w * prof, pred)


def supported(model, target: str) -> str:
    """``""`` when ``target`` can be shrunk, otherwise the reason it cannot."""
    head = model.module.heads[target]
    if not (head.binary or head.scales_with_library):
        return (f"{target!r} uses the {type(head).__name__} likelihood, which is neither a count nor a "
                "binary head")
    if model.module.feature_masks.batch_masks(target) is not None or target in model.module.cell_feature_masks:
        return f"{target!r} has feature masks"
    return ""


def loglik_sums(pred: np.ndarray, x: np.ndarray, profile: np.ndarray, binary: bool,
                grid: np.ndarray = GRID) -> tuple[np.ndarray, float]:
    """Summed log-likelihoods and the number of terms (counts, or entries when binary).

    The sum for each ``w`` of ``grid`` of the log-likelihood of ``x`` under
    ``(1 - w) * pred + w * profile``; see :func:`heldout_loglik`.
    """
    out = []
    for w in grid:
        p = (1.0 - w) * pred + w * profile[None, :]
        if binary:
            p = np.clip(p, 1e-6, 1.0 - 1e-6)
            out.append(float(np.sum(np.where(x > 0, np.log(p), np.log1p(-p)))))
        else:
            p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
            out.append(float(np.sum(x * np.log(np.maximum(p, 1e-12)))))
    return np.asarray(out), float(x.size if binary else x.sum())


def heldout_loglik(pred: np.ndarray, x: np.ndarray, profile: np.ndarray, binary: bool,
                   grid: np.ndarray = GRID) -> np.ndarray:
    """Mean held-out log-likelihood of ``x`` under ``(1 - w) * pred + w * profile`` for each ``w``.

    Count data: the multinomial log-likelihood per count (``pred`` and ``profile`` are
    proportions). Binary data: the Bernoulli log-likelihood per entry of ``x > 0``.
    """
    sums, n = loglik_sums(pred, x, profile, binary, grid)
    return sums / max(n, 1.0)


@torch.inference_mode()
def population_profile(model, target: str, indices: np.ndarray, batch_size: int | None = None):
    """Population profile of ``target``: ``(profile, n_cells)``.

    The mean per-cell proportion (count heads) or open rate (binary heads) over the cells
    ``indices`` of the training data that measured it.
    """
    head = model.module.heads[target]
    t = list(model.module.modality_names).index(target)
    total, n = None, 0
    for tensors in model._loader(model.adata, indices, batch_size):
        has = model.module.observed_masks(tensors)[t].bool()
        if not bool(has.any()):
            continue
        x = to_dense(tensors[modality_key(target)])[has]
        if head.binary:
            x = (x > 0).float()
        else:
            x = x / x.sum(1, keepdim=True).clamp(min=1e-12)
        s = x.sum(0).double().cpu()
        total = s if total is None else total + s
        n += int(has.sum())
    if total is None:
        return None, 0
    return (total / n).float(), n


def fit_shrinkage(
    model,
    target: str,
    from_modalities: Sequence[str] | None = None,
    *,
    max_cells: int = 20_000,
    max_heldout: int = 5_000,
    seed: int = 0,
    batch_size: int | None = None,
) -> Shrinkage:
    """Fit :class:`Shrinkage` of ``target`` predicted from ``from_modalities`` (default: the others).

    Parameters
    ----------
    model
        A trained :class:`~remadom.REMADOM`.
    target
        Modality being imputed.
    from_modalities
        Modalities the prediction is made from; the held-out cells are encoded from these minus
        ``target``.
    max_cells
        At most this many training cells enter the profile (drawn at random with ``seed``).
    max_heldout
        At most this many validation cells enter the fit (drawn at random with ``seed``); they are
        predicted and scored 256 at a time, so no array larger than a chunk is held.
    seed
        Seed of the draws.
    batch_size
        Minibatch size.
    """
    reason = supported(model, target)
    if reason:
        return Shrinkage(0.0, reason=reason)
    names = list(model.module.modality_names)
    sources = [m for m in (from_modalities or names) if m != target]
    val = getattr(model, "validation_indices", None)
    train = getattr(model, "train_indices", None)
    if not sources or val is None or train is None or len(val) < MIN_CELLS:
        return Shrinkage(0.0, reason="no held-out validation cells to fit the weight on")
    train = np.sort(np.asarray(train, dtype=np.int64))
    if len(train) > max_cells:
        train = np.sort(np.random.default_rng(seed).choice(train, max_cells, replace=False))
    profile, _ = population_profile(model, target, train, batch_size)
    if profile is None:
        return Shrinkage(0.0, reason=f"no training cell measured {target!r}")
    t, src = names.index(target), [names.index(m) for m in sources]
    held = _heldout_positions(model, np.sort(np.asarray(val, dtype=np.int64)), t, src, batch_size)
    if len(held) < MIN_CELLS:
        return Shrinkage(0.0, reason=f"fewer than {MIN_CELLS} validation cells measured {target!r} and a source")
    if len(held) > max_heldout:
        held = np.sort(np.random.default_rng(seed).choice(held, max_heldout, replace=False))
    binary, prof = model.module.heads[target].binary, profile.double().numpy()
    sums, n = np.zeros(len(GRID)), 0.0
    for chunk in np.array_split(held, -(-len(held) // 256)):  # a chunk's dense arrays at a time
        pred = model.impute(target, from_modalities=sources, indices=chunk, library_size=1.0,
                            batch_size=batch_size, shrinkage=0.0)
        x = np.concatenate([to_dense(tensors[modality_key(target)]).cpu().numpy()
                            for tensors in model._loader(model.adata, chunk, batch_size)])
        s_, n_ = loglik_sums(np.asarray(pred, dtype=np.float64), x.astype(np.float64), prof, binary)
        sums, n = sums + s_, n + n_
    ll = sums / max(n, 1.0)
    return Shrinkage(float(GRID[int(np.argmax(ll))]), profile, len(held), ll)


@torch.inference_mode()
def _heldout_positions(model, val: np.ndarray, t: int, src: list[int], batch_size) -> np.ndarray:
    """The validation positions whose cell measured the target (index ``t``) and a source."""
    keep = []
    for tensors in model._loader(model.adata, val, batch_size):
        observed = model.module.observed_masks(tensors)
        keep.append(((observed[t] > 0) & (observed[src].sum(0) > 0)).cpu().numpy())
    return val[np.concatenate(keep)] if keep else val[:0]


def resolve_shrinkage(model, target: str, from_modalities, shrinkage, batch_size=None) -> Shrinkage:
    """The :class:`Shrinkage` that ``impute(..., shrinkage=...)`` applies.

    Fitted (``"auto"``), fixed (a float in [0, 1]) or none (0).
    """
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise ValueError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}.")
        return fit_shrinkage(model, target, from_modalities, batch_size=batch_size)
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}.")
    if float(shrinkage) == 0.0:
        return Shrinkage(0.0, reason="shrinkage=0")
    reason = supported(model, target)
    if reason:
        raise ValueError(f"shrinkage={shrinkage} cannot be applied: {reason}. Use shrinkage=0 (or 'auto', "
                         "which is 0 for such a modality).")
    train = getattr(model, "train_indices", None)
    indices = None if train is None else np.sort(np.asarray(train, dtype=np.int64))
    profile, _ = population_profile(model, target, indices, batch_size)
    if profile is None:
        raise ValueError(f"shrinkage={shrinkage}: no training cell measured {target!r}, so it has no profile "
                         "to shrink towards; use shrinkage=0.")
    return Shrinkage(float(shrinkage), profile)
