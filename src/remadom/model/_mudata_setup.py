"""``setup_mudata``: register an unpadded mosaic MuData through a padded AnnData view."""

from __future__ import annotations

import weakref

from anndata import AnnData

from ._mudata import mudata_to_mosaic_anndata
from ._validation import RemadomSetupError

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
        modalities: dict[str, str] | None = None,
        *,
        rna_layer: str | None = None,
        layers: dict[str, str | None] | None = None,
        kinds: dict[str, str] | None = None,
        mask_keys: dict[str, str] | None = None,
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
            Model modality name -> ``mdata.mod`` key. Default: those of ``rna``, ``atac``,
            ``adt`` present in ``mdata.mod``.
        rna_layer
            Layer of the RNA modality with raw counts (``None``: ``X``).
        layers
            Layer per modality (overrides ``rna_layer``).
        kinds
            Kind per modality for names other than rna/atac/adt (default ``counts``).
        mask_keys
            Optional boolean ``mdata.obs`` columns further restricting availability.
        batch_key, labels_key, categorical_covariate_keys, continuous_covariate_keys
            Columns of ``mdata.obs``.
        drop_cells_without_modalities
            Leave out cells that are in none of the modalities instead of failing.
        """
        mudata_setup = {k: v for k, v in locals().items() if k not in ("cls", "mdata")}
        from ._checks import check_mudata_args  # issue #15

        check_mudata_args(mdata, modalities, rna_layer, layers, batch_key, labels_key, mask_keys,
                          categorical_covariate_keys, continuous_covariate_keys)
        view, setup_kwargs = cls._build_mudata_view(mdata, mudata_setup)
        cls.setup_anndata(
            view, **setup_kwargs, batch_key=batch_key, labels_key=labels_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
        )
        cls._remember_view(mdata, view)

    @classmethod
    def _build_mudata_view(cls, mdata, mudata_setup: dict) -> tuple[AnnData, dict]:
        modalities = mudata_setup.get("modalities") or {
            k: k for k in ("rna", "atac", "adt") if k in mdata.mod
        }
        if not modalities:
            raise RemadomSetupError(
                f"No modality to set up: mdata.mod has {list(mdata.mod.keys())}. Pass "
                "modalities={'rna': '<mod key>', ...}."
            )
        kinds = {n: (mudata_setup.get("kinds") or {}).get(n, n if n in ("rna", "atac", "adt") else "counts")
                 for n in modalities}
        layers = {n: (mudata_setup.get("layers") or {}).get(n) for n in modalities}
        if "rna" in modalities and "rna" not in (mudata_setup.get("layers") or {}):
            layers["rna"] = mudata_setup.get("rna_layer")
        obs_keys = [mudata_setup.get("batch_key"), mudata_setup.get("labels_key"),
                    *(mudata_setup.get("categorical_covariate_keys") or []),
                    *(mudata_setup.get("continuous_covariate_keys") or [])]
        for key in obs_keys:
            if key is not None and key not in mdata.obs:
                raise RemadomSetupError(f"{key!r} is not a column of mdata.obs (available: "
                                        f"{list(mdata.obs.columns)[:20]}).")
        view, setup_kwargs = mudata_to_mosaic_anndata(
            mdata, modalities, kinds, layers, obs_keys, mudata_setup.get("mask_keys"),
            mudata_setup.get("drop_cells_without_modalities", False),
        )
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

