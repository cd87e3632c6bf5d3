"""Binary (accessibility) heads: Bernoulli with a cell depth factor, and the PeakVI product form."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._sampled_bernoulli import sampled_bernoulli_nll
from ._base import LikelihoodHead, register_likelihood
from ._statistics import OpenRateStatistics


def _binary_statistics(x_observed, measured_fraction: float = 1.0) -> dict:
    is_open = x_observed > 0
    open_cells = np.asarray(is_open.sum(0)).ravel()
    n_open = np.asarray(is_open.sum(1)).ravel() / measured_fraction  # depth on the full feature set
    n = max(x_observed.shape[0], 1)
    return {
        "open_rate": (open_cells / n).astype(np.float32),
        "log_depth_ref": float(np.log1p(n_open).mean()) if len(n_open) else 0.0,
    }


@register_likelihood
class BernoulliHead(LikelihoodHead):
    """Bernoulli for binarized accessibility, with the cell's depth inside the logit.

    ``logit p[c, f] = w_f . h_c + b_f + s_f * (log1p(n_open_c) - log_depth_ref)``: the
    bias ``b_f`` is the region effect and ``s_f`` (initialized to 1) the region's
    sensitivity to the cell's number of open features. The depth enters the last layer as
    one extra input, so the logits come out of a single matrix product and the NLL is one
    fused ``binary_cross_entropy_with_logits``. :meth:`expected` is the probability at the
    reference depth (``log_depth_ref``, the mean over training cells).

    Parameters
    ----------
    n_hidden, n_features, n_batch
        See :class:`LikelihoodHead`.
    log_depth_ref
        Mean ``log1p`` number of open features of the observed cells.
    open_rate
        Fraction of observed cells in which each feature is open; the bias starts there.
    """

    name = "bernoulli"
    binary = True
    default_encoder_input = "tfidf"
    #: Fraction of features sampled for the NLL's normaliser in training (``None``: full NLL);
    #: set by :func:`remadom.nn._sampled_bernoulli.configure_negative_sampling`.
    negative_sampling: float | None = None

    def __init__(
        self,
        n_hidden: int,
        n_features: int,
        n_batch: int,
        log_depth_ref: float | None = None,
        open_rate: np.ndarray | None = None,
    ):
        super().__init__(n_hidden, n_features, n_batch)
        self.logit_layer = nn.Linear(n_hidden + 1, n_features)
        with torch.no_grad():
            self.logit_layer.weight[:, -1] = 1.0
            if open_rate is not None:  # start from each feature's observed open rate, not p = 0.5
                rate = torch.as_tensor(open_rate, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
                self.logit_layer.bias.copy_(torch.logit(rate))
        self.register_buffer("log_depth_ref", torch.tensor(float(log_depth_ref or 0.0)))

    @classmethod
    def data_statistics(cls, x_observed, measured_fraction: float = 1.0) -> dict:
        """``open_rate`` per feature and ``log_depth_ref``.

        ``measured_fraction``: the fraction of the modality's features ``x_observed`` holds (a
        batch's peak set under a feature mask); the depth is rescaled by it, as in :meth:`library`.
        """
        return _binary_statistics(x_observed, measured_fraction)

    @classmethod
    def chunked_statistics(cls, measured_fraction: float = 1.0):
        """:meth:`data_statistics` accumulated over row chunks (open counts and per-cell depths)."""
        return OpenRateStatistics(measured_fraction)

    def forward(self, h, batch_index, library):
        depth = (torch.log1p(library.float()) - self.log_depth_ref).view(-1, 1)
        inputs = torch.cat([h, depth.to(h.dtype)], dim=-1)
        if self.training and self.negative_sampling is not None:  # logits of sampled features only, in nll
            return {"inputs": inputs, "depth": depth}
        logits = self.logit_layer(inputs)
        return {"logits": logits, "depth": depth}

    def nll_entries(self, x, params, mask=None):
        return F.binary_cross_entropy_with_logits(params["logits"].float(), x.float(), reduction="none")

    def nll(self, x, params, mask=None):
        if "inputs" in params:  # training with negative sampling: see remadom.nn._sampled_bernoulli
            if mask is not None:
                raise ValueError(
                    "negative_sampling does not support feature masks yet; train this model with "
                    "negative_sampling=None."
                )
            layer = self.logit_layer
            return sampled_bernoulli_nll(x, params["inputs"], layer.weight, layer.bias, self.negative_sampling)
        return super().nll(x, params, mask=mask)

    def expected(self, params):
        slope = self.logit_layer.weight[:, -1]
        return torch.sigmoid(params["logits"].float() - params["depth"] * slope)

    def expected_at_cell_depth(self, params):
        return torch.sigmoid(params["logits"].float())

    def sample(self, params):
        return torch.bernoulli(torch.sigmoid(params["logits"].float()))


@register_likelihood
class PeakVIBernoulliHead(LikelihoodHead):
    """Bernoulli in PeakVI's product form: ``sigmoid(decoder) * sigmoid(region) * depth``.

    The form of models saved by 0.1.0 development versions (recognised on load by their
    ``region_logit`` parameter, see :meth:`remadom.module.RemadomModule._load_from_state_dict`)
    and of the ATAC-head ablation (``likelihoods={"atac": "bernoulli_peakvi"}``).
    """

    name = "bernoulli_peakvi"
    binary = True
    default_encoder_input = "tfidf"

    def __init__(self, n_hidden: int, n_features: int, n_batch: int):
        super().__init__(n_hidden, n_features, n_batch)
        self.logit_layer = nn.Linear(n_hidden, n_features)
        self.region_logit = nn.Parameter(torch.zeros(n_features))
        self.depth_weight = nn.Parameter(torch.tensor(1.0))
        self.depth_bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, h, batch_index, library):
        log_open = torch.log1p(library.float().view(-1, 1))
        log_depth = F.logsigmoid(self.depth_weight * (log_open - log_open.mean()) + self.depth_bias)
        log_p_norm = F.logsigmoid(self.logit_layer(h).float()) + F.logsigmoid(self.region_logit)
        return {"log_p_norm": log_p_norm, "log_p": log_p_norm + log_depth}

    def nll_entries(self, x, params, mask=None):
        log_p = params["log_p"].float().clamp(max=-1e-6)
        log_1mp = torch.log(-torch.expm1(log_p))
        x = x.float()
        return -(x * log_p + (1.0 - x) * log_1mp)

    def expected(self, params):
        return torch.exp(params["log_p_norm"].float())

    def expected_at_cell_depth(self, params):
        return torch.exp(params["log_p"].float())

    def sample(self, params):
        return torch.bernoulli(torch.exp(params["log_p"].float()))
