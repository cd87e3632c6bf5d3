"""Factorised (low-rank) wide layers for modalities with many features (e.g. 100k ATAC peaks).

A modality's two wide layers cost ``n_hidden`` multiply-adds per feature and cell each:

- the encoder's input layer ``n_features -> n_hidden`` (the first layer of its ``FCLayers``);
- the decoder's output layer ``n_hidden -> n_features`` (the likelihood head's last layer).

With a rank ``r`` the weight of such a layer is a product of two matrices, ``W = B A``:

- decoder: the trunk's hidden state (``n_hidden``) is projected to ``r`` by a bias-free linear
  map (:class:`FactorisedDecoder`) and the head's last layer reads ``r`` (+ its extra inputs,
  e.g. the Bernoulli depth) instead of ``n_hidden``; logits ``= W_f . (A h) + b_f``;
- encoder: the transformed input (``n_features``) is projected to ``r`` by a bias-free linear
  map and the first hidden layer reads ``r`` instead of ``n_features``
  (:func:`factorise_encoder_input`).

The wide product then costs ``r`` instead of ``n_hidden`` per feature, forward and backward,
and the wide layer holds ``r x n_features`` parameters (plus ``r x n_hidden``): with ``r = 32``
and ``n_hidden = 256``, 8x fewer multiply-adds and parameters (and gradients, Adam states) in
the wide layer. No nonlinearity sits between the two factors, so the model is the full one
with its wide layer's weight restricted to rank ``r``. Feature masks, the sampled Bernoulli
likelihood and every head work unchanged: only the width of the head's input changes.

Turned on per modality by ``REMADOM(..., decoder_rank={"atac": 32}, encoder_rank={"atac": 32})``;
``None`` (default) keeps the full layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .networks import ConditionalDecoder, GaussianExpertEncoder

__all__ = ["check_ranks", "FactorisedDecoder", "FactorisedInput", "factorise_encoder_input"]


def check_ranks(ranks: dict | None, modality_names: Sequence[str], option: str) -> dict[str, int]:
    """Validate ``{modality: rank}`` (``None`` = no modality factorised) and return it as a dict.

    Raises
    ------
    ValueError
        For an unknown modality or a rank that is not a positive integer.
    """
    if ranks is None:
        return {}
    if not isinstance(ranks, dict):
        raise ValueError(f"{option}={ranks!r}; use {{modality: rank}}, e.g. {{'atac': 32}}, or None.")
    unknown = set(ranks) - set(modality_names)
    if unknown:
        raise ValueError(f"{option} names unknown modalities {sorted(unknown)}; the model has {list(modality_names)}.")
    for name, rank in ranks.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"{option}[{name!r}]={rank!r}; use a positive integer rank, e.g. 32.")
    return {name: int(rank) for name, rank in ranks.items()}


class FactorisedDecoder(ConditionalDecoder):
    """:class:`~remadom.nn.networks.ConditionalDecoder` whose hidden state is projected to ``rank``.

    The likelihood head on top then reads ``rank`` inputs, so its ``rank -> n_features`` layer
    and this bias-free ``n_hidden -> rank`` projection are the factors of a rank-``rank`` output
    layer (see the module docstring).

    Parameters
    ----------
    rank
        Width of the projection, i.e. the rank of the output layer.
    n_hidden
        Width of the trunk.
    **kwargs
        Passed to :class:`~remadom.nn.networks.ConditionalDecoder`.
    """

    def __init__(self, n_latent: int, rank: int, n_hidden: int = 256, **kwargs):
        super().__init__(n_latent, n_hidden=n_hidden, **kwargs)
        self.rank = int(rank)
        self.to_rank = nn.Linear(n_hidden, self.rank, bias=False)

    def forward(self, z: torch.Tensor, *cat_list, cont=None) -> torch.Tensor:
        """The ``(n_cells, rank)`` projection of the trunk's hidden state for latent ``z``."""
        return self.to_rank(super().forward(z, *cat_list, cont=cont))


class FactorisedInput(nn.Module):
    """An encoder body whose wide input is first projected to ``rank`` by a bias-free linear map.

    Parameters
    ----------
    project
        ``nn.Linear(n_features, rank, bias=False)``.
    body
        The encoder's ``FCLayers``, built with ``n_in=rank``.
    """

    def __init__(self, project: nn.Linear, body: nn.Module):
        super().__init__()
        self.project = project
        self.body = body

    def forward(self, x: torch.Tensor, *cat_list, cont=None) -> torch.Tensor:
        """``body(project(x))``."""
        return self.body(self.project(x), *cat_list, cont=cont)


def factorise_encoder_input(n_features: int, rank: int, n_latent: int, transform: str, **kwargs) -> GaussianExpertEncoder:
    """A :class:`~remadom.nn.networks.GaussianExpertEncoder` whose input layer has rank ``rank``.

    The encoder is built for ``rank`` inputs (so no ``n_features x n_hidden`` layer is ever
    allocated) and its body is wrapped in :class:`FactorisedInput` with a bias-free
    ``n_features -> rank`` projection. ``kwargs`` go to the encoder (``n_hidden``, ``idf``, ...).
    """
    encoder = GaussianExpertEncoder(int(rank), n_latent, transform, **kwargs)
    encoder.body = FactorisedInput(nn.Linear(n_features, int(rank), bias=False), encoder.body)
    return encoder
