"""Align a query study's features and modalities to a trained reference (``prepare_query_*``).

The user's AnnData/MuData is never modified: a new object laid out exactly as the reference
was registered is returned. Per modality, features are matched *by name*: reordered, the
query's extra features dropped, and the reference features the query lacks filled with zeros
and recorded in ``uns["remadom_query"]``. :meth:`~remadom.REMADOM.load_query_data` marks the
filled features as unmeasured in the query batches' feature masks
(:mod:`remadom.model._query_masks`), so they add nothing to the loss and the encoders see them as
missing. A reference modality registered without an availability mask gets the default column
``obs["has_<modality>"]`` here, so a query may lack it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scvi import REGISTRY_KEYS

from .._constants import mask_column
from ..modalities import ModalitySpec
from ._cell_feature_masks import align_query_cell_mask, reference_cell_mask_keys
from ._fields import feature_names, registered_feature_names, registered_specs
from ._validation import RemadomSetupError, get_modality_matrix, mask_from_obs

logger = logging.getLogger(__name__)

#: ``uns`` key of a prepared query holding what alignment did (and the filled features).
QUERY_UNS_KEY = "remadom_query"
#: Label of query cells when the reference has a labels column and the query does not.
UNLABELED = "unlabeled"
#: Below this share of the reference's features found in the query, alignment warns.
MIN_FEATURE_OVERLAP = 0.8


@dataclass(frozen=True)
class ReferenceModality:
    """One modality of a trained reference: how it was registered and its training features."""

    spec: ModalitySpec
    features: pd.Index


def reference_modalities(model) -> dict[str, ReferenceModality]:
    """The reference's modalities (spec + training features), in model order.

    This is the only place reference mapping reads the reference's setup: each modality's
    :class:`~remadom.model.ModalityField` entry of the data registry.
    """
    names = registered_feature_names(model.adata_manager)
    return {
        s.name: ReferenceModality(s, pd.Index(np.asarray(names[s.name], dtype=str)))
        for s in registered_specs(model.adata_manager)
    }


def align_features(matrix, names, reference: pd.Index, modality: str) -> tuple[object, dict]:
    """Columns of ``matrix`` (named ``names``) in the order of ``reference``; absent ones are zeros.

    Sparse stays sparse (a column-selection product), dense stays dense.

    Returns
    -------
    ``(aligned, report)`` where ``report`` counts found / filled / dropped features and lists the
    filled names.
    """
    names = pd.Index(np.asarray(names, dtype=str))
    if names.has_duplicates:
        dup = names[names.duplicated()].unique()[:5].tolist()
        raise RemadomSetupError(
            f"The query's {modality!r} features have duplicated names {dup}; make them unique."
        )
    position = names.get_indexer(reference)
    found = position >= 0
    if not found.any():
        raise RemadomSetupError(
            f"No {modality!r} feature of the query matches the reference's {len(reference)} features "
            f"(query e.g. {names[:3].tolist()}, reference e.g. {reference[:3].tolist()}). Use the same "
            f"feature names (gene symbols vs. IDs?), or leave {modality!r} out of the query."
        )
    share = found.mean()
    if share < MIN_FEATURE_OVERLAP:
        warnings.warn(
            f"The query has only {share:.0%} of the reference's {modality!r} features; the other "
            f"{int((~found).sum())} are marked unmeasured (no loss; the encoder sees them as missing), "
            "but so many missing features can shift the latent.",
            UserWarning,
            stacklevel=3,
        )
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    if sp.issparse(matrix):
        select = sp.csr_matrix(
            (np.ones(found.sum(), dtype=np.float32), (position[found], np.where(found)[0])),
            shape=(len(names), len(reference)),
        )
        aligned = sp.csr_matrix(sp.csr_matrix(matrix, dtype=np.float32) @ select)
    else:
        matrix = np.asarray(matrix, dtype=np.float32)
        aligned = np.zeros((matrix.shape[0], len(reference)), dtype=np.float32)
        aligned[:, found] = matrix[:, position[found]]
    report = {
        "n_reference": len(reference),
        "n_found": int(found.sum()),
        "n_filled": int((~found).sum()),
        "n_dropped": int(len(names) - found.sum()),
        "reordered": bool(not np.array_equal(position[found], np.sort(position[found]))),
        "filled": reference[~found].tolist(),
    }
    return aligned, report


def _carried(adata: AnnData, spec: ModalitySpec) -> bool:
    if spec.attr == "layers":
        return adata.n_vars > 0 if spec.key is None else spec.key in adata.layers
    return spec.key in adata.obsm


def _check_modality_names(names, reference: dict, ignore_unknown_modalities: bool, where: str) -> list:
    unknown = [n for n in names if n not in reference]
    if unknown and not ignore_unknown_modalities:
        raise RemadomSetupError(
            f"The query has modalities {unknown} ({where}) that the reference was never trained on "
            f"(it has {list(reference)}). Drop them, or pass ignore_unknown_modalities=True to leave "
            "them out with a warning."
        )
    if unknown:
        warnings.warn(
            f"Leaving out query modalities {unknown}: the reference has no such modality.",
            UserWarning,
            stacklevel=3,
        )
    return [n for n in names if n in reference]


def _fill_missing_labels(obs: pd.DataFrame, reference) -> None:
    """An unlabeled query gets the reference's labels column as one placeholder category (labels are not modelled)."""
    key = reference.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).original_key
    if key != "_scvi_labels" and key not in obs:
        obs[key] = pd.Categorical([UNLABELED] * len(obs))


def _log_report(report: dict) -> None:
    for name, entry in report["modalities"].items():
        if entry is None:
            logger.info("query mapping: %s absent from the query (all cells marked missing)", name)
        else:
            logger.info(
                "query mapping: %s %d/%d reference features found, %d filled (excluded from the loss), "
                "%d query-only dropped%s",
                name,
                entry["n_found"],
                entry["n_reference"],
                entry["n_filled"],
                entry["n_dropped"],
                ", reordered" if entry["reordered"] else "",
            )


def prepare_anndata(
    adata: AnnData, reference, modalities=None, ignore_unknown_modalities: bool = False
) -> AnnData:
    """New AnnData in the reference's layout; see :meth:`remadom.REMADOM.prepare_query_anndata`."""
    ref = reference_modalities(reference)
    if modalities is None:
        carried = [n for n, r in ref.items() if _carried(adata, r.spec)]
    else:
        carried = _check_modality_names(list(modalities), ref, ignore_unknown_modalities, "modalities=")
    if not carried:
        raise RemadomSetupError(
            f"The query carries none of the reference's modalities {list(ref)} at the reference's locations "
            f"({ {n: (r.spec.attr, r.spec.key) for n, r in ref.items()} })."
        )
    obs = adata.obs.copy()
    X, layers, obsm, uns = None, {}, {}, {}
    cell_masks = reference_cell_mask_keys(reference)  # per-cell feature masks (#11), aligned like the counts
    report = {"modalities": {}}
    for name, r in ref.items():
        spec = r.spec
        column = spec.mask_key or mask_column(name)
        if name in carried:
            if not _carried(adata, spec):
                raise RemadomSetupError(
                    f"modalities= names {name!r}, but the query has no {spec.attr}[{spec.key!r}]."
                )
            matrix = get_modality_matrix(adata, spec)
            aligned, entry = align_features(matrix, feature_names(adata, spec), r.features, name)
            present = (
                mask_from_obs(adata.obs, column, name) if column in adata.obs else np.ones(adata.n_obs, dtype=bool)
            )
        else:
            aligned = sp.csr_matrix((adata.n_obs, len(r.features)), dtype=np.float32)
            entry, present = None, np.zeros(adata.n_obs, dtype=bool)
        report["modalities"][name] = entry
        if name in cell_masks:
            key = cell_masks[name]
            obsm[key] = (align_query_cell_mask(adata, key, name, feature_names(adata, spec), r.features)
                         if name in carried else np.zeros((adata.n_obs, len(r.features)), dtype=bool))
        # A reference modality registered without a mask (every reference cell had it) gets one in
        # the default column: the query's setup (the reference's setup replayed) registers it, so
        # the query may lack the modality in some or all cells. The reference is not changed.
        obs[column] = present
        if spec.attr == "layers":
            X = aligned
            if spec.key is not None:
                layers[spec.key] = aligned
            var = pd.DataFrame(index=r.features)
        else:
            obsm[spec.key] = aligned
            uns[f"{name}_names"] = np.asarray(r.features)
    if X is None:
        X, var = sp.csr_matrix((adata.n_obs, 0), dtype=np.float32), None
    _fill_missing_labels(obs, reference)
    uns[QUERY_UNS_KEY] = report
    _log_report(report)
    out = AnnData(X=X, obs=obs, var=var, obsm=obsm, uns=uns)
    for key, value in layers.items():
        out.layers[key] = value
    return out


def prepare_mudata(mdata, reference, ignore_unknown_modalities: bool = False):
    """New MuData in the reference's layout; see :meth:`remadom.REMADOM.prepare_query_mudata`."""
    import mudata as md

    setup = getattr(reference, "mudata_setup_", None)
    if not setup:
        raise RemadomSetupError(
            "The reference was registered with setup_anndata, not setup_mudata; prepare the query with "
            "REMADOM.prepare_query_anndata (same obsm keys / layers as the reference)."
        )
    ref = reference_modalities(reference)
    # model modality name -> {"mod": mdata.mod key, "layer": ..., "mask": ...}, shorthand folded in
    entries = reference._mudata_modalities(mdata, setup)
    name_of = {entry["mod"]: name for name, entry in entries.items()}
    kept_mods = _check_modality_names(list(mdata.mod.keys()), name_of, ignore_unknown_modalities, "mdata.mod")
    mods, report = {}, {"modalities": {}}
    cell_masks = reference_cell_mask_keys(reference)  # per-cell feature masks (#11), aligned like the counts
    for name, r in ref.items():
        mod, layer = entries[name]["mod"], entries[name].get("layer")
        if mod in kept_mods:
            sub = mdata.mod[mod]
            matrix = sub.X if layer is None else sub.layers[layer]
            aligned, entry = align_features(matrix, sub.var_names, r.features, name)
            obs_index = sub.obs_names
        else:
            aligned, entry = sp.csr_matrix((0, len(r.features)), dtype=np.float32), None
            obs_index = pd.Index([], dtype=str)
        report["modalities"][name] = entry
        new = AnnData(X=aligned, obs=pd.DataFrame(index=obs_index), var=pd.DataFrame(index=r.features))
        if layer is not None:
            new.layers[layer] = aligned
        if name in cell_masks:
            key = cell_masks[name]
            new.obsm[key] = (align_query_cell_mask(sub, key, name, sub.var_names, r.features, f"mdata.mod[{mod!r}]")
                             if mod in kept_mods else np.zeros((0, len(r.features)), dtype=bool))
        mods[mod] = new
    out = md.MuData(mods)
    carried_cells = out.obs_names
    missing = ~carried_cells.isin(mdata.obs_names)
    if missing.any():  # pragma: no cover - MuData keeps mod cells in its global obs
        raise RemadomSetupError(f"{int(missing.sum())} query cells are in a modality but not in mdata.obs.")
    out.obs = mdata.obs.loc[carried_cells].copy()
    _fill_missing_labels(out.obs, reference)
    for key in {entry.get("mask") for entry in entries.values()} - {None}:
        if key not in out.obs:
            out.obs[key] = True
    out.uns[QUERY_UNS_KEY] = report
    _log_report(report)
    return out
