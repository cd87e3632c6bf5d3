"""Initialization statistics accumulated over row chunks of a modality's sampled cells.

Setup summarizes each modality on a sample of up to 20,000 of its observed cells
(:func:`remadom.model._setup.modality_statistics`). Read at once, that sample of a 100k-peak ATAC
matrix is ~60M stored values (~0.5 GB, more while it is binarized), which set the process's peak
memory for out-of-core training. So setup reads the sample in bounded row chunks and feeds each
chunk to an accumulator (:class:`ChunkStatistics`): ``update(chunk)`` per chunk, ``result()`` at
the end, which gives what the head's :meth:`~remadom.nn.LikelihoodHead.data_statistics` gives on
the whole sample (exactly for counts and the per-cell depth, to float rounding for sums of
floats).

A head offers its accumulator through :meth:`~remadom.nn.LikelihoodHead.chunked_statistics`.
:func:`statistics_accumulator` picks it, or, for a head without one (or one whose
``data_statistics`` is overridden below the class that defined its accumulator), keeps the chunks
and calls ``data_statistics`` on them stacked: the same result as before, holding the sample
(statistics such as percentiles need every cell at once; the built-in ones are for small
protein panels).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ChunkStatistics",
    "EmptyStatistics",
    "IdfStatistics",
    "MeanProportionStatistics",
    "MomentStatistics",
    "OpenRateStatistics",
    "StackedStatistics",
    "statistics_accumulator",
]


class ChunkStatistics:
    """Accumulates statistics over row chunks: :meth:`update` per chunk, then :meth:`result`.

    A chunk is an ``(n_rows, n_features)`` dense array or scipy sparse matrix (binarized, ``x > 0``,
    for binary heads); the chunks of one accumulator together are the sampled cells, in order.
    """

    def update(self, x) -> None:
        """Add one chunk of rows."""
        raise NotImplementedError

    def result(self) -> dict:
        """The statistics of all rows added so far (``{}`` if there were none)."""
        raise NotImplementedError


class EmptyStatistics(ChunkStatistics):
    """For a head (or encoder input) that needs no statistics: reads nothing, gives ``{}``."""

    def update(self, x) -> None:
        pass

    def result(self) -> dict:
        return {}


class StackedStatistics(ChunkStatistics):
    """Keeps the chunks and calls ``fn`` on them stacked: for statistics that need all rows at once."""

    def __init__(self, fn):
        self.fn = fn
        self.chunks: list = []

    def update(self, x) -> None:
        self.chunks.append(x)

    def result(self) -> dict:
        if not self.chunks:
            return {}
        if len(self.chunks) == 1:
            return self.fn(self.chunks[0])
        if any(sp.issparse(c) for c in self.chunks):
            return self.fn(sp.vstack(self.chunks, format="csr"))
        return self.fn(np.concatenate([np.asarray(c) for c in self.chunks]))


def _col_sum(x) -> np.ndarray:
    return np.asarray(x.sum(0)).ravel()


class OpenRateStatistics(ChunkStatistics):
    """Binary heads: ``open_rate`` per feature and ``log_depth_ref``, the mean ``log1p`` number of open features.

    ``measured_fraction``: the fraction of the modality's features the chunks hold (under a feature
    mask); each cell's number of open features is divided by it, as in
    :meth:`~remadom.nn.BernoulliHead.data_statistics`.
    """

    def __init__(self, measured_fraction: float = 1.0):
        self.measured_fraction = measured_fraction
        self.open_cells = None
        self.n_open: list[np.ndarray] = []  # per cell: a vector of the sample's length, small

    def update(self, x) -> None:
        is_open = x > 0
        counts = _col_sum(is_open)
        self.open_cells = counts if self.open_cells is None else self.open_cells + counts
        self.n_open.append(np.asarray(is_open.sum(1)).ravel() / self.measured_fraction)

    def result(self) -> dict:
        if self.open_cells is None:
            return {}
        n_open = np.concatenate(self.n_open)
        return {
            "open_rate": (self.open_cells / max(len(n_open), 1)).astype(np.float32),
            "log_depth_ref": float(np.log1p(n_open).mean()) if len(n_open) else 0.0,
        }


class MeanProportionStatistics(ChunkStatistics):
    """Count heads: ``mean_proportion``, the mean over cells of each feature's share of the cell's counts."""

    def __init__(self):
        self.total = None
        self.n = 0

    def update(self, x) -> None:
        lib = np.asarray(x.sum(1)).ravel().astype(np.float64)
        inv = np.divide(1.0, lib, out=np.zeros_like(lib), where=lib > 0)
        share = sp.diags(inv) @ x if sp.issparse(x) else np.asarray(x) * inv[:, None]
        part = _col_sum(share).astype(np.float64)
        self.total = part if self.total is None else self.total + part
        self.n += x.shape[0]

    def result(self) -> dict:
        if not self.n:
            return {}
        return {"mean_proportion": (self.total / self.n).astype(np.float32)}


class MomentStatistics(ChunkStatistics):
    """Gaussian heads: ``feature_mean`` and ``feature_var`` (``ddof=0``) of ``values(chunk)``.

    ``values`` maps a chunk to its dense scored values row by row (e.g. the CLR of each cell);
    the chunks' means and sums of squared deviations are merged in float64 (Chan et al.'s
    pairwise update), so the result matches the whole sample's to float rounding.
    """

    def __init__(self, values):
        self.values = values
        self.n = 0
        self.mean = None
        self.m2 = None

    def update(self, x) -> None:
        v = np.asarray(self.values(x), dtype=np.float64)
        if not len(v):
            return
        n_b, mean_b = len(v), v.mean(0)
        m2_b = ((v - mean_b) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    def result(self) -> dict:
        if not self.n:
            return {}
        return {"feature_mean": self.mean.astype(np.float32), "feature_var": (self.m2 / self.n).astype(np.float32)}


class IdfStatistics(ChunkStatistics):
    """The ``tfidf`` encoder input's ``idf``: ``n_cells / (1 + open cells)`` per feature."""

    def __init__(self, n_features: int):
        self.open_cells = np.zeros(n_features, dtype=np.int64)
        self.n = 0

    def update(self, x) -> None:
        self.open_cells = self.open_cells + _col_sum(x > 0)
        self.n += x.shape[0]

    def result(self) -> dict:
        return {"idf": (self.n / (1.0 + self.open_cells)).astype(np.float32)}


def _defining_class(cls: type, name: str) -> type:
    return next(k for k in cls.__mro__ if name in vars(k))


def statistics_accumulator(head_cls: type, **kwargs) -> ChunkStatistics:
    """The accumulator of ``head_cls``'s initialization statistics (keyword arguments of ``data_statistics``).

    The head's own :meth:`~remadom.nn.LikelihoodHead.chunked_statistics` if it has one and no
    subclass below it overrides ``data_statistics``; :class:`EmptyStatistics` for a head without
    statistics; otherwise :class:`StackedStatistics` over ``data_statistics`` (same result,
    holding the sample).
    """
    from ._base import LikelihoodHead

    stats_owner = _defining_class(head_cls, "data_statistics")
    if stats_owner is LikelihoodHead:
        return EmptyStatistics()
    if issubclass(_defining_class(head_cls, "chunked_statistics"), stats_owner):
        accumulator = head_cls.chunked_statistics(**kwargs)
        if accumulator is not None:
            return accumulator
    return StackedStatistics(functools.partial(head_cls.data_statistics, **kwargs))
