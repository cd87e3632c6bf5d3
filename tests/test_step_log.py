"""logs/steps.jsonl: one JSON object per optimizer step, through Lightning's logging."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from remadom.cli import run_training
from remadom.cli._step_log import STEP_KEYS, JSONLinesLogger
from remadom.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
# 80 cells, val_split 0.1: 72 training cells in minibatches of 32, 32, 8 -> 3 steps per epoch
TINY = ["data.mock.n_cells=80", "data.mock.n_genes=20", "data.mock.n_peaks=30", "data.mock.n_proteins=5",
        "model.n_latent=2", "model.n_hidden=8", "optim.batch_size=32", "optim.max_epochs=2",
        "schedule.kl_warmup_epochs=2", "logging.figures=false", "logging.snapshot_every=0"]


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg, raw = resolve_config(ROOT / "configs" / "minimal.yaml",
                              [*TINY, f"logging.save_dir={tmp_path_factory.mktemp('step_log')}"], environ={})
    return run_training(cfg, raw, progress_bar=False)


def test_one_line_per_optimizer_step_with_the_standard_keys(run_dir):
    lines = _lines(run_dir / "logs" / "steps.jsonl")
    assert [r["step"] for r in lines] == list(range(6))
    assert [r["epoch"] for r in lines] == [0, 0, 0, 1, 1, 1]
    for r in lines:
        assert set(STEP_KEYS) <= set(r)
        assert {"nll_rna", "nll_atac", "nll_adt"} <= set(r)
        assert math.isclose(r["elbo"], r["reconstruction_loss"] + r["kl_local"], rel_tol=1e-5)
        # no alignment/cycle/consistency terms in this config: loss = reconstruction + kl_weight * KL
        assert math.isclose(r["loss"], r["reconstruction_loss"] + r["kl_weight"] * r["kl_local"], rel_tol=1e-5)
    assert [r["kl_weight"] for r in lines] == [0.0] * 3 + [0.5] * 3


def test_step_elbo_averages_to_the_epoch_summary(run_dir):
    """The CSV's elbo_train is the cell-weighted mean of the epoch's step ELBOs."""
    lines = pd.DataFrame(_lines(run_dir / "logs" / "steps.jsonl"))
    sizes = np.tile([32, 32, 8], 2)
    weighted = (lines["elbo"] * sizes).groupby(lines["epoch"]).sum() / pd.Series(sizes).groupby(lines["epoch"]).sum()
    csv = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert not [c for c in csv.columns if c.startswith("step/")]
    per_epoch = csv.dropna(subset=["elbo_train"]).set_index("epoch")["elbo_train"]
    np.testing.assert_allclose(weighted.to_numpy(), per_epoch.sort_index().to_numpy(), rtol=1e-4)


def test_resumed_logger_drops_the_steps_it_logs_again(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps({"step": s, "epoch": s // 3, "loss": 1.0}) + "\n" for s in range(6))
                    + '{"step": 6, "epo')  # cut by an interruption
    logger = JSONLinesLogger(path)
    logger.log_metrics({"step/loss": 2.0, "epoch": 1, "kl_weight": 0.5}, step=3)
    logger.log_metrics({"kl_weight": 0.5}, step=4)  # no step terms: no line
    logger.log_metrics({"step/loss": float("nan"), "step/nll_rna": 3.0, "epoch": 1}, step=4)
    logger.save()
    lines = _lines(path)
    assert [r["step"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[3] == {"step": 3, "epoch": 1, "loss": 2.0, "kl_weight": 0.5}
    assert lines[4]["loss"] is None and lines[4]["nll_rna"] == 3.0  # non-finite -> null
