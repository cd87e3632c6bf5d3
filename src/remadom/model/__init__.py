from .._settings import settings as _settings
from ._fields import ModalityField
from ._remadom import REMADOM
from ._unencodable import UnencodableCellsWarning
from ._validation import RemadomSetupError

_settings.apply()  # Lightning (imported above, via scvi-tools) resets its loggers to INFO on import

__all__ = ["REMADOM", "ModalityField", "RemadomSetupError", "UnencodableCellsWarning"]
