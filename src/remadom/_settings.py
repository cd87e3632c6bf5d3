"""Global settings: how much REMADOM and the libraries it drives print.

``remadom.settings.verbosity`` (default ``"warning"``, or ``$REMADOM_VERBOSITY``) is the
level below which messages of the libraries a REMADOM run goes through are hidden: the
Lightning banners ("GPU available", "TPU available", the LitLogger tip, "Seed set to"),
scvi-tools' INFO lines ("File ... already downloaded", "Using column names from ..."),
pooch's download notes and jax's backend INFO line. At ``"warning"`` and above, a short
list of known, non-actionable library warnings is also filtered (:data:`NOISY_WARNINGS`);
set ``remadom.settings.verbosity = "info"`` to see everything again. Real warnings
(a training divergence, a data problem) are not in that list and always show.

This module imports nothing heavy, so the command line can use it before torch loads.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["NOISY_LOGGERS", "NOISY_WARNINGS", "RemadomSettings", "settings"]

#: Loggers of other libraries that print routine INFO lines during setup, training and loading.
NOISY_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
    "scvi",
    "pooch",
    "jax._src.xla_bridge",
)

#: (category, message regex) of library warnings that say nothing a REMADOM user can act on.
NOISY_WARNINGS = (
    # mudata 0.3 announces a future default on every read_h5mu / MuData.update
    (FutureWarning, r"From 0\.4 \.update\(\) will not pull obs/var columns"),
    # Lightning's own use of torch's pytree API
    (Warning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # small data sets have fewer batches per epoch than Lightning's default logging interval
    (Warning, r"The number of training batches \(\d+\) is smaller than the logging interval"),
    # Lightning's hint to raise DataLoader workers (the data are in memory; workers do not help)
    (Warning, r"The '\w+_dataloader' does not have many workers"),
    # tqdm's notebook bar without ipywidgets (scvi-tools imports tqdm.auto)
    (Warning, r"IProgress not found"),
    # umap-learn: a fixed random_state makes it single-threaded, as REMADOM intends for reproducibility
    (UserWarning, r"n_jobs value -?\d+ overridden to 1 by setting random_state"),
)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _as_level(value: int | str) -> int:
    if isinstance(value, str):
        if value.lower() not in _LEVELS:
            raise ValueError(
                f"verbosity must be one of {sorted(_LEVELS)} or a logging level int, got {value!r}"
            )
        return _LEVELS[value.lower()]
    return int(value)


class RemadomSettings:
    """REMADOM's global settings (the ``remadom.settings`` object).

    Parameters
    ----------
    verbosity
        Logging level (``"debug"``, ``"info"``, ``"warning"``, ``"error"`` or an ``int``)
        for REMADOM's own ``remadom`` logger and the :data:`NOISY_LOGGERS` of other libraries.
    """

    def __init__(self, verbosity: int | str = logging.WARNING):
        self._verbosity = _as_level(verbosity)

    @property
    def verbosity(self) -> int:
        """Current level (an ``int`` from :mod:`logging`)."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        self._verbosity = _as_level(value)
        self.apply()

    def apply(self) -> None:
        """Set the library loggers and warning filters to the current verbosity.

        Called on import and again once Lightning is imported (it resets its loggers to INFO
        when it loads). At ``"info"`` or below the filters are removed.
        """
        for name in NOISY_LOGGERS:
            log = logging.getLogger(name)
            log.setLevel(self._verbosity)
        quiet = self._verbosity > logging.INFO
        for category, message in NOISY_WARNINGS:
            entry = ("ignore", _compiled(message), category, None, 0)
            while entry in warnings.filters:
                warnings.filters.remove(entry)
            if quiet:
                warnings.filterwarnings("ignore", message=message, category=category)

    def __repr__(self) -> str:
        return f"RemadomSettings(verbosity={logging.getLevelName(self._verbosity).lower()!r})"


def _compiled(message: str):
    import re

    return re.compile(message, re.I)


#: The settings object, exported as ``remadom.settings``.
settings = RemadomSettings(os.environ.get("REMADOM_VERBOSITY", "warning"))
settings.apply()
