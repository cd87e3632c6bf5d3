"""Scenario layouts of the mock generator: which cells keep which modality, and batch labels.

Each scenario function returns a :class:`Layout`; the generator then synthesizes every
modality of ``Layout.modalities`` for every cell and zeroes what the masks hide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MODALITIES = ("rna", "atac", "adt")


@dataclass
class Layout:
    """Availability masks and labels of one scenario.

    Attributes
    ----------
    modalities
        Modalities the scenario uses (model order).
    masks
        Modality -> bool array ``(n_cells,)``: the modality was measured.
    batch
        Batch label per cell.
    dataset
        Dataset/study label per cell.
    split
        ``"train"`` or ``"eval"`` per cell.
    dataset_strength
        Strength of dataset-level effects, nested above batch effects: a batch's effect
        is ``dataset_strength * dataset effect + batch effect`` (0: no dataset level).
    """

    modalities: tuple[str, ...]
    masks: dict[str, np.ndarray]
    batch: np.ndarray
    dataset: np.ndarray
    split: np.ndarray
    dataset_strength: float = 0.0


@dataclass(frozen=True)
class ScenarioOptions:
    """Scenario knobs.

    Parameters
    ----------
    coverage
        ``mosaic``: probability that a cell keeps RNA, ATAC, ADT.
    bridge_fraction
        ``bridge``: fraction of paired RNA+ATAC bridge cells.
    eval_fraction
        ``prediction``: fraction of cells in the RNA-only evaluation split.
    n_batches
        ``paired``, ``mosaic``, ``prediction``: number of batches.
    """

    coverage: tuple[float, float, float] = (0.6, 0.5, 0.4)
    bridge_fraction: float = 0.05
    eval_fraction: float = 0.3
    n_batches: int = 2


def _labels(prefix: str, codes: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, (codes + 1).astype(str)).astype(object)


def _const(value: str, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object)


def _paired(rng, n, opts):
    batch = _labels("batch", rng.integers(0, opts.n_batches, n))
    masks = {"rna": np.ones(n, bool), "adt": np.ones(n, bool)}
    return Layout(("rna", "adt"), masks, batch, _const("mock_paired", n), _const("train", n))


def _unpaired(rng, n, opts):
    rna_cohort = rng.permutation(n) < n // 2
    masks = {"rna": rna_cohort, "atac": ~rna_cohort}
    batch = np.where(rna_cohort, "rna_cohort", "atac_cohort").astype(object)
    return Layout(("rna", "atac"), masks, batch, _const("mock_unpaired", n), _const("train", n))


def _bridge(rng, n, opts):
    order = rng.permutation(n)
    n_bridge = max(1, round(opts.bridge_fraction * n))
    group = np.empty(n, dtype=np.int64)
    group[order] = np.where(np.arange(n) < n_bridge, 0, np.where(np.arange(n) % 2 == 0, 1, 2))
    masks = {"rna": group != 2, "atac": group != 1}
    batch = np.array(["bridge", "rna_cohort", "atac_cohort"], dtype=object)[group]
    return Layout(("rna", "atac"), masks, batch, _const("mock_bridge", n), _const("train", n))


def _mosaic(rng, n, opts):
    coverage = np.asarray(opts.coverage, dtype=float)
    if coverage.shape != (3,) or np.any(coverage <= 0) or np.any(coverage > 1):
        raise ValueError(f"coverage must be three probabilities in (0, 1] for rna, atac, adt; got {opts.coverage}.")
    keep = rng.random((n, 3)) < coverage
    empty = ~keep.any(axis=1)
    # a cell left with nothing keeps one modality, drawn in proportion to coverage
    rescue = rng.choice(3, size=int(empty.sum()), p=coverage / coverage.sum())
    keep[np.where(empty)[0], rescue] = True
    masks = {m: keep[:, i] for i, m in enumerate(MODALITIES)}
    batch = _labels("batch", rng.integers(0, opts.n_batches, n))
    return Layout(MODALITIES, masks, batch, _const("mock_mosaic", n), _const("train", n))


def _prediction(rng, n, opts):
    is_eval = rng.permutation(n) < round(opts.eval_fraction * n)
    masks = {"rna": np.ones(n, bool), "atac": ~is_eval}
    batch = _labels("batch", rng.integers(0, opts.n_batches, n))
    split = np.where(is_eval, "eval", "train").astype(object)
    return Layout(("rna", "atac"), masks, batch, _const("mock_prediction", n), split)


def _hierarchical(rng, n, opts):
    study = rng.integers(0, 3, n)
    within = rng.integers(0, 2, n)
    names = np.array(["A", "B", "C"], dtype=object)
    dataset = np.char.add("study", names[study].astype(str)).astype(object)
    batch = np.char.add(names[study].astype(str), (within + 1).astype(str)).astype(object)
    masks = {"rna": study != 2, "atac": study != 1, "adt": study == 1}
    return Layout(MODALITIES, masks, batch, dataset, _const("train", n), dataset_strength=2.0)


#: problem type -> layout builder ``(rng, n_cells, options) -> Layout``.
SCENARIOS: dict[str, Callable[..., Layout]] = {
    "paired": _paired,
    "unpaired": _unpaired,
    "bridge": _bridge,
    "mosaic": _mosaic,
    "prediction": _prediction,
    "hierarchical": _hierarchical,
}

#: Default file names (under ``examples/mock/``) of each scenario.
DEFAULT_FILENAMES = {
    "paired": "mock_paired_cite.h5ad",
    "unpaired": "mock_unpaired_rna_atac.h5ad",
    "bridge": "mock_bridge_rna_atac.h5ad",
    "mosaic": "mock_mosaic_multiome.h5ad",
    "prediction": "mock_prediction_rna_to_atac.h5ad",
    "hierarchical": "mock_hierarchical_multistudy.h5ad",
}


def make_layout(problem_type: str, rng: np.random.Generator, n_cells: int, opts: ScenarioOptions) -> Layout:
    """Layout of ``problem_type`` (one of :data:`SCENARIOS`)."""
    if problem_type not in SCENARIOS:
        raise ValueError(f"Unknown problem_type {problem_type!r}; choose one of {sorted(SCENARIOS)}.")
    return SCENARIOS[problem_type](rng, n_cells, opts)
