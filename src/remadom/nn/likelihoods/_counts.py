"""Count heads: negative binomial, zero-inflated NB, Poisson and the two-component NB mixture (ADT)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, NegativeBinomialMixture, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import Normal, Poisson, kl_divergence

from ..masked import renormalize_scale
from ._base import _EPS, LikelihoodHead, _dense_array, _float, register_likelihood
from ._statistics import MeanProportionStatistics


class _ScaledCountsHead(LikelihoodHead):
    """scVI-style head: softmax scale times observed library size, gene dispersion.

    Parameters
    ----------
    n_hidden, n_features, n_batch
        See :class:`LikelihoodHead`.
    dispersion
        ``"gene"``, ``"gene-batch"`` or ``"gene-cell"``.
    mean_proportion
        Mean feature share of the observed cells (:meth:`data_statistics`); the scale starts
        from this profile instead of a uniform one.
    """

    requires_counts = True
    scales_with_library = True
    uses_dispersion = True

    def __init__(
        self,
        n_hidden: int,
        n_features: int,
        n_batch: int,
        dispersion: str = "gene",
        mean_proportion: np.ndarray | None = None,
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

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        """``mean_proportion``: the mean over cells of each feature's share of the cell's counts."""
        lib = np.asarray(x_observed.sum(1)).ravel().astype(np.float64)
        inv = np.divide(1.0, lib, out=np.zeros_like(lib), where=lib > 0)
        if sp.issparse(x_observed):
            share = sp.diags(inv) @ x_observed
        else:
            share = np.asarray(x_observed) * inv[:, None]
        return {"mean_proportion": np.asarray(share.mean(0)).ravel().astype(np.float32)}

    @classmethod
    def chunked_statistics(cls):
        """:meth:`data_statistics` accumulated over row chunks (sums of each cell's feature shares)."""
        return MeanProportionStatistics()

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

    def _mu(self, params: dict, mask: torch.Tensor | None) -> torch.Tensor:
        """Mean counts; with a mask, the scale renormalized so the measured features' means sum to the library."""
        return params["mu"].float() * renormalize_scale(params["scale"].float(), mask)

    def expected(self, params):
        return params["scale"]


@register_likelihood
class NegativeBinomialHead(_ScaledCountsHead):
    """Negative binomial (scVI default for RNA)."""

    name = "nb"

    def nll_entries(self, x, params, mask=None):
        p = _float(params)
        return -NegativeBinomial(mu=self._mu(p, mask) + _EPS, theta=p["theta"] + _EPS).log_prob(x.float())

    def sample(self, params):
        p = _float(params)
        return NegativeBinomial(mu=p["mu"] + _EPS, theta=p["theta"] + _EPS).sample()


@register_likelihood
class ZeroInflatedNegativeBinomialHead(_ScaledCountsHead):
    """Zero-inflated negative binomial (parameters as :class:`_ScaledCountsHead`)."""

    name = "zinb"

    def __init__(
        self,
        n_hidden: int,
        n_features: int,
        n_batch: int,
        dispersion: str = "gene",
        mean_proportion: np.ndarray | None = None,
    ):
        super().__init__(n_hidden, n_features, n_batch, dispersion=dispersion, mean_proportion=mean_proportion)
        self.dropout_layer = nn.Linear(n_hidden, n_features)

    def forward(self, h, batch_index, library):
        params = super().forward(h, batch_index, library)
        params["zi_logits"] = self.dropout_layer(h).float()
        return params

    def _dist(self, params, mask=None):
        p = _float(params)
        return ZeroInflatedNegativeBinomial(
            mu=self._mu(p, mask) + _EPS, theta=p["theta"] + _EPS, zi_logits=p["zi_logits"]
        )

    def nll_entries(self, x, params, mask=None):
        return -self._dist(params, mask).log_prob(x.float())

    def sample(self, params):
        return self._dist(params).sample()


@register_likelihood
class PoissonHead(_ScaledCountsHead):
    """Poisson with the same library-size scaling (the dispersion is unused)."""

    name = "poisson"

    def nll_entries(self, x, params, mask=None):
        return -Poisson(self._mu(params, mask) + _EPS).log_prob(x.float())

    def sample(self, params):
        return Poisson(params["mu"].float() + _EPS).sample()



@register_likelihood
class NegativeBinomialMixtureHead(LikelihoodHead):
    """totalVI-style protein model: background and foreground negative binomials.

    The background rate is a learned per-protein, per-batch level; the foreground
    rate is the background times ``1 + softplus(decoder)``; the mixing weight comes
    from the decoder. :meth:`expected` returns the foreground-normalized counts,
    ``rate_fore * (1 - p_background)``.

    Parameters
    ----------
    n_hidden, n_features, n_batch
        See :class:`LikelihoodHead`.
    background_init
        Initial log background rate per feature (:meth:`data_statistics`).
    """

    name = "nbmixture"
    requires_counts = True

    def __init__(self, n_hidden: int, n_features: int, n_batch: int, background_init: np.ndarray | None = None):
        super().__init__(n_hidden, n_features, n_batch)
        init = torch.zeros(n_features) if background_init is None else torch.as_tensor(background_init)
        self.background_log_rate = nn.Parameter(init.float().view(-1, 1).repeat(1, self.n_batch))
        self.fore_layer = nn.Linear(n_hidden, n_features)
        self.mixing_layer = nn.Linear(n_hidden, n_features)
        self.log_theta = nn.Parameter(2 * torch.rand(n_features))

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        """``background_init``: ``log1p`` of each feature's 25th percentile (a protein panel is small, dense is cheap)."""
        dense = _dense_array(x_observed)
        low = np.percentile(dense, 25, axis=0) if len(dense) else np.zeros(dense.shape[1])
        return {"background_init": np.log1p(low).astype(np.float32)}

    def _log_background(self, h, batch_index) -> tuple[torch.Tensor, dict]:
        """Log background rate per cell and feature, and any extra parameters it comes with."""
        return self.background_log_rate[:, batch_index.view(-1).long()].T, {}

    def forward(self, h, batch_index, library):
        log_back, extra = self._log_background(h, batch_index)
        rate_back = torch.exp(log_back)
        fore_scale = 1.0 + F.softplus(self.fore_layer(h).float()) + _EPS
        return {
            "rate_back": rate_back,
            "rate_fore": rate_back * fore_scale,
            "mixing_logits": self.mixing_layer(h).float(),
            "theta": torch.exp(self.log_theta).expand(h.shape[0], -1),
            **extra,
        }

    def _dist(self, params):
        p = _float(params)
        return NegativeBinomialMixture(
            mu1=p["rate_back"], mu2=p["rate_fore"], theta1=p["theta"] + _EPS, mixture_logits=p["mixing_logits"]
        )

    def nll_entries(self, x, params, mask=None):
        return -self._dist(params).log_prob(x.float())

    def sample(self, params):
        return self._dist(params).sample()

    def expected(self, params):
        return params["rate_fore"] * (1.0 - torch.sigmoid(params["mixing_logits"]))

    def observation_mean(self, params):
        """Mean counts with background: ``p_background * rate_back + (1 - p_background) * rate_fore``."""
        p_back = torch.sigmoid(params["mixing_logits"])
        return p_back * params["rate_back"] + (1.0 - p_back) * params["rate_fore"]


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


@register_likelihood
class CellBackgroundNBMixtureHead(NegativeBinomialMixtureHead):
    """:class:`NegativeBinomialMixtureHead` with a per-cell background (totalVI's ``log_beta``).

    The log background rate of each cell and feature is a latent variable with the amortized
    posterior ``Normal(back_mean, back_scale)`` computed from the decoder's hidden state (so from
    ``z`` and the batch), and the prior ``Normal(background_log_rate[:, batch],
    exp(background_log_scale[:, batch]))``, one learned level and spread per feature and batch
    (totalVI's ``background_pro_alpha`` / ``background_pro_log_beta``). Training draws it
    (reparameterized) and adds its KL to the ELBO with the KL weight (:meth:`kl_entries`; unmeasured
    entries of a feature mask add nothing); in evaluation mode it is the posterior mean of the log
    rate, so :meth:`expected` and :meth:`observation_mean` are deterministic. The posterior mean
    is the prior level plus a learned shift that starts at zero, so training starts from the
    per-batch head.

    Select it per modality: ``modalities={"adt": {"obsm": "protein", "likelihood": "nbmixture_cellbg"}}``.

    Parameters
    ----------
    n_hidden, n_features, n_batch
        See :class:`LikelihoodHead`.
    background_init
        Initial log background level per feature (the prior mean; :meth:`data_statistics`).
    background_scale_init
        Initial prior spread of the log background per feature (:meth:`data_statistics`).
    """

    name = "nbmixture_cellbg"

    def __init__(
        self,
        n_hidden: int,
        n_features: int,
        n_batch: int,
        background_init: np.ndarray | None = None,
        background_scale_init: np.ndarray | None = None,
    ):
        super().__init__(n_hidden, n_features, n_batch, background_init=background_init)
        scale = (torch.full((n_features,), 0.1) if background_scale_init is None
                 else torch.as_tensor(background_scale_init).float().clamp(min=0.01))
        self.background_log_scale = nn.Parameter(torch.log(scale).view(-1, 1).repeat(1, self.n_batch))
        self.back_shift_layer = nn.Linear(n_hidden, n_features)
        self.back_spread_layer = nn.Linear(n_hidden, n_features)
        with torch.no_grad():  # start at the prior: no shift, the prior's spread
            self.back_shift_layer.weight.zero_()
            self.back_shift_layer.bias.zero_()
            self.back_spread_layer.weight.zero_()
            self.back_spread_layer.bias.copy_(_inverse_softplus(scale))

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        """As :class:`NegativeBinomialMixtureHead`, plus ``background_scale_init``.

        The spread of ``log1p`` counts at or below each feature's median (at least 0.05), a rough
        width of the background component for the initialization only; the prior is learned.
        """
        stats = super().data_statistics(x_observed)
        dense = np.log1p(_dense_array(x_observed))
        if len(dense):
            low = np.where(dense <= np.median(dense, axis=0), dense, np.nan)
            spread = np.nan_to_num(np.nanstd(low, axis=0), nan=0.05)
        else:
            spread = np.zeros(dense.shape[1])
        stats["background_scale_init"] = np.maximum(spread, 0.05).astype(np.float32)
        return stats

    def _log_background(self, h, batch_index):
        b = batch_index.view(-1).long()
        prior_mean = self.background_log_rate[:, b].T
        prior_scale = torch.exp(self.background_log_scale[:, b].T)
        back_mean = prior_mean + self.back_shift_layer(h).float()
        back_scale = F.softplus(self.back_spread_layer(h).float()) + 1e-4
        log_back = back_mean + back_scale * torch.randn_like(back_mean) if self.training else back_mean
        return log_back, {"back_mean": back_mean, "back_scale": back_scale,
                          "back_prior_mean": prior_mean, "back_prior_scale": prior_scale}

    def kl_entries(self, params):
        """``KL(Normal(back_mean, back_scale) || Normal(prior_mean, prior_scale))`` per cell and feature."""
        p = _float(params)
        return kl_divergence(Normal(p["back_mean"], p["back_scale"]),
                             Normal(p["back_prior_mean"], p["back_prior_scale"]))
