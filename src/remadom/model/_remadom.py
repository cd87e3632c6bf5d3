"""The user-facing REMADOM model."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin, VAEMixin
from scvi.utils import setup_anndata_dsp

from .._ondisk import is_sparse_on_disk
from .._row_reads import RowBatchAnnDataLoader
from ..module import RemadomModule
from ..train import RemadomTrainingPlan, SparseBatchDataSplitter
from . import _checks, _io
from ._cell_feature_masks import cell_feature_mask_fields, registered_cell_masks, split_feature_masks
from ._confounding import (
    confounded_batches,
    resolve_encoder_inputs,
    resolve_fusion,
    resolve_paired_anchor_weight,
)
from ._feature_masks import FeatureMaskField, feature_mask_frames, feature_mask_tables
from ._fields import ModalityField, feature_names, registered_feature_names, registered_specs
from ._mudata_setup import MUDATA_SETUP_UNS_KEY, MuDataSetupMixin, is_mudata
from ._prediction import PredictionMixin
from ._query import QueryMixin
from ._setup import apply_likelihoods, build_specs, modality_statistics, registry_fields, sugar_to_modalities
from ._train_defaults import resolve_train_arguments
from ._validation import (
    RemadomSetupError,
    check_categorical_key,
    check_masks,
    check_modality_matrix,
    get_modality_matrix,
    read_mask,
)

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)


class REMADOM(PredictionMixin, MuDataSetupMixin, QueryMixin, VAEMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Mosaic multi-omic integration with a Product-of-Experts VAE.

    Each modality (RNA, ATAC, ADT, or generic counts) has its own encoder producing a
    Gaussian expert; the experts of the modalities a cell actually has are fused with a
    standard-normal prior expert (PoE). Decoders with proper likelihoods, conditioned
    on batch and covariates, reconstruct the observed modalities only (masked ELBO).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, or MuData registered with
        :meth:`setup_mudata`.
    n_latent
        Latent dimension.
    n_hidden
        Width of hidden layers.
    n_layers
        Number of hidden layers of each encoder and decoder.
    dropout_rate
        Encoder dropout.
    likelihoods
        Per-modality likelihood, e.g. ``{"rna": "zinb", "adt": "gaussian"}``. Defaults:
        RNA ``nb``, ATAC ``bernoulli``, ADT ``nbmixture``, counts ``nb``.
    modality_weights
        Per-modality weight of the reconstruction term (default 1).
    modality_dropout
        Probability of hiding each observed modality from the encoder on cells with
        several, during training (see :class:`~remadom.module.RemadomModule`).
    consistency_weight
        Weight of the unimodal-to-joint posterior consistency term.
    dispersion
        ``"gene"``, ``"gene-batch"`` or ``"gene-cell"`` for count likelihoods.
    batch_effect
        ``"nonlinear"`` (batch is an input of the decoders' hidden layer, as in scVI) or
        ``"additive"`` (a per-feature, per-batch offset in the likelihood's last layer only).
        See :class:`~remadom.module.RemadomModule`.
    negative_sampling
        Train Bernoulli (ATAC) modalities with an unbiased sampled likelihood: every open peak
        of the minibatch plus this fraction of all peaks for the normaliser, reweighted (see
        :mod:`remadom.nn._sampled_bernoulli`); faster on wide peak sets. ``None``: full likelihood.
    encoder_inputs
        ``{modality: transform}`` overriding the encoder input transform of a modality
        (``"log1p"``, ``"clr"``, ``"identity"``; see :class:`~remadom.nn.networks.EncoderInput`);
        ``None``: each modality's own (its ``encoder_input`` at setup, else its likelihood's
        ``default_encoder_input``). ``"auto"`` (default): ADT encoded from its CLR instead of
        ``log1p`` when a batch is confounded with the modalities it measured (no cell of it shares
        its set of modalities with a cell of another batch, e.g. an ADT-only study next to a
        CITE-seq one; listed in ``model.confounded_batches_``), unless setup gave the modality an
        ``encoder_input`` or its likelihood takes values that may be negative (``gaussian``);
        else each modality's own. The user guide section "When
        studies measured different modalities" gives the ablation behind it.
    paired_anchor_weight
        Weight of the paired-anchor term (:mod:`remadom.nn._alignment_anchor`): on cells with
        several modalities, each single-modality posterior mean is pulled to the joint one, so the
        encoders learn from the paired cells where one modality should place a cell. ``"auto"``
        (default): on (weight ``CONFOUNDED_PAIRED_ANCHOR_WEIGHT``) when a batch is confounded, else 0.
        ``0`` turns it off.
    fusion
        ``"poe"`` (Product of Experts with a standard-normal prior expert) or ``"unshrunk"``
        (the same mean without the prior's shrinkage of single-expert posteriors towards 0; see
        :func:`~remadom.nn._alignment_anchor.unshrunk_fusion`). ``"auto"`` (default):
        ``"unshrunk"`` when a batch is confounded, else ``"poe"``.
    decoder_rank
        ``{modality: rank}``, e.g. ``{"atac": 32}``: the modality's output layer is factorised,
        ``n_hidden -> rank -> n_features`` (a bias-free projection, then the likelihood's last
        layer on ``rank`` inputs), so the wide layer costs ``rank`` instead of ``n_hidden``
        multiply-adds and parameters per feature (:mod:`remadom.nn._low_rank`). ``None``
        (default): full output layers.
    encoder_rank
        The same for the encoder's input layer, ``n_features -> rank -> n_hidden``.

    Examples
    --------
    >>> remadom.REMADOM.setup_anndata(adata, rna_layer="counts", atac_obsm_key="X_atac", batch_key="batch")
    >>> model = remadom.REMADOM(adata)
    >>> model.train(max_epochs=50)
    >>> adata.obsm["X_remadom"] = model.get_latent_representation()
    """

    _module_cls = RemadomModule
    _training_plan_cls = RemadomTrainingPlan
    _data_splitter_cls = SparseBatchDataSplitter
    _data_loader_cls = RowBatchAnnDataLoader  # scvi's AnnDataLoader, one HDF5 read per minibatch when backed

    def __init__(
        self,
        adata,
        n_latent: int = 20,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        likelihoods: dict[str, str] | None = None,
        modality_weights: dict[str, float] | None = None,
        modality_dropout: float = 0.3,
        consistency_weight: float = 0.0,
        dispersion: str = "gene",
        batch_effect: str = "nonlinear",
        negative_sampling: float | None = None,
        encoder_inputs: dict[str, str] | str | None = "auto",
        paired_anchor_weight: float | str = "auto",
        fusion: str = "auto",
        decoder_rank: dict[str, int] | None = None,
        encoder_rank: dict[str, int] | None = None,
    ):
        if is_mudata(adata):
            adata = self._mudata_view(adata)
        super().__init__(adata)
        self.mudata_setup_ = adata.uns.get(MUDATA_SETUP_UNS_KEY)
        registered = registered_specs(self.adata_manager)
        self.specs = apply_likelihoods(registered, likelihoods)
        _checks.check_model_args(n_latent, n_hidden, n_layers, dropout_rate, modality_dropout, consistency_weight,
                                 modality_weights, [s.name for s in self.specs])
        for old, new in zip(registered, self.specs):
            if new.likelihood != old.likelihood:
                check_modality_matrix(adata, new, get_modality_matrix(adata, new))
        n_features = {m: len(names) for m, names in registered_feature_names(self.adata_manager).items()}
        self.confounded_batches_ = confounded_batches(
            self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel(),
            {s.name: read_mask(adata, s) for s in self.specs},
        )
        encoder_inputs = resolve_encoder_inputs(encoder_inputs, self.confounded_batches_, self.specs)
        paired_anchor_weight = resolve_paired_anchor_weight(paired_anchor_weight, self.confounded_batches_)
        fusion = resolve_fusion(fusion, self.confounded_batches_)
        cat_state = self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
        modalities = [{**s.to_dict(), "n_features": n_features[s.name]} for s in self.specs]
        feature_masks = feature_mask_tables(
            self.adata_manager, self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        )
        self.module = self._module_cls(
            modalities=modalities,
            n_batch=self.summary_stats.n_batch,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            n_cats_per_cov=list(getattr(cat_state, "n_cats_per_key", []) or []),
            n_continuous_cov=self.summary_stats.get("n_extra_continuous_covs", 0),
            modality_weights=modality_weights,
            modality_dropout=modality_dropout,
            consistency_weight=consistency_weight,
            dispersion=dispersion,
            batch_effect=batch_effect,
            encoder_inputs=encoder_inputs,
            paired_anchor_weight=paired_anchor_weight,
            fusion=fusion,
            modality_stats=modality_statistics(
                adata, self.specs, feature_masks=feature_masks,
                batch_codes=self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel(),
            ),
            feature_masks=feature_masks,
            cell_feature_masks=sorted(registered_cell_masks(self.adata_manager)),
            negative_sampling=negative_sampling,
            decoder_rank=decoder_rank,
            encoder_rank=encoder_rank,
        )
        self._model_summary_string = (
            f"REMADOM: modalities {[(s.name, s.likelihood) for s in self.specs]}, n_latent {n_latent}, "
            f"n_hidden {n_hidden}, n_layers {n_layers}, n_batch {self.summary_stats.n_batch}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        rna_layer: str | None = None,
        atac_obsm_key: str | None = None,
        adt_obsm_key: str | None = None,
        *,
        modalities: dict[str, dict] | None = None,
        use_rna: bool = True,
        extra_modalities: dict[str, dict] | None = None,
        mask_keys: dict[str, str] | None = None,
        likelihoods: dict[str, str] | None = None,
        feature_masks: dict[str, pd.DataFrame] | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        **kwargs,
    ):
        """Register an AnnData holding one or more modalities.

        Each modality is one entry of ``modalities``; it may live in ``X``, a layer or
        ``obsm``, sparse or dense::

            REMADOM.setup_anndata(adata, modalities={
                "rna": {"layer": "counts"},                      # kind from the name; default likelihood
                "atac": {"obsm": "X_atac"},
                "adt": {"obsm": "X_adt", "likelihood": "gaussian", "mask": "has_adt"},
                "h3k27me3": {"obsm": "X_chip", "kind": "counts", "likelihood": "nb"},
            }, batch_key="batch")

        ``rna_layer`` / ``atac_obsm_key`` / ``adt_obsm_key`` / ``extra_modalities`` /
        ``use_rna`` are shorthand that build the same mapping.

        A modality is missing for a cell only where its mask column says so (default
        ``obs["has_<modality>"]``; without that column every cell has the modality).
        All-zero rows are data, never "missing".

        Like every scvi-tools model, setup stores its registry in ``adata.uns`` and adds
        integer-code columns ``_scvi_batch`` / ``_scvi_labels`` to ``adata.obs``; the
        data matrices are not modified.

        Parameters
        ----------
        %(param_adata)s
        rna_layer
            Shorthand: layer with raw RNA counts; ``None`` uses ``adata.X``.
        atac_obsm_key
            Shorthand: ``obsm`` key of the cells x peaks ATAC matrix (dense or scipy sparse).
        adt_obsm_key
            Shorthand: ``obsm`` key of the cells x proteins ADT counts (array or DataFrame; a
            DataFrame's columns, or ``uns["adt_names"]``, name the proteins).
        modalities
            ``{name: entry}``, in model order. An entry has one of ``"layer"`` (``None`` or
            ``"X"``: ``adata.X``) or ``"obsm"``, and optionally ``"kind"`` (one of
            :data:`~remadom.MODALITY_KINDS`; default from the name, ``"counts"`` for other names),
            ``"likelihood"`` (a name of :data:`~remadom.nn.LIKELIHOODS`; default per kind),
            ``"mask"`` (boolean obs column) and ``"encoder_input"``. Replaces the shorthand.
        use_rna
            Shorthand: set to ``False`` when the AnnData has no RNA.
        extra_modalities
            Shorthand: more modalities, ``{name: {"obsm_key": ..., "kind": "counts", "likelihood": "nb"}}``.
        mask_keys
            ``{modality: obs column}`` of boolean availability masks.
        likelihoods
            ``{modality: likelihood}``, checked against the data here (e.g.
            ``{"adt": "gaussian"}`` for non-integer ADT). The model's ``likelihoods``
            argument can still override it.
        feature_masks
            ``{modality: DataFrame}`` of booleans, batches (values of ``batch_key``) x features:
            which features each batch measured. Without it, masks are read from
            ``uns["remadom_feature_masks"]`` or ``varm["remadom_measured"]`` (written by
            :func:`remadom.data.concat_mosaic`); see :mod:`remadom.model._feature_masks`.
            A string value states a *per-cell* mask: ``{"adt": "adt_measured"}`` names
            ``adata.obsm["adt_measured"]``, a boolean ``(n_cells, n_features)`` matrix (dense, scipy
            sparse or a DataFrame with the modality's features as columns), ``True`` = measured; it
            is ANDed with a per-batch mask stated in ``uns``/``varm`` for the same modality (see
            :mod:`remadom.model._cell_feature_masks`). It stays in the data, like the ``has_<m>``
            columns: a loaded model and new data need the same ``obsm`` key.
            Unmeasured entries are left out of the likelihood, never guessed from zeros.
        %(param_batch_key)s
        %(param_labels_key)s
        %(param_cat_cov_keys)s
        %(param_cont_cov_keys)s
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        _checks.check_setup_keys(batch_key, labels_key, mask_keys, categorical_covariate_keys,
                                 continuous_covariate_keys)
        _checks.check_data_shape(adata)
        if modalities is None:
            modalities = sugar_to_modalities(rna_layer, atac_obsm_key, adt_obsm_key, use_rna, extra_modalities)
        elif rna_layer is not None or atac_obsm_key is not None or adt_obsm_key is not None or extra_modalities:
            raise RemadomSetupError(
                "Pass either modalities= or the shorthand rna_layer/atac_obsm_key/adt_obsm_key/"
                "extra_modalities, not both: put every modality in modalities=."
            )
        specs = build_specs(adata, modalities, mask_keys, likelihoods)
        fields = registry_fields(
            specs, batch_key, labels_key, categorical_covariate_keys, continuous_covariate_keys
        )
        for field in fields:
            if isinstance(field, ModalityField):
                field.validate_field(adata)
        check_masks({s.name: read_mask(adata, s) for s in specs}, adata.obs_names)
        check_categorical_key(adata, batch_key, "batch_key")
        check_categorical_key(adata, labels_key, "labels_key")
        for key in categorical_covariate_keys or []:
            check_categorical_key(adata, key, "categorical covariate")
        for key in continuous_covariate_keys or []:
            check_categorical_key(adata, key, "continuous covariate")
        _checks.check_continuous_covariates(adata, continuous_covariate_keys)
        if kwargs.get("source_registry") is None:  # a mapped query may lack a reference modality entirely
            _checks.check_observed_somewhere(adata, specs)
        names = {s.name: feature_names(adata, s) for s in specs}
        fields.append(FeatureMaskField(specs, batch_key, feature_masks, names))  # after the modality checks
        fields += cell_feature_mask_fields(split_feature_masks(feature_masks)[1])
        fields = _checks.loader_ready_fields(adata, fields)
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def feature_names_(self) -> dict[str, np.ndarray]:
        """Feature names of each modality, as registered (read-only; from the data registry)."""
        return registered_feature_names(self.adata_manager)

    @feature_names_.setter
    def feature_names_(self, saved: dict) -> None:
        # scvi-tools' load sets every saved ``*_`` attribute; models saved before the names
        # moved to the registry carry them: they must agree with the data's
        current = self.feature_names_
        for name, names in (saved or {}).items():
            if name in current and not np.array_equal(np.asarray(names, dtype=str), np.asarray(current[name], dtype=str)):
                raise RemadomSetupError(
                    f"The {name!r} features of this data do not match those the model was trained on. "
                    f"Subset/reorder the data to the model's features."
                )

    @property
    def modality_names(self) -> list[str]:
        """Names of the model's modalities, in model order."""
        return [s.name for s in self.specs]

    def _check_modalities(self, names: Sequence[str] | None, what: str) -> None:
        if names is None:
            return
        if isinstance(names, str):
            raise TypeError(f"{what} must be a list of modality names, e.g. [{names!r}].")
        unknown = set(names) - set(self.modality_names)
        if unknown:
            raise ValueError(f"{what} names unknown modalities {sorted(unknown)}; "
                             f"the model has {self.modality_names}.")

    def get_modality_masks(self, adata=None) -> dict[str, np.ndarray]:
        """Boolean availability mask of each modality, for ``adata`` (default: the training data).

        For a MuData the rows follow the model's view (``model.adata.obs_names``).
        """
        adata = self._validate_anndata(adata)
        return {s.name: read_mask(adata, s) for s in self.specs}

    def get_feature_masks(self) -> dict[str, pd.DataFrame]:
        """Features measured per batch: ``{modality: DataFrame(batch x feature, bool)}``.

        Only modalities with registered per-batch masks appear; the others were measured in full
        in every batch. Per-cell masks (``feature_masks={m: "<obsm key>"}``) are not returned:
        they are the data's own ``obsm[key]`` (named in :meth:`view_anndata_setup`); a modality
        with only a per-cell mask is absent here, one with both returns its per-batch table.
        """
        batches = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        return feature_mask_frames(self.module.feature_masks, self.modality_names, batches, self.feature_names_)

    def view_anndata_setup(self, adata=None, hide_state_registries: bool = False) -> None:
        """Print what was registered: per modality its source, cells with it, features, likelihood.

        For a MuData the modalities are described as ``mdata.mod`` entries (not the
        internal padded view); for an AnnData scvi-tools' registry summary follows.
        """
        from ._setup_summary import view_setup

        view_setup(self, adata, hide_state_registries, inherited=super().view_anndata_setup)

    def get_modality_data(self, modality: str, adata=None):
        """The registered raw matrix of ``modality`` (sparse or dense, as stored; zeros where missing)."""
        self._check_modalities([modality], "modality")
        adata = self._validate_anndata(adata)
        spec = next(s for s in self.specs if s.name == modality)
        matrix = get_modality_matrix(adata, spec)
        return matrix.to_numpy() if isinstance(matrix, pd.DataFrame) else matrix

    # ------------------------------------------------------------------ train
    def train(
        self,
        max_epochs: int | None = None,
        lr: float = 4e-3,
        weight_decay: float = 1e-6,
        batch_size: int = 256,
        train_size: float | None = 0.9,
        validation_size: float | None = None,
        kl_weight: float = 1.0,
        kl_warmup_epochs: int | None = None,
        modality_weights: dict | None = None,
        alignment_weight: float = 0.0,
        alignment_on: str = "batch",
        adversarial_weight: float | str = "auto",
        early_stopping: bool | None = None,
        reduce_lr_on_plateau: bool | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        precision: str | int | None = None,
        load_sparse_tensor: bool | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model with the masked ELBO.

        Parameters
        ----------
        max_epochs
            Passes through the data. Default: scvi-tools' heuristic (400 up to 20,000 cells,
            ``400 * 20000 / n_cells`` above); early stopping usually ends training sooner.
        lr, weight_decay
            Adam optimizer settings (the learning rate is TOTALVI's; it is lowered on plateaus,
            see ``reduce_lr_on_plateau``).
        batch_size
            Minibatch size.
        train_size, validation_size
            Train/validation split (see :class:`scvi.dataloaders.DataSplitter`).
        kl_weight
            Target KL weight (beta).
        kl_warmup_epochs
            Epochs over which beta rises linearly from 0 to ``kl_weight``. Default: a
            quarter of ``max_epochs`` (at most 50).
        modality_weights
            ``{modality: weight}`` or ``epoch -> {modality: weight}`` schedule.
        alignment_weight
            Weight of the optional latent MMD alignment (0 = off).
        alignment_on
            Align ``"batch"``es or modality-``"availability"`` groups (see
            :class:`~remadom.train.RemadomTrainingPlan`).
        adversarial_weight
            Weight of the adversarial mixing of batches on the latent (a batch classifier the
            encoders learn to fool, as in TOTALVI / MULTIVI; :mod:`remadom.nn._alignment_adversarial`).
            ``"auto"``: 1 when a batch is confounded with its modality set
            (``model.confounded_batches_``), else 0 (off). ``plan_kwargs`` may set
            ``adversarial_on`` / ``adversarial_schedule`` (see :class:`~remadom.train.RemadomTrainingPlan`).
        early_stopping
            Stop when the validation ELBO has not improved for 45 epochs after the KL warm-up,
            and end with the weights of the best validation epoch (kept in memory).
            Default: on whenever there are validation cells. ``early_stopping_patience`` and the
            other scvi-tools ``Trainer`` arguments go in ``**trainer_kwargs``.
        reduce_lr_on_plateau
            Multiply the learning rate by 0.6 when the validation ELBO has not improved for 30
            epochs (scvi-tools' ``lr_factor`` / ``lr_patience``, changeable in ``plan_kwargs``).
            Default: on whenever there are validation cells.

            These defaults (issue #13) come from measuring convergence on the benchmark
            scenarios: with the former ones (lr 1e-3, at most 200 epochs, no schedule, no early
            stopping) the validation ELBO of a 600-cell mosaic was still falling at epoch 400;
            see ``benchmarks/results_defaults.md``, "Defaults against defaults". Pass ``lr=1e-3,
            max_epochs=200, early_stopping=False, reduce_lr_on_plateau=False`` for the old
            behaviour.
        accelerator, devices, precision
            Lightning settings; ``precision="bf16-mixed"`` or ``"16-mixed"`` enables AMP
            (the likelihoods are still computed in float32). Default: ``"bf16-mixed"`` on
            GPUs that support it, float32 otherwise (:func:`remadom.train.default_precision`).
            Several devices: pass ``strategy="ddp"`` (scripts) or ``"ddp_spawn"`` (notebooks)
            in ``**trainer_kwargs``; ``batch_size`` is then per device.
        load_sparse_tensor
            Load sparse modalities (ATAC) as sparse tensors, densified on the device.
            Default: on whenever a registered modality is sparse.
        datasplitter_kwargs, plan_kwargs, **trainer_kwargs
            Passed to scvi-tools' DataSplitter, :class:`~remadom.train.RemadomTrainingPlan`
            and :class:`scvi.train.Trainer`.
        """
        max_epochs, early_stopping, load_sparse_tensor, plan = resolve_train_arguments(
            self, max_epochs=max_epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            train_size=train_size, validation_size=validation_size, kl_weight=kl_weight,
            kl_warmup_epochs=kl_warmup_epochs, modality_weights=modality_weights,
            alignment_weight=alignment_weight, alignment_on=alignment_on, adversarial_weight=adversarial_weight,
            early_stopping=early_stopping, reduce_lr_on_plateau=reduce_lr_on_plateau, accelerator=accelerator,
            precision=precision, load_sparse_tensor=load_sparse_tensor, datasplitter_kwargs=datasplitter_kwargs,
            plan_kwargs=plan_kwargs, trainer_kwargs=trainer_kwargs,
        )
        trainer_kwargs = self._query_trainer_kwargs(trainer_kwargs)
        with self._query_training():
            return super().train(
                max_epochs=max_epochs, accelerator=accelerator, devices=devices, train_size=train_size,
                validation_size=validation_size, batch_size=batch_size, early_stopping=early_stopping,
                load_sparse_tensor=load_sparse_tensor, datasplitter_kwargs=datasplitter_kwargs,
                plan_kwargs=plan, **trainer_kwargs,
            )

    def _has_sparse_modality(self) -> bool:
        return any(sp.issparse(m) or is_sparse_on_disk(m) for m in (get_modality_matrix(self.adata, s) for s in self.specs))

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        """scvi-tools' check, after validating new data as setup does (see :func:`_checks.conform_new_data`)."""
        if adata is not None and is_mudata(adata):
            adata = self._mudata_view(adata, self.mudata_setup_)
        if adata is not None and adata is not self.adata:
            adata = _checks.conform_new_data(self, adata)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _loader(self, adata, indices, batch_size):
        _checks.check_indices(indices, adata.n_obs)
        if batch_size is not None:
            _checks.check_int("batch_size", batch_size)
        return self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size,
                                      load_sparse_tensor=self._has_sparse_modality())

    # ------------------------------------------------------------------- load
    @classmethod
    def load(cls, dir_path: str, adata=None, *, trusted: bool = False, **kwargs):
        """Load a saved model; ``adata`` may be the AnnData or MuData it was trained on.

        The file is read without executing code (see :mod:`remadom.model._io` and
        docs/security.md); ``trusted=True`` reads a file holding other Python objects with full
        pickle, for files you wrote yourself. ``accelerator``, ``device`` and ``prefix`` are as
        in scvi-tools.

        Raises
        ------
        ModelFileError
            If the file is truncated, not a model file, or holds objects a REMADOM file never does.
        RemadomSetupError
            If the features of a modality differ from those the model was trained on
            (checked by each modality's :class:`~remadom.model.ModalityField`), or the data
            lacks a mask column the model registered.
        """
        attr_dict, _, state_dict = _io.load_saved_files(dir_path, prefix=kwargs.get("prefix"), trusted=trusted)
        adata = _io.default_adata(dir_path, adata, kwargs)
        if adata is not None and is_mudata(adata):
            adata = cls._mudata_view(adata, attr_dict.get("mudata_setup_"))
        if adata is not None:
            _checks.check_registered_masks(attr_dict["registry_"], adata)
        # each ModalityField's transfer_field checks the features of ``adata`` against the registry
        model = _io.load_model(cls, adata, attr_dict, state_dict, **kwargs)
        model._apply_query_state()
        return model

    def save(self, dir_path: str, prefix: str | None = None, overwrite: bool = False, save_anndata: bool = False,
             save_kwargs: dict | None = None, **anndata_write_kwargs) -> None:
        """Save the model to ``dir_path/model.pt`` as plain data that :meth:`load` reads without running code."""
        _io.save_model(self, dir_path, prefix=prefix, overwrite=overwrite, save_anndata=save_anndata,
                       save_kwargs=save_kwargs, **anndata_write_kwargs)

    @classmethod
    def convert_legacy_save(cls, *args, **kwargs):
        """Not available: it unpickles with full pickle, and REMADOM never wrote scvi-tools' pre-0.15 format."""
        raise NotImplementedError("REMADOM models need no legacy conversion; load them with REMADOM.load.")

    @staticmethod
    def load_registry(dir_path: str, prefix: str | None = None) -> dict:
        """The registry saved with a model, read without running code."""
        return _io.load_saved_files(dir_path, prefix=prefix)[0]["registry_"]
