"""Saving and loading REMADOM models without executing code from the file.

scvi-tools saves a model as ``model.pt``, a ``torch.save`` pickle of three entries (the module
state dict, the var names and the model's public attributes) and loads it with
``torch.load(weights_only=False)``: a crafted ``model.pt`` can run any code when it is loaded.
REMADOM keeps the same file layout (so ``scvi-tools`` tools can still read it) but

* writes only plain data: tensors, numbers, strings, lists, dicts and numpy arrays;
  ``pandas.DataFrame`` attributes (the training history) are stored as plain dicts;
* reads with ``torch.load(weights_only=True)`` plus an allow-list of numpy array/dtype types
  (:data:`SAFE_NUMPY_GLOBALS`). Nothing else can be constructed, so no code runs;
* reads files written by REMADOM 0.1.0, whose history is pickled ``pandas.DataFrame`` objects,
  with a restricted unpickler that resolves only the pandas/numpy/torch names such a file
  uses (:data:`LEGACY_GLOBALS`), never an arbitrary callable;
* refuses anything else with :class:`ModelFileError`. ``trusted=True`` is the explicit,
  documented way to read a file that holds other Python objects (full pickle).

A file written by :func:`save_model` is checked right after writing: if an attribute holds a
type the safe reader would refuse, saving fails instead of producing a model that cannot be
loaded.
"""

from __future__ import annotations

import collections
import inspect
import os
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import torch

from .. import _compat

#: Keys of the saved dict (the same as scvi-tools' ``SAVE_KEYS``).
MODEL_FNAME = "model.pt"
STATE_KEY = "model_state_dict"
VAR_NAMES_KEY = "var_names"
ATTR_KEY = "attr_dict"
#: Marker of a DataFrame stored as plain data.
DATAFRAME_TAG = "__remadom_dataframe__"


class ModelFileError(ValueError):
    """A saved model file cannot be read safely (tampered, truncated or not a REMADOM model)."""


def _numpy_globals() -> list:
    import numpy.dtypes as npd

    dtypes = [getattr(npd, n) for n in dir(npd) if n.endswith("DType")]
    return [np.ndarray, np.dtype, np._core.multiarray._reconstruct, bytes, *dtypes]  # bytes: empty arrays


#: Types ``torch.load(weights_only=True)`` may build, beyond tensors and builtins.
SAFE_NUMPY_GLOBALS = _numpy_globals()

#: Fully qualified names a REMADOM 0.1.0 ``model.pt`` resolves (history DataFrames, numpy arrays, tensors).
LEGACY_GLOBALS = frozenset({
    "_codecs.encode", "collections.OrderedDict", "collections.defaultdict", "builtins.dict", "builtins.list", "builtins.bytes",
    "builtins.slice", "builtins.set", "builtins.tuple", "builtins.int", "builtins.float",
    "numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
    "pandas.core.frame.DataFrame", "pandas.core.internals.managers.BlockManager",
    "pandas.core.indexes.base._new_Index", "pandas.core.indexes.base.Index",
    "pandas.core.indexes.range.RangeIndex", "pandas._libs.internals._unpickle_block",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.Size",
    *(f"numpy.dtypes.{n}" for n in dir(__import__("numpy.dtypes").dtypes) if n.endswith("DType")),
    *(f"torch.{n}" for n in ("FloatStorage", "DoubleStorage", "LongStorage", "IntStorage", "BoolStorage",
                             "HalfStorage", "BFloat16Storage", "ByteStorage", "CharStorage", "ShortStorage")),
})


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`LEGACY_GLOBALS` (Python docs, "Restricting Globals")."""

    def find_class(self, module, name):
        """Refuse every global outside the allow-list."""
        canonical = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol-2 names
        if f"{canonical}.{name}" not in LEGACY_GLOBALS:
            raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")
        return super().find_class(module, name)


class _LegacyPickleModule:
    """``pickle_module`` for ``torch.load`` whose Unpickler is :class:`_LegacyUnpickler`."""

    Unpickler = _LegacyUnpickler
    UnpicklingError = pickle.UnpicklingError
    load = staticmethod(lambda fh, **kw: _LegacyUnpickler(fh, **kw).load())


# ------------------------------------------------------------------ encoding
def _encode(value):
    """Plain-data form of a saved attribute (DataFrames as dicts, defaultdicts as dicts)."""
    if isinstance(value, pd.DataFrame):
        return {DATAFRAME_TAG: {
            "index": np.asarray(value.index), "index_name": value.index.name,
            "columns": [str(c) for c in value.columns], "values": value.to_numpy(),
        }}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_encode(v) for v in value)
    return value


def _decode(value):
    """Inverse of :func:`_encode`."""
    if isinstance(value, dict):
        if set(value) == {DATAFRAME_TAG}:
            d = value[DATAFRAME_TAG]
            return pd.DataFrame(d["values"], index=pd.Index(d["index"], name=d["index_name"]),
                                columns=d["columns"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _user_attributes(model) -> dict:
    """Public attributes ending in ``_`` (those scvi-tools saves), e.g. ``init_params_``."""
    members = inspect.getmembers(model, lambda a: not inspect.isroutine(a))
    return {k: v for k, v in members if k.endswith("_") and not k.startswith("__") and not k.startswith("_abc_")}


def save_model(model, dir_path: str, prefix: str | None = None, overwrite: bool = False,
               save_anndata: bool = False, save_kwargs: dict | None = None, **anndata_write_kwargs) -> str:
    """Write ``model.pt`` (and optionally the AnnData) so that :func:`load_saved_files` reads it safely.

    Returns the path of ``model.pt``. Raises :class:`TypeError` (and removes the file) when an
    attribute holds a type the safe reader would refuse.
    """
    if os.path.exists(dir_path) and not overwrite:
        raise ValueError(f"{dir_path} already exists. Please provide another directory for saving.")
    os.makedirs(dir_path, exist_ok=True)
    prefix = prefix or ""
    if save_anndata:
        model.adata.write(os.path.join(dir_path, f"{prefix}adata.h5ad"), **anndata_write_kwargs)
    path = os.path.join(dir_path, f"{prefix}{MODEL_FNAME}")
    payload = {
        STATE_KEY: model.module.state_dict(),
        VAR_NAMES_KEY: np.asarray(model.adata.var_names.astype(str)) if model.adata is not None else None,
        ATTR_KEY: _encode(_user_attributes(model)),
    }
    torch.save(payload, path, **(save_kwargs or {}))
    try:  # the file must load with the strict reader, or nobody can load it safely later
        _read_weights_only(path)
    except pickle.UnpicklingError as e:
        os.remove(path)
        raise TypeError(
            f"cannot save this model safely: {_refusal(e)}. Store plain data (numbers, strings, lists, "
            "dicts, numpy arrays) in attributes ending in '_'."
        ) from None
    return path


# ------------------------------------------------------------------- loading
def _read_weights_only(path: str):
    with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def _refusal(error: Exception) -> str:
    """The line of an unpickling error that names the refused object."""
    text = str(error).split("WeightsUnpickler error:")[-1].strip()
    return (text.splitlines() or [""])[0][:200]


def _read(path: str, trusted: bool):
    if trusted:
        warnings.warn(f"loading {path} with full pickle (trusted=True): only do this for files you wrote.",
                      UserWarning, stacklevel=3)
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return _read_weights_only(path)
    except pickle.UnpicklingError as first:
        if not zipfile.is_zipfile(path):
            raise
        try:  # a REMADOM 0.1.0 file: pandas DataFrames in the history
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LegacyPickleModule)
        except pickle.UnpicklingError as second:  # name the global the restricted reader refused
            raise second from first


def load_saved_files(dir_path: str, prefix: str | None = None, trusted: bool = False) -> tuple[dict, object, dict]:
    """Read ``attr_dict, var_names, state_dict`` from ``<dir_path>/<prefix>model.pt`` without running code.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, not a model file, or holds objects the safe reader refuses.
    """
    path = os.path.join(os.fspath(dir_path), f"{prefix or ''}{MODEL_FNAME}")
    if not os.path.isfile(path):
        raise ModelFileError(f"no saved model at {path}. Pass the folder written by model.save(...).")
    try:
        saved = _read(path, trusted)
    except pickle.UnpicklingError as e:
        detail = _refusal(e)
        raise ModelFileError(
            f"refusing to load {path}: it holds Python objects that a REMADOM model file never contains "
            f"({detail[:200]}). The file may have been tampered with; loading it could run code. If you "
            "wrote it yourself with another tool, REMADOM.load(..., trusted=True) reads it with full pickle."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:  # what torch raises on a truncated or non-torch file
        raise ModelFileError(
            f"cannot read {path}: the file is truncated or is not a model file ({type(e).__name__}: "
            f"{str(e)[:150]}). Save the model again with model.save(...)."
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get(ATTR_KEY), dict) or \
            not isinstance(saved.get(STATE_KEY), dict):
        raise ModelFileError(f"{path} is not a REMADOM model file (expected a dict with {STATE_KEY!r} and "
                             f"{ATTR_KEY!r}).")
    attrs = saved[ATTR_KEY]
    bad = [k for k in attrs if not (isinstance(k, str) and k.endswith("_"))]
    if bad or not isinstance(attrs.get("registry_"), dict) or not isinstance(attrs.get("init_params_"), dict):
        raise ModelFileError(f"{path} is not a REMADOM model file: its attributes are malformed "
                             f"(unexpected {bad[:3]} or missing registry_/init_params_).")
    state = collections.OrderedDict(saved[STATE_KEY])
    state.pop("pyro_param_store", None)
    not_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensor:
        raise ModelFileError(f"{path} is not a REMADOM model file: state entries {not_tensor[:3]} are not tensors.")
    return _decode(attrs), saved.get(VAR_NAMES_KEY), state


def default_adata(dir_path, adata, kwargs: dict):
    """``adata``, or the AnnData saved beside the model (``save_anndata=True``) when it is None."""
    if adata is not None:
        return adata
    path = os.path.join(os.fspath(dir_path), f"{kwargs.get('prefix') or ''}adata.h5ad")
    if not os.path.isfile(path):
        raise ValueError(f"no data to load the model onto: pass adata=, or save the model with "
                         f"save_anndata=True (no {path}).")
    import anndata

    return anndata.read_h5ad(path)


def load_model(cls, adata, attr_dict: dict, state_dict: dict, accelerator: str = "auto",
               device: int | str = "auto", prefix: str | None = None):
    """Build ``cls`` from safely loaded files (what scvi-tools' ``BaseModelClass.load`` does after reading).

    ``adata`` must already be the AnnData to register (a MuData already turned into its view).
    """
    from .._compat import parse_device_args

    _, _, device = parse_device_args(accelerator=accelerator, devices=device, return_device="torch",
                                     validate_single_device=True)
    attr_dict = dict(attr_dict)
    registry = attr_dict.pop("registry_")
    if registry.get("model_name", cls.__name__) != cls.__name__:
        raise ValueError(f"It appears you are loading a {registry.get('model_name')} model, not a {cls.__name__}.")
    if adata is not None:
        if _compat._SETUP_ARGS_KEY not in registry:
            raise ValueError("Saved model does not contain original setup inputs. Cannot load the original setup.")
        method = registry.get("setup_method_name", "setup_anndata")
        getattr(cls, method)(adata, source_registry=registry, **registry[_compat._SETUP_ARGS_KEY])
    attr_dict["registry_"] = registry
    if isinstance(attr_dict.get("init_params_"), dict):  # files from before #13's anchor: as trained
        from ._confounding import with_pre_anchor_defaults

        attr_dict["init_params_"] = with_pre_anchor_defaults(attr_dict["init_params_"])
    model = _compat._initialize_model(cls, adata, registry, {k: v for k, v in attr_dict.items()
                                                              if k != "registry_"}, None)
    model.module.on_load(model)
    model.module.load_state_dict(state_dict)
    model.to_device(device)
    model.module.eval()
    if adata is not None:
        model._validate_anndata(adata)
    return model


__all__ = ["ModelFileError", "load_model", "load_saved_files", "save_model", "SAFE_NUMPY_GLOBALS"]
