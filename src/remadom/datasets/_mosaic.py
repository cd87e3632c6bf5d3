"""Turn paired MuData into mosaic MuData by hiding modalities, keeping what was hidden."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["hide_modality", "make_mosaic3"]


def _global_obs_columns(mdata) -> list[str]:
    """``mdata.obs`` columns that are not per-modality copies (``"<mod>:<col>"``)."""
    prefixes = tuple(f"{m}:" for m in mdata.mod)
    return [c for c in mdata.obs.columns if not str(c).startswith(prefixes)]


def _rebuild(mdata, mods: dict):
    """New MuData from ``mods`` carrying ``mdata``'s global obs columns and ``uns``."""
    import mudata as md

    new = md.MuData(mods)
    for col in _global_obs_columns(mdata):
        new.obs[col] = mdata.obs.loc[new.obs_names, col].to_numpy()
        if isinstance(mdata.obs[col].dtype, pd.CategoricalDtype):
            new.obs[col] = new.obs[col].astype(mdata.obs[col].dtype)
    new.uns.update({k: v for k, v in mdata.uns.items()})
    return new


def _cells_to_hide(mdata, modality, batches, cells, batch_key) -> pd.Index:
    names = mdata.mod[modality].obs_names
    hide = np.zeros(len(names), dtype=bool)
    if batches is not None:
        if batch_key not in mdata.obs:
            raise KeyError(f"batch_key {batch_key!r} is not a column of mdata.obs.")
        batch = mdata.obs.loc[names, batch_key].astype(str).to_numpy()
        wanted = {str(b) for b in ([batches] if isinstance(batches, str) else batches)}
        unknown = wanted - set(mdata.obs[batch_key].astype(str))
        if unknown:
            raise ValueError(f"Unknown batches {sorted(unknown)} in mdata.obs[{batch_key!r}].")
        hide |= np.isin(batch, list(wanted))
    if cells is not None:
        cells = np.asarray(cells)
        if cells.dtype == bool:
            if len(cells) != mdata.n_obs:
                raise ValueError(f"A boolean cells mask must have length mdata.n_obs={mdata.n_obs}.")
            cells = mdata.obs_names[cells]
        hide |= names.isin(pd.Index(cells.astype(str)))
    return names[hide]


def hide_modality(
    mdata,
    modality: str,
    batches: str | Sequence[str] | None = None,
    cells: Sequence[str] | np.ndarray | None = None,
    *,
    batch_key: str = "batch",
):
    """Remove some cells from one modality of a MuData, keeping the removed values.

    Returns a new MuData; ``mdata`` is not modified. Cells are hidden when their
    ``mdata.obs[batch_key]`` is in ``batches`` or their name is in ``cells`` (or a
    boolean mask over ``mdata.obs_names``). A cell left with no modality drops out of
    the result.

    Parameters
    ----------
    mdata
        MuData, usually paired.
    modality
        Key of ``mdata.mod`` to hide.
    batches
        Batch values whose cells lose ``modality``.
    cells
        Cell names (or a boolean mask over ``mdata.obs_names``) that lose ``modality``.
    batch_key
        Column of ``mdata.obs`` holding batches.

    Returns
    -------
    ``(mosaic, truth)``. ``mosaic`` is the new MuData (global ``obs`` columns and ``uns``
    carried over). ``truth`` is a dict with ``"modality"``, ``"obs_names"`` (the hidden
    cells) and ``"data"``: an AnnData copy of the hidden cells of ``modality``, the
    ground truth for imputation.

    Examples
    --------
    >>> mosaic, truth = hide_modality(mdata, "atac", batches=["s1d2"])  # doctest: +SKIP
    """
    if modality not in mdata.mod:
        raise ValueError(f"modality {modality!r} is not in mdata.mod ({list(mdata.mod)}).")
    if batches is None and cells is None:
        raise ValueError("Pass batches= and/or cells= to choose the cells to hide.")
    hidden = _cells_to_hide(mdata, modality, batches, cells, batch_key)
    adata = mdata.mod[modality]
    keep = ~adata.obs_names.isin(hidden)
    if not keep.any():
        raise ValueError(f"Hiding these cells would leave modality {modality!r} empty.")
    mods = {m: (a[keep].copy() if m == modality else a.copy()) for m, a in mdata.mod.items()}
    truth = {"modality": modality, "obs_names": hidden, "data": adata[~keep].copy()}
    return _rebuild(mdata, mods), truth


def make_mosaic3(
    mdata,
    mods: tuple[str, str] = ("rna", "atac"),
    batch_key: str = "batch",
    seed: int = 0,
):
    """Three-way mosaic: a third of the batches paired, a third ``mods[0]`` only, a third ``mods[1]`` only.

    Batches are shuffled with ``numpy.random.default_rng(seed)`` and split into three
    near-equal groups (:func:`numpy.array_split`). Needs at least three batches; for
    data with fewer, use :func:`hide_modality` with ``cells=``.

    Parameters
    ----------
    mdata
        Paired MuData holding both ``mods``. Not modified.
    mods
        The two modalities ``(A, B)``.
    batch_key
        Column of ``mdata.obs`` holding batches.
    seed
        Seed of the batch shuffle.

    Returns
    -------
    ``(mosaic, truth)``: the new MuData and a dict with ``"groups"`` (``"paired"``,
    ``"<A>_only"``, ``"<B>_only"`` -> list of batches) and ``"hidden"`` (modality -> the
    ``truth`` dict of :func:`hide_modality`).
    """
    a, b = mods
    for mod in mods:
        if mod not in mdata.mod:
            raise ValueError(f"modality {mod!r} is not in mdata.mod ({list(mdata.mod)}).")
    if batch_key not in mdata.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of mdata.obs.")
    batches = np.array(sorted(mdata.obs[batch_key].dropna().astype(str).unique()))
    if len(batches) < 3:
        raise ValueError(
            f"make_mosaic3 needs at least 3 batches in mdata.obs[{batch_key!r}], found {len(batches)}; "
            "use hide_modality(..., cells=...) instead."
        )
    paired, only_a, only_b = ([str(b) for b in g] for g in np.array_split(np.random.default_rng(seed).permutation(batches), 3))
    step, truth_b = hide_modality(mdata, b, batches=only_a, batch_key=batch_key)
    mosaic, truth_a = hide_modality(step, a, batches=only_b, batch_key=batch_key)
    truth = {
        "groups": {"paired": sorted(paired), f"{a}_only": sorted(only_a), f"{b}_only": sorted(only_b)},
        "hidden": {a: truth_a, b: truth_b},
    }
    return mosaic, truth
