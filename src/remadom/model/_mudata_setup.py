"""``setup_mudata``: register an unpadded mosaic MuData through a padded AnnData view."""

from __future__ import annotations

import weakref

from anndata import AnnData

from ..modalities import MODALITY_NAME_ALIASES, kind_for_name
from ._cell_feature_masks import pad_mudata_cell_masks, split_feature_masks
from ._mudata import MosaicLayout, mosaic_layout, padded_anndata
from ._validation import RemadomSetupError

#: Keys a ``setup_mudata(modalities={name: {...}})`` entry may have.
MUDATA_ENTRY_KEYS = ("mod", "layer", "kind", "likelihood", "mask", "encoder_input")

#: ``uns`` key of the view holding the ``setup_mudata`` arguments.
MUDATA_SETUP_UNS_KEY = "_remadom_mudata_setup"


def is_mudata(obj) -> bool:
    """Whether ``obj`` is a MuData (duck-typed, so mudata stays an optional import)."""
    return hasattr(obj, "mod") and not isinstance(obj, AnnData)


class MuDataSetupMixin:
    """Adds :meth:`setup_mudata` and MuData handling to an AnnData-based scvi-tools model.

    The MuData is never modified; views are cached per MuData object for the
    lifetime of that object.
    """

    _mudata_views: dict = {}

    @classmethod
    def setup_mudata(
        cls,
        mdata,
        modalities: dict[str, str | dict] | None = None,
        *,
        rna_layer: str | None = None,
        layers: dict[str, str | None] | None = None,
        kinds: dict[str, str] | None = None,
        mask_keys: dict[str, str] | None = None,
        feature_masks: dict | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        drop_cells_without_modalities: bool = False,
    ):
        """Register an unpadded mosaic MuData, without modifying it.

        A cell absent from ``mdata.mod[key]`` has that modality missing. REMADOM builds
        its own padded, sparse AnnData view (kept with the model; ``model.adata``) whose
        rows are ``mdata.obs_names``; the MuData's ``mod``, ``obs`` and matrices are left
        exactly as they were.

        Parameters
        ----------
        mdata
            MuData with raw counts in each modality.
        modalities
            Model modality name -> ``mdata.mod`` key, e.g. ``{"rna": "rna", "adt": "prot"}``,
            or -> ``{"mod": key, "layer": ..., "kind": ..., "likelihood": ..., "mask": ...,
            "encoder_input": ...}`` (the entries of :meth:`setup_anndata`'s ``modalities`` plus
            ``mod``). The kind defaults from the model name, else from the ``mdata.mod`` key,
            which may be a muon / scvi-tools name (``gex``, ``peaks``, ``prot``, ``protein``, ...;
            see :data:`~remadom.modalities.MODALITY_NAME_ALIASES`). Default: every ``mdata.mod``
            key with such a name, under its kind's name (``prot`` -> ``adt``).
        rna_layer
            Shorthand: layer of the ``rna`` modality with raw counts (``None``: ``X``).
        layers
            Shorthand: layer per modality (overrides ``rna_layer``).
        kinds
            Shorthand: kind per modality.
        mask_keys
            Optional boolean ``mdata.obs`` columns further restricting availability.
        feature_masks
            ``{modality: DataFrame(batch x feature, bool)}``: the features each batch measured.
            Default: ``mdata.mod[key].varm["remadom_measured"]`` (features x batches), as
            written by :func:`remadom.data.concat_mosaic`. A string value states a *per-cell*
            mask: ``{"adt": "adt_measured"}`` names ``mdata.mod[<adt's mod key>].obsm["adt_measured"]``,
            a boolean ``(n_cells of that modality, n_features)`` matrix (dense, scipy sparse or a
            DataFrame with the features as columns), ``True`` = measured; a cell absent from the
            modality measured none of its features. It is ANDed with a per-batch mask of the same
            modality and, like the modality, read again from the MuData by ``load`` and new data.
        batch_key, labels_key, categorical_covariate_keys, continuous_covariate_keys
            Columns of ``mdata.obs``.
        drop_cells_without_modalities
            Leave out cells that are in none of the modalities instead of failing.
        """
        mudata_setup = {k: v for k, v in locals().items() if k not in ("cls", "mdata")}
        from ._checks import check_mudata_args  # issue #15

        check_mudata_args(mdata, modalities, rna_layer, layers, batch_key, labels_key, mask_keys,
                          categorical_covariate_keys, continuous_covariate_keys)
        if getattr(mdata, "isbacked", False) or any(getattr(a, "isbacked", False) for a in mdata.mod.values()):
            raise RemadomSetupError(  # issue #14: the out-of-core MuData path is an explicit conversion
                "mdata is backed (mudata.read_h5mu(..., backed=True)); setup_mudata builds an in-memory "
                "padded view of the modalities and would read them whole. Read it into memory "
                "(mudata.read_h5mu(path)), or, for data larger than RAM, convert the .h5mu once, chunk by "
                "chunk, to the padded layout on disk and train from that file: "
                "setup = remadom.data.mudata_to_backed_h5ad(mdata.filename, 'padded.h5ad', <the same "
                "setup_mudata arguments>); adata = remadom.data.read_h5ad_backed('padded.h5ad'); "
                "REMADOM.setup_anndata(adata, **setup)."
            )
        view, setup_kwargs = cls._build_mudata_view(mdata, mudata_setup)
        cls.setup_anndata(
            view, **setup_kwargs, batch_key=batch_key, labels_key=labels_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
        )
        cls._remember_view(mdata, view)

    @classmethod
    def _mudata_modalities(cls, mdata, mudata_setup: dict) -> dict[str, dict]:
        """``{name: {"mod": ..., ...}}`` from ``setup_mudata``'s arguments (shorthand folded in)."""
        given = mudata_setup.get("modalities")
        if given is None:
            given = {}
            for key in mdata.mod:
                kind = MODALITY_NAME_ALIASES.get(key.lower())
                if kind is not None and kind not in given:
                    given[kind] = key
            if not given:
                raise RemadomSetupError(
                    f"No modality to set up: mdata.mod has {list(mdata.mod.keys())}, none with a name "
                    f"REMADOM recognises ({sorted(MODALITY_NAME_ALIASES)}). Map them, e.g. "
                    "modalities={'rna': '<mod key>', 'h3k27me3': {'mod': '<mod key>', 'kind': 'counts'}}."
                )
        layers = dict(mudata_setup.get("layers") or {})
        if mudata_setup.get("rna_layer") is not None:
            layers.setdefault("rna", mudata_setup["rna_layer"])
        kinds = mudata_setup.get("kinds") or {}
        masks = mudata_setup.get("mask_keys") or {}
        for what, names in (("layers", layers), ("kinds", kinds), ("mask_keys", masks)):
            unknown = set(names) - set(given) - ({"rna"} if what == "layers" else set())
            if unknown:
                raise RemadomSetupError(f"{what} names unknown modalities {sorted(unknown)}; the modalities "
                                        f"set up are {list(given)}.")
        out = {}
        for name, entry in given.items():
            entry = {"mod": entry} if isinstance(entry, str) else dict(entry)
            unknown = set(entry) - set(MUDATA_ENTRY_KEYS)
            if unknown:
                raise RemadomSetupError(f"modalities[{name!r}] has unknown keys {sorted(unknown)}; allowed: "
                                        f"{list(MUDATA_ENTRY_KEYS)}.")
            entry.setdefault("mod", name)
            if name in layers:
                entry.setdefault("layer", layers[name])
            if name in masks:
                entry.setdefault("mask", masks[name])
            known = name.lower() in MODALITY_NAME_ALIASES
            entry.setdefault("kind", kinds.get(name) or kind_for_name(name if known else entry["mod"]))
            out[name] = entry
        return out

    @classmethod
    def _mudata_layout(cls, mdata, mudata_setup: dict) -> tuple[MosaicLayout, dict[str, dict]]:
        """The padded view's layout (no matrix read) and the resolved modalities."""
        modalities = cls._mudata_modalities(mdata, mudata_setup)
        obs_keys = [mudata_setup.get("batch_key"), mudata_setup.get("labels_key"),
                    *(mudata_setup.get("categorical_covariate_keys") or []),
                    *(mudata_setup.get("continuous_covariate_keys") or [])]
        for key in obs_keys:
            if key is not None and key not in mdata.obs:
                raise RemadomSetupError(f"{key!r} is not a column of mdata.obs (available: "
                                        f"{list(mdata.obs.columns)[:20]}).")
        layout = mosaic_layout(mdata, modalities, obs_keys, mudata_setup.get("drop_cells_without_modalities", False))
        return layout, modalities

    @classmethod
    def _build_mudata_view(cls, mdata, mudata_setup: dict) -> tuple[AnnData, dict]:
        layout, modalities = cls._mudata_layout(mdata, mudata_setup)
        view, setup_kwargs = padded_anndata(mdata, layout), {"modalities": layout.registered}
        tables, cells = split_feature_masks(mudata_setup.get("feature_masks"))
        view_keys = pad_mudata_cell_masks(mdata, modalities, cells, view)  # per-cell masks: mod obsm -> view
        setup_kwargs["feature_masks"] = {**tables, **cells, **view_keys} or None
        view.uns[MUDATA_SETUP_UNS_KEY] = {**mudata_setup, "modalities": modalities}
        return view, setup_kwargs

    @classmethod
    def _remember_view(cls, mdata, view: AnnData) -> None:
        from ._checks import mudata_fingerprint  # issue #15: detect a MuData changed after setup

        key = id(mdata)
        cls._mudata_views[key] = (weakref.ref(mdata), view, mudata_fingerprint(mdata))
        weakref.finalize(mdata, cls._mudata_views.pop, key, None)

    @classmethod
    def _mudata_view(cls, mdata, mudata_setup: dict | None = None) -> AnnData:
        from ._checks import mudata_fingerprint

        entry = cls._mudata_views.get(id(mdata))
        if entry is not None and entry[0]() is mdata:
            if entry[2] == mudata_fingerprint(mdata):
                return entry[1]
            if mudata_setup is None:
                raise RemadomSetupError(
                    "This MuData changed (cells, features or matrices) after setup_mudata. Call "
                    "REMADOM.setup_mudata(mdata, ...) again before building the model."
                )
        if mudata_setup is None:
            raise RemadomSetupError(
                "This MuData has not been set up. Call REMADOM.setup_mudata(mdata, ...) first."
            )
        view, _ = cls._build_mudata_view(mdata, mudata_setup)
        cls._remember_view(mdata, view)
        return view

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        if adata is not None and is_mudata(adata):
            adata = self._mudata_view(adata, self.mudata_setup_)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

