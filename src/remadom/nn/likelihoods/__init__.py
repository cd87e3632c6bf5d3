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

from ._base import LIKELIHOODS, LikelihoodHead, binarize, clr, get_likelihood, map_values, register_likelihood
from ._binary import BernoulliHead, PeakVIBernoulliHead
from ._continuous import GaussianCLRHead, GaussianHead
from ._counts import (
    CellBackgroundNBMixtureHead,
    NegativeBinomialHead,
    NegativeBinomialMixtureHead,
    PoissonHead,
    ZeroInflatedNegativeBinomialHead,
)

__all__ = [
    "LIKELIHOODS",
    "BernoulliHead",
    "CellBackgroundNBMixtureHead",
    "GaussianCLRHead",
    "GaussianHead",
    "LikelihoodHead",
    "NegativeBinomialHead",
    "NegativeBinomialMixtureHead",
    "PeakVIBernoulliHead",
    "PoissonHead",
    "ZeroInflatedNegativeBinomialHead",
    "binarize",
    "clr",
    "get_likelihood",
    "map_values",
    "register_likelihood",
]
