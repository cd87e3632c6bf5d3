"""Modality kinds: the one place where a kind of modality is described.

Adding a new kind of modality means adding an entry to :data:`MODALITY_KINDS`: its
default likelihood, the likelihoods it allows, and how its counts are turned into
encoder input. Everything else (registration, networks, loss) loops over named
modalities and never branches on the kind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Likelihoods that need non-negative integer data.
COUNT_LIKELIHOODS = frozenset({"nb", "zinb", "poisson", "nbmixture"})


@dataclass(frozen=True)
class ModalityKind:
    """Description of a kind of modality.

    Parameters
    ----------
    name
        Kind name, e.g. ``"rna"``.
    default_likelihood
        Likelihood used when the user does not choose one.
    likelihoods
        Likelihoods this kind accepts.
    encoder_input
        Transform applied to raw values before the encoder
        (``"log1p"``, ``"tfidf"``, ``"binary"`` or ``"clr"``).
    """

    name: str
    default_likelihood: str
    likelihoods: tuple[str, ...]
    encoder_input: str


MODALITY_KINDS: dict[str, ModalityKind] = {
    "rna": ModalityKind("rna", "nb", ("nb", "zinb", "poisson"), "log1p"),
    "atac": ModalityKind("atac", "bernoulli", ("bernoulli",), "tfidf"),
    "adt": ModalityKind("adt", "nbmixture", ("nbmixture", "gaussian"), "log1p"),
    "counts": ModalityKind("counts", "nb", ("nb", "zinb", "poisson", "gaussian", "bernoulli"), "log1p"),
}


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
        Likelihood; ``None`` picks the kind's default.
    """

    name: str
    kind: str
    attr: str
    key: str | None
    mask_key: str | None = None
    likelihood: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in MODALITY_KINDS:
            raise ValueError(
                f"Unknown modality kind {self.kind!r} for modality {self.name!r}. "
                f"Choose one of {sorted(MODALITY_KINDS)}."
            )
        kind = MODALITY_KINDS[self.kind]
        if self.likelihood is None:
            self.likelihood = kind.default_likelihood
        if self.likelihood not in kind.likelihoods:
            raise ValueError(
                f"Likelihood {self.likelihood!r} is not available for modality {self.name!r} "
                f"of kind {self.kind!r}. Choose one of {list(kind.likelihoods)}."
            )

    @property
    def is_count_data(self) -> bool:
        """Whether the likelihood needs non-negative integer counts."""
        return self.likelihood in COUNT_LIKELIHOODS

    @property
    def is_binary(self) -> bool:
        """Whether the likelihood models presence/absence (values are binarized)."""
        return self.likelihood == "bernoulli"

    @property
    def encoder_input(self) -> str:
        """Encoder input transform; a Gaussian likelihood on counts implies CLR."""
        if self.likelihood == "gaussian" and self.kind == "adt":
            return "clr"
        return MODALITY_KINDS[self.kind].encoder_input

    def to_dict(self) -> dict:
        """Plain-dict form, safe to store in the scvi-tools registry."""
        return asdict(self)
