"""The evaluation driver of ``remadom evaluate``: reload a finished run and score its latent."""

from __future__ import annotations

import json
from pathlib import Path

from ._errors import ConfigurationError, DataError


def evaluate_run(run_dir: Path, out: Path | None = None) -> tuple[dict, Path, Path]:
    """Reload ``run_dir``'s model on its data, compute :func:`remadom.eval.evaluate_model`, write JSON and figure.

    Returns
    -------
    The metrics, the JSON path (default ``RUN_DIR/eval/metrics.json``) and the figure path.

    Raises
    ------
    DataError
        Not a finished run directory, or a model that does not fit the data.
    ConfigurationError
        An edited ``config_resolved.yaml``, or no ``labels_key`` / ``batch_key``.
    """
    import yaml

    from .. import REMADOM
    from ..config import validate_config
    from ._data import load_data
    from ._evaluate_report import plot_metrics_figure
    from ._manifest import atomic_write_text

    cfg_path = run_dir / "config_resolved.yaml"
    if not cfg_path.is_file() or not (run_dir / "model").is_dir():
        raise DataError(f"{run_dir} is not a finished run directory (needs config_resolved.yaml and model/).",
                        "Pass the directory printed by 'remadom train'.")
    try:
        config = validate_config(yaml.safe_load(cfg_path.read_text()), str(cfg_path))
    except ValueError as e:
        raise ConfigurationError(str(e), "The run's config_resolved.yaml was edited; restore it.") from e
    data = load_data(config)
    try:
        model = REMADOM.load(str(run_dir / "model"), adata=data.data)
    except (ValueError, KeyError) as e:
        raise DataError(f"the model in {run_dir / 'model'} does not fit the data: {e}",
                        "Evaluate with the data file the run was trained on.") from e
    labels, batch = data.setup_kwargs.get("labels_key"), data.setup_kwargs.get("batch_key")
    if labels is None or batch is None:
        raise ConfigurationError("evaluation needs data.labels_key and data.batch_key in the run's config.",
                                 "Train with both keys set to compute integration metrics.")
    from remadom.eval import evaluate_model

    metrics = {k: (v if v is None or isinstance(v, int) else float(v))
               for k, v in evaluate_model(model, labels=labels, batch=batch).items()}
    out = out if out is not None else run_dir / "eval" / "metrics.json"
    atomic_write_text(out, json.dumps(metrics, indent=2) + "\n")
    figure = plot_metrics_figure(metrics, out.with_suffix(".png"))
    return metrics, out, figure
