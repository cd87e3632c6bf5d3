"""Registry and tensor keys used across REMADOM (one place, no string literals elsewhere)."""

from typing import NamedTuple


class _RemadomRegistryKeys(NamedTuple):
    MODALITY_PREFIX: str = "mod_"
    MASK_PREFIX: str = "mask_"
    CELL_FEATURE_MASK_PREFIX: str = "cell_feature_mask_"


REMADOM_REGISTRY_KEYS = _RemadomRegistryKeys()


def modality_key(name: str) -> str:
    """Registry key under which modality ``name``'s data is registered."""
    return f"{REMADOM_REGISTRY_KEYS.MODALITY_PREFIX}{name}"


def mask_key(name: str) -> str:
    """Registry key under which modality ``name``'s availability mask is registered."""
    return f"{REMADOM_REGISTRY_KEYS.MASK_PREFIX}{name}"


def cell_feature_mask_key(name: str) -> str:
    """Registry key under which modality ``name``'s per-cell feature mask is registered."""
    return f"{REMADOM_REGISTRY_KEYS.CELL_FEATURE_MASK_PREFIX}{name}"


#: obsm key under which latent representations are exported by default.
LATENT_OBSM_KEY = "X_remadom"

#: Prefix of the obs column holding a modality's availability mask by default (``has_<modality>``).
MASK_COLUMN_PREFIX = "has_"


def mask_column(name: str) -> str:
    """Default obs column of modality ``name``'s availability mask."""
    return f"{MASK_COLUMN_PREFIX}{name}"
