"""REMADOM: mosaic single-cell multi-omic integration on scvi-tools."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("remadom")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["__version__"]
