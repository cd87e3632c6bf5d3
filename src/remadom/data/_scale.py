"""Atlas-sized synthetic mosaic data, streamed to an ``.h5ad`` file chunk by chunk.

:func:`write_scale_dataset` draws the generative parameters of the mock generator
(:mod:`remadom.data._mock_synth`: Gaussian latent clusters, sparse loadings, hierarchical
batch effects, NB RNA, Bernoulli ATAC, background/foreground ADT) once, then simulates
``chunk_cells`` cells at a time and appends them to the file's CSR groups. Nothing the size
of the whole dataset is ever held in memory except the per-cell ``obs`` columns: peak memory
is ``O(chunk_cells x n_features)`` for RNA/ADT and ``O(_ATAC_ROWS x n_peaks)`` for ATAC, plus
one chunk's CSR arrays.

Each batch measures one set of modalities (a mosaic): by default batch ``b`` has
``MOSAIC_LAYOUT[b % 4]`` = RNA+ATAC, RNA+ADT, RNA only, ATAC only. A modality a cell lacks is
an empty row, and ``obs["has_<modality>"]`` is False there (the explicit mask REMADOM reads).

The file is a standard AnnData ``.h5ad``: RNA counts in ``X`` (CSR), ATAC in
``obsm["X_atac"]`` (CSR of ones), ADT in ``obsm["X_adt"]`` (dense), protein names in
``uns["adt_names"]``; it opens with :func:`anndata.read_h5ad`, also ``backed="r"``.

Command line::

    python -m remadom.data._scale --n-cells 100000 --n-peaks 100000 --out scale_100k.h5ad
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import write_elem

from ._mock_synth import NoiseConfig, _loadings, _negative_binomial, sample_batch_effect

__all__ = ["MOSAIC_LAYOUT", "ScaleConfig", "write_scale_dataset", "main"]

#: Modalities measured by batch ``b``: ``MOSAIC_LAYOUT[b % len(MOSAIC_LAYOUT)]``.
MOSAIC_LAYOUT: tuple[tuple[str, ...], ...] = (("rna", "atac"), ("rna", "adt"), ("rna",), ("atac",))
#: Cells per ATAC sub-chunk (``_ATAC_ROWS x n_peaks`` float32 temporaries: 40 MB at 100k peaks).
_ATAC_ROWS = 100
_MODALITIES = ("rna", "atac", "adt")
#: HDF5 chunk length (elements) of the CSR ``data`` / ``indices`` arrays. Reading a row of a
#: chunked dataset reads its whole chunks: small chunks keep random-row minibatch reads cheap
#: (256 random ATAC rows at 100k peaks: 0.21 s with 65,536-element chunks, 0.07 s with 4,096).
_H5_CHUNK = 1 << 12


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes of a scale dataset (defaults: the issue's atlas shape, 2k genes / 100k peaks / 100 ADT).

    Parameters
    ----------
    n_cells, n_genes, n_peaks, n_proteins
        Data shape. A modality with 0 features is left out.
    n_batches
        Number of batches; batch ``b`` measures ``layout[b % len(layout)]``.
    n_clusters, n_latent
        Ground-truth cell types and latent dimension.
    chunk_cells
        Cells simulated and written per chunk.
    seed
        Seed of everything (the parameters and every chunk).
    layout
        Modalities per batch (see :data:`MOSAIC_LAYOUT`).
    noise
        Effect sizes (see :class:`~remadom.data._mock_synth.NoiseConfig`); ``atac_open_fraction``
        sets the peak density (3 % by default).
    """

    n_cells: int = 10_000
    n_genes: int = 2_000
    n_peaks: int = 100_000
    n_proteins: int = 100
    n_batches: int = 4
    n_clusters: int = 12
    n_latent: int = 10
    chunk_cells: int = 4_096
    seed: int = 0
    layout: tuple[tuple[str, ...], ...] = MOSAIC_LAYOUT
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def n_features(self, modality: str) -> int:
        """Number of features of ``modality``."""
        return {"rna": self.n_genes, "atac": self.n_peaks, "adt": self.n_proteins}[modality]


class _Parameters:
    """Generative parameters drawn once and shared by every chunk."""

    def __init__(self, cfg: ScaleConfig, rng: np.random.Generator):
        noise, n_latent = cfg.noise, cfg.n_latent
        self.centres = rng.normal(0.0, noise.cluster_separation, (cfg.n_clusters, n_latent))
        batches = [(np.arange(cfg.n_batches), 1.0)]
        self.w_rna = _loadings(rng, n_latent, cfg.n_genes)
        self.base_rna = rng.normal(0.0, 1.0, cfg.n_genes).astype(np.float32)
        self.fx_rna, _ = sample_batch_effect(rng, batches, cfg.n_genes, noise)
        self.w_atac = _loadings(rng, n_latent, cfg.n_peaks, scale=noise.atac_signal)
        base = np.log(noise.atac_open_fraction / (1.0 - noise.atac_open_fraction))
        self.base_atac = rng.normal(base - 0.5, 1.0, cfg.n_peaks).astype(np.float32)
        self.fx_atac, _ = sample_batch_effect(rng, batches, cfg.n_peaks, noise)
        self.base_atac += self._calibrate_open_fraction(rng, cfg)
        self.w_adt = _loadings(rng, n_latent, cfg.n_proteins, scale=0.5)
        self.offset_adt = rng.normal(0.5, 0.5, cfg.n_proteins).astype(np.float32)
        self.fx_adt, self.shift_adt = sample_batch_effect(rng, batches, cfg.n_proteins, noise)
        self.background_adt = rng.lognormal(np.log(noise.adt_background_mean), 0.5, cfg.n_proteins)

    def _calibrate_open_fraction(self, rng, cfg: ScaleConfig, n_pilot: int = 256) -> float:
        """Logit shift that makes the mean open fraction of pilot cells ``noise.atac_open_fraction``.

        The latent signal adds logit variance, which raises the mean of the sigmoid above the
        baseline's; a bisection on one global shift over pilot cells puts the density back on target.
        """
        if cfg.n_peaks == 0:
            return 0.0
        cluster = rng.integers(0, cfg.n_clusters, n_pilot)
        z = self.centres[cluster] + rng.normal(0.0, cfg.noise.within_cluster_sd, (n_pilot, cfg.n_latent))
        b = rng.integers(0, cfg.n_batches, n_pilot)
        cols = rng.choice(cfg.n_peaks, min(cfg.n_peaks, 5000), replace=False)
        logits = ((z @ self.w_atac[:, cols]) * self.fx_atac.scale[b][:, cols] + self.base_atac[cols]
                  + self.fx_atac.shift[b][:, cols])
        lo, hi = -20.0, 20.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if np.mean(1.0 / (1.0 + np.exp(-(logits + mid)))) > cfg.noise.atac_open_fraction:
                hi = mid
            else:
                lo = mid
        return np.float32(0.5 * (lo + hi))


def _rna(rng, p: _Parameters, z, batch, cfg) -> np.ndarray:
    eta = p.fx_rna.apply(z @ p.w_rna, batch) + p.base_rna
    eta -= eta.max(axis=1, keepdims=True)
    rho = np.exp(eta)
    rho /= rho.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(cfg.noise.rna_library_mean), cfg.noise.rna_library_sd, (len(z), 1))
    return _negative_binomial(rng, library * rho, cfg.noise.rna_theta)


def _atac(rng, p: _Parameters, z, batch, cfg) -> sp.csr_matrix:
    """Bernoulli peaks, ``_ATAC_ROWS`` cells at a time, thresholded straight into CSR."""
    depth = rng.normal(0.0, cfg.noise.atac_depth_sd, len(z)).astype(np.float32)
    parts = []
    for start in range(0, len(z), _ATAC_ROWS):
        rows = slice(start, start + _ATAC_ROWS)
        b = batch[rows]
        logits = (z[rows] @ p.w_atac) * p.fx_atac.scale[b]
        logits += p.base_atac
        logits += p.fx_atac.shift[b]
        logits += depth[rows, None]
        # u < sigmoid(l)  <=>  u * (1 + exp(-l)) < 1 (as in the mock generator)
        np.maximum(logits, -30.0, out=logits)
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += 1.0
        logits *= rng.random(logits.shape, dtype=np.float32)
        parts.append(sp.csr_matrix(logits < 1.0, dtype=np.float32))
    return sp.vstack(parts, format="csr")


def _adt(rng, p: _Parameters, z, batch, cfg) -> np.ndarray:
    shift = p.shift_adt[batch]
    signal = p.fx_adt.apply(z @ p.w_adt, batch) - shift + p.offset_adt
    background = p.background_adt[None, :] * np.exp(shift)
    cell_scale = rng.lognormal(0.0, 0.2, (len(z), 1))
    p_background = 1.0 / (1.0 + np.exp(signal - cfg.noise.adt_background_logit))
    is_background = rng.random(signal.shape) < p_background
    mean = background * cell_scale * np.where(is_background, 1.0, 1.0 + np.exp(np.minimum(signal, 5.0)))
    return _negative_binomial(rng, mean, cfg.noise.adt_theta)


_SIMULATORS = {"rna": _rna, "atac": _atac, "adt": _adt}


class _CSRAppender:
    """An AnnData CSR group (``encoding-type: csr_matrix``) grown row block by row block."""

    def __init__(self, group: h5py.Group, n_cols: int):
        self.group, self.n_cols, self.n_rows = group, n_cols, 0
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        opts = {"maxshape": (None,), "chunks": (_H5_CHUNK,)}
        group.create_dataset("data", shape=(0,), dtype=np.float32, **opts)
        group.create_dataset("indices", shape=(0,), dtype=np.int64, **opts)
        group.create_dataset("indptr", data=np.zeros(1, dtype=np.int64), **opts)

    def append(self, block: sp.csr_matrix) -> None:
        block = sp.csr_matrix(block, dtype=np.float32)
        block.sort_indices()
        nnz0 = self.group["data"].shape[0]
        for name, values in (("data", block.data), ("indices", block.indices)):
            ds = self.group[name]
            ds.resize((nnz0 + len(values),))
            ds[nnz0:] = values
        indptr = self.group["indptr"]
        indptr.resize((indptr.shape[0] + block.shape[0],))
        indptr[-block.shape[0]:] = nnz0 + block.indptr[1:].astype(np.int64)
        self.n_rows += block.shape[0]

    def close(self) -> None:
        self.group.attrs["shape"] = (self.n_rows, self.n_cols)


def _hide(block, keep: np.ndarray):
    """Zero (drop) the rows of the chunk that lack the modality."""
    if sp.issparse(block):
        block = sp.diags(keep.astype(np.float32)) @ block
        block.eliminate_zeros()
        return block
    return np.where(keep[:, None], block, 0.0).astype(np.float32)


def write_scale_dataset(path: str | Path, config: ScaleConfig | None = None, verbose: bool = False, **kwargs) -> Path:
    """Simulate a mosaic dataset and stream it to ``path`` (``.h5ad``), one chunk of cells at a time.

    Parameters
    ----------
    path
        Output ``.h5ad`` file (overwritten).
    config
        Sizes; keyword arguments override its fields (e.g. ``n_cells=1_000_000``).
    verbose
        Print progress per chunk.

    Returns
    -------
    The written path. Set the data up with
    ``REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")``.
    """
    cfg = ScaleConfig(**{**(config.__dict__ if config else {}), **kwargs})
    path = Path(path)
    mods = [m for m in _MODALITIES if cfg.n_features(m) > 0]
    rng = np.random.default_rng(cfg.seed)
    params = _Parameters(cfg, rng)
    batch = rng.integers(0, cfg.n_batches, cfg.n_cells)
    cluster = rng.integers(0, cfg.n_clusters, cfg.n_cells)
    has = {m: np.array([m in cfg.layout[b % len(cfg.layout)] for b in range(cfg.n_batches)])[batch] for m in mods}
    seeds = rng.integers(0, 2**63, (cfg.n_cells + cfg.chunk_cells - 1) // cfg.chunk_cells)
    start_time = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        obsm = f.create_group("obsm")
        obsm.attrs["encoding-type"], obsm.attrs["encoding-version"] = "dict", "0.1.0"
        sinks = {}
        if "rna" in mods:
            sinks["rna"] = _CSRAppender(f.create_group("X"), cfg.n_genes)
        if "atac" in mods:
            sinks["atac"] = _CSRAppender(obsm.create_group("X_atac"), cfg.n_peaks)
        if "adt" in mods:
            adt = obsm.create_dataset("X_adt", shape=(cfg.n_cells, cfg.n_proteins), dtype=np.float32,
                                      chunks=(min(cfg.chunk_cells, cfg.n_cells), cfg.n_proteins))
            adt.attrs["encoding-type"], adt.attrs["encoding-version"] = "array", "0.2.0"
        for i, start in enumerate(range(0, cfg.n_cells, cfg.chunk_cells)):
            rows = slice(start, min(start + cfg.chunk_cells, cfg.n_cells))
            chunk_rng = np.random.default_rng(seeds[i])
            b = batch[rows]
            z = (params.centres[cluster[rows]]
                 + chunk_rng.normal(0.0, cfg.noise.within_cluster_sd, (len(b), cfg.n_latent))).astype(np.float32)
            for m in mods:
                keep = has[m][rows]
                block = np.zeros((len(b), cfg.n_features(m)), np.float32)
                if keep.any():
                    block = _SIMULATORS[m](chunk_rng, params, z, b, cfg)
                    block = _hide(block, keep)
                if m == "adt":
                    adt[rows] = block
                else:
                    sinks[m].append(sp.csr_matrix(block))
            if verbose:
                print(f"{rows.stop:>10,d} / {cfg.n_cells:,d} cells  {time.perf_counter() - start_time:7.1f} s", flush=True)
        for sink in sinks.values():
            sink.close()
        if "rna" not in mods:  # AnnData needs an X: an empty one
            write_elem(f, "X", sp.csr_matrix((cfg.n_cells, 0), dtype=np.float32))
        obs = pd.DataFrame(
            {"batch": pd.Categorical.from_codes(batch, [f"batch{k}" for k in range(cfg.n_batches)]),
             "cluster": pd.Categorical.from_codes(cluster, [f"C{k}" for k in range(cfg.n_clusters)]),
             **{f"has_{m}": has[m] for m in mods}},
            index=pd.Index([f"cell_{i:07d}" for i in range(cfg.n_cells)]),
        )
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(index=[f"gene_{i:05d}" for i in range(cfg.n_genes if "rna" in mods else 0)]))
        write_elem(f, "uns", {"adt_names": np.array([f"prot_{i:03d}" for i in range(cfg.n_proteins)], dtype=object)}
                   if "adt" in mods else {})
        for key in ("layers", "obsp", "varm", "varp"):
            write_elem(f, key, {})
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m remadom.data._scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output .h5ad")
    defaults = ScaleConfig()
    for name in ("n_cells", "n_genes", "n_peaks", "n_proteins", "n_batches", "n_clusters", "chunk_cells", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    args = vars(_parser().parse_args(argv))
    out, quiet = args.pop("out"), args.pop("quiet")
    write_scale_dataset(out, verbose=not quiet, **args)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
