"""Load the data a config names (or generate mock data) and register it with REMADOM."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ._errors import ConfigurationError, DataError, EnvironmentMismatchError

_ANNDATA_SETUP_KEYS = ("rna_layer", "atac_obsm_key", "adt_obsm_key", "use_rna", "mask_keys",
                       "batch_key", "labels_key", "categorical_covariate_keys", "continuous_covariate_keys")
#: The per-slot shorthand that ``data.modalities`` replaces.
_SHORTHAND_KEYS = ("rna_layer", "atac_obsm_key", "adt_obsm_key", "use_rna", "extra_modalities")


@dataclass
class LoadedData:
    """Data ready for :class:`remadom.REMADOM` plus what the manifest records about it."""

    data: object
    is_mudata: bool
    setup_kwargs: dict
    info: dict = field(default_factory=dict)

    @property
    def obs(self) -> pd.DataFrame:
        """Cell annotations (``mdata.obs`` for MuData)."""
        return self.data.obs

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.data.n_obs)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _mock(config: RunConfig) -> LoadedData:
    try:
        from remadom.data.mock import generate_mock_dataset
    except ImportError as e:
        raise EnvironmentMismatchError(
            f"data.path is null, which asks for mock data, but the mock generator cannot be imported ({e}).",
            "Set data.path to an .h5ad/.h5mu file, or reinstall remadom from a complete checkout.",
        ) from e
    mock = config.data.mock
    seed = config.seed if mock.seed is None else mock.seed
    try:
        adata, keys = generate_mock_dataset(mock.problem, n_cells=mock.n_cells, n_genes=mock.n_genes,
                                            n_peaks=mock.n_peaks, n_proteins=mock.n_proteins, seed=seed)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(
            f"data.mock could not generate data: {e}.",
            "Check data.mock.problem and the sizes in data.mock.",
        ) from e
    defaults = {k: v for k, v in dict(keys or {}).items() if k in _ANNDATA_SETUP_KEYS}
    info = {"source": "mock", "path": None, "size_bytes": None, "sha256": None,
            "mock": {**mock.model_dump(), "seed": seed}}
    return LoadedData(adata, False, defaults, info)


def _read_file(config: RunConfig) -> LoadedData:
    path = Path(config.data.path)
    if not path.is_file():
        raise DataError(
            f"the data file {path} does not exist (data.path, resolved from {Path.cwd()}).",
            "Fix data.path, or set it to null to train on generated mock data.",
        )
    try:
        if config.data.is_mudata:
            import mudata as md

            data = md.read_h5mu(path)
        else:
            import anndata as ad

            data = ad.read_h5ad(path)
    except Exception as e:  # any reader failure is a data problem (re-raised)
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}.",
                        "Check that the file is a complete, uncorrupted AnnData/MuData file.") from e
    info = {"source": "file", "path": str(path.resolve()), "size_bytes": path.stat().st_size,
            "sha256": sha256_file(path), "mock": None}
    return LoadedData(data, config.data.is_mudata, {}, info)


def load_data(config: RunConfig) -> LoadedData:
    """Read ``data.path`` or generate ``data.mock``; collect the setup arguments."""
    loaded = _read_file(config) if config.data.path is not None else _mock(config)
    d = config.data
    chosen = {k: getattr(d, k) for k in _ANNDATA_SETUP_KEYS if getattr(d, k) is not None}
    if "use_rna" in chosen and chosen["use_rna"] is True and "use_rna" in loaded.setup_kwargs:
        chosen.pop("use_rna")  # keep the mock's own choice unless the config turns RNA off
    modalities = None
    if d.modalities is not None:
        modalities = {name: (entry if isinstance(entry, str) else entry.setup_entry())
                      for name, entry in d.modalities.items()}
        # the config's modalities replace the data's own shorthand (e.g. the mock's keys)
        # (the mock's mask_keys are its has_<name> columns, found by default)
        loaded.setup_kwargs = {k: v for k, v in loaded.setup_kwargs.items()
                               if k not in (*_SHORTHAND_KEYS, "mask_keys")}
        chosen = {k: v for k, v in chosen.items() if k not in _SHORTHAND_KEYS}
        chosen["modalities"] = modalities
    loaded.setup_kwargs = {**loaded.setup_kwargs, **chosen}
    if loaded.is_mudata:
        kw = {k: v for k, v in loaded.setup_kwargs.items()
              if k in ("rna_layer", "mask_keys", "batch_key", "labels_key",
                       "categorical_covariate_keys", "continuous_covariate_keys")}
        loaded.setup_kwargs = {"modalities": modalities, **kw}
    if d.feature_masks:
        from ._feature_masks import configured_feature_masks

        loaded.setup_kwargs["feature_masks"] = configured_feature_masks(d, loaded.data)
    for key in ("batch_key", "labels_key"):
        col = loaded.setup_kwargs.get(key)
        if col is not None and col not in loaded.obs.columns:
            raise DataError(f"data.{key}={col!r} is not a column of obs (columns: {list(loaded.obs.columns)[:15]}).",
                            f"Set data.{key} to one of the obs columns, or to null.")
    loaded.info["n_obs"] = loaded.n_obs
    return loaded


def setup_model_data(model_cls, loaded: LoadedData) -> None:
    """Register the data with ``model_cls.setup_anndata``/``setup_mudata``; data problems -> DataError."""
    method = model_cls.setup_mudata if loaded.is_mudata else model_cls.setup_anndata
    accepted = set(inspect.signature(method).parameters)
    kwargs = {k: v for k, v in loaded.setup_kwargs.items() if k in accepted}
    try:
        method(loaded.data, **kwargs)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DataError(
            f"the data does not match the configured modality keys: {e}",
            "Check data.modalities (or data.rna_layer / atac_obsm_key / adt_obsm_key) and data.mask_keys "
            "against the file's layers, obsm, mod and obs.",
        ) from e


def make_split(n_obs: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation indices from ``seed``."""
    perm = np.random.default_rng(seed).permutation(n_obs)
    n_val = int(round(val_split * n_obs))
    if val_split > 0:
        n_val = min(max(n_val, 1), n_obs - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
