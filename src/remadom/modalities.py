"""Modality kinds and specs: the one place where a kind of modality is described.

A kind gives a modality its default likelihood and says which likelihoods suit it, by
the likelihood heads' own class attributes (e.g. ATAC takes any ``binary`` head), so a
new likelihood needs no edit here. Adding a kind means adding an entry to
:data:`MODALITY_KINDS`; :data:`MODALITY_NAME_ALIASES` maps the names other tools use
(muon, scvi-tools) to a kind. Everything else (registration, networks, loss) loops over
named modalities and never branches on the kind or the name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .nn.likelihoods import LIKELIHOODS, LikelihoodHead
from .nn.networks import ENCODER_INPUTS


@dataclass(frozen=True)
class ModalityKind:
    """Description of a kind of modality.

    Parameters
    ----------
    name
        Kind name, e.g. ``"rna"``.
    default_likelihood
        Likelihood used when the user does not choose one.
    requires
        Class attribute of :class:`~remadom.nn.LikelihoodHead` a likelihood must have set to
        suit this kind (e.g. ``"binary"``), or ``None`` for any likelihood.
    description
        What the kind is, for error messages and documentation.
    """

    name: str
    default_likelihood: str
    requires: str | None = None
    description: str = ""

    def accepts(self, head: type[LikelihoodHead]) -> bool:
        """Whether likelihood ``head`` suits this kind."""
        return self.requires is None or bool(getattr(head, self.requires))

    def likelihoods(self) -> list[str]:
        """Registered likelihoods that suit this kind."""
        return sorted(n for n, h in LIKELIHOODS.items() if self.accepts(h))


MODALITY_KINDS: dict[str, ModalityKind] = {
    "rna": ModalityKind("rna", "nb", "requires_counts", "gene expression counts"),
    "atac": ModalityKind("atac", "bernoulli", "binary", "chromatin accessibility (peaks, binarized)"),
    "adt": ModalityKind("adt", "nbmixture", None, "surface protein (antibody-derived tag) counts"),
    "counts": ModalityKind("counts", "nb", None, "any other modality, e.g. histone-mark counts"),
}

#: Modality names used by muon / scvi-tools / 10x and the kind they denote.
MODALITY_NAME_ALIASES: dict[str, str] = {
    "rna": "rna", "gex": "rna", "gene_expression": "rna", "expression": "rna",
    "atac": "atac", "peaks": "atac", "chromatin": "atac", "accessibility": "atac",
    "adt": "adt", "prot": "adt", "protein": "adt", "proteins": "adt", "cite": "adt",
}


def kind_for_name(name: str) -> str:
    """Kind of a modality called ``name`` when none is given: the alias's kind, else ``"counts"``."""
    return MODALITY_NAME_ALIASES.get(name.lower(), "counts")


@dataclass
class ModalitySpec:
    """Where one modality lives in the AnnData and how it is modelled.

    Parameters
    ----------
    name
        Modality name used throughout the model (e.g. ``"rna"``).
    kind
        One of :data:`MODALITY_KINDS`.
    attr
        ``"layers"`` (``key=None`` means ``X``) or ``"obsm"``.
    key
        Layer or obsm key.
    mask_key
        obs column holding the boolean availability mask, or ``None`` when every
        cell has the modality.
    likelihood
        Likelihood (a name in :data:`~remadom.nn.LIKELIHOODS`); ``None`` picks the kind's default.
    encoder_input
        Encoder input transform; ``None`` uses the likelihood's ``default_encoder_input``.
    """

    name: str
    kind: str
    attr: str
    key: str | None
    mask_key: str | None = None
    likelihood: str | None = None
    encoder_input: str | None = None

    def __post_init__(self):
        if self.kind not in MODALITY_KINDS:
            raise ValueError(
                f"Unknown modality kind {self.kind!r} for modality {self.name!r}. "
                f"Choose one of {sorted(MODALITY_KINDS)}."
            )
        if self.attr not in ("layers", "obsm"):
            raise ValueError(f"Modality {self.name!r}: attr must be 'layers' or 'obsm', got {self.attr!r}.")
        kind = MODALITY_KINDS[self.kind]
        if self.likelihood is None:
            self.likelihood = kind.default_likelihood
        if self.likelihood not in LIKELIHOODS or not kind.accepts(LIKELIHOODS[self.likelihood]):
            raise ValueError(
                f"Likelihood {self.likelihood!r} is not available for modality {self.name!r} "
                f"of kind {self.kind!r}. Choose one of {kind.likelihoods()}."
            )
        if self.encoder_input is not None and self.encoder_input not in ENCODER_INPUTS:
            raise ValueError(
                f"Unknown encoder_input {self.encoder_input!r} for modality {self.name!r}; "
                f"choose one of {list(ENCODER_INPUTS)}."
            )

    @property
    def head(self) -> type[LikelihoodHead]:
        """The likelihood head class."""
        return LIKELIHOODS[self.likelihood]

    @property
    def is_count_data(self) -> bool:
        """Whether the likelihood needs non-negative integer counts."""
        return self.head.requires_counts

    @property
    def is_binary(self) -> bool:
        """Whether the likelihood models presence/absence (values are binarized)."""
        return self.head.binary

    @property
    def resolved_encoder_input(self) -> str:
        """Encoder input transform: the modality's own, else the likelihood's default."""
        return self.encoder_input or self.head.default_encoder_input

    def to_dict(self) -> dict:
        """Plain-dict form, safe to store in the scvi-tools registry."""
        return asdict(self)
