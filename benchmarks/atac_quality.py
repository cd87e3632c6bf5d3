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
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_variant(scn, name: str, spec: dict, epochs: int | None, seed: int) -> dict:
    from _methods import _other
    from _scenarios import KIND
    from _variant import fit_and_score

    from remadom.eval import imputation_metrics, mean_profile_baseline

    fit = fit_and_score(scn, name, spec, epochs, seed)
    model, out, res = fit.model, fit.out, fit.res
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
