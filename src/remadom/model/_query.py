"""Reference mapping: map a new study onto a trained REMADOM reference (scArches-style).

:class:`QueryMixin` builds on scvi-tools' :class:`~scvi.model.base.ArchesMixin`. Its
``load_query_data`` does the registry transfer (the query is set up with the reference's
registry and ``extend_categories=True``, so new batches get new codes after the reference's),
the model initialization and the first state-dict expansion. REMADOM extends it in one place,
:meth:`QueryMixin.load_query_data`, because

- ArchesMixin pads every grown tensor *at the end*, which is wrong where the batch block is
  not last (decoder layers with categorical covariates after the batch one-hot, the ATAC head's
  depth column); :func:`expand_batch_state` re-does the expansion layout-aware, and
- its freezing (``_set_params_online_update``) is keyed on scVI's module names and lets the
  reference batch columns train; here *only* the new batch entries (and optionally the query
  modalities' encoders) train, and the reference entries stay bit-identical
  (:class:`ReferenceFreeze`), also under weight decay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from scvi import REGISTRY_KEYS
from scvi.model.base import ArchesMixin
from scvi.nn import FCLayers
from torch import nn

from ._mudata_setup import is_mudata
from ._query_align import QUERY_UNS_KEY, prepare_anndata, prepare_mudata
from ._query_masks import check_query_cells_measure_something, install_query_feature_masks
from ._validation import RemadomSetupError

logger = logging.getLogger(__name__)

_NO_BATCH_KEY = "_scvi_batch"  # scvi-tools' placeholder column when setup had batch_key=None


# ------------------------------------------------------------------ state expansion
def _enclosing_fclayers(module: nn.Module, name: str) -> FCLayers | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        sub = module.get_submodule(".".join(parts[:i]))
        if isinstance(sub, FCLayers):
            return sub
    return None


def _batch_block(ref_module: nn.Module, name: str, old_shape, new_shape) -> tuple[int, int]:
    """``(dim, start)`` of the reference's batch block in parameter ``name``.

    - A linear layer inside :class:`scvi.nn.FCLayers` sees ``[x, continuous, one-hot categories]``
      with the batch first among the categories: the block starts at
      ``in_features - sum(n_cat_list)``.
    - Another linear layer (a likelihood head with ``batch_effect="additive"``) sees
      ``[h, batch one-hot, extra inputs]``: the block starts after the decoder width ``h``.
    - Any other tensor (per-batch dispersion or ADT background) is indexed by batch along the
      grown dimension: the block starts at 0.
    """
    dims = [d for d in range(len(old_shape)) if old_shape[d] != new_shape[d]]
    if len(dims) != 1:
        raise RuntimeError(f"Cannot extend {name}: shapes {tuple(old_shape)} -> {tuple(new_shape)}.")
    dim = dims[0]
    owner_name = name.rpartition(".")[0]
    owner = ref_module.get_submodule(owner_name) if owner_name else ref_module
    if isinstance(owner, nn.Linear) and dim == 1:
        fc = _enclosing_fclayers(ref_module, owner_name)
        if fc is not None:
            return dim, owner.in_features - sum(fc.n_cat_list)
        modality = name.split(".")[1]
        decoder = ref_module.decoders[modality]  # its width: the rank of a factorised decoder (nn/_low_rank.py)
        return dim, getattr(decoder, "rank", None) or decoder.body.fc_layers[-1][0].out_features
    return dim, 0


def expand_batch_state(
    ref_state: dict, query_module: nn.Module, ref_module: nn.Module, n_ref_batch: int, n_batch: int
) -> tuple[dict, dict]:
    """State dict of ``query_module`` holding the reference's values at the reference positions.

    Returns
    -------
    ``(state, trainable)``: the expanded state and, per grown tensor, a boolean mask of the new
    batch entries (initialized as the query module initialized them).
    """
    state = {k: v.detach().clone() for k, v in query_module.state_dict().items()}
    trainable = {}
    n_new = n_batch - n_ref_batch
    for name, old in ref_state.items():
        new = state[name]
        old = old.to(new.device)
        if old.shape == new.shape:
            state[name] = old.clone()
            continue
        dim, start = _batch_block(ref_module, name, old.shape, new.shape)
        if new.shape[dim] - old.shape[dim] != n_new:
            raise RuntimeError(
                f"{name} grew by {new.shape[dim] - old.shape[dim]}, not by the {n_new} new batches."
            )
        end = start + n_ref_batch
        fixed = new.clone()
        fixed.narrow(dim, 0, end).copy_(old.narrow(dim, 0, end))
        tail = old.shape[dim] - end
        if tail:
            fixed.narrow(dim, end + n_new, tail).copy_(old.narrow(dim, end, tail))
        mask = torch.zeros_like(fixed, dtype=torch.bool)
        mask.narrow(dim, end, n_new).fill_(True)
        state[name], trainable[name] = fixed, mask
    return state, trainable


# ------------------------------------------------------------------------ freezing
class ReferenceFreeze:
    """Train only chosen parameters, or chosen entries of a parameter; the rest stays bit-identical.

    Fully frozen parameters get ``requires_grad=False`` (the optimizer skips them). Partly
    trainable ones keep a gradient mask hook, and :meth:`restore` writes the reference entries
    back after each optimizer step, so weight decay or momentum cannot move them either.

    Parameters
    ----------
    module
        The query module.
    trainable
        Parameter name -> boolean mask of its trainable entries, or ``None`` for the whole parameter.
    """

    def __init__(self, module: nn.Module, trainable: dict[str, torch.Tensor | None]):
        self.module = module
        self.saved = {}
        self.hooks = []
        params = dict(module.named_parameters())
        for name, p in params.items():
            mask = trainable.get(name, False)
            if mask is False:
                p.requires_grad_(False)
                continue
            p.requires_grad_(True)
            if mask is not None:
                mask = mask.to(p.device)
                self.saved[name] = (p.detach().clone(), mask)
                self.hooks.append(p.register_hook(lambda g, m=mask: g * m.to(g.device, g.dtype)))

    @property
    def n_trainable(self) -> int:
        """Number of trainable entries."""
        total = 0
        for name, p in self.module.named_parameters():
            if p.requires_grad:
                total += int(self.saved[name][1].sum()) if name in self.saved else p.numel()
        return total

    @torch.no_grad()
    def restore(self) -> None:
        """Write the frozen reference entries back."""
        params = dict(self.module.named_parameters())
        for name, (ref, mask) in self.saved.items():
            p = params[name]
            p.copy_(torch.where(mask.to(p.device), p, ref.to(p.device)))


class _RestoreReferenceEntries(Callback):
    def __init__(self, freeze: ReferenceFreeze):
        self.freeze = freeze

    def on_train_batch_end(self, *args, **kwargs):
        self.freeze.restore()

    def on_train_end(self, *args, **kwargs):
        self.freeze.restore()


def set_query_train_modes(module: nn.Module, train_encoders: Sequence[str]) -> None:
    """Training modes of a query module: the encoders being trained in train mode, the rest in eval mode.

    - Frozen parts stay in eval mode (as scvi-tools' ``ArchesMixin`` leaves them): with the default
      frozen encoders the query latent the decoders' new batch entries are fitted to is the
      deterministic reference embedding that ``get_latent_representation`` returns, not a
      dropout-perturbed one. REMADOM's decoders have no dropout and no layer keeps running
      statistics (LayerNorm, no batch norm), so eval mode changes nothing else for them.
    - Encoders named in ``train_encoders`` train with dropout, as in the reference's training.
    - The module itself stays in eval mode, so modality dropout (a reference-training device for
      learning a joint latent from paired cells) is off for queries.
    """
    module.eval()
    for name in train_encoders:
        module.encoders[name].train()


class _QueryTrainModes(Callback):
    """Apply :func:`set_query_train_modes` when query training starts (Lightning keeps per-module modes)."""

    def __init__(self, train_encoders: Sequence[str]):
        self.train_encoders = list(train_encoders)

    def on_train_start(self, trainer, pl_module):
        set_query_train_modes(pl_module.module, self.train_encoders)


# --------------------------------------------------------------------------- mixin
def _batch_state(model) -> dict:
    state = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
    return {"key": state.original_key, "categories": [str(c) for c in state.categorical_mapping]}


def _query_batches(view, key: str) -> list[str]:
    values = view.obs[key]
    cats = values.cat.categories if hasattr(values, "cat") else values.unique()
    present = set(values.astype(str))
    return [str(c) for c in cats if str(c) in present]


class QueryMixin(ArchesMixin):
    """Reference mapping for REMADOM: ``prepare_query_*``, ``load_query_data``, unseen-batch refusal."""

    @staticmethod
    def _as_reference(reference):
        if isinstance(reference, (str, os.PathLike)):
            from ._remadom import REMADOM

            try:
                return REMADOM.load(str(reference))
            except ValueError as err:
                raise RemadomSetupError(
                    f"Could not load the reference from {str(reference)!r} without its data ({err}). Save it with "
                    "save_anndata=True, or load it yourself with REMADOM.load(dir, adata=reference_data) and pass "
                    "the model."
                ) from err
        return reference

    @classmethod
    def prepare_query_anndata(
        cls,
        adata,
        reference_model,
        modalities: Sequence[str] | None = None,
        ignore_unknown_modalities: bool = False,
        **kwargs,
    ):
        """Align a query AnnData to the reference; returns a **new** AnnData.

        The query keeps each modality where the reference had it (same layer / ``obsm`` key);
        it may carry any subset of the reference's modalities and its own per-cell masks
        (the reference's mask columns, e.g. ``obs["has_adt"]``; for a modality the reference
        registered without a mask, ``obs["has_<modality>"]``, which the returned AnnData always
        has). Per modality the features are matched by name: reordered, query-only features
        dropped, absent reference features filled with zeros. What was done is logged and stored
        in ``uns["remadom_query"]``; :meth:`load_query_data` marks the filled features unmeasured
        in the query's feature masks (no loss, missing to the encoders).

        Unlike scvi-tools' ``inplace=True`` default, the user's object is never modified.

        Parameters
        ----------
        adata
            Query AnnData.
        reference_model
            Trained reference, or the directory it was saved to (with ``save_anndata=True``).
        modalities
            Reference modalities the query carries. Default: every reference modality whose
            layer / ``obsm`` key exists in the query (RNA in ``X``: when ``adata.n_vars > 0``).
        ignore_unknown_modalities
            Drop (with a warning) names in ``modalities`` the reference never had, instead of failing.

        Raises
        ------
        RemadomSetupError
            An unknown modality, or a modality without any feature in common with the reference.
        """
        if kwargs.get("inplace"):
            raise TypeError(
                "REMADOM.prepare_query_anndata never modifies its input; use the returned AnnData."
            )
        return prepare_anndata(
            adata, cls._as_reference(reference_model), modalities, ignore_unknown_modalities
        )

    @classmethod
    def prepare_query_mudata(cls, mdata, reference_model, ignore_unknown_modalities: bool = False, **kwargs):
        """Align a query MuData to a reference set up with ``setup_mudata``; returns a **new** MuData.

        ``mdata.mod`` may hold any subset of the reference's modalities (same ``mod`` keys);
        within each, cells absent from it lack it, as in ``setup_mudata``. Features are aligned
        by name as in :meth:`prepare_query_anndata`; modalities absent from the query become
        empty (zero-cell) modalities. The user's MuData is never modified.

        Parameters
        ----------
        mdata
            Query MuData.
        reference_model
            Trained reference, or the directory it was saved to (with ``save_anndata=True``).
        ignore_unknown_modalities
            Drop (with a warning) ``mdata.mod`` entries the reference never had, instead of failing.
        """
        if kwargs.get("inplace"):
            raise TypeError("REMADOM.prepare_query_mudata never modifies its input; use the returned MuData.")
        return prepare_mudata(mdata, cls._as_reference(reference_model), ignore_unknown_modalities)

    @classmethod
    def load_query_data(
        cls,
        adata=None,
        reference_model=None,
        *,
        train_encoders: bool | Sequence[str] = False,
        batch_collision: str = "error",
        batch_key: str | None = None,
        ignore_unknown_modalities: bool = False,
        accelerator: str = "auto",
        device: int | str = "auto",
        **kwargs,
    ):
        """A query model: the reference's weights, frozen, plus new rows for the query's batches.

        New batch categories are appended after the reference's; every tensor indexed by batch
        (decoder covariate columns, additive batch offsets, per-batch dispersion and ADT
        background) gets new entries, and only those train. The reference entries stay
        bit-identical. The query may carry any subset of the reference's modalities and its own
        mix per cell; an unprepared query is aligned with ``prepare_query_*`` first.

        Parameters
        ----------
        adata
            Query AnnData or MuData (prepared or not).
        reference_model
            Trained reference, or the directory it was saved to (with ``save_anndata=True``).
        train_encoders
            Also train the encoders of the modalities the query carries (``True``) or of the
            named ones. Default: encoders stay frozen, so the query latent is the reference
            encoders' embedding and the decoders absorb the new batch effects.
        batch_collision
            A query batch named like a reference batch: ``"error"`` (default) refuses, since the
            query cells would be decoded with that reference batch's (frozen) parameters;
            ``"merge"`` accepts it as the same batch.
        batch_key
            The query's batch column, if it differs from the reference's. Refused when the
            reference was trained without ``batch_key``: its decoders have no batch input to extend.
        ignore_unknown_modalities
            Passed to ``prepare_query_*`` when the query is not prepared yet.
        accelerator, device
            Where the model is placed.

        Notes
        -----
        Query training runs the frozen parts in evaluation mode (no dropout, no modality dropout;
        as scvi-tools' ``ArchesMixin`` leaves them) and the encoders named by ``train_encoders`` in
        train mode (with dropout); see :func:`set_query_train_modes`.

        Raises
        ------
        RemadomSetupError
            See ``batch_collision`` and ``batch_key``; also a single-batch reference asked to
            add batches, or new categories of another categorical covariate.
        """
        if reference_model is None or adata is None:
            raise ValueError("Pass the query data and the reference: load_query_data(query, reference).")
        ref = cls._as_reference(reference_model)
        if batch_collision not in ("error", "merge"):
            raise ValueError(f"batch_collision={batch_collision!r}; use 'error' or 'merge'.")
        if QUERY_UNS_KEY not in adata.uns:
            prepare = cls.prepare_query_mudata if is_mudata(adata) else cls.prepare_query_anndata
            adata = prepare(adata, ref, ignore_unknown_modalities=ignore_unknown_modalities)
        report = adata.uns[QUERY_UNS_KEY]
        if adata.n_obs == 0:
            raise RemadomSetupError("The query has no cells.")
        view = adata
        if is_mudata(adata):
            view, _ = cls._build_mudata_view(adata, ref.mudata_setup_)
            view.uns[QUERY_UNS_KEY] = report
        ref_batches = _batch_state(ref)
        view = _check_query_batches(view, ref_batches, batch_key, batch_collision, own_view=view is not adata)
        if is_mudata(adata):
            cls._remember_view(adata, view)
        _check_query_covariates(view, ref)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", category=RuntimeWarning
            )  # statistics of modalities with no cells
            model = super().load_query_data(view, ref, unfrozen=True, accelerator=accelerator, device=device)
        n_ref = len(ref_batches["categories"])
        state, trainable = expand_batch_state(
            ref.module.state_dict(), model.module, ref.module, n_ref, model.summary_stats.n_batch
        )
        model.module.load_state_dict(state)
        carried = [m for m, entry in report["modalities"].items() if entry is not None]
        if train_encoders is True:
            train_encoders = carried
        model.query_ = {
            "reference_batches": ref_batches["categories"],
            "query_batches": _query_batches(view, ref_batches["key"]),
            "modalities": report["modalities"],
            "train_encoders": list(train_encoders or []),
            "trainable_entries": {k: v.cpu() for k, v in trainable.items()},
            # per modality the reference batches that measured it: impute decodes with them
            "reference_decode_batches": {
                m: [ref_batches["categories"][int(c)] for c in ref._valid_decode_batches(m)]
                for m in ref.modality_names
            },
        }
        model._apply_query_state()
        check_query_cells_measure_something(model)  # #11: no query cell with a modality but no measured feature
        # with nothing to train (no new batch, frozen encoders) the reference embedding is final
        model.is_trained_ = model._reference_freeze.n_trainable == 0
        return model

    # ---------------------------------------------------------------- query state
    def _apply_query_state(self) -> None:
        """Install the query's feature masks and reference freeze on the module (also after load)."""
        query = getattr(self, "query_", None)
        if not query:
            return
        install_query_feature_masks(self)  # filled features: unmeasured entries of the query batches
        unknown = set(query["train_encoders"]) - set(self.modality_names)
        if unknown:
            raise ValueError(
                f"train_encoders names unknown modalities {sorted(unknown)}; the model has "
                f"{self.modality_names}."
            )
        trainable = dict(query["trainable_entries"])
        for name, _ in self.module.named_parameters():
            parts = name.split(".")
            if parts[0] == "encoders" and parts[1] in query["train_encoders"]:
                trainable[name] = None
        self._reference_freeze = ReferenceFreeze(self.module, trainable)

    def _reference_decode_batches(self, target: str) -> np.ndarray:
        """Batch codes of the reference batches that measured ``target`` (empty unless a query model)."""
        query = getattr(self, "query_", None) or {}
        names = (query.get("reference_decode_batches") or {}).get(target, [])
        categories = [str(c) for c in _batch_state(self)["categories"]]
        return np.asarray([categories.index(n) for n in names if n in categories], dtype=np.int64)

    def _query_trainer_kwargs(self, trainer_kwargs: dict) -> dict:
        """Add the reference-restoring callback when training a query model."""
        freeze = getattr(self, "_reference_freeze", None)
        if freeze is None:
            return trainer_kwargs
        if freeze.n_trainable == 0:
            raise RemadomSetupError(
                "Nothing to train: the query has no new batch and train_encoders is off, so its latent is "
                "already the reference's embedding. Call get_latent_representation() directly, or pass "
                "train_encoders=True to load_query_data."
            )
        callbacks = list(trainer_kwargs.get("callbacks") or [])
        modes = _QueryTrainModes(self.query_["train_encoders"])
        return {**trainer_kwargs, "callbacks": [*callbacks, _RestoreReferenceEntries(freeze), modes]}

    @contextlib.contextmanager
    def _query_training(self):
        """Around query training: Lightning's warning about modules in eval mode is expected there.

        The frozen parts are in eval mode on purpose (:func:`set_query_train_modes`).
        """
        if getattr(self, "_reference_freeze", None) is None:
            yield
            return
        from lightning.pytorch.utilities.warnings import PossibleUserWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=PossibleUserWarning)
            yield

    # -------------------------------------------------------------- unseen batches
    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        if adata is not None and self.adata_manager is not None and self.get_anndata_manager(adata) is None:
            key, known = _batch_state(self)["key"], set(_batch_state(self)["categories"])
            if key != _NO_BATCH_KEY and key in adata.obs:
                unseen = sorted(set(adata.obs[key].astype(str)) - known)
                if unseen:
                    raise RemadomSetupError(
                        f"obs[{key!r}] has batches {unseen[:10]} the model was not trained on. Map them first: "
                        "q = REMADOM.load_query_data(data, model); q.train(); q.get_latent_representation()."
                    )
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def view_anndata_setup(self, adata=None, hide_state_registries: bool = False) -> None:
        """scvi-tools' setup summary, plus the query mapping for a query model."""
        import rich.pretty
        import rich.table

        super().view_anndata_setup(adata=adata, hide_state_registries=hide_state_registries)
        query = getattr(self, "query_", None)
        if not query:
            return
        table = rich.table.Table(title="Query mapping onto the reference")
        for col in ("modality", "reference features", "found", "filled (masked: not in loss)", "query-only dropped"):
            table.add_column(col)
        for m, entry in query["modalities"].items():
            if entry is None:
                table.add_row(m, str(len(self.feature_names_[m])), "absent", "-", "-")
            else:
                table.add_row(
                    m,
                    str(entry["n_reference"]),
                    str(entry["n_found"]),
                    str(entry["n_filled"]),
                    str(entry["n_dropped"]),
                )
        rich.print(table)
        new = [b for b in query["query_batches"] if b not in query["reference_batches"]]
        rich.print(
            f"reference batches: {query['reference_batches']}; new query batches (trained): {new}; "
            f"trained encoders: {query['train_encoders'] or 'none'}"
        )


def _check_query_batches(
    view, ref_batches: dict, batch_key: str | None, batch_collision: str, own_view: bool
):
    key = ref_batches["key"]
    if key == _NO_BATCH_KEY:
        if batch_key is not None:
            raise RemadomSetupError(
                f"The reference was trained without batch_key, so its decoders have no batch input and "
                f"batch_key={batch_key!r} cannot add query batches. Map without batch_key (the query is decoded "
                "as the reference's single batch), or retrain the reference with a batch_key."
            )
        return view
    if batch_key is not None and batch_key != key:
        if batch_key not in view.obs:
            raise RemadomSetupError(f"batch_key={batch_key!r} is not a column of the query's obs.")
        view = view if own_view else view.copy()  # never add a column to the user's object
        view.obs[key] = view.obs[batch_key]
    if key not in view.obs:
        raise RemadomSetupError(
            f"The reference's batch column {key!r} is not in the query's obs; add it, or name the query's "
            "batch column with batch_key=."
        )
    query = _query_batches(view, key)
    shared = [b for b in query if b in ref_batches["categories"]]
    new = [b for b in query if b not in ref_batches["categories"]]
    if shared and batch_collision == "error":
        raise RemadomSetupError(
            f"Query batches {shared} have the names of reference batches. Their cells would be decoded with "
            "the (frozen) reference batch parameters, as if they were the same batch. Rename them if they are "
            "a different study, or pass batch_collision='merge' if they really are the same batch."
        )
    if new and len(ref_batches["categories"]) < 2:
        raise RemadomSetupError(
            f"The reference was trained on a single batch ({ref_batches['categories']}), so its decoders have no "
            f"batch input to extend with the query batches {new}. Retrain the reference on two or more batches, "
            "or map the query as that batch (batch_collision='merge' with the same batch name)."
        )
    return view


def _check_query_covariates(view, ref) -> None:
    state = ref.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
    for key, mapping in (getattr(state, "mappings", None) or {}).items():
        if key in view.obs:
            new = sorted(set(view.obs[key].astype(str)) - {str(c) for c in mapping})
            if new:
                raise RemadomSetupError(
                    f"Categorical covariate {key!r} has categories {new[:5]} the reference never saw; reference "
                    "mapping extends the batch only. Map them to reference categories."
                )
