"""Benchmark scenarios: real multi-omic data turned into mosaic integration tasks.

A scenario is a dataset from ``shared/data`` plus a rule that hides a modality in chosen batches
(or cells), keeping the hidden counts as ground truth for imputation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np

KIND = {"rna": "rna", "atac": "atac", "adt": "adt"}


@dataclass
class Scenario:
    """A built scenario (unpadded mosaic MuData + hidden ground truth)."""

    name: str
    dataset: str
    mdata: md.MuData  # unpadded mosaic: a cell without a modality is absent from it
    truth: dict[str, ad.AnnData]  # modality -> hidden raw counts (cells that lost it)
    labels_key: str
    batch_key: str = "batch"
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    #: batches whose cells are the labelled source of the label-transfer metric (the paired
    #: batches of the study layout; a paired scenario uses the same batches as its study variant)
    reference_batches: list[str] = field(default_factory=list)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return {
            m: np.asarray(self.mdata.obs_names.isin(self.mdata.mod[m].obs_names)) for m in self.modalities
        }

    @property
    def paired_idx(self) -> np.ndarray:
        """Cells observed in every modality."""
        return np.flatnonzero(np.all(np.stack(list(self.masks.values())), axis=0))

    def hidden_idx(self, modality: str) -> np.ndarray:
        """Positions (in ``mdata``) of the cells whose ``modality`` was hidden."""
        return np.asarray(self.mdata.obs_names.get_indexer(self.truth[modality].obs_names))


# name -> (file stem, labels key, modalities)
DATASETS = {
    "snare": ("mouse_cortex_snareseq_chen2019", "cell_type", ["rna", "atac"]),
    "pbmc_cite_mosaic": ("pbmc_cite_mosaic_hao2021", "celltype", ["rna", "adt"]),
    "bmmc_cite": ("bmmc_cite_neurips2021_starter", "cell_type", ["rna", "adt"]),
    "bmmc_multiome": ("bmmc_multiome_neurips2021_starter", "cell_type", ["rna", "atac"]),
}

#: scenario name -> (dataset, mosaic rule)
SCENARIOS = {
    "snare_mosaic3": ("snare", "mosaic3"),
    "snare_paired": ("snare", "paired"),
    "pbmc_cite_native": ("pbmc_cite_mosaic", "native"),
    "bmmc_cite_mosaic3": ("bmmc_cite", "mosaic3"),
    "bmmc_cite_paired": ("bmmc_cite", "paired"),
    "bmmc_multiome_mosaic3": ("bmmc_multiome", "mosaic3"),
    "bmmc_multiome_paired": ("bmmc_multiome", "paired"),
    # study-confounded: whole batches measured a different set of modalities
    "bmmc_cite_study": ("bmmc_cite", "study:adt"),
    "bmmc_cite_study_rna": ("bmmc_cite", "study:rna"),
    "bmmc_multiome_study": ("bmmc_multiome", "study:atac"),
    "snare_study": ("snare", "study:quarters"),
}

#: scenarios whose batches are confounded with the modalities they measured
STUDY_SCENARIOS = [name for name, (_, rule) in SCENARIOS.items() if rule.startswith("study")]


def study_layout(batches, modalities: list[str], rule: str) -> dict[str, list[str]]:
    """Modalities each batch keeps under a study-confounded ``rule``.

    * ``"study:<modality>"`` (two batches, e.g. the BMMC starters): the first batch (sorted by
      name) stays paired; every cell of every other batch keeps only ``<modality>``.
    * ``"study:quarters"`` (SNARE-seq, 12 libraries): libraries sorted by name, library *i* is
      paired when ``i mod 4`` is 0 or 1, keeps only the first modality when it is 2 and only the
      second when it is 3 (half paired, a quarter each single-modality).

    Parameters
    ----------
    batches
        Batch names.
    modalities
        The dataset's modalities, in order.
    rule
        ``"study:<modality>"`` or ``"study:quarters"``.

    Returns
    -------
    dict
        ``{batch: [modalities it keeps]}``.
    """
    batches = sorted(str(b) for b in batches)
    kind = rule.split(":", 1)[1]
    if kind == "quarters":
        if len(batches) < 4:
            raise ValueError(f"rule {rule!r} needs at least 4 batches, got {len(batches)}.")
        keep = [list(modalities), list(modalities), [modalities[0]], [modalities[1]]]
        return {b: keep[i % 4] for i, b in enumerate(batches)}
    if kind not in modalities:
        raise ValueError(f"rule {rule!r}: {kind!r} is not one of the modalities {modalities}.")
    return {b: (list(modalities) if i == 0 else [kind]) for i, b in enumerate(batches)}


def reference_batches(batches, modalities: list[str], rule: str) -> list[str]:
    """Source batches of the label-transfer metric: the paired batches of the study layout.

    Paired scenarios use the batches their study variant keeps paired (so ``bmmc_cite_paired`` and
    ``bmmc_cite_study`` transfer from the same cells to the same cells); ``mosaic3`` and ``native``
    use their paired batches.
    """
    dataset_rule = "study:quarters" if len(set(batches)) >= 4 else f"study:{modalities[-1]}"
    layout = study_layout(batches, modalities, dataset_rule)
    return [b for b, keep in layout.items() if len(keep) == len(modalities)]


def _hide_modality_fallback(mdata: md.MuData, modality: str, cells: np.ndarray):
    """Drop ``cells`` (obs names) from ``mdata[modality]``; return (mosaic, hidden AnnData)."""
    mod = mdata.mod[modality]
    hide = mod.obs_names.isin(cells)
    truth = mod[hide].copy()
    mods = {k: (v[~hide].copy() if k == modality else v.copy()) for k, v in mdata.mod.items()}
    out = md.MuData(mods)
    out.obs = out.obs.join(mdata.obs[[c for c in mdata.obs.columns if ":" not in c]], how="left")
    return out, truth


def hide_modality(mdata: md.MuData, modality: str, cells: np.ndarray):
    """Use :func:`remadom.datasets.hide_modality` when it exists, else a local equivalent."""
    try:
        from remadom.datasets import hide_modality as _hm  # written by another helper
    except ImportError:
        return _hide_modality_fallback(mdata, modality, cells)
    mosaic, truth = _hm(mdata, modality, cells=np.asarray(cells))
    if isinstance(truth, dict):  # {"modality", "obs_names", "data"}
        truth = truth["data"]
    return mosaic, truth


def _subsample(mdata: md.MuData, n_cells: int | None, seed: int) -> md.MuData:
    if n_cells is None or n_cells >= mdata.n_obs:
        return mdata
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(mdata.n_obs, size=n_cells, replace=False))
    sub = mdata[keep].copy()
    return sub


def _global_obs(mdata: md.MuData, keys: list[str]) -> md.MuData:
    """Make sure ``keys`` are global (not only ``mod:key``) obs columns."""
    for k in keys:
        if k not in mdata.obs.columns:
            for m in mdata.mod:
                col = f"{m}:{k}"
                if col in mdata.obs.columns:
                    mdata.obs[k] = (
                        mdata.obs[k].combine_first(mdata.obs[col]) if k in mdata.obs else mdata.obs[col]
                    )
    return mdata


def build_scenario(name: str, data_dir: str | Path, n_cells: int | None = None, seed: int = 0) -> Scenario:
    """Build scenario ``name`` (see :data:`SCENARIOS`).

    Mosaic rules:

    * ``paired``: nothing hidden.
    * ``native``: the file is already a mosaic; nothing hidden, so no imputation ground truth.
    * ``mosaic3`` with >= 3 batches (SNARE-seq, 12 libraries): batches sorted by name are dealt in
      turn to paired / first-modality-only / second-modality-only (batch i -> i mod 3).
    * ``mosaic3`` with 2 batches (BMMC starters): the first batch stays paired; the cells of the
      second batch are split at random in two halves, one keeping only RNA, the other only the
      second modality (ADT or ATAC).
    * ``study:<modality>`` / ``study:quarters``: whole batches lose modalities, so batch is
      confounded with the set of measured modalities (see :func:`study_layout`).
    """
    dataset, rule = SCENARIOS[name]
    stem, labels_key, mods = DATASETS[dataset]
    path = Path(data_dir) / f"{stem}.h5mu"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --data-dir pointing at shared/data.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.read_h5mu(path)
        mdata = _subsample(mdata, n_cells, seed)
        mdata = _global_obs(mdata, ["batch", labels_key])
    truth: dict[str, ad.AnnData] = {}
    a, b = mods
    desc = rule
    if rule == "mosaic3":
        batches = np.asarray(sorted(mdata.obs["batch"].astype(str).unique()))
        bvals = mdata.obs["batch"].astype(str).to_numpy()
        if batches.size >= 3:
            only_a = mdata.obs_names[np.isin(bvals, batches[1::3])]
            only_b = mdata.obs_names[np.isin(bvals, batches[2::3])]
            desc = f"batches {batches[0::3].tolist()} paired, {batches[1::3].tolist()} {a}-only, {batches[2::3].tolist()} {b}-only"
        else:
            rng = np.random.default_rng(seed)
            second = mdata.obs_names[bvals == batches[-1]].to_numpy()
            second = second[rng.permutation(second.size)]
            only_a, only_b = second[: second.size // 2], second[second.size // 2 :]
            desc = f"batch {batches[0]} paired; batch {batches[-1]} split at random: half {a}-only, half {b}-only"
        mdata, truth[b] = hide_modality(mdata, b, np.asarray(only_a))
        mdata, truth[a] = hide_modality(mdata, a, np.asarray(only_b))
    elif rule.startswith("study"):
        bvals = mdata.obs["batch"].astype(str).to_numpy()
        layout = study_layout(np.unique(bvals), mods, rule)
        parts = []
        for m in mods:
            lose = [b for b, keep in layout.items() if m not in keep]
            if lose:
                mdata, truth[m] = hide_modality(mdata, m, np.asarray(mdata.obs_names[np.isin(bvals, lose)]))
                bvals = mdata.obs["batch"].astype(str).to_numpy()
        for b, keep in layout.items():
            parts.append(f"{b} {'+'.join(keep)}")
        desc = "study-confounded: " + ", ".join(parts)
    elif rule not in ("paired", "native"):
        raise ValueError(f"Unknown mosaic rule {rule!r}.")
    mdata = _global_obs(mdata, ["batch", labels_key])
    mdata.obs["batch"] = mdata.obs["batch"].astype(str).astype("category")
    batches = mdata.obs["batch"].astype(str).unique()
    if rule == "native" or rule == "mosaic3":
        masks = np.stack([mdata.obs_names.isin(mdata.mod[m].obs_names) for m in mods])
        bvals = mdata.obs["batch"].astype(str).to_numpy()
        ref = sorted(b for b in batches if masks[:, bvals == b].all())
    else:
        ref = reference_batches(batches, mods, rule)
    return Scenario(
        name=name,
        dataset=stem,
        mdata=mdata,
        truth=truth,
        labels_key=labels_key,
        description=desc,
        modalities=mods,
        reference_batches=ref,
    )


def padded_mudata(scn: Scenario) -> md.MuData:
    """Zero-padded copy (every modality holds every cell), the layout MULTIVI/TOTALVI expect.

    Also copies ``batch`` (and the labels) into every modality's ``obs``.
    """
    from scipy import sparse

    obs_names = scn.mdata.obs_names
    mods = {}
    for m in scn.modalities:
        src = scn.mdata.mod[m]
        pos = obs_names.get_indexer(src.obs_names)
        # scatter the observed rows into an all-zero matrix over every cell
        perm = sparse.csr_matrix(
            (np.ones(len(pos), dtype=np.float32), (pos, np.arange(len(pos)))),
            shape=(len(obs_names), len(pos)),
        )
        x = (perm @ sparse.csr_matrix(src.X, dtype=np.float32)).tocsr()
        a = ad.AnnData(X=x, obs=scn.mdata.obs[[scn.batch_key, scn.labels_key]].copy(), var=src.var[[]].copy())
        mods[m] = a
    out = md.MuData(mods)
    out.obs = out.obs.join(scn.mdata.obs[[scn.batch_key, scn.labels_key]], how="left")
    return out


# --- feature-level missingness (issue #11) -------------------------------------------------------


@dataclass
class FeatureMaskScenario:
    """Batches that measured different features of one modality, with the hidden entries kept.

    ``mdata`` is the outer join written by :func:`remadom.data.concat_mosaic` (unmeasured entries
    are zeros; ``mdata.mod[modality].varm["remadom_measured"]`` says which were measured);
    ``full`` is the same cells with every feature measured (ground truth and full-panel reference).
    ``hidden[batch]`` lists the features of ``modality`` that batch did not measure.
    """

    name: str
    mdata: md.MuData
    full: md.MuData
    modality: str
    hidden: dict[str, np.ndarray]
    labels_key: str
    batch_key: str = "batch"
    description: str = ""


def _read(stem: str, data_dir, n_cells, seed, labels_key) -> md.MuData:
    path = Path(data_dir) / f"{stem}.h5mu"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --data-dir pointing at shared/data.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = _subsample(md.read_h5mu(path), n_cells, seed)
        mdata = _global_obs(mdata, ["batch", labels_key])
    mdata.obs["batch"] = mdata.obs["batch"].astype(str)
    return mdata


def _split_features(mdata, modality, groups: dict[str, np.ndarray], features: dict[str, np.ndarray],
                    labels_key: str):
    """One MuData per group of batches, ``modality`` cut to that group's features; concat_mosaic."""
    from remadom.data import concat_mosaic

    parts = {}
    for group, batches in groups.items():
        cells = mdata.obs_names[mdata.obs["batch"].isin(batches).to_numpy()]
        mods = {}
        for m, sub in mdata.mod.items():
            sub = sub[sub.obs_names.isin(cells)]
            if m == modality:
                sub = sub[:, sub.var_names.isin(features[group])]
            mods[m] = ad.AnnData(X=sub.X.copy(), obs=sub.obs[[]].copy(), var=sub.var[[]].copy())
        part = md.MuData(mods)
        part.obs = part.obs.join(mdata.obs[["batch", labels_key]], how="left")
        parts[group] = part
    joined = concat_mosaic(parts, batch_key="batch")
    joined.obs[labels_key] = mdata.obs.loc[joined.obs_names, labels_key].to_numpy()
    # the full-panel reference, same cells and feature order as the joined data
    full_mods = {m: mdata.mod[m][joined.mod[m].obs_names, joined.mod[m].var_names].copy() for m in mdata.mod}
    full_mods = {m: ad.AnnData(X=a.X, obs=a.obs[[]], var=a.var[[]]) for m, a in full_mods.items()}
    full = md.MuData(full_mods)
    full.obs = full.obs.join(joined.obs[["batch", labels_key]], how="left")
    measured = joined.mod[modality].varm["remadom_measured"]
    hidden = {b: np.asarray(measured.index[~measured[b].to_numpy()]) for b in measured.columns}
    return joined, full, hidden


def build_feature_mask_scenario(name: str, data_dir, n_cells: int | None = None, seed: int = 0):
    """``bmmc_cite_panels`` or ``snare_peaksets`` (see ``benchmarks/results_feature_masks.md``).

    * ``bmmc_cite_panels``: the 134 proteins are dealt at random into 46 shared + 44 + 44; batch
      s1d1 measures shared + first 44 (90 proteins), s1d2 shared + second 44 (90).
    * ``snare_peaksets``: the 12 libraries (sorted) are split in two halves of 6; each half measures
      its own random 70 % of the peaks (peaks measured by neither half are dropped by the join).
    """
    rng = np.random.default_rng(seed)
    if name == "bmmc_cite_panels":
        labels_key = "cell_type"
        mdata = _read("bmmc_cite_neurips2021_starter", data_dir, n_cells, seed, labels_key)
        proteins = np.asarray(mdata.mod["adt"].var_names)[rng.permutation(mdata.mod["adt"].n_vars)]
        shared, a_only, b_only = proteins[:46], proteins[46:90], proteins[90:]
        batches = sorted(mdata.obs["batch"].unique())
        groups = {batches[0]: [batches[0]], batches[1]: [batches[1]]}
        features = {batches[0]: np.r_[shared, a_only], batches[1]: np.r_[shared, b_only]}
        modality, desc = "adt", f"{batches[0]} measures 90 proteins, {batches[1]} another 90 (46 shared)"
    elif name == "snare_peaksets":
        labels_key = "cell_type"
        mdata = _read("mouse_cortex_snareseq_chen2019", data_dir, n_cells, seed, labels_key)
        batches = sorted(mdata.obs["batch"].unique())
        half = len(batches) // 2
        groups = {"half1": batches[:half], "half2": batches[half:]}
        peaks = np.asarray(mdata.mod["atac"].var_names)
        n_keep = int(round(0.7 * peaks.size))
        features = {g: peaks[rng.choice(peaks.size, n_keep, replace=False)] for g in groups}
        modality, desc = "atac", "two halves of the 12 libraries, each measuring its own random 70% of the peaks"
    else:
        raise ValueError(f"Unknown feature-mask scenario {name!r}; use 'bmmc_cite_panels' or 'snare_peaksets'.")
    joined, full, hidden = _split_features(mdata, modality, groups, features, labels_key)
    return FeatureMaskScenario(name, joined, full, modality, hidden, labels_key, description=desc)
