from ._fields import ModalityField
from ._remadom import REMADOM
from ._validation import RemadomSetupError

__all__ = ["REMADOM", "ModalityField", "RemadomSetupError"]
