"""Per-modality encoder and decoder networks, built on :class:`scvi.nn.FCLayers`."""

from __future__ import annotations

import numpy as np
import torch
from scvi.nn import FCLayers
from torch import nn

from .likelihoods import binarize, clr, map_values
from .masked import masked_encoder_input

#: Encoder input transforms (see :class:`EncoderInput`).
ENCODER_INPUTS = ("log1p", "tfidf", "clr", "identity")


def encoder_input_statistics(transform: str, x_observed) -> dict:
    """Statistics :class:`EncoderInput` needs, from the observed cells' data: ``idf`` for ``tfidf``."""
    if transform != "tfidf":
        return {}
    open_cells = np.asarray((x_observed > 0).sum(0)).ravel()
    return {"idf": (x_observed.shape[0] / (1.0 + open_cells)).astype(np.float32)}


def encoder_input_accumulator(transform: str, n_features: int):
    """:func:`encoder_input_statistics` accumulated over row chunks (``update(chunk)``, then ``result()``).

    With no chunk added, ``tfidf`` gives ``idf = 0`` for every feature, as
    :func:`encoder_input_statistics` does on no cells.
    """
    from .likelihoods._statistics import EmptyStatistics, IdfStatistics

    return IdfStatistics(n_features) if transform == "tfidf" else EmptyStatistics()


def to_dense(x: torch.Tensor) -> torch.Tensor:
    """Densify a sparse minibatch on its device (ATAC arrives sparse from the loader)."""
    if x.layout != torch.strided:
        x = x.to_dense()
    return x.float()


class EncoderInput(nn.Module):
    """Turns raw modality values into encoder input.

    Parameters
    ----------
    transform
        ``"log1p"``: ``log1p(x)``; ``"tfidf"``: binarize, divide by the cell's number of
        open features, multiply by the inverse document frequency ``idf`` and ``log1p``
        (scaled by 1e4); ``"clr"``: centred log-ratio; ``"identity"``: the values as given
        (real-valued data, negatives allowed).
    idf
        Inverse document frequency per feature (``tfidf`` only).
    """

    def __init__(self, transform: str, idf: torch.Tensor | None = None):
        super().__init__()
        if transform not in ENCODER_INPUTS:
            raise ValueError(f"Unknown encoder input transform {transform!r}; choose one of {list(ENCODER_INPUTS)}.")
        self.transform = transform
        if transform == "tfidf":
            if idf is None:
                raise ValueError("transform='tfidf' needs an `idf` vector.")
            self.register_buffer("idf", torch.as_tensor(idf, dtype=torch.float32))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the transform; returns a dense tensor.

        On a sparse ``x`` the zero-preserving transforms (``log1p``, ``tfidf``) touch only the
        stored values, and the result is densified once at the end. With a feature ``mask``
        (``True`` = measured; ``x`` already zero elsewhere) the unmeasured entries are 0 and the
        measured ones are rescaled by ``n_features / n_measured``, except for TF-IDF, which
        already normalizes by the cell's measured open features (see
        :func:`~remadom.nn.masked.masked_encoder_input`).
        """
        if mask is not None:
            return masked_encoder_input(self._transform(x, mask), mask, rescale=self.transform != "tfidf")
        return self._transform(x)

    def _transform(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.transform == "identity":
            return to_dense(x)
        if self.transform == "clr":
            return clr(to_dense(x), mask)
        if self.transform == "log1p":
            return to_dense(map_values(x, torch.log1p))
        return to_dense(self._tfidf(binarize(x)))

    def _tfidf(self, binary: torch.Tensor) -> torch.Tensor:
        if binary.layout == torch.strided:
            tf = binary / binary.sum(-1, keepdim=True).clamp(min=1.0)
            return torch.log1p(tf * self.idf * 1e4)
        coo = binary.to_sparse_coo().coalesce()
        rows, cols = coo.indices()
        values = coo.values()
        n_open = values.new_zeros(coo.shape[0]).index_add_(0, rows, values).clamp(min=1.0)
        tfidf = torch.log1p(values / n_open[rows] * self.idf[cols] * 1e4)
        return torch.sparse_coo_tensor(coo.indices(), tfidf, coo.shape, is_coalesced=True, check_invariants=False)


class GaussianExpertEncoder(nn.Module):
    """Encoder of one modality: returns the mean and log-variance of its Gaussian expert.

    Parameters
    ----------
    n_input
        Number of features.
    n_latent
        Latent dimension.
    transform
        Encoder input transform, see :class:`EncoderInput`.
    n_cat_list, n_cont
        Covariates to inject (empty by default: batch is removed by the decoders).
    n_hidden, n_layers, dropout_rate
        Network shape.
    idf
        Passed to :class:`EncoderInput`.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        transform: str,
        n_cat_list=None,
        n_cont: int = 0,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout_rate: float = 0.1,
        idf: torch.Tensor | None = None,
    ):
        super().__init__()
        self.input = EncoderInput(transform, idf)
        self.body = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_cat_list=n_cat_list,
            n_cont=n_cont,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            use_batch_norm=False,
            use_layer_norm=True,
        )
        self.mean = nn.Linear(n_hidden, n_latent)
        self.logvar = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor, *cat_list, cont=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, logvar)`` for raw values ``x`` (dense or sparse)."""
        return self.encode(self.input(x), *cat_list, cont=cont)

    def encode(self, x_in: torch.Tensor, *cat_list, cont=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, logvar)`` for already transformed input ``x_in`` (see :attr:`input`)."""
        h = self.body(x_in, *cat_list, cont=cont)
        return self.mean(h), self.logvar(h)


class ConditionalDecoder(nn.Module):
    """Decoder trunk of one modality, conditioned on batch and covariates.

    The likelihood head (see :mod:`remadom.nn.likelihoods`) sits on top.
    """

    def __init__(
        self,
        n_latent: int,
        n_cat_list=None,
        n_cont: int = 0,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.body = FCLayers(
            n_in=n_latent,
            n_out=n_hidden,
            n_cat_list=n_cat_list,
            n_cont=n_cont,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            use_batch_norm=False,
            use_layer_norm=True,
            inject_covariates=True,
        )

    def forward(self, z: torch.Tensor, *cat_list, cont=None) -> torch.Tensor:
        """Hidden state for latent ``z``."""
        return self.body(z, *cat_list, cont=cont)
