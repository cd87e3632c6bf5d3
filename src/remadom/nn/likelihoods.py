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

from ._sampled_bernoulli import sampled_bernoulli_nll

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

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Data as the likelihood scores it (identity; Bernoulli binarizes). Sparse stays sparse."""
        return x

    def library(self, x: torch.Tensor) -> torch.Tensor:
        """Observed per-cell size of prepared data: total counts (number of open features for ATAC)."""
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


def map_values(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply the zero-preserving element-wise ``fn`` to ``x``; on a sparse ``x`` only to its stored values."""
    if x.layout == torch.sparse_csr:
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), fn(x.values()), x.shape, check_invariants=False)
    if x.layout == torch.sparse_coo:
        x = x.coalesce()
        return torch.sparse_coo_tensor(x.indices(), fn(x.values()), x.shape, is_coalesced=True, check_invariants=False)
    return fn(x)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """``x > 0`` in ``x``'s dtype; on a sparse ``x`` computed on its stored values only."""
    return map_values(x, lambda v: (v > 0).to(v.dtype))


def _float(params: dict) -> dict:
    return {k: (v.float() if torch.is_tensor(v) else v) for k, v in params.items()}


class _ScaledCountsHead(LikelihoodHead):
    """scVI-style head: softmax scale times observed library size, gene dispersion."""

    scales_with_library = True

    def __init__(
        self, n_hidden, n_features, n_batch, dispersion: str = "gene", mean_proportion=None, **kwargs
    ):
        super().__init__(n_hidden, n_features, n_batch)
        if dispersion not in ("gene", "gene-batch", "gene-cell"):
            raise ValueError(
                f"dispersion={dispersion!r} is not supported; use 'gene', 'gene-batch' or 'gene-cell'."
            )
        self.dispersion = dispersion
        self.scale_layer = nn.Linear(n_hidden, n_features)
        if mean_proportion is not None:  # start from the observed mean profile, not a uniform one
            with torch.no_grad():
                share = torch.as_tensor(mean_proportion, dtype=torch.float32)
                self.scale_layer.bias.copy_(torch.log(share + 1e-3 / n_features))
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
    """Bernoulli for binarized accessibility, with the cell's depth inside the logit.

    ``logit p[c, f] = w_f . h_c + b_f + s_f * (log1p(n_open_c) - log_depth_ref)``: the
    bias ``b_f`` is the region effect and ``s_f`` (initialized to 1) the region's
    sensitivity to the cell's number of open features. The depth enters the last layer as
    one extra input, so the logits come out of a single matrix product and the NLL is one
    fused ``binary_cross_entropy_with_logits``. :meth:`expected` is the probability at the
    reference depth (``log_depth_ref``, the mean over training cells).

    Models saved by 0.1.0 development versions before this form used PeakVI's product
    ``sigmoid(decoder) * sigmoid(region) * depth``; their state dicts are recognised on
    load and keep that form (see :meth:`_load_from_state_dict`).
    """

    #: Fraction of features sampled for the NLL's normaliser in training (``None``: full NLL);
    #: set by :func:`remadom.nn._sampled_bernoulli.configure_negative_sampling`.
    negative_sampling: float | None = None

    def __init__(
        self,
        n_hidden,
        n_features,
        n_batch,
        log_depth_ref: float | None = None,
        open_rate: torch.Tensor | None = None,
        **kwargs,
    ):
        super().__init__(n_hidden, n_features, n_batch)
        self.form = "additive"
        self.logit_layer = nn.Linear(n_hidden + 1, n_features)
        with torch.no_grad():
            self.logit_layer.weight[:, -1] = 1.0
            if open_rate is not None:  # start from each feature's observed open rate, not p = 0.5
                rate = torch.as_tensor(open_rate, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
                self.logit_layer.bias.copy_(torch.logit(rate))
        self.register_buffer("log_depth_ref", torch.tensor(float(log_depth_ref or 0.0)))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize (``x > 0``), on the stored values only when ``x`` is sparse."""
        return binarize(x)

    def library(self, x):
        return x.sum(-1).float()

    def forward(self, h, batch_index, library):
        if self.form == "product":
            return self._forward_product(h, library)
        depth = (torch.log1p(library.float()) - self.log_depth_ref).view(-1, 1)
        inputs = torch.cat([h, depth.to(h.dtype)], dim=-1)
        if self.training and self.negative_sampling is not None:  # logits of sampled features only, in nll
            return {"inputs": inputs, "depth": depth}
        logits = self.logit_layer(inputs)
        return {"logits": logits, "depth": depth}

    def nll(self, x, params):
        if self.form == "product":
            return self._nll_product(x, params)
        if "inputs" in params:
            layer = self.logit_layer
            return sampled_bernoulli_nll(x, params["inputs"], layer.weight, layer.bias, self.negative_sampling)
        return F.binary_cross_entropy_with_logits(params["logits"].float(), x.float(), reduction="none").sum(-1)

    def expected(self, params):
        if self.form == "product":
            return torch.exp(params["log_p_norm"])
        slope = self.logit_layer.weight[:, -1]
        return torch.sigmoid(params["logits"].float() - params["depth"] * slope)

    def sample(self, params):
        if self.form == "product":
            return torch.bernoulli(torch.exp(params["log_p"].float()))
        return torch.bernoulli(torch.sigmoid(params["logits"].float()))

    # -- the PeakVI product form of models saved by earlier development versions --------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Switch to the product form when ``state_dict`` comes from an earlier version."""
        if f"{prefix}region_logit" in state_dict and self.form == "additive":
            self.use_product_form()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def use_product_form(self) -> None:
        """Re-initialize this head in the PeakVI product form (earlier models; ablations)."""
        n_hidden = self.logit_layer.in_features - 1
        self.form = "product"
        self.logit_layer = nn.Linear(n_hidden, self.n_features)
        self.region_logit = nn.Parameter(torch.zeros(self.n_features))
        self.depth_weight = nn.Parameter(torch.tensor(1.0))
        self.depth_bias = nn.Parameter(torch.tensor(0.0))
        del self.log_depth_ref

    def _forward_product(self, h, library):
        log_open = torch.log1p(library.float().view(-1, 1))
        log_depth = F.logsigmoid(self.depth_weight * (log_open - log_open.mean()) + self.depth_bias)
        log_p_norm = F.logsigmoid(self.logit_layer(h).float()) + F.logsigmoid(self.region_logit)
        return {"log_p_norm": log_p_norm, "log_p": log_p_norm + log_depth}

    @staticmethod
    def _nll_product(x, params):
        log_p = params["log_p"].float().clamp(max=-1e-6)
        log_1mp = torch.log(-torch.expm1(log_p))
        return -(x * log_p + (1.0 - x) * log_1mp).sum(-1)


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
