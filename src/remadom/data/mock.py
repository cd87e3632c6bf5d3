"""Mock mosaic multi-omic data (RNA, ATAC, ADT) from one shared latent space.

:func:`generate_mock_dataset` draws a latent ``z`` per cell from Gaussian clusters,
synthesizes every modality of a scenario from it (RNA: Negative Binomial, ATAC:
Bernoulli peaks, sparse; ADT: Negative Binomial with a background component), adds
batch effects, and hides modalities according to the scenario:

============== ===============================================================
problem_type   layout
============== ===============================================================
paired         RNA+ADT for every cell (CITE-seq-like), two batches
unpaired       disjoint RNA-only and ATAC-only cohorts
bridge         RNA-only and ATAC-only cohorts plus ~5% paired RNA+ATAC cells
mosaic         each cell keeps a random non-empty subset of RNA/ATAC/ADT
prediction     ``split == "train"``: RNA+ATAC; ``split == "eval"``: RNA only
hierarchical   studies A (RNA+ATAC), B (RNA+ADT), C (ATAC), two batches each
============== ===============================================================

:func:`write_mock` writes a scenario to ``.h5ad`` (or ``.h5mu``) with an optional
example config; :func:`main` is the command line behind
``scripts/make_mock_multimodal.py``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._mock_scenarios import DEFAULT_FILENAMES, SCENARIOS, Layout, ScenarioOptions, make_layout
from ._mock_synth import NoiseConfig, sample_latent, simulate_adt, simulate_atac, simulate_rna

__all__ = [
    "PROBLEM_TYPES",
    "DEFAULT_FILENAMES",
    "NoiseConfig",
    "MockFiles",
    "generate_mock_dataset",
    "mock_config_yaml",
    "write_mock",
    "main",
]

#: Supported ``problem_type`` values.
PROBLEM_TYPES = tuple(SCENARIOS)

RNA_LAYER = "counts"
ATAC_OBSM_KEY = "X_atac"
ADT_OBSM_KEY = "X_adt"
BATCH_KEY = "batch"
LABELS_KEY = "cluster"
_NOISE_FIELDS = {f.name for f in fields(NoiseConfig)}


def _hide_rows(matrix, mask: np.ndarray):
    """Zero the rows where ``mask`` is False (sparse stays sparse, explicit zeros dropped)."""
    if sp.issparse(matrix):
        out = sp.csr_matrix(sp.diags(mask.astype(np.float32)) @ matrix, dtype=np.float32)
        out.eliminate_zeros()
        out.sort_indices()
        return out
    return np.where(mask[:, None], matrix, 0.0).astype(np.float32)


def _simulate(layout: Layout, n_cells, n_genes, n_peaks, n_proteins, n_clusters, n_latent, noise, seeds):
    """Latent backbone and the full (unmasked) modalities of ``layout``."""
    z, cluster, centres = sample_latent(np.random.default_rng(seeds[0]), n_cells, n_clusters, n_latent, noise)
    batch_cat = pd.Categorical(layout.batch)
    codes = batch_cat.codes.astype(np.int64)
    n_batches = len(batch_cat.categories)
    levels = None
    if layout.dataset_strength > 0:
        # dataset of each batch (batches are nested in datasets)
        dataset_codes = pd.Categorical(layout.dataset).codes
        dataset_of_batch = np.zeros(n_batches, dtype=np.int64)
        dataset_of_batch[codes] = dataset_codes
        levels = [(dataset_of_batch, layout.dataset_strength), (np.arange(n_batches), 1.0)]
    simulators = {
        "rna": (simulate_rna, n_genes, seeds[1]),
        "atac": (simulate_atac, n_peaks, seeds[2]),
        "adt": (simulate_adt, n_proteins, seeds[3]),
    }
    full = {}
    for mod in layout.modalities:
        simulate, n_features, seed = simulators[mod]
        full[mod] = simulate(np.random.default_rng(seed), z, codes, n_batches, n_features, noise, levels)
    return z, cluster, centres, full


def _build_anndata(layout, full, cluster, n_clusters, obs_names, masks) -> AnnData:
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(layout.batch),
            "dataset": pd.Categorical(layout.dataset),
            "cluster": pd.Categorical.from_codes(cluster, [f"C{k}" for k in range(n_clusters)]),
            "split": pd.Categorical(layout.split, categories=["train", "eval"]),
        },
        index=obs_names,
    )
    for mod in layout.modalities:
        obs[f"has_{mod}"] = masks[mod]
    n_genes = full["rna"].shape[1] if "rna" in full else 0
    rna = _hide_rows(full["rna"], masks["rna"]) if "rna" in full else sp.csr_matrix((len(obs), 0), dtype=np.float32)
    adata = AnnData(X=rna, obs=obs, var=pd.DataFrame(index=[f"gene_{i:05d}" for i in range(n_genes)]))
    if "rna" in full:
        adata.layers[RNA_LAYER] = rna.copy()
    if "atac" in full:
        adata.obsm[ATAC_OBSM_KEY] = _hide_rows(full["atac"], masks["atac"])
    if "adt" in full:
        adata.obsm[ADT_OBSM_KEY] = _hide_rows(full["adt"], masks["adt"])
        adata.uns["adt_names"] = np.array([f"prot_{i:03d}" for i in range(full["adt"].shape[1])], dtype=object)
    return adata


def _to_mudata(adata: AnnData, modalities: tuple[str, ...]):
    """Unpadded MuData equivalent of a mock AnnData (a cell absent from a modality = missing)."""
    import mudata as md

    mods = {}
    for mod in modalities:
        keep = adata.obs[f"has_{mod}"].to_numpy()
        names = adata.obs_names[keep]
        if mod == "rna":
            x, var = adata.layers[RNA_LAYER][keep], adata.var.copy()
        elif mod == "atac":
            x = adata.obsm[ATAC_OBSM_KEY][keep]
            var = pd.DataFrame(index=[f"peak_{i:06d}" for i in range(x.shape[1])])
        else:
            x = sp.csr_matrix(adata.obsm[ADT_OBSM_KEY][keep])
            var = pd.DataFrame(index=np.asarray(adata.uns["adt_names"], dtype=str))
        mods[mod] = AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=pd.DataFrame(index=names), var=var)
    mdata = md.MuData(mods)  # obs_names: union of the modalities' cells, in mudata's order
    for col in ("batch", "dataset", "cluster", "split"):
        mdata.obs[col] = adata.obs.loc[mdata.obs_names, col].to_numpy()
        mdata.obs[col] = mdata.obs[col].astype(adata.obs[col].dtype)
    return mdata


def generate_mock_dataset(
    problem_type: str,
    *,
    n_cells: int = 600,
    n_genes: int = 2000,
    n_peaks: int = 60000,
    n_proteins: int = 30,
    n_clusters: int = 4,
    n_latent: int = 8,
    seed: int = 0,
    return_mudata: bool = False,
    return_truth: bool = False,
    coverage: tuple[float, float, float] = (0.6, 0.5, 0.4),
    bridge_fraction: float = 0.05,
    eval_fraction: float = 0.3,
    n_batches: int = 2,
    **noise: float,
) -> tuple:
    """Simulate a mosaic multi-omic scenario from one shared latent space.

    Parameters
    ----------
    problem_type
        One of ``"paired"``, ``"unpaired"``, ``"bridge"``, ``"mosaic"``, ``"prediction"``,
        ``"hierarchical"`` (see the module docstring for the layouts).
    n_cells, n_genes, n_peaks, n_proteins
        Sizes. Only the modalities the scenario uses are simulated.
    n_clusters
        Number of Gaussian clusters in latent space (cell labels ``obs["cluster"]``).
    n_latent
        Dimension of the true latent space.
    seed
        Seed; the same seed gives identical data. Each modality draws from its own
        child stream, so e.g. changing ``n_peaks`` leaves RNA unchanged.
    return_mudata
        Return an unpadded mosaic :class:`~mudata.MuData` instead of the padded AnnData.
    return_truth
        Also return the ground truth (see Returns).
    coverage
        ``mosaic`` only: probability that a cell keeps RNA, ATAC, ADT. A cell left with
        none keeps one, drawn in proportion to ``coverage``.
    bridge_fraction
        ``bridge`` only: fraction of paired RNA+ATAC bridge cells.
    eval_fraction
        ``prediction`` only: fraction of cells in the RNA-only ``"eval"`` split.
    n_batches
        ``paired``, ``mosaic``, ``prediction``: number of batches.
    **noise
        Fields of :class:`~remadom.data._mock_synth.NoiseConfig` (e.g. ``batch_shift``,
        ``batch_scale``, ``rna_theta``, ``atac_open_fraction``, ``adt_background_logit``).

    Returns
    -------
    ``(data, keys)``, or ``(data, keys, truth)`` with ``return_truth=True``.

    ``data`` (AnnData): ``X`` and ``layers["counts"]`` hold RNA counts (CSR float32);
    ``obsm["X_atac"]`` binary peaks (CSR float32); ``obsm["X_adt"]`` protein counts
    (float32 ndarray) with names in ``uns["adt_names"]``; ``obs`` has categorical
    ``batch``, ``dataset``, ``cluster``, ``split`` and bool ``has_<modality>`` masks.
    Only the scenario's modalities are present; hidden entries are zero.

    ``data`` (MuData): modalities ``"rna"``, ``"atac"``, ``"adt"`` each holding only the
    cells that have it (raw counts in ``X``); ``mdata.obs`` has ``batch``, ``dataset``,
    ``cluster``, ``split``. Cell names match the AnnData's, but ``mdata.obs_names`` is
    the union in mudata's order: align by name, not by position.

    ``keys``: keyword arguments of :meth:`REMADOM.setup_anndata` (``rna_layer``,
    ``atac_obsm_key``, ``adt_obsm_key``, ``use_rna``, ``mask_keys``, ``batch_key``,
    ``labels_key``) or of :meth:`REMADOM.setup_mudata` (``modalities``, ``batch_key``,
    ``labels_key``), so ``REMADOM.setup_anndata(adata, **keys)`` works.

    ``truth``: dict with ``"z"`` (true latent, ``(n_cells, n_latent)``), ``"cluster"``
    (int codes), ``"centres"``, ``"masks"`` (DataFrame of the masks) and, per modality,
    the full unmasked matrix (``"rna"``, ``"atac"``, ``"adt"``), rows in ``obs_names``
    order.

    Examples
    --------
    >>> adata, keys = generate_mock_dataset("mosaic", n_cells=100, n_genes=50, n_peaks=200)
    >>> sorted(keys["mask_keys"])
    ['adt', 'atac', 'rna']
    """
    unknown = set(noise) - _NOISE_FIELDS
    if unknown:
        raise TypeError(f"Unknown noise knobs {sorted(unknown)}; valid: {sorted(_NOISE_FIELDS)}.")
    if min(n_cells, n_clusters, n_latent) < 1 or min(n_genes, n_peaks, n_proteins) < 1:
        raise ValueError("n_cells, n_genes, n_peaks, n_proteins, n_clusters and n_latent must be >= 1.")
    noise_cfg = NoiseConfig(**noise)
    seeds = np.random.SeedSequence(seed).spawn(5)
    opts = ScenarioOptions(tuple(coverage), bridge_fraction, eval_fraction, n_batches)
    layout = make_layout(problem_type, np.random.default_rng(seeds[4]), n_cells, opts)
    z, cluster, centres, full = _simulate(
        layout, n_cells, n_genes, n_peaks, n_proteins, n_clusters, n_latent, noise_cfg, seeds
    )
    obs_names = pd.Index([f"cell_{i:05d}" for i in range(n_cells)])
    masks = {m: np.asarray(layout.masks[m], dtype=bool) for m in layout.modalities}
    adata = _build_anndata(layout, full, cluster, n_clusters, obs_names, masks)

    if return_mudata:
        data = _to_mudata(adata, layout.modalities)
        keys = {"modalities": {m: m for m in layout.modalities}, "batch_key": BATCH_KEY, "labels_key": LABELS_KEY}
    else:
        data = adata
        keys = {
            "rna_layer": RNA_LAYER if "rna" in full else None,
            "atac_obsm_key": ATAC_OBSM_KEY if "atac" in full else None,
            "adt_obsm_key": ADT_OBSM_KEY if "adt" in full else None,
            "use_rna": "rna" in full,
            "mask_keys": {m: f"has_{m}" for m in layout.modalities},
            "batch_key": BATCH_KEY,
            "labels_key": LABELS_KEY,
        }
    if not return_truth:
        return data, keys
    truth = {
        "z": z,
        "cluster": cluster,
        "centres": centres,
        "masks": pd.DataFrame(masks, index=obs_names),
        **full,
    }
    return data, keys, truth


def mock_config_yaml(name: str, data_path: str | Path, keys: dict[str, Any], seed: int = 0,
                     max_epochs: int = 20, batch_size: int = 128, val_split: float = 0.1) -> str:
    """Example REMADOM config (YAML text) for a mock AnnData set up with ``keys``.

    Built as a validated :class:`~remadom.config.RunConfig`; only the values set here are written.

    Parameters
    ----------
    name
        Run name.
    data_path
        Path written to ``data.path``.
    keys
        The AnnData ``keys`` returned by :func:`generate_mock_dataset`.
    seed, max_epochs, batch_size, val_split
        Values of ``seed``, ``optim.max_epochs``, ``optim.batch_size``, ``data.val_split``.
    """
    if "modalities" in keys:
        raise ValueError("Configs describe AnnData inputs; pass the keys of an AnnData mock, not a MuData one.")
    import yaml

    from ..config import RunConfig

    data = {"path": Path(data_path).as_posix()}
    if keys.get("use_rna", True):
        data["rna_layer"] = keys["rna_layer"]
    else:
        data["use_rna"] = False
    for key in ("atac_obsm_key", "adt_obsm_key"):
        if keys.get(key) is not None:
            data[key] = keys[key]
    data.update(mask_keys=dict(keys["mask_keys"]), batch_key=keys["batch_key"], labels_key=keys["labels_key"],
                val_split=val_split)
    config = RunConfig.model_validate({"name": name, "seed": seed, "data": data,
                                       "optim": {"max_epochs": max_epochs, "batch_size": batch_size}})
    return yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True), sort_keys=False)


class MockFiles(NamedTuple):
    """What :func:`write_mock` wrote."""

    data_path: Path
    config_path: Path | None
    keys: dict


def write_mock(problem: str, out: str | Path, config_out: str | Path | None = None, **kwargs) -> MockFiles:
    """Generate a scenario and write it, optionally with an example config.

    Parameters
    ----------
    problem
        Scenario (``problem_type`` of :func:`generate_mock_dataset`).
    out
        Output file: ``.h5ad`` (padded AnnData) or ``.h5mu`` (unpadded MuData), written
        gzip-compressed. Parent folders are created.
    config_out
        Where to write the example YAML config (``.h5ad`` output only); its
        ``data.path`` is ``out`` as given.
    **kwargs
        Passed to :func:`generate_mock_dataset` (``n_cells``, ``seed``, noise knobs...).

    Returns
    -------
    :class:`MockFiles` with the written paths and the setup keys.
    """
    out = Path(out)
    as_mudata = out.suffix == ".h5mu"
    if as_mudata and config_out is not None:
        raise ValueError("config_out needs an .h5ad output; configs describe padded AnnData inputs.")
    if out.suffix not in {".h5ad", ".h5mu"}:
        raise ValueError(f"out must end in .h5ad or .h5mu, got {out.name!r}.")
    kwargs.pop("return_truth", None)
    data, keys = generate_mock_dataset(problem, return_mudata=as_mudata, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if as_mudata:
        data.write_h5mu(out, compression="gzip")
    else:
        data.write_h5ad(out, compression="gzip")
    config_path = None
    if config_out is not None:
        config_path = Path(config_out)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        text = mock_config_yaml(f"mock_{problem}", out, keys, seed=kwargs.get("seed", 0))
        config_path.write_text(text)
    return MockFiles(out, config_path, keys)


def main(argv: list[str] | None = None) -> int:
    """``scripts/make_mock_multimodal.py``: the same command as ``remadom mock`` (same flags and aliases)."""
    import sys

    from ..cli.main import main as cli_main

    return cli_main(["mock", *(sys.argv[1:] if argv is None else argv)])
