"""The run configuration: one Pydantic model tree, the single home of every default.

Every section forbids unknown keys, so a typo (``n_latnet``) is an error, not a silently
ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ._registry_names import (
    builtin_encoder_inputs,
    builtin_likelihoods,
    builtin_modality_kinds,
    known_kind,
    known_likelihood,
)
from ._signature_defaults import REMADOM


def _default(method, name: str):
    """Default of ``name`` in ``method``'s signature: model defaults live in the model only."""
    return method.defaults[name]


#: A likelihood name, checked against :data:`remadom.nn.LIKELIHOODS` (the schema lists the built-in ones;
#: names are read from the source, so validating a config does not import torch, see ``_registry_names``).
Likelihood = Annotated[str, AfterValidator(known_likelihood),
                       WithJsonSchema({"type": "string", "enum": list(builtin_likelihoods())})]
Kind = Annotated[str, AfterValidator(known_kind),
                 WithJsonSchema({"type": "string", "enum": list(builtin_modality_kinds())})]
EncoderInput = Literal[builtin_encoder_inputs()]
Precision = Literal["32", "bf16-mixed", "16-mixed"]
#: ``data.feature_masks`` value that asks for the data's own feature masks (uns/varm convention).
FEATURE_MASKS_FROM_DATA = "from_data"
#: File endings ``data.feature_masks`` reads as a batch x feature table.
FEATURE_MASK_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def _accepts_bool(annotation) -> bool:
    import typing

    return annotation is bool or any(_accepts_bool(a) for a in typing.get_args(annotation))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """``max_epochs: true`` is a typo, not 1: booleans only where a field is boolean."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation):
                    raise ValueError(f"{name} must be a number or string, not the boolean {value}")
        return data


class MockDataConfig(_Section):
    """Mock data generated on the fly when ``data.path`` is null (see :mod:`remadom.data.mock`)."""

    problem: str = Field("mosaic", description="Mock problem type, e.g. 'mosaic'.")
    n_cells: int = Field(600, gt=0)
    n_genes: int = Field(200, gt=0)
    n_peaks: int = Field(400, gt=0)
    n_proteins: int = Field(20, gt=0)
    seed: int | None = Field(None, description="Seed of the generator; null uses the run seed.")


class ModalityConfig(_Section):
    """One modality: where it lives and how it is modelled (an entry of ``data.modalities``)."""

    layer: str | None = Field(None, description="AnnData layer holding it; null or 'X' is adata.X (the default).")
    obsm: str | None = Field(None, description="AnnData obsm key holding it (instead of a layer).")
    mod: str | None = Field(None, description="MuData only: the mdata.mod key (default: the modality's name).")
    kind: Kind | None = Field(None, description="Modality kind; default from the name (rna, atac, adt; else counts).")
    likelihood: Likelihood | None = Field(None, description="Likelihood; default per kind.")
    mask: str | None = Field(None, description="Boolean obs column of availability; default has_<name> if present.")
    encoder_input: EncoderInput | None = Field(None, description="Encoder input transform; default per likelihood.")

    @model_validator(mode="after")
    def _one_place(self) -> ModalityConfig:
        if self.layer is not None and self.obsm is not None:
            raise ValueError("give either `layer` or `obsm`, not both")
        return self

    def setup_entry(self) -> dict:
        """The entry as ``setup_anndata``/``setup_mudata`` take it (unset keys left out)."""
        return self.model_dump(exclude_none=True)


class CellFeatureMaskConfig(_Section):
    """A per-cell feature mask (an entry of ``data.feature_masks``): which features each cell measured."""

    obsm: str = Field(..., description="obsm key of a boolean cells x features matrix, True = measured: "
                      "adata.obsm[key] for an .h5ad, mdata.mod[<the modality's mod>].obsm[key] (rows = the "
                      "modality's cells) for an .h5mu.")


class DataConfig(_Section):
    """Where the cells come from and how their modalities are registered."""

    path: str | None = Field(
        None, description="An .h5ad or .h5mu file; null generates mock data (see `mock`)."
    )
    mock: MockDataConfig = Field(default_factory=MockDataConfig)
    rna_layer: str | None = Field(None, description="Layer with raw RNA counts; null uses X.")
    atac_obsm_key: str | None = Field(None, description="obsm key of the cells x peaks matrix.")
    adt_obsm_key: str | None = Field(None, description="obsm key of the cells x proteins matrix.")
    use_rna: bool = Field(True, description="False when the AnnData carries no RNA.")
    mask_keys: dict[str, str] | None = Field(
        None, description="{modality: boolean obs column}; default has_<modality>."
    )
    modalities: dict[str, ModalityConfig | str] | None = Field(
        None, description="{modality name: entry}: registers any modality (REMADOM.setup_anndata's "
        "`modalities=`; for MuData setup_mudata's, where a string is the mdata.mod key). Replaces "
        "rna_layer / atac_obsm_key / adt_obsm_key / use_rna.",
    )
    feature_masks: dict[str, str | CellFeatureMaskConfig] | None = Field(
        None, description="{modality: source} of the features each batch measured (feature-level "
        "missingness; setup's `feature_masks=`): a .csv/.tsv/.parquet table, batches (rows, the first "
        "column or the index) x features (columns), True = measured; or 'from_data': the data's own "
        "uns['remadom_feature_masks'] / varm['remadom_measured'] (what remadom.data.concat_mosaic "
        "writes), an error when it states none (both need batch_key); or {obsm: key}: a per-cell "
        "boolean mask (cells x features) in obsm (of the modality's mdata.mod for an .h5mu). A "
        "modality not listed uses the data's own per-batch mask when there is one.",
    )
    batch_key: str | None = None
    labels_key: str | None = None
    categorical_covariate_keys: list[str] | None = None
    continuous_covariate_keys: list[str] | None = None
    val_split: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of cells held out for validation.")

    @field_validator("path")
    @classmethod
    def _known_suffix(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith((".h5ad", ".h5mu")):
            raise ValueError(f"must end in .h5ad or .h5mu, got {v!r}")
        return v

    @field_validator("feature_masks")
    @classmethod
    def _feature_mask_sources(cls, v: dict | None) -> dict | None:
        for name, source in (v or {}).items():
            if isinstance(source, str) and source != FEATURE_MASKS_FROM_DATA and not source.endswith(FEATURE_MASK_TABLE_SUFFIXES):
                raise ValueError(
                    f"feature_masks.{name}={source!r}: give a table file ending in "
                    f"{', '.join(FEATURE_MASK_TABLE_SUFFIXES)}, or {FEATURE_MASKS_FROM_DATA!r}"
                )
        return v

    @property
    def is_mudata(self) -> bool:
        """Whether the data source is a MuData file."""
        return self.path is not None and self.path.endswith(".h5mu")

    @model_validator(mode="after")
    def _mudata_keys(self) -> DataConfig:
        if self.modalities is not None and (self.rna_layer or self.atac_obsm_key or self.adt_obsm_key):
            raise ValueError("give `modalities` or rna_layer/atac_obsm_key/adt_obsm_key, not both")
        for name, entry in (self.modalities or {}).items():
            if not self.is_mudata and isinstance(entry, ModalityConfig) and entry.mod is not None:
                raise ValueError(f"modalities.{name}.mod maps a MuData modality; the data is not an .h5mu file")
            if self.is_mudata and isinstance(entry, ModalityConfig) and entry.obsm is not None:
                raise ValueError(f"modalities.{name}.obsm applies to AnnData; use `mod` (and `layer`) for .h5mu")
        if self.is_mudata and (self.atac_obsm_key or self.adt_obsm_key):
            raise ValueError("atac_obsm_key/adt_obsm_key apply to AnnData; use `modalities` for a .h5mu file")
        per_batch = [n for n, source in (self.feature_masks or {}).items() if isinstance(source, str)]
        if per_batch and self.batch_key is None:
            raise ValueError(f"feature_masks {per_batch} are per batch: set data.batch_key too "
                             "(a per-cell {obsm: key} mask needs none)")
        return self


class ModelConfig(_Section):
    """Architecture of :class:`remadom.REMADOM`."""

    n_latent: int = Field(_default(REMADOM.__init__, "n_latent"), gt=0)
    n_hidden: int = Field(_default(REMADOM.__init__, "n_hidden"), gt=0)
    n_layers: int = Field(_default(REMADOM.__init__, "n_layers"), gt=0)
    dropout_rate: float = Field(_default(REMADOM.__init__, "dropout_rate"), ge=0.0, lt=1.0)
    likelihoods: dict[str, Likelihood] | None = Field(
        None, description="Per-modality likelihood; null uses the model's default per modality kind."
    )
    modality_dropout: float = Field(
        _default(REMADOM.__init__, "modality_dropout"), ge=0.0, lt=1.0,
        description="Probability of hiding each observed modality from the encoder on multi-modal cells.",
    )
    consistency_weight: float = Field(
        _default(REMADOM.__init__, "consistency_weight"), ge=0.0,
        description="Weight of the unimodal-to-joint posterior consistency term (experimental).",
    )
    dispersion: Literal["gene", "gene-batch", "gene-cell"] = _default(REMADOM.__init__, "dispersion")
    batch_effect: Literal["nonlinear", "additive"] = Field(
        _default(REMADOM.__init__, "batch_effect"),
        description="Batch as an input of the decoders' hidden layer (nonlinear) or as per-feature "
        "offsets of the likelihood layer (additive).",
    )
    paired_anchor_weight: Annotated[float, Field(ge=0.0)] | Literal["auto"] = Field(
        _default(REMADOM.__init__, "paired_anchor_weight"),
        description="Weight of the paired-anchor term for studies confounded with their modality set; "
        "'auto' turns it on only when a batch is confounded, 0 turns it off.",
    )
    fusion: Literal["auto", "poe", "unshrunk"] = Field(  # the keys of remadom.nn._alignment_anchor.FUSIONS
        _default(REMADOM.__init__, "fusion"),
        description="How experts are fused: 'poe' (with the prior expert), 'unshrunk' (no prior pull on "
        "one-expert cells), or 'auto' ('unshrunk' only when a batch is confounded).",
    )
    decoder_rank: dict[str, Annotated[int, Field(gt=0)]] | None = Field(
        _default(REMADOM.__init__, "decoder_rank"),
        description="{modality: rank}: factorise that modality's decoder output layer through a rank-r "
        "projection (faster and smaller for 100k+ peaks, at some cost in quality); null: full rank.",
    )
    encoder_rank: dict[str, Annotated[int, Field(gt=0)]] | None = Field(
        _default(REMADOM.__init__, "encoder_rank"),
        description="{modality: rank}: factorise that modality's first encoder layer the same way; null: full rank.",
    )


class OptimConfig(_Section):
    """Optimizer and stopping."""

    lr: float = Field(_default(REMADOM.train, "lr"), gt=0.0)
    weight_decay: float = Field(_default(REMADOM.train, "weight_decay"), ge=0.0)
    batch_size: int = Field(_default(REMADOM.train, "batch_size"), gt=0)
    max_epochs: int | None = Field(
        _default(REMADOM.train, "max_epochs"), gt=0,
        description="Passes through the data; null: REMADOM.train's default (scvi-tools' heuristic, "
        "400 up to 20,000 cells; early stopping usually ends sooner).",
    )
    early_stopping: bool | None = Field(
        _default(REMADOM.train, "early_stopping"),
        description="Stop on the validation ELBO after the KL warm-up and keep the best epoch's weights; "
        "null: on whenever there are validation cells (REMADOM.train's default).",
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Epochs without a better validation ELBO before stopping; null: REMADOM.train's default."
    )


class ScheduleConfig(_Section):
    """Loss weights and their schedules."""

    kl_warmup_epochs: int | None = Field(
        None, ge=0, description="Epochs of linear KL warm-up; null: a quarter of max_epochs (at most 50)."
    )
    kl_weight: float = Field(_default(REMADOM.train, "kl_weight"), ge=0.0, description="Final KL weight (beta).")
    modality_weights: dict[str, Annotated[float, Field(ge=0.0)]] | None = Field(
        None, description="{modality: reconstruction weight >= 0}; keys must be modality names of the model."
    )
    alignment_weight: float = Field(
        _default(REMADOM.train, "alignment_weight"), ge=0.0, description="Weight of the latent MMD alignment (0: off)."
    )
    alignment_on: Literal["batch", "availability"] = Field(
        _default(REMADOM.train, "alignment_on"),
        description="Align batches, or groups of cells with different sets of observed modalities.",
    )
    adversarial_weight: Annotated[float, Field(ge=0.0)] | Literal["auto"] = Field(
        _default(REMADOM.train, "adversarial_weight"),
        description="Weight of the adversarial batch mixing on the latent; 'auto' turns it on (1) only when a "
        "batch is confounded with its modality set, 0 turns it off.",
    )


class TrainerConfig(_Section):
    """Lightning trainer settings."""

    accelerator: str = Field("auto", description="'auto', 'cpu', 'gpu'/'cuda', 'mps'.")
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    precision: Precision = "32"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_string(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class LoggingConfig(_Section):
    """Where runs go and how often they draw figures."""

    save_dir: str = Field("runs", description="Parent folder of run directories.")
    name: str | None = Field(None, description="Run-directory suffix; null uses the top-level name.")
    figures: bool = Field(True, description="Draw loss curves and latent UMAPs at the end of the run.")
    figure_every: int = Field(0, ge=0, description="Redraw loss curves every N epochs (0: at the end only).")
    snapshot_every: int = Field(
        5, ge=0, description="Imputation/reconstruction snapshot on validation cells every N epochs (0: off)."
    )


class RunConfig(_Section):
    """A complete, reproducible REMADOM run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              title="REMADOM run configuration")

    name: str = Field("remadom", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def run_name(self) -> str:
        """Suffix of the run directory."""
        return self.logging.name or self.name
