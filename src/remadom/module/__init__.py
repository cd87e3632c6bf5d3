from ._constants import MODULE_KEYS
from ._module import RemadomModule

__all__ = ["MODULE_KEYS", "RemadomModule"]
