"""Command line and reproducible runs: artifacts, resume equivalence, manifest, exit codes."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from remadom.cli import run_training
from remadom.cli.main import main
from remadom.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]

def _has_mock() -> bool:
    try:
        from remadom.data.mock import generate_mock_dataset  # noqa: F401
    except ImportError:
        return False
    return True


needs_mock = pytest.mark.skipif(not _has_mock(), reason="remadom.data.mock not available yet")

TINY = [
    "data.mock.n_cells=160", "data.mock.n_genes=40", "data.mock.n_peaks=60", "data.mock.n_proteins=8",
    "model.n_latent=4", "model.n_hidden=16", "optim.batch_size=64", "optim.max_epochs=4",
    "schedule.kl_warmup_epochs=2", "logging.figures=false", "logging.snapshot_every=0",
]


def _tiny_config(tmp_path, *extra):
    cfg, raw = resolve_config(ROOT / "configs" / "minimal.yaml",
                              [*TINY, f"logging.save_dir={tmp_path}", *extra], environ={})
    return cfg, raw


class StopAfter(Callback):
    """Simulate an interruption: stop cleanly after ``n`` epochs (last.ckpt is written)."""

    def __init__(self, n):
        self.n = n

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.n:
            trainer.should_stop = True


def _state(run_dir):
    return torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


# --------------------------------------------------------------- end to end
@needs_mock
def test_minimal_config_end_to_end(tmp_path, monkeypatch):
    """configs/minimal.yaml (shortened) writes every artifact and the ELBO decreases."""
    sets = [*TINY[:6], "optim.max_epochs=6", "logging.snapshot_every=3", "data.mock.n_cells=200"]
    monkeypatch.chdir(tmp_path)  # a relative save_dir, as in the shipped configs
    code = main(["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", "runs",
                 "--no-progress", *[a for s in sets for a in ("--set", s)]])
    assert code == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert re.fullmatch(r"\d{8}T\d{6}Z_minimal", run_dir.name)
    for rel in ("config_raw.yaml", "config_resolved.yaml", "splits/train.csv", "splits/val.csv",
                "checkpoints/last.ckpt", "logs/metrics.csv", "model/model.pt", "latent.h5ad",
                "figures/loss_curves.png", "figures/umap.png", "figures/snapshots/epoch_003.png",
                "figures/snapshots/epoch_006.png", "manifest.json"):
        assert (run_dir / rel).is_file(), rel
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert not list(run_dir.rglob(".tmp_*"))

    train = pd.read_csv(run_dir / "splits" / "train.csv")
    val = pd.read_csv(run_dir / "splits" / "val.csv")
    assert len(val) == 20 and len(train) == 180 and not set(train["index"]) & set(val["index"])

    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    per_epoch = metrics.groupby("epoch").last()
    for col in ("elbo_train", "elbo_validation", "reconstruction_loss_train", "kl_local_validation"):
        assert per_epoch[col].notna().all(), col
    assert metrics.filter(like="kl_weight").notna().any().any()
    elbo = per_epoch["elbo_train"].to_numpy()
    assert elbo[-1] < elbo[0]

    import anndata as ad

    latent = ad.read_h5ad(run_dir / "latent.h5ad")
    assert latent.obsm["X_remadom"].shape == (200, 4)
    assert np.isfinite(latent.obsm["X_remadom"]).all()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["metrics"]["epochs_trained"] == 6
    assert manifest["checkpoints"]["last"] == "checkpoints/last.ckpt"
    assert manifest["environment"]["torch"] == torch.__version__
    assert main(["manifest", "validate", str(run_dir)]) == 0

    try:
        import scib_metrics  # noqa: F401
    except ImportError:  # `remadom evaluate` needs the eval extra
        return
    assert main(["evaluate", str(run_dir)]) == 0
    scores = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert scores and all(v is None or np.isfinite(v) for v in scores.values())
    assert (run_dir / "eval" / "metrics.png").is_file()


@needs_mock
def test_config_modalities_register_any_modality(tmp_path):
    """data.modalities drives setup_anndata(modalities=...), with each modality's own likelihood."""
    mods = {"rna": {"layer": "counts"}, "chromatin": {"obsm": "X_atac", "kind": "atac", "likelihood": "bernoulli_peakvi",
                          "mask": "has_atac"},
            "adt": {"obsm": "X_adt", "likelihood": "gaussian_clr"}}
    cfg, raw = _tiny_config(tmp_path)
    cfg.data.modalities = mods
    raw = {**raw, "data": {**raw.get("data", {}), "modalities": mods}}
    run_dir = run_training(cfg, raw, progress_bar=False)
    keys = _state(run_dir)["state_dict"].keys()
    assert "module.heads.adt.mean_layer.weight" in keys  # the Gaussian head
    assert "module.heads.chromatin.region_logit" in keys  # PeakVI's Bernoulli, under the config's name


# ------------------------------------------------------------------- resume
@needs_mock
def test_resume_reaches_the_same_weights(tmp_path):
    cfg, raw = _tiny_config(tmp_path / "a")
    full = run_training(cfg, raw, progress_bar=False)

    cfg, raw = _tiny_config(tmp_path / "b")
    interrupted = run_training(cfg, raw, progress_bar=False, extra_callbacks=[StopAfter(2)])
    assert _state(interrupted)["epoch"] <= 2
    resumed = run_training(cfg, raw, progress_bar=False, resume="auto")
    assert resumed == interrupted

    a, b = _state(full), _state(resumed)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key)
    # Adam moments continue too
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for k in sa:
        torch.testing.assert_close(sb[k]["exp_avg"], sa[k]["exp_avg"])

    # early stopping is on by default with validation cells, and the saved model holds the best
    # epoch's weights: the resumed run must pick the same epoch (RestoreBestState is checkpointed)
    ma = torch.load(full / "model" / "model.pt", map_location="cpu", weights_only=False)["model_state_dict"]
    mb = torch.load(resumed / "model" / "model.pt", map_location="cpu", weights_only=False)["model_state_dict"]
    for key, value in ma.items():
        torch.testing.assert_close(mb[key], value, msg=key)

    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["sessions"] == 2 and manifest["resumed_from"].endswith("last.ckpt")
    assert manifest["metrics"]["epochs_trained"] == 4


@needs_mock
def test_resume_keeps_earlier_epochs_in_metrics_csv(tmp_path):
    """A resumed session appends to logs/metrics.csv instead of replacing it (Lightning deletes it)."""
    cfg, raw = _tiny_config(tmp_path, "optim.max_epochs=4", "logging.figure_every=1")
    run_dir = run_training(cfg, raw, progress_bar=False, extra_callbacks=[StopAfter(2)])
    metrics_csv = run_dir / "logs" / "metrics.csv"
    assert sorted(pd.read_csv(metrics_csv)["epoch"].dropna().astype(int).unique()) == [0, 1]
    assert run_training(cfg, raw, progress_bar=False, resume=str(run_dir)) == run_dir

    metrics = pd.read_csv(metrics_csv)
    assert sorted(metrics["epoch"].dropna().astype(int).unique()) == [0, 1, 2, 3]
    per_epoch = metrics.groupby("epoch").last()
    for col in ("elbo_train", "elbo_validation"):
        assert per_epoch[col].notna().all(), col
    # no epoch logged twice (rows of an epoch the resumed session redid are dropped)
    assert (metrics.dropna(subset=["elbo_train"]).groupby("epoch").size() == 1).all()
    assert (metrics["step"].diff().dropna() >= 0).all()
    from remadom.cli._figures import epoch_metrics

    assert epoch_metrics(metrics_csv)["epoch"].tolist() == [0, 1, 2, 3]
    assert (run_dir / "figures" / "loss_curves.png").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["metrics"]["epochs_trained"] == 4 and manifest["sessions"] == 2
    # the per-step log continues too: 144 training cells in batches of 64 -> 3 steps per epoch
    steps = [json.loads(line)["step"] for line in (run_dir / "logs" / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(12))


@needs_mock
def test_resume_refuses_a_changed_config(tmp_path, capsys):
    cfg, raw = _tiny_config(tmp_path, "optim.max_epochs=1")
    run_dir = run_training(cfg, raw, progress_bar=False)
    code = main(["train", "--resume", str(run_dir), "--set", "model.n_latent=7", "--no-progress"])
    assert code == 2
    assert "model.n_latent" in capsys.readouterr().err


# ----------------------------------------------------------------- manifest
@needs_mock
def test_corrupted_manifest_fails_validation(tmp_path, capsys):
    cfg, raw = _tiny_config(tmp_path, "optim.max_epochs=1")
    run_dir = run_training(cfg, raw, progress_bar=False)
    path = run_dir / "manifest.json"
    assert main(["manifest", "validate", str(path)]) == 0

    manifest = json.loads(path.read_text())
    manifest["dataset"]["n_obs"] = "many"
    del manifest["run_id"]
    path.write_text(json.dumps(manifest))
    assert main(["manifest", "validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "run_id" in err and "n_obs" in err and "Traceback" not in err

    path.write_text(path.read_text()[:50])  # truncated file
    assert main(["manifest", "validate", str(path)]) == 3


def test_manifest_schema_file_matches_package():
    from importlib import resources

    shipped = resources.files("remadom.cli").joinpath("manifest.v1.json").read_text()
    assert (ROOT / "schema" / "manifest.v1.json").read_text() == shipped


# --------------------------------------------------------------- exit codes
def test_exit_code_config_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_latnet: 3}\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.n_latnet: unknown key" in err and "Traceback" not in err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "--set", "optim.lr"]) == 2
    assert main(["no-such-command"]) == 2


def test_exit_code_data_error(tmp_path, capsys):
    assert main(["train", "--set", f"data.path={tmp_path / 'nope.h5ad'}", "--save-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


@needs_mock
def test_exit_code_data_error_wrong_key(tmp_path, capsys):
    args = ["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", str(tmp_path),
            "--set", "data.labels_key=not_a_column"]
    assert main(args) == 3
    assert "not_a_column" in capsys.readouterr().err


def test_exit_code_environment_mismatch(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--set", "trainer.accelerator=gpu", "--save-dir", str(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert "accelerator" in err and "--set trainer.accelerator=cpu" in err


@needs_mock
def test_exit_code_training_failure(tmp_path, capsys):
    args = ["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--save-dir", str(tmp_path),
            "--no-progress", *[a for t in TINY for a in ("--set", t)], "--set", "optim.lr=1e30",
            "--set", "optim.max_epochs=3"]
    assert main(args) == 5
    err = capsys.readouterr().err
    assert "optim.lr" in err and "Traceback" not in err
    (run_dir,) = list(tmp_path.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_debug_shows_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2]\n")
    assert main(["train", "--config", str(bad), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_help_and_module_entry_point(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("train", "sweep", "mock", "evaluate", "manifest", "schema", "exit codes", "REMADOM__MODEL__N_LATENT"):
        assert word in out
    from remadom.cli.train import run

    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--env-policy" in out


def test_dry_run_prints_resolved_config(capsys, monkeypatch):
    monkeypatch.setenv("REMADOM__MODEL__N_HIDDEN", "48")
    assert main(["train", "--config", str(ROOT / "configs" / "minimal.yaml"), "--dry-run",
                 "--set", "model.n_latent=12"]) == 0
    out = capsys.readouterr().out
    assert "n_latent: 12" in out and "n_hidden: 48" in out


def test_atomic_write_respects_the_umask(tmp_path):
    import os

    from remadom.cli._atomic import atomic_write

    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "manifest.json", lambda fh: fh.write("{}"))
    finally:
        os.umask(old)
    assert path.read_text() == "{}"
    assert (path.stat().st_mode & 0o777) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600


@needs_mock
def test_low_rank_config_reaches_the_model(tmp_path):
    """``model.decoder_rank`` / ``encoder_rank`` in a config reach the saved model: its init arguments and its rank-r factor shapes."""
    cfg, raw = _tiny_config(tmp_path, "optim.max_epochs=1", "model.decoder_rank={atac: 3}", "model.encoder_rank={atac: 5}")
    run_dir = run_training(cfg, raw, progress_bar=False)
    saved = torch.load(Path(run_dir) / "model" / "model.pt", map_location="cpu", weights_only=False)
    params = saved["attr_dict"]["init_params_"]["non_kwargs"]
    assert params["decoder_rank"] == {"atac": 3} and params["encoder_rank"] == {"atac": 5}
    state = saved["model_state_dict"]
    assert state["decoders.atac.to_rank.weight"].shape[0] == 3  # hidden -> rank 3
    assert state["encoders.atac.body.project.weight"].shape[0] == 5  # peaks -> rank 5
