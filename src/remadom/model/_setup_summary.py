"""``REMADOM.view_anndata_setup``: what was registered, in the user's terms.

scvi-tools' own summary prints the registry of the AnnData the model trains on. For a
MuData that is REMADOM's internal padded view (``_remadom_*`` columns, ``obsm`` keys the
user never made), so the MuData case is described here from the user's side: one row per
modality with its ``mdata.mod`` key, where its counts are read, how many cells have it,
its features and its likelihood. scvi-tools 1.4.2 calls ``rich.pretty`` without importing
it, which fails with rich 15 (``module 'rich' has no attribute 'pretty'``); importing the
submodule here makes the inherited summary work too.
"""

from __future__ import annotations

import rich
import rich.pretty  # scvi-tools uses rich.pretty without importing it
from rich.console import Console
from rich.table import Table

__all__ = ["modality_table", "view_setup"]


def modality_table(model, adata=None) -> Table:
    """One row per registered modality: source, cells with it, features, likelihood."""
    masks = model.get_modality_masks(adata)
    mudata_setup = getattr(model, "mudata_setup_", None) or {}
    mod_keys = mudata_setup.get("modalities") or {}
    layers = mudata_setup.get("layers") or {}
    table = Table(title="REMADOM modalities")
    for col in ("modality", "read from", "cells with it", "features", "likelihood"):
        table.add_column(col)
    for spec in model.specs:
        if mod_keys:
            entry = mod_keys.get(spec.name, spec.name)  # setup_mudata entries: a mod key or a dict
            mod_key = entry if isinstance(entry, str) else entry.get("mod", spec.name)
            layer = (None if isinstance(entry, str) else entry.get("layer")) or layers.get(spec.name) or (
                mudata_setup.get("rna_layer") if spec.name == "rna" else None
            )
            source = f"mdata.mod[{mod_key!r}]" + (
                f".layers[{layer!r}]" if layer else ".X"
            )
        elif spec.attr == "obsm":
            source = f"adata.obsm[{spec.key!r}]"
        else:
            source = "adata.X" if spec.key is None else f"adata.layers[{spec.key!r}]"
        mask = masks[spec.name]
        availability = f"{int(mask.sum()):,} / {len(mask):,}"
        if spec.mask_key is not None and not mod_keys:
            availability += f" (obs[{spec.mask_key!r}])"
        table.add_row(
            spec.name, source, availability, f"{len(model.feature_names_[spec.name]):,}", str(spec.likelihood)
        )
    return table


def view_setup(model, adata=None, hide_state_registries: bool = False, inherited=None) -> None:
    """Print the modality table, then (for AnnData) scvi-tools' registry summary.

    Parameters
    ----------
    model
        A :class:`~remadom.REMADOM` model.
    adata
        Data set up for the model (default: its training data).
    hide_state_registries
        Passed to scvi-tools' summary.
    inherited
        scvi-tools' ``view_anndata_setup`` bound to the model.
    """
    is_mudata = bool(getattr(model, "mudata_setup_", None))
    Console().print(modality_table(model, adata))
    setup = getattr(model, "mudata_setup_", None) or {}
    if is_mudata:
        args = {k: v for k, v in setup.items() if v not in (None, False, {}, [])}
        rich.print("Setup via `REMADOM.setup_mudata` with arguments:")
        rich.pretty.pprint(args)
        rich.print("(the model trains on an internal padded AnnData view; model.adata)")
        if not hide_state_registries:
            _print_feature_masks(model)
    elif inherited is not None:
        inherited(adata, hide_state_registries=hide_state_registries)


def _print_feature_masks(model) -> None:
    """The feature-mask table of the registry (scvi-tools prints it for AnnData setups only)."""
    from ._feature_masks import FeatureMaskField

    manager = model.adata_manager
    for field in manager.fields:
        if isinstance(field, FeatureMaskField):
            table = field.view_state_registry(manager.get_state_registry(field.registry_key))
            if table is not None:
                rich.print(table)
