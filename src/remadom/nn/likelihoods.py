"""Observation models: one head per likelihood, registered in :data:`LIKELIHOODS`.

Adding a likelihood means adding one :class:`LikelihoodHead` subclass decorated with
:func:`register_likelihood`; its class attributes tell setup, the config and the evaluation
what it needs.

A head maps the decoder's hidden state to distribution parameters and knows how to
score data (:meth:`LikelihoodHead.nll`, per cell, summed over features, always in
float32) and how to give a normalized expected value for imputation
(:meth:`LikelihoodHead.expected`).

Every head receives the cell's observed ``library`` (total counts, or the number of
open peaks for ATAC); each uses it as its likelihood requires.

``nll`` and ``library`` take an optional ``mask`` (``n_cells x n_features``, ``True`` =
measured; see :mod:`remadom.nn.masked`): unmeasured entries add nothing to the NLL and get a
zero gradient, and library size / depth come from the measured features only. A head gets this
for free by giving its per-entry terms in :meth:`LikelihoodHead.nll_entries`.
"""

from __future__ import annotations

import inspect

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, NegativeBinomialMixture, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import Normal, Poisson

from ._sampled_bernoulli import sampled_bernoulli_nll
from .masked import masked_feature_sum, masked_library, measured_fraction, renormalize_scale

_EPS = 1e-8


def clr(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Centred log-ratio of counts, per cell: ``log1p(x) - mean(log1p(x))``.

    With a feature ``mask`` (``True`` = measured) the mean runs over the measured features only.
    """
    logx = torch.log1p(x)
    if mask is None:
        return logx - logx.mean(-1, keepdim=True)
    m = mask.to(logx.dtype)
    return logx - (logx * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)


class LikelihoodHead(nn.Module):
    """Base class for likelihood heads: the one home of what a likelihood needs.

    A subclass declares, as class attributes, its registry ``name``, whether it needs
    non-negative integer counts (``requires_counts``), non-negative values
    (``requires_nonnegative``) or models presence/absence (``binary``), the encoder input
    transform that suits its data (``default_encoder_input``, see
    :class:`~remadom.nn.EncoderInput`) and whether :meth:`expected` is a proportion to be
    multiplied by a library size (``scales_with_library``), and whether its constructor takes
    the model's ``dispersion`` (``uses_dispersion``). :meth:`data_statistics` computes
    the statistics its constructor takes for its initialization. Setup validation, the
    config choices and the evaluation ask these attributes; nothing lists likelihood names
    elsewhere. Register a subclass with :func:`register_likelihood`.

    A subclass scores data with :meth:`nll_entries` (per-entry terms); :meth:`nll` then sums them
    over the measured entries of a feature mask, so every such head takes feature masks. A head
    that overrides :meth:`nll` without a ``mask`` argument still works on fully measured
    modalities, and the module refuses feature masks for it (:meth:`supports_feature_masks`).

    Parameters
    ----------
    n_hidden
        Width of the decoder's last hidden layer.
    n_features
        Number of features of the modality.
    n_batch
        Number of batches (for per-batch parameters).
    """

    #: Registry name (``likelihoods={"rna": name}``).
    name: str = ""
    #: Whether the data must be non-negative integer counts.
    requires_counts: bool = False
    #: Whether the data must be non-negative (implied by ``requires_counts`` and ``binary``).
    requires_nonnegative: bool = False
    #: Whether the likelihood models presence/absence (values are binarized, ``x > 0``).
    binary: bool = False
    #: Encoder input transform used unless the modality sets its own.
    default_encoder_input: str = "log1p"
    #: Whether :meth:`expected` is a per-cell proportion to multiply by a library size.
    scales_with_library: bool = False
    #: Whether the constructor takes the model's ``dispersion`` setting.
    uses_dispersion: bool = False

    def __init__(self, n_hidden: int, n_features: int, n_batch: int):
        super().__init__()
        self.n_features = n_features
        self.n_batch = max(n_batch, 1)

    @classmethod
    def needs_nonnegative(cls) -> bool:
        """Whether the data must be non-negative."""
        return cls.requires_nonnegative or cls.requires_counts or cls.binary

    @classmethod
    def data_statistics(cls, x_observed) -> dict:
        """Initialization statistics from the observed cells' data (keyword arguments of the constructor).

        Parameters
        ----------
        x_observed
            ``(n_observed_cells, n_features)`` dense array or scipy sparse matrix.
        """
        return {}

    def forward(self, h: torch.Tensor, batch_index: torch.Tensor, library: torch.Tensor) -> dict:
        """Distribution parameters from hidden state ``h``."""
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Data as the likelihood scores it (identity; binary heads binarize). Sparse stays sparse."""
        return binarize(x) if self.binary else x

    def library(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Observed per-cell size of prepared data over the measured features (``mask``).

        Total counts (number of open features when binary). With a feature mask a binary head's
        count is divided by the measured fraction of features: it estimates the cell's depth on
        the full feature set, so cells of batches that measured different peak sets enter the
        depth term on one scale. Count heads keep the measured total; their scale is renormalized
        over the measured features instead (:func:`~remadom.nn.masked.renormalize_scale`).
        """
        size = masked_library(x, mask)
        if self.binary and mask is not None:
            size = size / measured_fraction(mask, x.shape[0], x.device)
        return size

    def nll(self, x: torch.Tensor, params: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood per cell over the measured entries (``mask``), shape ``(n_cells,)``.

        The sum of :meth:`nll_entries` over the entries where ``mask`` is ``True`` (all without a
        mask); unmeasured entries add nothing and get an exactly zero gradient.
        """
        return masked_feature_sum(self.nll_entries(x, params, mask), mask)

    def nll_entries(self, x: torch.Tensor, params: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-entry negative log-likelihood, shape ``(n_cells, n_features)``, in float32.

        ``mask`` is given for terms that depend on which features were measured (a softmax scale
        renormalized over them, a CLR centred on them); the terms at unmeasured entries are
        discarded by :meth:`nll`.
        """
        raise NotImplementedError

    @classmethod
    def supports_feature_masks(cls) -> bool:
        """Whether :meth:`nll` and :meth:`library` take a feature ``mask`` (the base methods and overrides with one)."""
        return all("mask" in inspect.signature(fn).parameters for fn in (cls.nll, cls.library))

    def expected(self, params: dict) -> torch.Tensor:
        """Normalized expected value used by :meth:`remadom.REMADOM.impute`."""
        raise NotImplementedError

    def sample(self, params: dict) -> torch.Tensor:
        """One draw from the observation model (``impute(return_uncertainty=True)``, the cycle loss)."""
        raise NotImplementedError(
            f"Likelihood {self.name!r} ({type(self).__name__}) defines no `sample`; posterior-predictive "
            "intervals and the cycle consistency loss need one."
        )


#: Likelihood name -> head class, filled by :func:`register_likelihood`.
LIKELIHOODS: dict[str, type[LikelihoodHead]] = {}


def register_likelihood(cls: type[LikelihoodHead]) -> type[LikelihoodHead]:
    """Class decorator adding a :class:`LikelihoodHead` subclass to :data:`LIKELIHOODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute `name` to be registered.")
    if cls.name in LIKELIHOODS and LIKELIHOODS[cls.name] is not cls:
        raise ValueError(f"Likelihood {cls.name!r} is already registered ({LIKELIHOODS[cls.name].__name__}).")
    LIKELIHOODS[cls.name] = cls
    return cls


def get_likelihood(name: str) -> type[LikelihoodHead]:
    """The head class registered as ``name``; a clear error listing the choices otherwise."""
    if name not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}.")
    return LIKELIHOODS[name]


def _dense_array(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


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


def _binary_statistics(x_observed) -> dict:
    is_open = x_observed > 0
    open_cells = np.asarray(is_open.sum(0)).ravel()
    n_open = np.asarray(is_open.sum(1)).ravel()
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
    def data_statistics(cls, x_observed) -> dict:
        """``open_rate`` per feature and ``log_depth_ref``."""
        return _binary_statistics(x_observed)

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

    def sample(self, params):
        return torch.bernoulli(torch.exp(params["log_p"].float()))


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

    def nll_entries(self, x, params, mask=None):
        return -self._dist(params).log_prob(x.float())

    def sample(self, params):
        return self._dist(params).sample()

    def expected(self, params):
        return params["rate_fore"] * (1.0 - torch.sigmoid(params["mixing_logits"]))


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
