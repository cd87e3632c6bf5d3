"""Generative pieces of the mock data generator: latent backbone, batch effects, RNA, ATAC, ADT.

Every function takes a seeded :class:`numpy.random.Generator` and works on whole
arrays (no per-cell Python loops). ATAC is produced chunk by chunk straight into a
sparse matrix, so a dense cells x peaks probability matrix never exists in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: Cells per chunk when sampling ATAC (chunk x n_peaks float32 temporaries).
_ATAC_CHUNK_CELLS = 64


@dataclass(frozen=True)
class NoiseConfig:
    """Noise and effect-size knobs of :func:`~remadom.data.mock.generate_mock_dataset`.

    Parameters
    ----------
    cluster_separation
        Standard deviation of the cluster centres in latent space.
    within_cluster_sd
        Standard deviation of a cell's latent ``z`` around its cluster centre.
    batch_shift
        Standard deviation of the per-batch, per-feature additive offset on the log
        (RNA, ADT) or logit (ATAC) scale.
    batch_scale
        Standard deviation of the per-batch, per-feature log multiplicative factor on the
        latent signal ``W z``.
    rna_library_mean
        Mean RNA library size (total counts per cell).
    rna_library_sd
        Standard deviation of log library size.
    rna_theta
        Negative Binomial inverse dispersion of RNA (larger = closer to Poisson).
    atac_open_fraction
        Target mean fraction of accessible peaks per cell.
    atac_signal
        Scale of the latent signal on the ATAC logits.
    atac_depth_sd
        Standard deviation of the per-cell logit depth offset.
    adt_background_mean
        Mean of the protein background (ambient) counts.
    adt_background_logit
        Logit of the background-only probability when a protein's signal is zero; the
        probability falls as the signal rises (totalVI-like mixture).
    adt_theta
        Negative Binomial inverse dispersion of ADT.
    """

    cluster_separation: float = 2.5
    within_cluster_sd: float = 0.6
    batch_shift: float = 0.3
    batch_scale: float = 0.1
    rna_library_mean: float = 3000.0
    rna_library_sd: float = 0.3
    rna_theta: float = 5.0
    atac_open_fraction: float = 0.03
    atac_signal: float = 1.0
    atac_depth_sd: float = 0.3
    adt_background_mean: float = 10.0
    adt_background_logit: float = 0.0
    adt_theta: float = 10.0


def sample_latent(
    rng: np.random.Generator, n_cells: int, n_clusters: int, n_latent: int, noise: NoiseConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters in latent space.

    Returns
    -------
    ``(z, cluster, centres)``: latent ``(n_cells, n_latent)`` float32, integer cluster ids
    ``(n_cells,)`` and centres ``(n_clusters, n_latent)``.
    """
    centres = rng.normal(0.0, noise.cluster_separation, (n_clusters, n_latent))
    cluster = rng.integers(0, n_clusters, n_cells)
    z = centres[cluster] + rng.normal(0.0, noise.within_cluster_sd, (n_cells, n_latent))
    return z.astype(np.float32), cluster, centres


@dataclass(frozen=True)
class BatchEffect:
    """Per-batch feature effects: ``eta = signal * scale[b] + shift[b]``."""

    shift: np.ndarray  # (n_batches, n_features)
    scale: np.ndarray  # (n_batches, n_features), exp of the log multiplicative factor

    def apply(self, signal: np.ndarray, batch_codes: np.ndarray) -> np.ndarray:
        """Apply to ``signal`` ``(n_rows, n_features)`` for rows with ``batch_codes``."""
        return signal * self.scale[batch_codes] + self.shift[batch_codes]


def sample_batch_effect(
    rng: np.random.Generator,
    batch_codes_per_level: list[tuple[np.ndarray, float]],
    n_features: int,
    noise: NoiseConfig,
) -> tuple[BatchEffect, np.ndarray]:
    """Hierarchical batch effects (e.g. study, then batch within study).

    Parameters
    ----------
    rng
        Random generator.
    batch_codes_per_level
        One ``(codes, strength)`` per level; ``codes`` map each *unique combined batch*
        to a group of that level. Level effects add up, scaled by ``strength``.
    n_features
        Number of features.
    noise
        Effect sizes (``batch_shift``, ``batch_scale``).

    Returns
    -------
    The combined :class:`BatchEffect` over combined batches, and its per-level sum.
    """
    n_batches = len(batch_codes_per_level[0][0])
    shift = np.zeros((n_batches, n_features), dtype=np.float32)
    log_scale = np.zeros((n_batches, n_features), dtype=np.float32)
    for codes, strength in batch_codes_per_level:
        n_groups = int(codes.max()) + 1
        shift += (strength * rng.normal(0.0, noise.batch_shift, (n_groups, n_features)))[codes].astype(np.float32)
        log_scale += (strength * rng.normal(0.0, noise.batch_scale, (n_groups, n_features)))[codes].astype(
            np.float32
        )
    return BatchEffect(shift, np.exp(log_scale)), shift


def _loadings(rng: np.random.Generator, n_latent: int, n_features: int, scale: float = 1.0) -> np.ndarray:
    """Sparse-ish random loadings: each feature responds to a few latent dimensions."""
    w = rng.normal(0.0, scale / np.sqrt(n_latent), (n_latent, n_features))
    w *= rng.random((n_latent, n_features)) < 0.5
    return w.astype(np.float32)


def _negative_binomial(rng: np.random.Generator, mean: np.ndarray, theta: float) -> np.ndarray:
    """NB(mean, theta) samples as a Gamma-Poisson mixture."""
    rate = rng.gamma(theta, mean / theta)
    return rng.poisson(rate).astype(np.float32)


def simulate_rna(
    rng: np.random.Generator, z: np.ndarray, batch_codes: np.ndarray, n_batches: int, n_genes: int,
    noise: NoiseConfig, batch_levels: list[tuple[np.ndarray, float]] | None = None,
) -> sp.csr_matrix:
    """RNA counts: NB with a log-linear mean ``library * softmax(b + W z)``.

    Returns
    -------
    CSR float32 ``(n_cells, n_genes)``.
    """
    w = _loadings(rng, z.shape[1], n_genes)
    baseline = rng.normal(0.0, 1.0, n_genes).astype(np.float32)
    levels = batch_levels or [(np.arange(n_batches), 1.0)]
    effect, _ = sample_batch_effect(rng, levels, n_genes, noise)
    eta = effect.apply(z @ w, batch_codes) + baseline
    eta -= eta.max(axis=1, keepdims=True)
    rho = np.exp(eta)
    rho /= rho.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(noise.rna_library_mean), noise.rna_library_sd, (len(z), 1))
    return sp.csr_matrix(_negative_binomial(rng, library * rho, noise.rna_theta))


def simulate_atac(
    rng: np.random.Generator, z: np.ndarray, batch_codes: np.ndarray, n_batches: int, n_peaks: int,
    noise: NoiseConfig, batch_levels: list[tuple[np.ndarray, float]] | None = None,
) -> sp.csr_matrix:
    """Binary peak accessibility: Bernoulli with logits ``a + depth + W z`` (low rank).

    The logits are evaluated in chunks of cells and thresholded against uniforms right
    away, so only ``chunk x n_peaks`` float32 temporaries exist; the result is built
    directly as CSR.

    Returns
    -------
    CSR float32 ``(n_cells, n_peaks)`` of zeros and ones.
    """
    w = _loadings(rng, z.shape[1], n_peaks, scale=noise.atac_signal)
    base = np.log(noise.atac_open_fraction / (1.0 - noise.atac_open_fraction))
    # peak baselines; a mean shift compensates the extra logit variance from the signal
    baseline = rng.normal(base - 0.5, 1.0, n_peaks).astype(np.float32)
    levels = batch_levels or [(np.arange(n_batches), 1.0)]
    effect, _ = sample_batch_effect(rng, levels, n_peaks, noise)
    depth = rng.normal(0.0, noise.atac_depth_sd, len(z)).astype(np.float32)
    # cells are visited batch by batch, so each chunk shares one row of batch effects
    order = np.argsort(batch_codes, kind="stable")
    indptr = [np.zeros(1, dtype=np.int64)]
    indices = []
    offset = 0
    for b in range(effect.shift.shape[0]):
        cells_b = order[batch_codes[order] == b]
        row_base = baseline + effect.shift[b]
        for start in range(0, len(cells_b), _ATAC_CHUNK_CELLS):
            cells = cells_b[start:start + _ATAC_CHUNK_CELLS]
            logits = (z[cells] @ w) * effect.scale[b]
            logits += row_base
            logits += depth[cells, None]
            # u < sigmoid(l)  <=>  u * (1 + exp(-l)) < 1: one exp, no probability matrix kept
            np.maximum(logits, -30.0, out=logits)
            np.negative(logits, out=logits)
            np.exp(logits, out=logits)
            logits += 1.0
            logits *= rng.random(logits.shape, dtype=np.float32)
            flat = np.flatnonzero(logits < 1.0)
            rows, cols = np.divmod(flat, n_peaks)
            indices.append(cols.astype(np.int32))
            indptr.append(offset + np.cumsum(np.bincount(rows, minlength=len(cells))))
            offset += len(cols)
    indices = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32)
    data = np.ones(len(indices), dtype=np.float32)
    by_batch = sp.csr_matrix((data, indices, np.concatenate(indptr)), shape=(len(z), n_peaks))
    return by_batch[np.argsort(order)]


def simulate_adt(
    rng: np.random.Generator, z: np.ndarray, batch_codes: np.ndarray, n_batches: int, n_proteins: int,
    noise: NoiseConfig, batch_levels: list[tuple[np.ndarray, float]] | None = None,
) -> np.ndarray:
    """Protein counts with a background component (totalVI-like).

    Each cell-protein count is NB around ``background * scale`` with a probability that
    falls as the protein's signal ``s = W z + c`` rises, otherwise NB around
    ``background * scale * (1 + exp(s))`` (foreground). Background levels carry a
    per-batch multiplicative shift.

    Returns
    -------
    float32 ndarray ``(n_cells, n_proteins)``.
    """
    w = _loadings(rng, z.shape[1], n_proteins, scale=0.5)
    offset = rng.normal(0.5, 0.5, n_proteins).astype(np.float32)
    levels = batch_levels or [(np.arange(n_batches), 1.0)]
    effect, shift = sample_batch_effect(rng, levels, n_proteins, noise)
    signal = effect.apply(z @ w, batch_codes) - shift[batch_codes] + offset
    background = rng.lognormal(np.log(noise.adt_background_mean), 0.5, n_proteins)
    background = background[None, :] * np.exp(shift[batch_codes])
    cell_scale = rng.lognormal(0.0, 0.2, (len(z), 1))
    p_background = 1.0 / (1.0 + np.exp(signal - noise.adt_background_logit))
    is_background = rng.random(signal.shape) < p_background
    mean = background * cell_scale * np.where(is_background, 1.0, 1.0 + np.exp(np.minimum(signal, 5.0)))
    return _negative_binomial(rng, mean, noise.adt_theta)
