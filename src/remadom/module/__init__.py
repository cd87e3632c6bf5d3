from ._module import RemadomModule

__all__ = ["RemadomModule"]
