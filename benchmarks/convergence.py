"""REMADOM's validation ELBO and benchmark metrics against the epoch (issue #13, defaults at convergence).

    python benchmarks/convergence.py --scenario bmmc_cite_mosaic3 --epochs 400 --snapshots 50 100 200 400 \\
        --variant default '{}' --variant lr4e-3_plateau '{"train": {"lr": 4e-3, "plan_kwargs": {"reduce_lr_on_plateau": true}}}'

Each variant trains once for ``--epochs`` epochs (``max_epochs``; ``null`` in the variant's
``train`` means REMADOM's own default) and, at the end of every snapshot epoch, scores the model
as ``run.py`` does: scIB bio / batch / total, modality-mixing iLISI, per-cell Pearson (ADT, RNA)
or AUROC (ATAC) of the hidden modalities. The KL warm-up follows the run's ``max_epochs``, so a
snapshot at epoch 200 of a 400-epoch run equals a 200-epoch run only when both warm up over the
same number of epochs (REMADOM's default: 50 for both). The per-epoch train / validation ELBO and
the learning rate are written too. One JSON line per variant goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def score(model, scn, seed: int) -> dict:
    """The run.py metrics of ``model`` (trained or mid-training) on ``scn``."""
    import numpy as np
    from _methods import remadom_outputs
    from _scenarios import KIND

    from remadom.eval import availability_groups, imputation_metrics, integration_metrics, modality_mixing

    was_training, was_trained = model.module.training, model.is_trained_
    model.is_trained_ = True  # mid-training: scvi's getters refuse an untrained model
    out = remadom_outputs(model, scn)
    model.module.train(was_training)
    model.is_trained_ = was_trained
    obs = scn.mdata.obs
    labels = obs[scn.labels_key].astype(str).to_numpy()
    batch = obs[scn.batch_key].astype(str).to_numpy()
    lat = integration_metrics(out.latent, labels, batch)
    res = {k: float(lat[k]) for k in ("bio_conservation", "batch_correction", "total")}
    groups = availability_groups(scn.masks)
    if len(set(groups)) > 1:
        res["ilisi_modality"] = float(modality_mixing(out.latent, groups, labels)["ilisi_modality"])
    for m, pred in out.imputed.items():
        met = imputation_metrics(pred, scn.truth[m].X, KIND[m], seed=seed)
        key = "auroc" if "auroc" in met else "pearson_cell_mean"
        res[f"{m}_{key}"] = float(met[key])
    return {k: round(v, 4) if isinstance(v, float) and np.isfinite(v) else v for k, v in res.items()}


def run_variant(scn, name: str, spec: dict, epochs: int | None, snapshots: list[int], seed: int) -> dict:
    import scvi
    from lightning.pytorch.callbacks import Callback

    from remadom import REMADOM

    scvi.settings.seed = seed
    mdata = scn.mdata.copy()
    REMADOM.setup_mudata(mdata, modalities={m: m for m in scn.modalities}, batch_key=scn.batch_key, labels_key=None)
    model = REMADOM(mdata, **spec.get("model", {}))
    scores: dict[int, dict] = {}
    lrs: list[float] = []

    class Snapshot(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            lrs.append(float(trainer.optimizers[0].param_groups[0]["lr"]))
            epoch = trainer.current_epoch + 1
            if epoch in snapshots:
                scores[epoch] = score(model, scn, seed)
                print(f"  [{name}] epoch {epoch}: {scores[epoch]}", flush=True)

    train = dict(spec.get("train", {}))
    if epochs is not None:
        train.setdefault("max_epochs", epochs)
    t0 = time.perf_counter()
    model.train(callbacks=[Snapshot()], **train)
    train_s = time.perf_counter() - t0
    hist = model.history
    n_run = len(hist["elbo_train"])
    if n_run not in scores:  # stopped early, or a last epoch that is not a snapshot
        scores[n_run] = score(model, scn, seed)
    series = {k: [round(float(v), 3) for v in hist[k].iloc[:, 0]] for k in ("elbo_train", "elbo_validation") if k in hist}
    return {"variant": name, "spec": spec, "scenario": scn.name, "n_cells": int(scn.mdata.n_obs),
            "epochs_run": n_run, "train_s_with_snapshots": round(train_s, 1), "scores": scores, "lr": lrs, **series}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="bmmc_cite_mosaic3")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="max_epochs (default: the variant's or REMADOM's)")
    p.add_argument("--snapshots", type=int, nargs="+", default=[50, 100, 200, 400])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    p.add_argument("--out", default=str(HERE / "results" / "convergence.jsonl"))
    args = p.parse_args(argv)

    from _scenarios import build_scenario

    scn = build_scenario(args.scenario, args.data_dir, n_cells=args.n_cells, seed=args.seed)
    for name, spec in args.variant:
        res = run_variant(scn, name, json.loads(spec), args.epochs, args.snapshots, args.seed)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        ev = res.get("elbo_validation", [])
        best = min(range(len(ev)), key=ev.__getitem__) + 1 if ev else None
        print(f"[{name}] epochs {res['epochs_run']}, best validation ELBO at epoch {best}, "
              f"{res['train_s_with_snapshots']} s; scores {res['scores']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
