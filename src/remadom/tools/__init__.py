"""Tools that work on trained REMADOM models (reference mapping, label transfer)."""

from ._transfer import transfer_labels

__all__ = ["transfer_labels"]
