"""Reading a run's Lightning checkpoints without executing code from them.

A checkpoint is data that a run wrote into its own ``checkpoints/`` folder. A file there can
still be replaced, and a checkpoint names other files (``best_model_path``), so:

* every checkpoint is read with ``torch.load(weights_only=True)``: tensors, numbers, strings
  and containers only, never an arbitrary Python object;
* a path stored in a checkpoint is used only when it resolves to a file inside the run's
  ``checkpoints/`` folder (:class:`RunModelCheckpoint` forgets any other on resume, so Lightning
  neither loads nor deletes a file elsewhere);
* leftovers of an interrupted atomic write (``checkpoints/.tmp_*``) are removed on resume.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ._errors import DataError

logger = logging.getLogger(__name__)

_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (links followed) to a location inside ``folder``."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except (ValueError, OSError):
        return False
    return True


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A Lightning checkpoint read with ``weights_only=True``; unreadable or unsafe files -> DataError."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise DataError(f"the checkpoint {path} does not exist.", "Pass an existing run or .ckpt file.") from e
    except pickle.UnpicklingError as e:
        detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:200] if str(e) else ""
        raise DataError(
            f"refusing to load the checkpoint {path}: it holds Python objects a REMADOM checkpoint never "
            f"contains ({detail}); it may have been tampered with, and loading it could run code.",
            "Resume from a checkpoint written by 'remadom train', or start a new run without --resume.",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:  # what torch raises on a truncated or non-torch file
        raise DataError(
            f"cannot read the checkpoint {path}: it is truncated or corrupted ({type(e).__name__}: {str(e)[:150]}).",
            "Resume from another checkpoint of the run (e.g. a best-*.ckpt) or start a new run without --resume.",
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise DataError(f"{path} is not a Lightning checkpoint (no 'state_dict').",
                        "Resume from a checkpoint written by 'remadom train'.")
    return state


def load_best_state(best_path: str | os.PathLike, checkpoints_dir: str | os.PathLike) -> dict:
    """The module state dict of the best checkpoint, which must lie inside ``checkpoints_dir``."""
    if not inside(best_path, checkpoints_dir):
        raise DataError(
            f"the best checkpoint recorded in the run ({best_path}) is outside its folder {checkpoints_dir}; "
            "REMADOM only reads checkpoints a run wrote into its own checkpoints/.",
            "Resume from a clean checkpoint of this run, or start a new run without --resume.",
        )
    state = load_checkpoint(best_path)["state_dict"]
    return {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}


def remove_partial_writes(checkpoints_dir: str | os.PathLike) -> list[Path]:
    """Delete ``.tmp_*`` files left in ``checkpoints_dir`` by an interrupted atomic write."""
    removed = []
    folder = Path(checkpoints_dir)
    if folder.is_dir():
        for p in folder.glob(".tmp_*"):
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
    if removed:
        logger.info("removed %d partial checkpoint write(s) from %s", len(removed), folder)
    return removed


class RunModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that, on resume, keeps only file paths inside its own ``dirpath``."""

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the callback state, dropping paths that point outside ``dirpath``."""
        state = dict(state_dict)
        folder = self.dirpath
        for key in _PATH_KEYS:
            value = state.get(key)
            if value and folder and not inside(value, folder):
                logger.warning("ignoring %s=%s from the checkpoint: it is outside %s", key, value, folder)
                state[key] = ""
                if key == "best_model_path":
                    state["best_model_score"] = None
        if folder and isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {k: v for k, v in state["best_k_models"].items() if inside(k, folder)}
        super().load_state_dict(state)
