"""The depth of an unmeasured binary modality, predicted from the cell's measured modalities.

A binary (accessibility) head puts the cell's depth, ``log1p`` of its number of open features,
in every feature's logit (:class:`~remadom.nn.likelihoods.BernoulliHead`). A cell that did not
measure the modality has no depth, so ``impute(..., cell_depth=True)`` decodes it at the reference
depth: the same shift for every cell, no cell-specific signal. Yet the depth is predictable from
what the cell did measure (on SNARE-seq the log RNA library size correlates 0.5 with the log
number of open peaks): ``impute(..., cell_depth="predicted")`` puts a predicted depth there.

:class:`DepthRegression` is a ridge regression of the target modality's ``log1p`` depth on the
cell's latent mean (encoded from the source modalities only) and the ``log1p`` library size of
each source modality, fitted on the training cells that measured the target and a source.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..module import MODULE_KEYS

K = MODULE_KEYS


def depth_features(inference_outputs: dict, sources: Sequence[int], names: Sequence[str]) -> torch.Tensor:
    """Per-cell regressors: latent mean, and per source modality ``log1p`` library and 'encoded'.

    A source the cell did not encode from contributes a zero library and a zero indicator.
    """
    encoded = inference_outputs[K.ENCODED_KEY]
    cols = [inference_outputs[K.QZ_MEAN_KEY].float()]
    for i in sources:
        on = encoded[i].float().view(-1, 1)
        lib = inference_outputs[K.LIBRARY_KEY][names[i]].float().view(-1, 1)
        cols += [torch.log1p(lib) * on, on]
    return torch.cat(cols, dim=1)


def ridge_fit(features: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression on standardized features (intercept not penalized); returns ``(coef, intercept)``.

    ``coef`` is on the original feature scale: ``y_hat = features @ coef + intercept``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)  # a constant column gets coefficient 0
    xs = (x - mean) / sd
    xs[:, x.std(0) <= 1e-8] = 0.0
    from sklearn.linear_model import Ridge

    # xs is centred, so scikit-learn's unpenalized intercept is y's mean and coef_ the penalized solution
    beta = Ridge(alpha=alpha * x.shape[0], fit_intercept=True).fit(xs, y).coef_
    coef = beta / sd
    return coef, float(y.mean() - mean @ coef)


class DepthRegression:
    """Predicts ``log1p`` depth of ``target`` from the cell's source modalities (see module docstring).

    Parameters
    ----------
    target
        The binary modality whose depth is predicted.
    sources
        Modalities the prediction encodes from (never ``target``).
    coef, intercept
        Ridge solution on :func:`depth_features`.
    r2
        In-sample coefficient of determination of the fit (a diagnostic).
    n_cells
        Number of training cells the fit used.
    """

    def __init__(self, target: str, sources: list[str], coef: np.ndarray, intercept: float,
                 r2: float, n_cells: int):
        self.target, self.sources = target, sources
        self.coef = torch.as_tensor(coef, dtype=torch.float32)
        self.intercept, self.r2, self.n_cells = float(intercept), float(r2), int(n_cells)

    def predict_log_depth(self, inference_outputs: dict, names: Sequence[str]) -> torch.Tensor:
        """Predicted ``log1p`` depth of each cell, ``(n_cells,)``, never below 0."""
        feats = depth_features(inference_outputs, [names.index(m) for m in self.sources], names)
        return (feats @ self.coef.to(feats.device) + self.intercept).clamp(min=0.0)

    def fill_library(self, inference_outputs: dict, names: Sequence[str]) -> dict:
        """The library dict with ``target``'s depth predicted for the cells that did not measure it."""
        i = names.index(self.target)
        has = inference_outputs[K.OBSERVED_KEY][i].bool()
        library = dict(inference_outputs[K.LIBRARY_KEY])
        own = library[self.target].float().view(-1)
        predicted = torch.expm1(self.predict_log_depth(inference_outputs, names))
        library[self.target] = torch.where(has, own, predicted).view_as(library[self.target])
        return library


@torch.inference_mode()
def fit_depth_regression(
    model,
    target: str,
    from_modalities: Sequence[str] | None = None,
    *,
    alpha: float = 1e-2,
    max_cells: int = 20_000,
    seed: int = 0,
    batch_size: int | None = None,
) -> DepthRegression:
    """Fit :class:`DepthRegression` on ``model``'s training cells that measured ``target`` and a source.

    Parameters
    ----------
    model
        A trained :class:`~remadom.REMADOM`.
    target
        Binary modality to predict the depth of.
    from_modalities
        Sources (default: every other modality).
    alpha
        Ridge penalty per cell on the standardized features.
    max_cells
        At most this many training cells enter the fit (drawn at random with ``seed``).
    seed
        Seed of that draw.
    batch_size
        Minibatch size for encoding.

    Raises
    ------
    ValueError
        No training cell measured both ``target`` and a source, so there is nothing to learn the
        depth from.
    """
    names = list(model.module.modality_names)
    sources = [m for m in (from_modalities or names) if m != target]
    if not sources:
        raise ValueError(
            f"cell_depth='predicted' needs a modality other than {target!r} to predict its depth from; "
            "pass from_modalities with another modality, or use cell_depth=True."
        )
    t = names.index(target)
    src = [names.index(m) for m in sources]
    feats, ys = [], []
    model.module.eval()
    for tensors in model._loader(model.adata, None, batch_size):
        inf = model.module.inference(**model.module._get_inference_input(tensors), use_modalities=sources)
        keep = inf[K.OBSERVED_KEY][t].bool() & (inf[K.ENCODED_KEY].sum(0) > 0)
        if not bool(keep.any()):
            continue
        feats.append(depth_features(inf, src, names)[keep].cpu().numpy())
        ys.append(torch.log1p(inf[K.LIBRARY_KEY][target].float().view(-1))[keep].cpu().numpy())
    if not feats:
        raise ValueError(
            f"cell_depth='predicted': no training cell measured both {target!r} and one of {sources}, so "
            f"there is nothing to learn {target!r}'s depth from; use cell_depth=True (the reference depth)."
        )
    x, y = np.concatenate(feats), np.concatenate(ys)
    if x.shape[0] > max_cells:
        take = np.random.default_rng(seed).choice(x.shape[0], max_cells, replace=False)
        x, y = x[take], y[take]
    coef, intercept = ridge_fit(x, y, alpha)
    resid = y - (x @ coef + intercept)
    r2 = 1.0 - float(resid.var()) / max(float(y.var()), 1e-12)
    return DepthRegression(target, sources, coef, intercept, r2, x.shape[0])
