"""`remadom evaluate` output: a table with one line of meaning per metric, and a figure."""

import math

from remadom.cli._evaluate_report import format_metrics_table, meaning, plot_metrics_figure
from remadom.eval import BATCH_METRICS, BIO_METRICS

METRICS = {**dict.fromkeys(BIO_METRICS, 0.5), **dict.fromkeys(BATCH_METRICS, 0.25), "bio_conservation": 0.5,
           "batch_correction": 0.25, "total": 0.4, "n_availability_groups": 3, "silhouette_modality": 0.7,
           "ilisi_modality": math.nan, "modality_mixing": 0.7, "foscttm_rna_adt": 0.02}


def test_every_metric_has_a_meaning():
    for name in METRICS:
        assert meaning(name), name
    assert "0 is perfect" in meaning("foscttm_rna_atac")


def test_table_has_one_line_per_metric():
    lines = format_metrics_table(METRICS).splitlines()
    assert len(lines) == 2 + len(METRICS)
    row = next(line for line in lines if line.startswith("n_availability_groups"))
    assert row.split()[1] == "3"  # a count, not 3.0
    assert next(line for line in lines if line.startswith("ilisi_modality")).split()[1] == "n/a"
    assert next(line for line in lines if line.startswith("nmi")).split()[1] == "0.500"


def test_figure_is_written(tmp_path):
    path = plot_metrics_figure(METRICS, tmp_path / "eval" / "metrics.png")
    assert path.is_file() and path.stat().st_size > 1000
