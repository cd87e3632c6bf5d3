"""``concat_mosaic``: join datasets that measured different features, recording what each measured.

An outer join of feature sets fills the features an input did not measure with zeros. Those zeros
are not observations: :func:`concat_mosaic` writes, next to the joined data, which features each
batch measured, in the convention REMADOM's setup reads (``varm["remadom_measured"]``: features x
batches, bool; see :mod:`remadom.model._feature_masks`). Sparse data stays sparse (a join with any sparse input is sparse).

Peak sets that differ
---------------------
``peaks="union"`` keeps every peak of every input, each masked where it was not called. It is
right when the inputs share a peak-calling reference (identical ``chr:start-end`` names for the
same regions) and differ only in which peaks passed filters. ``peaks="overlap"`` maps every input's
peaks to one common set, the merged union of all intervals (overlapping peaks of any input become
one region; counts of an input's peaks in a region are summed), with a region measured in an
input where one of its peaks overlaps it. It is right when each input called its own peaks, so
the same site has slightly different coordinates per input. It needs ``bioframe``
(``pip install remadom[intervals]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..model._feature_masks import MEASURED_VARM_KEY
from ..model._validation import RemadomSetupError

_INTERVAL = re.compile(r"^(?P<chrom>[^:\-_]+)[:\-_](?P<start>\d+)[\-_](?P<end>\d+)$")


def _is_mudata(obj) -> bool:
    return hasattr(obj, "mod") and not isinstance(obj, AnnData)


def _batches_of(adata: AnnData, name: str, batch_key: str) -> pd.Series:
    if batch_key in adata.obs:
        values = adata.obs[batch_key]
        if values.isna().any():
            raise RemadomSetupError(f"obs[{batch_key!r}] of input {name!r} has missing values.")
        return values.astype(str)
    return pd.Series(name, index=adata.obs_names)


def parse_intervals(names) -> pd.DataFrame:
    """``chrom``/``start``/``end`` of peak names like ``chr1:100-600`` (also ``chr1-100-600``)."""
    rows = []
    for name in map(str, names):
        match = _INTERVAL.match(name)
        if match is None:
            raise RemadomSetupError(
                f"Peak name {name!r} is not an interval 'chr:start-end'; peaks='overlap' needs interval "
                "names. Rename the peaks, or use peaks='union'."
            )
        rows.append((match["chrom"], int(match["start"]), int(match["end"])))
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


def _overlap_map(inputs: dict[str, AnnData]) -> tuple[pd.Index, dict[str, sp.csr_matrix]]:
    """Common regions (merged union of all peaks) and, per input, a peaks x regions 0/1 matrix."""
    frames = {k: parse_intervals(a.var_names) for k, a in inputs.items()}  # bad names fail before the import
    try:
        import bioframe
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("peaks='overlap' needs bioframe: pip install 'remadom[intervals]'.") from err
    merged = bioframe.merge(pd.concat(frames.values(), ignore_index=True))
    merged = bioframe.sort_bedframe(merged).reset_index(drop=True)
    regions = pd.Index([f"{c}:{s}-{e}" for c, s, e in zip(merged.chrom, merged.start, merged.end)])
    maps = {}
    for key, peaks in frames.items():
        hits = bioframe.overlap(peaks, merged[["chrom", "start", "end"]], how="inner", suffixes=("", "_r"),
                                return_index=True)
        # merged regions are disjoint, so each peak lies in exactly one
        maps[key] = sp.csr_matrix(
            (np.ones(len(hits), dtype=np.float32), (hits["index"].to_numpy(), hits["index_r"].to_numpy())),
            shape=(len(peaks), len(regions)),
        )
    return regions, maps


def _join(inputs: dict[str, AnnData], batch_key: str, overlap: bool) -> AnnData:
    """Outer join of ``inputs`` (one modality) with ``varm[MEASURED_VARM_KEY]``."""
    if overlap:
        features, maps = _overlap_map(inputs)
    else:
        features = pd.Index(pd.unique(np.concatenate([np.asarray(a.var_names, dtype=str) for a in inputs.values()])))
    blocks, obs, measured = [], [], {}
    for key, adata in inputs.items():
        if adata.var_names.has_duplicates:
            raise RemadomSetupError(f"Input {key!r} has duplicated feature names; make them unique.")
        x = adata.X
        if overlap:
            project = maps[key]
            hit = np.asarray(project.sum(0)).ravel() > 0
        else:
            cols = features.get_indexer(adata.var_names.astype(str))
            project = sp.csr_matrix(
                (np.ones(len(cols), dtype=np.float32), (np.arange(len(cols)), cols)),
                shape=(len(cols), len(features)),
            )
            hit = np.zeros(len(features), dtype=bool)
            hit[cols] = True
        # sparse stays sparse; a dense input becomes dense on the joined features (dense @ sparse
        # projection: the features x joined-features projection itself is never densified)
        blocks.append((sp.csr_matrix(x) @ project).tocsr() if sp.issparse(x) else np.asarray(np.asarray(x) @ project))
        batches = _batches_of(adata, key, batch_key)
        for batch in pd.unique(batches):
            if batch in measured:
                raise RemadomSetupError(
                    f"Batch {batch!r} appears in more than one input; a batch must come from one input "
                    "(its measured features are the input's). Rename the batches."
                )
            measured[batch] = hit
        frame = adata.obs.copy()
        frame[batch_key] = batches.to_numpy()
        obs.append(frame)
    obs = pd.concat(obs)
    if obs.index.has_duplicates:
        raise RemadomSetupError(
            f"Cell names repeat across inputs (e.g. {list(obs.index[obs.index.duplicated()][:3])}); "
            "make obs_names unique, e.g. prefix them with the input name."
        )
    # any sparse input keeps the join sparse (a large sparse ATAC input is never densified)
    x = sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr") if any(sp.issparse(b) for b in blocks) \
        else np.vstack(blocks)
    obs[batch_key] = pd.Categorical(obs[batch_key])
    out = AnnData(X=x.astype(np.float32), obs=obs, var=pd.DataFrame(index=features))
    out.varm[MEASURED_VARM_KEY] = pd.DataFrame(measured, index=features).astype(bool)
    return out


def concat_mosaic(
    datasets: Mapping[str, object],
    batch_key: str = "batch",
    peaks: str = "union",
    peak_modalities: tuple[str, ...] = ("atac",),
):
    """Join AnnDatas or MuDatas whose features differ, recording which features each measured.

    Every input is one batch (``obs[batch_key]`` = its name) unless it already has a
    ``batch_key`` column, whose batches then all share the input's features. The features of each
    modality are outer-joined; ``varm["remadom_measured"]`` (features x batches, bool) says which
    were measured, and :meth:`remadom.REMADOM.setup_anndata` / ``setup_mudata`` register it as
    feature masks. A feature is never treated as unmeasured because its values are zero.

    Parameters
    ----------
    datasets
        ``{name: AnnData}`` (one modality in ``X``) or ``{name: MuData}``. With MuDatas, an input
        without a modality has none of its cells in that modality (modality missing).
    batch_key
        obs column written with each cell's batch.
    peaks
        ``"union"`` or ``"overlap"``: how the modalities in ``peak_modalities`` are joined (see the
        module docstring).
    peak_modalities
        MuData modality keys (or, for AnnData inputs, a name in it means ``X`` is peaks) that
        ``peaks="overlap"`` applies to.

    Returns
    -------
    AnnData or MuData (same type as the inputs) with raw values; inputs are not modified.
    """
    if peaks not in ("union", "overlap"):
        raise ValueError(f"peaks={peaks!r}; use 'union' or 'overlap'.")
    if not datasets:
        raise ValueError("concat_mosaic needs at least one dataset.")
    kinds = {_is_mudata(d) for d in datasets.values()}
    if len(kinds) > 1:
        raise TypeError("Pass only AnnDatas or only MuDatas; wrap an AnnData as MuData({'rna': adata}).")
    names = {str(k): d for k, d in datasets.items()}
    if not kinds.pop():
        return _join(names, batch_key, overlap=peaks == "overlap" and bool(peak_modalities))
    import mudata as md

    mods = {}
    keys = list(dict.fromkeys(m for d in names.values() for m in d.mod))
    for mod in keys:
        inputs = {}
        for name, mdata in names.items():
            if mod in mdata.mod:
                sub = mdata.mod[mod].copy()
                sub.obs[batch_key] = _batches_of(mdata, name, batch_key).reindex(sub.obs_names).to_numpy()
                inputs[name] = sub
        mods[mod] = _join(inputs, batch_key, overlap=peaks == "overlap" and mod in peak_modalities)
        mods[mod].obs = mods[mod].obs[[batch_key]]
    out = md.MuData(mods)
    glob = pd.concat([
        mdata.obs[[c for c in mdata.obs.columns if ":" not in c]].assign(
            **{batch_key: _batches_of(mdata, name, batch_key).to_numpy()})
        for name, mdata in names.items()
    ])
    out.obs = out.obs[[]].join(glob.loc[~glob.index.duplicated()], how="left")
    out.obs[batch_key] = pd.Categorical(out.obs[batch_key].astype(str))
    return out
