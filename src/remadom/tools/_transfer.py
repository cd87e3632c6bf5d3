"""Label transfer from a reference to a query through the shared REMADOM latent space."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsClassifier

from ..model._validation import RemadomSetupError


def _latent(model, latent):
    return np.asarray(model.get_latent_representation() if latent is None else latent, dtype=np.float32)


def transfer_labels(
    reference,
    query,
    labels_key: str,
    n_neighbors: int = 15,
    threshold: float = 0.5,
    unknown_label: str = "unknown",
    reference_labels=None,
    reference_latent: np.ndarray | None = None,
    query_latent: np.ndarray | None = None,
) -> pd.DataFrame:
    """Predict query labels by a kNN vote among reference cells in the latent space.

    The neighbours come from scikit-learn's :class:`~sklearn.neighbors.KNeighborsClassifier`
    (uniform weights): each query cell gets the label most frequent among its ``n_neighbors``
    nearest reference cells, and that label's vote share.

    Parameters
    ----------
    reference
        The trained reference model (its training data hold the labels).
    query
        The query model from :meth:`~remadom.REMADOM.load_query_data`, trained (may be ``None``
        with ``query_latent``).
    labels_key
        Column of the reference's ``obs`` with the labels.
    n_neighbors
        Reference neighbours per query cell.
    threshold
        A prediction whose vote share is below this is flagged uncertain and reported as
        ``unknown_label`` in ``label``.
    unknown_label
        Label of uncertain cells.
    reference_labels
        Labels of the reference cells, instead of ``reference.adata.obs[labels_key]``.
    reference_latent, query_latent
        Precomputed latents (default: each model's ``get_latent_representation()``).

    Returns
    -------
    DataFrame indexed by the query cells, with ``label`` (``unknown_label`` where uncertain),
    ``predicted`` (the majority label always), ``vote_share`` and ``uncertain``.
    """
    if reference_labels is None:
        obs = reference.adata.obs
        if labels_key not in obs:
            raise RemadomSetupError(
                f"labels_key={labels_key!r} is not a column of the reference's obs (columns: {list(obs.columns)[:20]})."
            )
        reference_labels = obs[labels_key]
    labels = pd.Series(np.asarray(reference_labels)).astype(object)
    ref_z, query_z = _latent(reference, reference_latent), _latent(query, query_latent)
    if len(labels) != ref_z.shape[0]:
        raise RemadomSetupError(f"{len(labels)} reference labels for {ref_z.shape[0]} reference cells.")
    known = labels.notna().to_numpy()
    if known.sum() == 0:
        raise RemadomSetupError(f"Every reference label in {labels_key!r} is missing.")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}; a vote share threshold is between 0 and 1.")
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, int(known.sum())))
    knn.fit(ref_z[known], labels[known].astype(str).to_numpy())
    proba = knn.predict_proba(query_z)
    best = proba.argmax(1)
    share = proba[np.arange(len(best)), best]
    predicted = knn.classes_[best]
    uncertain = share < threshold
    names = getattr(getattr(query, "adata", None), "obs_names", None)
    index = names if names is not None and len(names) == len(query_z) else None
    return pd.DataFrame(
        {
            "label": np.where(uncertain, unknown_label, predicted),
            "predicted": predicted,
            "vote_share": share,
            "uncertain": uncertain,
        },
        index=index,
    )
