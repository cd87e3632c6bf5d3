"""Evaluation of mosaic integration: latent metrics, modality mixing, FOSCTTM, imputation, plots.

The scIB metrics need the optional dependency scib-metrics (``pip install 'remadom[eval]'``),
imported only when a metric that uses it is called.
"""

from ._cell_specific import interval_coverage, label_transfer_accuracy, per_feature_auroc
from ._evaluate import evaluate_model, observed_masks
from ._imputation import imputation_metrics, log1p_normalize, mean_profile_baseline
from ._latent import (
    BATCH_METRICS,
    BIO_METRICS,
    availability_groups,
    foscttm,
    integration_metrics,
    knn_graph,
    modality_mixing,
)
from ._plotting import plot_imputation, plot_metrics, plot_umap, umap_embedding

__all__ = [
    "BATCH_METRICS",
    "BIO_METRICS",
    "availability_groups",
    "evaluate_model",
    "foscttm",
    "imputation_metrics",
    "integration_metrics",
    "interval_coverage",
    "knn_graph",
    "label_transfer_accuracy",
    "log1p_normalize",
    "mean_profile_baseline",
    "modality_mixing",
    "observed_masks",
    "per_feature_auroc",
    "plot_imputation",
    "plot_metrics",
    "plot_umap",
    "umap_embedding",
]
