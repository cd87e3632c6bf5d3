"""A training run: config -> run directory with checkpoints, logs, model, latent, figures, manifest."""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .._constants import LATENT_OBSM_KEY
from ..config import RunConfig, dump_config, validate_config
from . import _training
from ._data import load_data, make_split, setup_model_data
from ._errors import ConfigurationError, DataError, EnvironmentMismatchError, TrainingFailure
from ._figures import (
    ImputationSnapshot,
    LossCurveRefresh,
    availability_labels,
    epoch_metrics,
    modality_masks,
    plot_latent_umap,
    plot_loss_curves,
)
from ._manifest import environment_info, git_info, manifest_schema, sys_argv, utc_now, write_manifest

logger = logging.getLogger(__name__)

#: Config fields that may differ between a run and its resumption.
RESUME_MUTABLE = {("optim", "max_epochs"), ("logging", "figure_every"), ("logging", "snapshot_every"),
                  ("logging", "figures"), ("trainer", "devices"), ("trainer", "accelerator")}


def new_run_dir(save_dir: str | Path, name: str) -> Path:
    """Create ``<save_dir>/<UTC timestamp>_<name>/`` (suffix ``-1``, ``-2``... on a clash)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(save_dir) / f"{stamp}_{name}"
    path, k = base, 0
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


def find_resume_dir(save_dir: str | Path, name: str) -> Path | None:
    """Most recent run directory of ``name`` under ``save_dir`` with ``checkpoints/last.ckpt``."""
    candidates = sorted(p for p in Path(save_dir).glob(f"*_{name}*")
                        if (p / "checkpoints" / "last.ckpt").is_file())
    return candidates[-1] if candidates else None


def _config_diff(a: dict, b: dict, prefix=()) -> list[tuple]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, (*prefix, key))
        elif va != vb:
            out.append(((*prefix, key), va, vb))
    return out


def _check_environment(config: RunConfig) -> None:
    import torch

    acc = config.trainer.accelerator.lower()
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise EnvironmentMismatchError(
            f"trainer.accelerator={config.trainer.accelerator!r} but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}).",
            "Use --set trainer.accelerator=cpu (or auto), or run on a machine with a GPU and a CUDA build of torch.",
        )
    if acc == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentMismatchError("trainer.accelerator='mps' but MPS is not available.",
                                       "Use --set trainer.accelerator=cpu (or auto).")
    on_cpu = acc == "cpu" or (acc == "auto" and not torch.cuda.is_available())
    if on_cpu and config.trainer.precision == "16-mixed":
        raise EnvironmentMismatchError(
            "trainer.precision='16-mixed' needs a GPU; this run would train on the CPU.",
            "Use --set trainer.precision=32 (or bf16-mixed) on CPU.",
        )


def _check_resume_environment(run_dir: Path) -> None:
    import json

    path = run_dir / "manifest.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text()).get("environment", {})
    new = environment_info()
    diffs = [f"{k} {old.get(k)} -> {new.get(k)}" for k in ("torch", "scvi_tools", "lightning")
             if old.get(k) and old.get(k) != new.get(k)]
    if diffs:
        raise EnvironmentMismatchError(
            f"the run in {run_dir} was trained with different library versions ({'; '.join(diffs)}); "
            "resuming could not reproduce it.",
            "Resume in the original environment (see manifest.json 'environment'), or start a new run "
            "(omit --resume).",
        )


class Run:
    """One training run; ``execute()`` returns the run directory."""

    def __init__(self, config: RunConfig, raw_config: dict, config_source: str | None = None,
                 resume: str | None = None, extra_callbacks=None, progress_bar: bool = True):
        self.config = config
        self.raw_config = raw_config
        self.config_source = config_source
        self.resume = resume
        self.extra_callbacks = list(extra_callbacks or [])
        self.progress_bar = progress_bar
        self.ckpt_path: Path | None = None
        self.sessions = 1
        self.created_at = utc_now()
        self.run_id = None

    # ------------------------------------------------------------ run directory
    def _prepare_dir(self) -> Path:
        cfg = self.config
        if self.resume is None:
            return new_run_dir(cfg.logging.save_dir, cfg.run_name)
        if self.resume == "auto":
            found = find_resume_dir(cfg.logging.save_dir, cfg.run_name)
            if found is None:
                logger.info("--resume auto: no earlier run of %r in %s; starting a new run.",
                            cfg.run_name, cfg.logging.save_dir)
                return new_run_dir(cfg.logging.save_dir, cfg.run_name)
            target = found
        else:
            target = Path(self.resume)
        if target.is_file() and target.suffix == ".ckpt":
            ckpt, run_dir = target, target.parent.parent
        else:
            ckpt, run_dir = target / "checkpoints" / "last.ckpt", target
        if not ckpt.is_file():
            raise ConfigurationError(f"--resume {self.resume}: no checkpoint at {ckpt}.",
                                     "Pass a run directory that has checkpoints/last.ckpt, a .ckpt file, or 'auto'.")
        self._check_same_config(run_dir)
        _check_resume_environment(run_dir)
        self.ckpt_path = ckpt
        self._load_previous_manifest(run_dir)
        return run_dir

    def _check_same_config(self, run_dir: Path) -> None:
        path = run_dir / "config_resolved.yaml"
        if not path.is_file():
            return
        old = validate_config(yaml.safe_load(path.read_text()), str(path)).model_dump(mode="json")
        new = self.config.model_dump(mode="json")
        diffs = [d for d in _config_diff(old, new) if d[0] not in RESUME_MUTABLE]
        if diffs:
            listing = ", ".join(f"{'.'.join(k)}: {a!r} -> {b!r}" for k, a, b in diffs[:6])
            raise ConfigurationError(
                f"resuming {run_dir} with a different configuration ({listing}).",
                "Resume with the run's own config (omit --config to use its config_resolved.yaml) or start a "
                "new run without --resume; only optim.max_epochs and logging/device settings may change.",
            )

    def _load_previous_manifest(self, run_dir: Path) -> None:
        import json

        path = run_dir / "manifest.json"
        if path.is_file():
            old = json.loads(path.read_text())
            self.created_at = old.get("created_at", self.created_at)
            self.run_id = old.get("run_id")
            self.sessions = int(old.get("sessions", 1)) + 1

    # ------------------------------------------------------------------ running
    def execute(self) -> Path:
        """Run the whole pipeline."""
        import scvi
        import torch

        cfg = self.config
        _check_environment(cfg)
        from .. import REMADOM as model_cls

        run_dir = self.run_dir = self._prepare_dir().resolve()
        self.run_id = self.run_id or f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        if self.ckpt_path is None:
            (run_dir / "config_raw.yaml").write_text(yaml.safe_dump(self.raw_config, sort_keys=False))
        (run_dir / "config_resolved.yaml").write_text(dump_config(cfg))

        scvi.settings.seed = cfg.seed
        data = self.data = load_data(cfg)
        setup_model_data(model_cls, data)
        train_idx, val_idx = self._splits(data.n_obs, data.obs.index)
        self.manifest = self._manifest(data.info, status="running")
        write_manifest(run_dir / "manifest.json", self.manifest)

        scvi.settings.seed = cfg.seed
        try:
            model = model_cls(data.data, **cfg.model.model_dump())  # the config section is the model's signature
        except (ValueError, KeyError) as e:
            raise ConfigurationError(f"cannot build the model: {e}", "Check the model section of the config.") from e
        self.model = model
        _training.install(model)
        try:
            self._train(model, train_idx, val_idx)
        except TrainingFailure:
            self._fail("non-finite loss")
            raise
        except Exception as e:
            if isinstance(e.__cause__, TrainingFailure) or isinstance(e.__context__, TrainingFailure):
                self._fail("non-finite loss")
                raise (e.__cause__ if isinstance(e.__cause__, TrainingFailure) else e.__context__) from e
            self._fail(f"{type(e).__name__}: {e}")
            diverged = any(w in str(e).lower() for w in ("nan", "inf", "expected parameter"))
            fix = ("The model diverged: lower optim.lr (e.g. --set optim.lr=1e-4) or check the data for extreme "
                   "values; " if diverged else "") + "rerun with --debug for the traceback; resume with --resume auto."
            raise TrainingFailure(f"training stopped with {type(e).__name__}: {str(e)[:300]}.", fix) from e
        torch.set_grad_enabled(True)
        self._finish(model, val_idx, time.perf_counter() - t0)
        return run_dir

    def _splits(self, n_obs: int, obs_names) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        train_idx, val_idx = make_split(n_obs, cfg.data.val_split, cfg.seed)
        split_dir = self.run_dir / "splits"
        if self.ckpt_path is not None and (split_dir / "train.csv").is_file():
            old_train = pd.read_csv(split_dir / "train.csv")["index"].to_numpy()
            if not np.array_equal(np.sort(old_train), train_idx):
                raise DataError(f"the data differ from those of {self.run_dir}: the train split does not match.",
                                "Resume with the same data file and seed, or start a new run.")
        split_dir.mkdir(exist_ok=True)
        for name, idx in (("train", train_idx), ("val", val_idx)):
            pd.DataFrame({"index": idx, "obs_name": np.asarray(obs_names)[idx]}).to_csv(
                split_dir / f"{name}.csv", index=False)
        return train_idx, val_idx

    def _train(self, model, train_idx, val_idx) -> None:
        cfg, run_dir = self.config, self.run_dir
        has_val = len(val_idx) > 0
        self.monitor = "elbo_validation" if has_val else "elbo_train"
        if cfg.optim.early_stopping and not has_val:
            raise ConfigurationError("optim.early_stopping needs validation cells but data.val_split is 0.",
                                     "Set data.val_split > 0 (e.g. 0.1) or optim.early_stopping=false.")
        self.ckpt_cb = _training.make_checkpoint_callback(run_dir / "checkpoints", self.monitor)
        callbacks = [_training.EpochSeed(cfg.seed), _training.FiniteLossGuard(), self.ckpt_cb]
        self.snapshot_cb = None
        if cfg.logging.snapshot_every and has_val:
            self.snapshot_cb = ImputationSnapshot(model, val_idx, run_dir / "figures" / "snapshots",
                                                  cfg.logging.snapshot_every)
            callbacks.append(self.snapshot_cb)
        if cfg.logging.figure_every:
            callbacks.append(LossCurveRefresh(run_dir / "logs" / "metrics.csv",
                                              run_dir / "figures" / "loss_curves.png", cfg.logging.figure_every))
        callbacks += self.extra_callbacks
        n_train = len(train_idx)
        rem = n_train % cfg.optim.batch_size
        splitter = {"external_indexing": [np.asarray(train_idx), np.asarray(val_idx), np.array([], dtype=int)],
                    "seed": cfg.seed, "drop_last": 0 < rem < 3}
        trainer_kwargs = {
            "callbacks": callbacks,
            "logger": _training.make_loggers(run_dir),
            "plugins": [_training.AtomicCheckpointIO()],
            "enable_progress_bar": self.progress_bar,
            "deterministic": True,
            "benchmark": False,
            "log_every_n_steps": 1,
        }
        if cfg.trainer.strategy != "auto":
            trainer_kwargs["strategy"] = cfg.trainer.strategy
        if self.ckpt_path is not None:
            trainer_kwargs["ckpt_path"] = str(self.ckpt_path)
        # optim and schedule are model.train's own arguments (early_stopping_patience goes to the trainer)
        model.train(
            **cfg.optim.model_dump(), **cfg.schedule.model_dump(), accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices, precision=cfg.trainer.precision, datasplitter_kwargs=splitter,
            **trainer_kwargs,
        )

    # ----------------------------------------------------------------- outputs
    def _load_best(self, model) -> str | None:
        import torch

        best = self.ckpt_cb.best_model_path
        if not best or not os.path.isfile(best):
            return None
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module_state = {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
        model.module.load_state_dict(module_state)
        return best

    def _finish(self, model, val_idx, wall: float) -> None:
        import anndata as ad

        cfg, run_dir = self.config, self.run_dir
        artifacts = {}
        metrics_csv = run_dir / "logs" / "metrics.csv"
        final = self._final_metrics(metrics_csv)
        best = self._load_best(model)
        model.module.eval()
        model.save(str(run_dir / "model"), overwrite=True, save_anndata=False)
        artifacts["model"] = "model"

        z = model.get_latent_representation()
        obs = model.adata.obs.loc[:, [c for c in model.adata.obs.columns if not c.startswith("_scvi")]].copy()
        obs["split"] = "train"
        obs.iloc[np.asarray(val_idx), obs.columns.get_loc("split")] = "val"
        masks = modality_masks(model)
        for m, mask in masks.items():
            obs[f"remadom_has_{m}"] = mask
        latent = ad.AnnData(obs=obs)
        latent.obsm[LATENT_OBSM_KEY] = z
        latent.write_h5ad(run_dir / "latent.h5ad")
        artifacts["latent"] = "latent.h5ad"
        artifacts["metrics_csv"] = "logs/metrics.csv"
        artifacts["splits_train"] = "splits/train.csv"
        artifacts["splits_val"] = "splits/val.csv"

        if cfg.logging.figures:
            if plot_loss_curves(metrics_csv, run_dir / "figures" / "loss_curves.png"):
                artifacts["loss_curves"] = "figures/loss_curves.png"
            annotations = {}
            for key, title in ((self.data.setup_kwargs.get("labels_key"), "cell type"),
                               (self.data.setup_kwargs.get("batch_key"), "batch")):
                if key is not None and key in obs:
                    annotations[f"{title} ({key})"] = obs[key].astype(str).to_numpy()
            annotations["modality availability"] = availability_labels(masks)
            plot_latent_umap(z, annotations, run_dir / "figures" / "umap.png", seed=cfg.seed)
            artifacts["umap"] = "figures/umap.png"
        if (run_dir / "figures" / "snapshots").is_dir():
            for p in sorted((run_dir / "figures" / "snapshots").glob("*.png")):
                artifacts[f"snapshot_{p.stem}"] = p.relative_to(run_dir).as_posix()

        rel = lambda p: Path(p).relative_to(run_dir).as_posix() if p else None  # noqa: E731
        last = run_dir / "checkpoints" / "last.ckpt"
        score = self.ckpt_cb.best_model_score
        self.manifest.update(
            status="completed", updated_at=utc_now(), wall_time_s=round(wall, 3),
            checkpoints={"best": rel(best), "last": rel(last) if last.is_file() else None,
                         "monitor": self.monitor, "best_score": float(score) if score is not None else None},
            artifacts=artifacts, metrics=final,
        )
        write_manifest(run_dir / "manifest.json", self.manifest)

    @staticmethod
    def _final_metrics(metrics_csv: Path) -> dict:
        if not metrics_csv.is_file():
            return {"epochs_trained": 0}
        df = epoch_metrics(metrics_csv)
        if df.empty:
            return {"epochs_trained": 0}
        last = df.iloc[-1]
        out = {"epochs_trained": int(last["epoch"]) + 1}
        for col, val in last.items():
            if col != "epoch" and pd.notna(val):
                out[col] = float(val)
        return out

    def _manifest(self, dataset_info: dict, status: str) -> dict:
        manifest_schema()  # fail early if the schema resource is missing
        return {
            "manifest_version": 1,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "updated_at": utc_now(),
            "status": status,
            "command": sys_argv(),
            "resumed_from": str(self.ckpt_path) if self.ckpt_path else None,
            "sessions": self.sessions,
            "wall_time_s": None,
            "git": git_info(),
            "environment": environment_info(),
            "dataset": dataset_info,
            "config": {"source": self.config_source, "raw": "config_raw.yaml", "resolved": "config_resolved.yaml"},
            "checkpoints": {"best": None, "last": None, "monitor": "elbo_validation", "best_score": None},
            "artifacts": {},
            "metrics": {"epochs_trained": 0},
            "error": None,
        }

    def _fail(self, reason: str) -> None:
        if getattr(self, "manifest", None) is None:
            return
        self.manifest.update(status="failed", updated_at=utc_now(), error=reason)
        last = self.run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            self.manifest["checkpoints"]["last"] = "checkpoints/last.ckpt"
        try:
            write_manifest(self.run_dir / "manifest.json", self.manifest)
        except Exception as e:  # noqa: BLE001
            logger.warning("could not update the manifest: %s", e)


def run_training(config: RunConfig, raw_config: dict | None = None, *, config_source: str | None = None,
                 resume: str | None = None, extra_callbacks=None, progress_bar: bool = True) -> Path:
    """Train from a resolved config and return the run directory.

    Parameters
    ----------
    config
        Resolved configuration.
    raw_config
        The mapping read from the YAML file (written to ``config_raw.yaml``).
    config_source
        Path of the YAML file, recorded in the manifest.
    resume
        ``"auto"``, a run directory or a ``.ckpt`` path.
    extra_callbacks
        More Lightning callbacks (e.g. for tests).
    progress_bar
        Show scvi-tools' progress bar.
    """
    run = Run(config, raw_config if raw_config is not None else config.model_dump(mode="json"),
              config_source, resume, extra_callbacks, progress_bar)
    return run.execute()
