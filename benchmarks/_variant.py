"""Train one REMADOM variant on a scenario and score it as ``run.py`` does (shared by the ablation scripts).

A variant is a name and a JSON object with ``model`` (``REMADOM(...)`` arguments), ``train``
(``model.train(...)`` arguments), ``encoder_input`` (``{modality: transform}``) and ``module``
(module attributes set after construction). ``epochs=None`` trains with REMADOM's own ``train()``
defaults, early stopping included (``run.py --epochs default``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class FittedVariant:
    """The trained model, ``fit_remadom``'s output, the cells' labels / batches / availability groups, and the scores."""

    model: object
    out: object
    labels: np.ndarray
    batch: np.ndarray
    groups: np.ndarray
    res: dict


def fit_and_score(scn, name: str, spec: dict, epochs: int | None, seed: int) -> FittedVariant:
    """Fit ``spec`` on ``scn`` and compute the study-table numbers of the joint latent.

    ``res`` holds ``bio``, ``batch``, ``total``, ``ilisi_batch``, ``ilisi_mod`` (availability group
    as batch), ``transfer[<group>]`` / ``majority[<group>]`` (kNN label transfer from the reference
    batches), ``epochs_run``, ``train_s``, ``best_epoch`` / ``best_val_elbo`` when validated, and the
    1-minute load average. Imputation is left to the caller.
    """
    import scvi
    from _method_api import RunConfig
    from _methods import fit_remadom
    from run import label_transfer_report

    from remadom.eval import availability_groups, integration_metrics, modality_mixing

    held = {}

    def adjust(model):
        held["model"] = model
        for m, transform in spec.get("encoder_input", {}).items():
            model.module.encoders[m].input.transform = transform
        for attr, value in spec.get("module", {}).items():
            if not hasattr(model.module, attr):
                raise ValueError(f"variant {name!r}: the module has no attribute {attr!r}")
            setattr(model.module, attr, value)

    scvi.settings.seed = seed
    out = fit_remadom(
        scn, RunConfig(epochs=epochs, seed=seed, own_defaults=epochs is None), model_kwargs=spec.get("model"),
        train_kwargs=spec.get("train"), adjust_model=adjust,
    )
    model, z = held["model"], out.latent
    obs = scn.mdata.obs
    labels = obs[scn.labels_key].astype(str).to_numpy()
    batch = obs[scn.batch_key].astype(str).to_numpy()
    groups = availability_groups(scn.masks)
    res = {"variant": name, "spec": spec, "scenario": scn.name, "n_cells": int(scn.mdata.n_obs), "epochs": epochs,
           "epochs_run": out.epochs_run, "train_s": round(out.train_time_s, 1), "load_1m": round(os.getloadavg()[0], 1)}
    hist = model.history or {}
    if "elbo_validation" in hist:
        val = hist["elbo_validation"].iloc[:, 0].to_numpy()
        res["best_epoch"] = int(np.nanargmin(val)) + 1
        res["best_val_elbo"] = float(np.nanmin(val))
    lt = label_transfer_report(z, labels, batch, groups, scn.reference_batches)
    if "all" in lt:
        res["transfer[all]"] = lt["all"]["accuracy"]
    for g, d in lt["per_group"].items():
        res[f"transfer[{g}]"] = d["accuracy"]
        res[f"majority[{g}]"] = d["majority_rate"]
    lat = integration_metrics(z, labels, batch)
    res.update(bio=lat["bio_conservation"], batch=lat["batch_correction"], total=lat["total"], ilisi_batch=lat["ilisi"])
    if len(set(groups)) > 1:
        res["ilisi_mod"] = modality_mixing(z, groups, labels)["ilisi_modality"]
    return FittedVariant(model, out, labels, batch, groups, res)
