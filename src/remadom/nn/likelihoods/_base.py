"""The likelihood-head base class, the registry and the small tensor helpers every head uses."""

from __future__ import annotations

import inspect

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..masked import masked_feature_sum, masked_library, measured_fraction

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

    @classmethod
    def chunked_statistics(cls, **kwargs):
        """An accumulator of :meth:`data_statistics` over row chunks, or ``None``.

        Setup reads a modality's sampled cells in bounded row chunks (see
        :mod:`remadom.nn.likelihoods._statistics`). A head whose statistics are sums over cells
        returns a :class:`~remadom.nn.likelihoods._statistics.ChunkStatistics` whose ``result()``
        equals ``data_statistics`` on the stacked chunks; ``None`` (the default) keeps the chunks
        and calls :meth:`data_statistics` on them stacked. ``kwargs`` are those of :meth:`data_statistics`.
        """
        return None

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

    def kl_entries(self, params: dict) -> torch.Tensor | None:
        """Per-entry KL divergence of the head's own per-cell latent factors, ``(n_cells, n_features)``.

        ``None`` (the default) for heads without such factors. A head that draws a per-cell,
        per-feature latent variable in :meth:`forward` (e.g. the ``nbmixture_cellbg`` background,
        totalVI's ``log_beta``) returns ``KL(q || prior)`` of each entry here; the module adds
        :meth:`kl` to the ELBO with the KL weight.
        """
        return None

    def kl(self, params: dict, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per-cell sum of :meth:`kl_entries` over the measured entries (``mask``); ``None`` without factors.

        Unmeasured entries add nothing and get an exactly zero gradient, as in :meth:`nll`.
        """
        entries = self.kl_entries(params)
        return None if entries is None else masked_feature_sum(entries, mask)

    @classmethod
    def supports_feature_masks(cls) -> bool:
        """Whether :meth:`nll` and :meth:`library` take a feature ``mask`` (the base methods and overrides with one)."""
        return all("mask" in inspect.signature(fn).parameters for fn in (cls.nll, cls.library))

    def expected(self, params: dict) -> torch.Tensor:
        """Normalized expected value used by :meth:`remadom.REMADOM.impute`."""
        raise NotImplementedError

    def observation_mean(self, params: dict) -> torch.Tensor:
        """Mean of a new measurement under the observation model, on the scale of :meth:`expected`.

        The same as :meth:`expected` unless the head separates a background component from
        the signal (``nbmixture``), whose :meth:`expected` leaves the background out.
        ``impute(..., include_background=True)`` returns it.
        """
        return self.expected(params)

    def expected_at_cell_depth(self, params: dict) -> torch.Tensor:
        """Binary heads: the probability that the cell's own measurement shows each feature open.

        :meth:`expected` removes the cell's depth (a profile at the reference depth, comparable
        across cells); this keeps the cell's depth from its measured features (its ``library``),
        which is what its observed accessibility is drawn from (``impute(..., cell_depth=True)``).
        """
        raise NotImplementedError(
            f"Likelihood {self.name!r} ({type(self).__name__}) has no per-cell depth in its mean; "
            "cell_depth=True applies to binary (accessibility) likelihoods."
        )

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
