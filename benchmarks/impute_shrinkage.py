"""Imputation of a hidden modality with and without ``impute(..., shrinkage=...)``, on one trained model.

    python benchmarks/impute_shrinkage.py --scenario bmmc_multiome_study --epochs default
    python benchmarks/impute_shrinkage.py --scenario bmmc_multiome_mosaic3 --epochs 50

Trains one REMADOM per run exactly as ``run.py`` does (``fit_remadom`` settings: shipped defaults,
``--epochs default`` keeps early stopping), then imputes every hidden modality of the scenario's
hidden cells from the other modality with several ``impute`` settings (the latent, and so every
integration metric, is the same for all of them): ``shrinkage=0`` (the decoded posterior mean, the
behaviour before the option), ``"auto"`` (the default), fixed weights, and ``n_samples=25``. Also
the diagnosis of why the plain prediction can score below the floor: the per-cell Pearson of the
target predicted from the source on the model's *training* and held-out *validation* cells that
measured both, against the floor on the same cells. One JSON line per scenario to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _score(pred, truth, kind):
    import numpy as np

    from remadom.eval import imputation_metrics

    r = imputation_metrics(pred, truth, kind)
    keys = ("auroc", "auprc", "auroc_per_feature_mean") if kind == "atac" else ("pearson_cell_mean",
                                                                              "pearson_feature_mean")
    out = {k: r[k] for k in keys}
    # the held-out log-likelihood of the truth under the prediction (multinomial per count; Bernoulli
    # per entry), a proper score beside the correlation-based metrics
    x = truth.toarray() if hasattr(truth, "toarray") else np.asarray(truth)
    p = np.asarray(pred, dtype=np.float64)
    if kind == "atac":
        p = np.clip(p, 1e-6, 1 - 1e-6)
        out["loglik"] = float(np.mean(np.where(x > 0, np.log(p), np.log1p(-p))))
    else:
        p = p / p.sum(1, keepdims=True)
        out["loglik"] = float((x * np.log(np.maximum(p, 1e-12))).sum() / x.sum())
    return out


def run(scenario: str, epochs, data_dir: str, seed: int = 0) -> dict:
    import numpy as np
    from _method_api import RunConfig, train_timed
    from _scenarios import KIND, build_scenario

    from remadom import REMADOM
    from remadom.eval import mean_profile_baseline
    from remadom.model._shrinkage import fit_shrinkage

    scn = build_scenario(scenario, data_dir, seed=seed)
    mdata = scn.mdata.copy()
    REMADOM.setup_mudata(mdata, modalities={m: m for m in scn.modalities}, batch_key=scn.batch_key,
                         labels_key=None)
    model = REMADOM(mdata)
    train_s = train_timed(model, RunConfig(epochs=epochs, seed=seed, own_defaults=epochs is None))
    out = {"scenario": scenario, "epochs": epochs or "default", "epochs_run": len(model.history["elbo_train"]),
           "train_s": train_s, "imputation": {}}
    names = np.asarray(scn.mdata.obs_names)
    for m in scn.truth:
        src = next(x for x in scn.modalities if x != m)
        kind = KIND[m]
        idx, truth = scn.hidden_idx(m), scn.truth[m].X
        floor = mean_profile_baseline(scn.mdata.mod[m].X, n_cells=truth.shape[0], kind=kind)
        fit = fit_shrinkage(model, m, [src])
        res = {"floor": _score(floor, truth, kind), "auto_weight": fit.weight, "auto_n_cells": fit.n_cells,
               "heldout_loglik": None if fit.loglik is None else [float(v) for v in fit.loglik]}
        for label, kw in (("shrinkage=0", {"shrinkage": 0.0}), ("auto", {}), ("shrinkage=0.5", {"shrinkage": 0.5}),
                          ("shrinkage=1", {"shrinkage": 1.0}), ("n_samples=25, shrinkage=0", {"n_samples": 25, "shrinkage": 0.0}),
                          ("n_samples=25, auto", {"n_samples": 25})):
            res[label] = _score(model.impute(m, from_modalities=[src], indices=idx, **kw), truth, kind)
        if kind != "atac":  # over-fitting of the cross-modal map: training vs validation cells with both
            has = np.isin(names, scn.mdata.mod[m].obs_names) & np.isin(names, scn.mdata.mod[src].obs_names)
            for split in ("train", "validation"):
                cells = np.sort(np.asarray(getattr(model, f"{split}_indices")))
                cells = cells[has[cells]]
                t = scn.mdata.mod[m][names[cells]].X
                fl = mean_profile_baseline(scn.mdata.mod[m].X, n_cells=len(cells), kind=kind)
                p = model.impute(m, from_modalities=[src], indices=cells, shrinkage=0.0)
                res[f"{split}_cells_from_{src}"] = {"n": int(len(cells)), "model": _score(p, t, kind),
                                                    "floor": _score(fl, t, kind)}
        out["imputation"][m] = res
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--epochs", default="default", help="'default' (the shipped epochs and early stopping) or N")
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append the JSON line here")
    a = ap.parse_args(argv)
    res = run(a.scenario, None if a.epochs == "default" else int(a.epochs), a.data_dir, a.seed)
    line = json.dumps(res)
    print(line)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
