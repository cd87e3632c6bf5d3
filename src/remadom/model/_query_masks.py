"""Query features filled by alignment are feature-masked entries (one mechanism for "not measured").

:func:`~remadom.model._query_align.align_features` fills the reference features a query lacks
with zeros and records them in ``uns["remadom_query"]``. A query model marks them as *not
measured* in its feature masks (:mod:`remadom.model._feature_masks`): the query batches' rows of
the modality's ``(n_batch, n_features)`` mask are ``False`` there. The masked NLL
(:meth:`~remadom.nn.LikelihoodHead.nll_entries`) then gives those entries no loss and no gradient,
library sizes and count scales use the measured features only, the encoder sees them as missing,
and :meth:`~remadom.REMADOM.impute` decodes them with the reference batches that measured them.

The masks live in the feature-mask field's state registry (batches x features, by name), so a
saved query model loads them like any feature mask; :func:`extend_masks_to_new_batches` is the
field's transfer hook that gives new (query) batches a row.
"""

from __future__ import annotations

import numpy as np
from scvi import REGISTRY_KEYS

from .. import _compat
from ..nn.masked import FeatureMaskBank
from ._feature_masks import FEATURE_MASKS_REGISTRY_KEY, feature_mask_tables
from ._validation import RemadomSetupError

#: ``source`` of a mask written by query alignment (shown by ``view_anndata_setup``).
QUERY_MASK_SOURCE = "query alignment (uns['remadom_query'])"


def extend_masks_to_new_batches(state_registry: dict, adata_target, batch_key: str | None) -> dict:
    """The reference's feature-mask state with an all-measured row for each batch new in ``adata_target``.

    Transfer hook of :class:`~remadom.model._feature_masks.FeatureMaskField`: a query's new batch
    categories (``load_query_data``, ``extend_categories=True``) get a row, so the reference's
    masks cover every batch of the query registry. Which features a query batch lacks is added
    afterwards by :func:`install_query_feature_masks`. Data with only known batches gets the same
    masks. Always a new dict, never the reference's own.
    """
    masks = dict(state_registry.get("masks", {}) or {})
    if not masks or batch_key is None or batch_key not in adata_target.obs:
        # a new dict: the query's registry must not share (and later change) the reference's
        return {**state_registry, "masks": masks}
    out = {}
    for name, entry in masks.items():
        known = [str(b) for b in entry["batches"]]
        values = adata_target.obs[batch_key]
        cats = values.cat.categories if hasattr(values, "cat") else values.unique()
        new = [str(c) for c in cats if str(c) not in known]
        if not new:
            out[name] = entry
            continue
        measured = np.asarray(entry["measured"], dtype=bool)
        rows = np.ones((len(new), measured.shape[1]), dtype=bool)
        out[name] = {**entry, "batches": known + new, "measured": np.vstack([measured, rows])}
    return {**state_registry, "masks": out}


def query_feature_mask_tables(model, query: dict) -> dict[str, np.ndarray]:
    """``{modality: (n_batch, n_features) bool}`` of a query model.

    The reference's masks (all measured for a modality without), with the features alignment
    filled marked unmeasured in the query batches' rows.
    """
    categories = [str(c) for c in model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping]
    tables = feature_mask_tables(model.adata_manager, categories)
    codes = [categories.index(b) for b in query["query_batches"] if b in categories]
    for name, entry in query["modalities"].items():
        if not entry or not entry["n_filled"]:
            continue
        names = np.asarray(model.feature_names_[name], dtype=str)
        measured = ~np.isin(names, np.asarray(entry["filled"], dtype=str))
        table = tables.get(name)
        if table is None:
            table = np.ones((len(categories), len(names)), dtype=bool)
        table = table.copy()
        table[codes] &= measured
        tables[name] = table
    return tables


def install_query_feature_masks(model) -> None:
    """Put the query's feature masks in the model's registry and module (at mapping and after ``load``).

    Idempotent: recomputing from the registry gives the same masks.

    Raises
    ------
    RemadomSetupError
        If a modality with filled features has a likelihood head that cannot skip entries.
    """
    query = getattr(model, "query_", None)
    if not query:
        return
    filled = [m for m, e in query["modalities"].items() if e and e["n_filled"]]
    if not filled:
        return
    for spec in model.specs:
        if spec.name in filled and not spec.head.supports_feature_masks():
            raise RemadomSetupError(
                f"The query lacks {query['modalities'][spec.name]['n_filled']} of the reference's "
                f"{spec.name!r} features, but the likelihood {spec.head.name!r} scores every entry (its `nll` "
                "or `library` takes no `mask`), so they cannot be left out of the loss. Give the query those "
                "features, or use a head with `nll_entries`."
            )
    tables = query_feature_mask_tables(model, query)
    categories = [str(c) for c in model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping]
    state = _compat.mutable_state_registry(model.adata_manager, FEATURE_MASKS_REGISTRY_KEY)
    masks = dict(state.get("masks", {}) or {})
    for name in filled:
        masks[name] = {"batches": categories, "measured": tables[name], "source": QUERY_MASK_SOURCE}
    state["masks"] = masks
    device = next(model.module.parameters()).device
    model.module.feature_masks = FeatureMaskBank(tables).to(device)



def check_query_cells_measure_something(model) -> None:
    """A mapped query cell that has a modality must have at least one of its features measured.

    What a query cell measured is its batch's row of the query feature masks (the reference's
    table, with the features alignment filled marked unmeasured) AND its per-cell mask, if the
    reference registered one. A cell left with none (e.g. its per-cell mask covers only features
    the query lacks, or a merged batch's table masks the rest) would add nothing to the loss while
    counting as having the modality.

    Raises
    ------
    RemadomSetupError
        Naming the modality, the cells and the fix.
    """
    from ._cell_feature_masks import any_measured_feature, registered_cell_masks
    from ._validation import read_mask

    adata, manager = model.adata, model.adata_manager
    categories = [str(c) for c in manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping]
    tables = query_feature_mask_tables(model, model.query_) if getattr(model, "query_", None) else {}
    tables = tables or feature_mask_tables(manager, categories)
    cells = registered_cell_masks(manager)
    codes = np.asarray(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel().astype(int)
    for spec in model.specs:
        if spec.name not in tables and spec.name not in cells:
            continue
        cell = adata.obsm[cells[spec.name]] if spec.name in cells else None
        empty = read_mask(adata, spec) & ~any_measured_feature(tables.get(spec.name), cell, codes)
        if empty.any():
            names = adata.obs_names[empty]
            shown = ", ".join(map(str, names[:5])) + (f" ... ({len(names)} in all)" if len(names) > 5 else "")
            where = f" and its per-cell mask obsm[{cells[spec.name]!r}]" if spec.name in cells else ""
            raise RemadomSetupError(
                f"Query cell(s) {shown} have modality {spec.name!r} but none of its features is measured: the "
                f"query batch's feature mask (features the query lacks are unmeasured){where} leave nothing. "
                f"Mark {spec.name!r} missing for those cells (obs['has_{spec.name}'] = False, or leave them out "
                "of the MuData modality), or give the query the features they measured."
            )

