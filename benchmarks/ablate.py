"""Ablations of REMADOM settings on one benchmark scenario.

    python benchmarks/ablate.py --scenario snare_mosaic3 --n-cells 3000 --epochs 30 \\
        --variant default '{}' \\
        --variant hidden128 '{"model": {"n_hidden": 128}}' \\
        --variant avail_mmd '{"train": {"alignment_on": "availability", "alignment_weight": 1.0}}'

A variant is a name and a JSON object with ``model`` (``REMADOM(...)`` arguments), ``train``
(``model.train(...)`` arguments), ``encoder_input`` (``{modality: transform}``) and
``product_form_heads`` (modalities whose Bernoulli head uses PeakVI's product form). Every variant
trains on the same scenario and seed; the script prints one table row per variant:

* ``transfer[<group>]``: accuracy of a 15-NN classifier trained on the paired cells' joint latent
  and applied to each single-modality group (do single-modality cells land on the paired cells of
  their cell type?);
* ``mixing``: modality-mixing score (:func:`remadom.eval.modality_mixing`);
* ``foscttm``: between the single-modality latents of the paired cells;
* ``imputation``: ATAC AUROC / RNA or ADT per-feature Pearson of the hidden modalities;
* ``s/epoch``: training time per epoch.

Results are also written as JSON lines to ``--out`` (default ``benchmarks/results/ablations.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_variant(scn, name: str, spec: dict, epochs: int, seed: int) -> dict:
    import numpy as np
    import scvi
    from _method_api import RunConfig
    from _methods import fit_remadom
    from _scenarios import KIND
    from sklearn.neighbors import KNeighborsClassifier

    from remadom.eval import availability_groups, foscttm, imputation_metrics, modality_mixing
    from remadom.nn.likelihoods import PeakVIBernoulliHead

    def adjust(model):
        for m, transform in spec.get("encoder_input", {}).items():
            model.module.encoders[m].input.transform = transform
        for m in spec.get("product_form_heads", []):  # PeakVI's product form for the Bernoulli head
            head = model.module.heads[m]
            model.module.heads[m] = PeakVIBernoulliHead(head.logit_layer.in_features - 1, head.n_features, head.n_batch)

    scvi.settings.seed = seed
    out = fit_remadom(
        scn,
        RunConfig(epochs=epochs, seed=seed),
        model_kwargs=spec.get("model"),
        train_kwargs=spec.get("train"),
        adjust_model=adjust,
    )
    z = out.latent
    labels = scn.mdata.obs[scn.labels_key].astype(str).to_numpy()
    groups = availability_groups(scn.masks)
    paired = scn.paired_idx
    res = {"variant": name, "spec": spec, "scenario": scn.name, "n_cells": int(scn.mdata.n_obs)}
    res["epochs"], res["s_per_epoch"] = epochs, out.train_time_s / epochs
    knn = KNeighborsClassifier(15).fit(z[paired], labels[paired])
    for g in sorted(set(groups)):
        idx = np.flatnonzero(groups == g)
        if "+" not in g and idx.size:
            res[f"transfer[{g}]"] = float((knn.predict(z[idx]) == labels[idx]).mean())
    res["mixing"] = modality_mixing(z, groups, labels)["modality_mixing"]
    if out.latent_single:
        res["foscttm"] = foscttm(*(out.latent_single[m] for m in scn.modalities))
    for m, pred in out.imputed.items():
        met = imputation_metrics(pred, scn.truth[m].X, KIND[m], seed=seed)
        key = "auroc" if "auroc" in met else "pearson_feature_mean"
        res[f"impute[{m}].{key}"] = met[key]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="snare_mosaic3")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    p.add_argument("--out", default=str(HERE / "results" / "ablations.jsonl"))
    args = p.parse_args(argv)

    from _scenarios import build_scenario

    scn = build_scenario(args.scenario, args.data_dir, n_cells=args.n_cells, seed=args.seed)
    rows = []
    for name, spec in args.variant:
        res = run_variant(scn, name, json.loads(spec), args.epochs, args.seed)
        rows.append(res)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k != "spec"}), flush=True)
    keys = [k for k in rows[0] if k not in ("variant", "spec", "scenario", "n_cells", "epochs")]
    print("\n| variant | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for r in rows:
        vals = [f"{r.get(k):.3f}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys]
        print(f"| {r['variant']} | " + " | ".join(vals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
