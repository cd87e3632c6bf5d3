"""Continuous heads: a Gaussian on values as given, and the Gaussian on CLR-transformed counts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from ._base import LikelihoodHead, _dense_array, clr, register_likelihood
from ._statistics import MomentStatistics


@register_likelihood
class GaussianHead(LikelihoodHead):
    """Gaussian on the values as given (e.g. z-scored or CLR-normalized data), learned per-feature variance.

    The encoder sees the values unchanged (``identity``), so negative values are fine.

    Parameters
    ----------
    n_hidden, n_features, n_batch
        See :class:`LikelihoodHead`.
    feature_mean, feature_var
        Mean and variance of each feature over the observed cells (:meth:`data_statistics`);
        the mean layer's bias and the log-variance start there.
    """

    name = "gaussian"
    default_encoder_input = "identity"

    def __init__(
        self,
        n_hidden: int,
        n_features: int,
        n_batch: int,
        feature_mean: np.ndarray | None = None,
        feature_var: np.ndarray | None = None,
    ):
        super().__init__(n_hidden, n_features, n_batch)
        self.mean_layer = nn.Linear(n_hidden, n_features)
        self.log_var = nn.Parameter(torch.zeros(n_features))
        with torch.no_grad():
            if feature_mean is not None:
                self.mean_layer.bias.copy_(torch.as_tensor(feature_mean, dtype=torch.float32))
            if feature_var is not None:
                self.log_var.copy_(torch.log(torch.as_tensor(feature_var, dtype=torch.float32).clamp(min=1e-4)))

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        """``feature_mean`` and ``feature_var`` of the scored values."""
        values = cls._score_values_np(x_observed)
        if len(values) == 0:
            return {}
        return {"feature_mean": values.mean(0).astype(np.float32), "feature_var": values.var(0).astype(np.float32)}

    @classmethod
    def chunked_statistics(cls):
        """:meth:`data_statistics` accumulated over row chunks (merged means and squared deviations).

        Exact only for scored values computed row by row (``_score_values_np``), as the built-in ones are.
        """
        return MomentStatistics(cls._score_values_np)

    @staticmethod
    def _score_values_np(x_observed) -> np.ndarray:
        return _dense_array(x_observed)

    def _score_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x.float()

    def forward(self, h, batch_index, library):
        return {"mean": self.mean_layer(h).float(), "log_var": self.log_var.expand(h.shape[0], -1)}

    def _dist(self, params):
        return Normal(params["mean"].float(), torch.exp(0.5 * params["log_var"].float()))

    def nll_entries(self, x, params, mask=None):
        return -self._dist(params).log_prob(self._score_values(x, mask))

    def sample(self, params):
        """A draw on the scored scale (for :class:`GaussianCLRHead`, the CLR scale)."""
        return self._dist(params).sample()

    def expected(self, params):
        return params["mean"]


@register_likelihood
class GaussianCLRHead(GaussianHead):
    """Gaussian on the centred log-ratio of non-negative counts, ``clr(x) = log1p(x) - mean(log1p(x))``.

    For raw ADT counts modelled as continuous; :meth:`expected` is on the CLR scale. Under a
    feature mask the CLR is centred on the measured features only.
    """

    name = "gaussian_clr"
    requires_nonnegative = True
    default_encoder_input = "clr"

    @staticmethod
    def _score_values_np(x_observed) -> np.ndarray:
        logx = np.log1p(_dense_array(x_observed))
        return logx - logx.mean(1, keepdims=True)

    def _score_values(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return clr(x.float(), mask)
