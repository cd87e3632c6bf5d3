"""ATAC / Multiome quality of REMADOM variants, scored as ``run.py`` scores (issue #13d).

    python benchmarks/atac_quality.py --scenario bmmc_multiome_study --epochs default \\
        --variant shipped '{}' \\
        --variant off '{"model": {"fusion": "poe", "paired_anchor_weight": 0}}' \\
        --variant former '{"train": {"lr": 1e-3, "max_epochs": 200, "early_stopping": false, "reduce_lr_on_plateau": false}}'

``--epochs default`` trains every variant with the shipped ``train()`` defaults (early stopping
on), an integer with that many epochs and early stopping off (as ``run.py``); a variant's own
``train`` arguments win. A variant is a name and a JSON object with ``model`` (``REMADOM(...)``
arguments), ``train`` (``model.train(...)`` arguments) and ``encoder_input`` (``{modality:
transform}``). Each row has the numbers of ``run.py``'s study table: ``bio``, ``batch``,
``total``, ``ilisi_mod`` (modality iLISI), ``transfer[<group>]`` (paired -> single-modality
label transfer), ``impute[<m>]`` / ``floor[<m>]`` (per-cell Pearson for counts; pooled AUROC
for ATAC), ``impute_ns25[<m>]`` (the same for ``impute(..., n_samples=25)``), and for a hidden binary modality ``within_peak[<m>]`` (AUROC within each peak across
cells) at the reference depth (``impute`` default), and ``within_peak_pred[<m>]`` /
``auroc_pred[<m>]`` with ``cell_depth="predicted"``; plus ``epochs_run`` and ``best_epoch``
(of the validation ELBO, when validated). JSON lines are appended to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_variant(scn, name: str, spec: dict, epochs: int | None, seed: int) -> dict:
    import numpy as np
    import scvi
    from _method_api import RunConfig
    from _methods import _other, fit_remadom
    from _scenarios import KIND
    from run import label_transfer_report

    from remadom.eval import (
        availability_groups,
        imputation_metrics,
        integration_metrics,
        mean_profile_baseline,
        modality_mixing,
    )

    held = {}

    def adjust(model):
        held["model"] = model
        for m, transform in spec.get("encoder_input", {}).items():
            model.module.encoders[m].input.transform = transform

    scvi.settings.seed = seed
    cfg = RunConfig(epochs=epochs, seed=seed, own_defaults=epochs is None)
    out = fit_remadom(scn, cfg, model_kwargs=spec.get("model"), train_kwargs=spec.get("train"), adjust_model=adjust)
    model = held["model"]
    z = out.latent
    obs = scn.mdata.obs
    labels = obs[scn.labels_key].astype(str).to_numpy()
    batch = obs[scn.batch_key].astype(str).to_numpy()
    groups = availability_groups(scn.masks)
    res = {"variant": name, "spec": spec, "scenario": scn.name, "n_cells": int(scn.mdata.n_obs),
           "epochs": epochs, "epochs_run": out.epochs_run, "train_s": round(out.train_time_s, 1),
           "load_1m": round(os.getloadavg()[0], 1)}
    hist = model.history or {}
    if "elbo_validation" in hist:
        val = hist["elbo_validation"].iloc[:, 0].to_numpy()
        res["best_epoch"] = int(np.nanargmin(val)) + 1
        res["best_val_elbo"] = float(np.nanmin(val))
    lat = integration_metrics(z, labels, batch)
    res.update(bio=lat["bio_conservation"], batch=lat["batch_correction"], total=lat["total"])
    if len(set(groups)) > 1:
        res["ilisi_mod"] = modality_mixing(z, groups, labels)["ilisi_modality"]
    lt = label_transfer_report(z, labels, batch, groups, scn.reference_batches)
    if "all" in lt:
        res["transfer[all]"] = lt["all"]["accuracy"]
    for g, d in lt["per_group"].items():
        res[f"transfer[{g}]"] = d["accuracy"]
    for m, pred in out.imputed.items():
        truth = scn.truth[m].X
        base = mean_profile_baseline(scn.mdata.mod[m].X, n_cells=truth.shape[0], kind=KIND[m])
        met = imputation_metrics(pred, truth, KIND[m], seed=seed)
        key = "auroc" if "auroc" in met else "pearson_cell_mean"
        res[f"impute[{m}]"] = met[key]
        res[f"floor[{m}]"] = imputation_metrics(base, truth, KIND[m], seed=seed)[key]
        idx = scn.hidden_idx(m)
        src = [_other(scn, m)]
        # the posterior-predictive mean (decoded over 25 posterior draws) instead of decoding the mean
        pred_s = model.impute(m, from_modalities=src, indices=idx, library_size=1e4, n_samples=25)
        res[f"impute_ns25[{m}]"] = imputation_metrics(pred_s, truth, KIND[m], seed=seed)[key]
        if "auroc_per_feature_mean" in met:
            res[f"within_peak[{m}]"] = met["auroc_per_feature_mean"]
            pred_d = model.impute(m, from_modalities=src, indices=idx, cell_depth="predicted")
            met_d = imputation_metrics(pred_d, truth, KIND[m], seed=seed)
            res[f"within_peak_pred[{m}]"] = met_d["auroc_per_feature_mean"]
            res[f"auroc_pred[{m}]"] = met_d["auroc"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=["bmmc_multiome_study"])
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--epochs", default="default", help="'default' (shipped train() defaults) or an integer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    p.add_argument("--out", default=str(HERE / "results" / "atac_quality.jsonl"))
    args = p.parse_args(argv)
    epochs = None if args.epochs == "default" else int(args.epochs)

    from _scenarios import build_scenario

    rows = []
    for scenario in args.scenario:
        scn = build_scenario(scenario, args.data_dir, n_cells=args.n_cells, seed=args.seed)
        for name, spec in args.variant:
            t0 = time.perf_counter()
            res = run_variant(scn, name, json.loads(spec), epochs, args.seed)
            res["wall_s"] = round(time.perf_counter() - t0, 1)
            rows.append(res)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(json.dumps({k: v for k, v in res.items() if k != "spec"}), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("variant", "spec")))
    print("\n| variant | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for r in rows:
        vals = [f"{r.get(k):.3f}" if isinstance(r.get(k), float) else str(r.get(k, "–")) for k in keys]
        print(f"| {r['variant']} | " + " | ".join(vals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
