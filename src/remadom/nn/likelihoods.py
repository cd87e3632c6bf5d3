"""Observation models: one head per likelihood, registered in :data:`LIKELIHOODS`.

A head maps the decoder's hidden state to distribution parameters and knows how to
score data (:meth:`LikelihoodHead.nll`, per cell, summed over features, always in
float32) and how to give a normalized expected value for imputation
(:meth:`LikelihoodHead.expected`).

Every head receives the cell's observed ``library`` (total counts, or the number of
open peaks for ATAC); each uses it as its likelihood requires.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, NegativeBinomialMixture, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import Normal, Poisson

_EPS = 1e-8


def clr(x: torch.Tensor) -> torch.Tensor:
    """Centred log-ratio of counts, per cell: ``log1p(x) - mean(log1p(x))``."""
    logx = torch.log1p(x)
    return logx - logx.mean(-1, keepdim=True)


class LikelihoodHead(nn.Module):
    """Base class for likelihood heads.

    Parameters
    ----------
    n_hidden
        Width of the decoder's last hidden layer.
    n_features
        Number of features of the modality.
    n_batch
        Number of batches (for per-batch parameters).
    """

    #: Whether :meth:`expected` is a per-cell proportion to multiply by a library size.
    scales_with_library = False

    def __init__(self, n_hidden: int, n_features: int, n_batch: int, **kwargs):
        super().__init__()
        self.n_features = n_features
        self.n_batch = max(n_batch, 1)

    def forward(self, h: torch.Tensor, batch_index: torch.Tensor, library: torch.Tensor) -> dict:
        """Distribution parameters from hidden state ``h``."""
        raise NotImplementedError

    def library(self, x: torch.Tensor) -> torch.Tensor:
        """Observed per-cell size: total counts (ATAC overrides: number of open features)."""
        return x.sum(-1).float()

    def nll(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """Negative log-likelihood per cell, shape ``(n_cells,)``."""
        raise NotImplementedError

    def expected(self, params: dict) -> torch.Tensor:
        """Normalized expected value used by :meth:`remadom.REMADOM.impute`."""
        raise NotImplementedError

    def sample(self, params: dict) -> torch.Tensor:
        """One draw from the observation model."""
        raise NotImplementedError


def _float(params: dict) -> dict:
    return {k: (v.float() if torch.is_tensor(v) else v) for k, v in params.items()}


class _ScaledCountsHead(LikelihoodHead):
    """scVI-style head: softmax scale times observed library size, gene dispersion."""

    scales_with_library = True

    def __init__(self, n_hidden, n_features, n_batch, dispersion: str = "gene", **kwargs):
        super().__init__(n_hidden, n_features, n_batch)
        if dispersion not in ("gene", "gene-batch", "gene-cell"):
            raise ValueError(
                f"dispersion={dispersion!r} is not supported; use 'gene', 'gene-batch' or 'gene-cell'."
            )
        self.dispersion = dispersion
        self.scale_layer = nn.Linear(n_hidden, n_features)
        if dispersion == "gene":
            self.log_theta = nn.Parameter(torch.randn(n_features))
        elif dispersion == "gene-batch":
            self.log_theta = nn.Parameter(torch.randn(n_features, self.n_batch))
        else:
            self.theta_layer = nn.Linear(n_hidden, n_features)

    def _theta(self, h, batch_index):
        if self.dispersion == "gene":
            return torch.exp(self.log_theta).expand(h.shape[0], -1)
        if self.dispersion == "gene-batch":
            return torch.exp(self.log_theta[:, batch_index.view(-1).long()].T)
        return torch.exp(self.theta_layer(h))

    def forward(self, h, batch_index, library):
        scale = torch.softmax(self.scale_layer(h).float(), dim=-1)
        mu = scale * library.float().view(-1, 1)
        return {"scale": scale, "mu": mu, "theta": self._theta(h, batch_index).float()}

    def expected(self, params):
        return params["scale"]


class NegativeBinomialHead(_ScaledCountsHead):
    """Negative binomial (scVI default for RNA)."""

    def nll(self, x, params):
        p = _float(params)
        return -NegativeBinomial(mu=p["mu"] + _EPS, theta=p["theta"] + _EPS).log_prob(x.float()).sum(-1)

    def sample(self, params):
        p = _float(params)
        return NegativeBinomial(mu=p["mu"] + _EPS, theta=p["theta"] + _EPS).sample()


class ZeroInflatedNegativeBinomialHead(_ScaledCountsHead):
    """Zero-inflated negative binomial."""

    def __init__(self, n_hidden, n_features, n_batch, **kwargs):
        super().__init__(n_hidden, n_features, n_batch, **kwargs)
        self.dropout_layer = nn.Linear(n_hidden, n_features)

    def forward(self, h, batch_index, library):
        params = super().forward(h, batch_index, library)
        params["zi_logits"] = self.dropout_layer(h).float()
        return params

    def _dist(self, params):
        p = _float(params)
        return ZeroInflatedNegativeBinomial(
            mu=p["mu"] + _EPS, theta=p["theta"] + _EPS, zi_logits=p["zi_logits"]
        )

    def nll(self, x, params):
        return -self._dist(params).log_prob(x.float()).sum(-1)

    def sample(self, params):
        return self._dist(params).sample()


class PoissonHead(_ScaledCountsHead):
    """Poisson with the same library-size scaling (no dispersion)."""

    def nll(self, x, params):
        return -Poisson(params["mu"].float() + _EPS).log_prob(x.float()).sum(-1)

    def sample(self, params):
        return Poisson(params["mu"].float() + _EPS).sample()


class BernoulliHead(LikelihoodHead):
    """PeakVI-style Bernoulli for binarized accessibility.

    ``p = sigmoid(decoder) * sigmoid(region_factor) * depth``, where the per-cell depth
    factor is a learned monotone function of the cell's number of open peaks. Computed
    in log space for stability.
    """

    def __init__(self, n_hidden, n_features, n_batch, **kwargs):
        super().__init__(n_hidden, n_features, n_batch)
        self.logit_layer = nn.Linear(n_hidden, n_features)
        self.region_logit = nn.Parameter(torch.zeros(n_features))
        self.depth_weight = nn.Parameter(torch.tensor(1.0))
        self.depth_bias = nn.Parameter(torch.tensor(0.0))

    def library(self, x):
        return (x > 0).sum(-1).float()

    def forward(self, h, batch_index, library):
        log_open = torch.log1p(library.float().view(-1, 1))
        log_depth = F.logsigmoid(self.depth_weight * (log_open - log_open.mean()) + self.depth_bias)
        log_p_norm = F.logsigmoid(self.logit_layer(h).float()) + F.logsigmoid(self.region_logit)
        return {"log_p_norm": log_p_norm, "log_p": log_p_norm + log_depth}

    def nll(self, x, params):
        log_p = params["log_p"].float().clamp(max=-1e-6)
        log_1mp = torch.log(-torch.expm1(log_p))
        xb = (x > 0).float()
        return -(xb * log_p + (1.0 - xb) * log_1mp).sum(-1)

    def expected(self, params):
        return torch.exp(params["log_p_norm"])

    def sample(self, params):
        return torch.bernoulli(torch.exp(params["log_p"].float()))


class NegativeBinomialMixtureHead(LikelihoodHead):
    """totalVI-style protein model: background and foreground negative binomials.

    The background rate is a learned per-protein, per-batch level; the foreground
    rate is the background times ``1 + softplus(decoder)``; the mixing weight comes
    from the decoder. :meth:`expected` returns the foreground-normalized counts,
    ``rate_fore * (1 - p_background)``.
    """

    def __init__(self, n_hidden, n_features, n_batch, background_init=None, **kwargs):
        super().__init__(n_hidden, n_features, n_batch)
        init = torch.zeros(n_features) if background_init is None else torch.as_tensor(background_init)
        self.background_log_rate = nn.Parameter(init.float().view(-1, 1).repeat(1, self.n_batch))
        self.fore_layer = nn.Linear(n_hidden, n_features)
        self.mixing_layer = nn.Linear(n_hidden, n_features)
        self.log_theta = nn.Parameter(2 * torch.rand(n_features))

    def forward(self, h, batch_index, library):
        rate_back = torch.exp(self.background_log_rate[:, batch_index.view(-1).long()].T)
        fore_scale = 1.0 + F.softplus(self.fore_layer(h).float()) + _EPS
        return {
            "rate_back": rate_back,
            "rate_fore": rate_back * fore_scale,
            "mixing_logits": self.mixing_layer(h).float(),
            "theta": torch.exp(self.log_theta).expand(h.shape[0], -1),
        }

    def _dist(self, params):
        p = _float(params)
        return NegativeBinomialMixture(
            mu1=p["rate_back"], mu2=p["rate_fore"], theta1=p["theta"] + _EPS, mixture_logits=p["mixing_logits"]
        )

    def nll(self, x, params):
        return -self._dist(params).log_prob(x.float()).sum(-1)

    def expected(self, params):
        return params["rate_fore"] * (1.0 - torch.sigmoid(params["mixing_logits"]))

    def sample(self, params):
        return self._dist(params).sample()


class GaussianHead(LikelihoodHead):
    """Gaussian on CLR-transformed values, with a learned per-feature variance."""

    def __init__(self, n_hidden, n_features, n_batch, **kwargs):
        super().__init__(n_hidden, n_features, n_batch)
        self.mean_layer = nn.Linear(n_hidden, n_features)
        self.log_var = nn.Parameter(torch.zeros(n_features))

    def forward(self, h, batch_index, library):
        return {"mean": self.mean_layer(h).float(), "log_var": self.log_var.expand(h.shape[0], -1)}

    def _dist(self, params):
        return Normal(params["mean"].float(), torch.exp(0.5 * params["log_var"].float()))

    def nll(self, x, params):
        return -self._dist(params).log_prob(clr(x.float())).sum(-1)

    def expected(self, params):
        return params["mean"]

    def sample(self, params):
        return self._dist(params).sample()


#: Likelihood name -> head class. Register new likelihoods here.
LIKELIHOODS: dict[str, type[LikelihoodHead]] = {
    "nb": NegativeBinomialHead,
    "zinb": ZeroInflatedNegativeBinomialHead,
    "poisson": PoissonHead,
    "bernoulli": BernoulliHead,
    "nbmixture": NegativeBinomialMixtureHead,
    "gaussian": GaussianHead,
}
