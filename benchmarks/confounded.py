"""Diagnose and ablate REMADOM on study-confounded scenarios (issue #13).

    python benchmarks/confounded.py --scenario bmmc_cite_study --epochs 50 \\
        --variant default '{}' \\
        --variant additive '{"model": {"batch_effect": "additive"}}' \\
        --variant cycle1 '{"train": {"plan_kwargs": {"cycle_weight": 1.0}}}'

A variant is a name and a JSON object with ``model`` (``REMADOM(...)`` arguments), ``train``
(``model.train(...)`` arguments), ``encoder_input`` (``{modality: transform}``) and ``module`` (module
attributes set after construction, e.g. ``{"paired_anchor_kind": "kl"}``). Each variant trains on the same scenario and seed, one after
the other in this process, and the script prints one JSON line and one table row per variant:

* ``transfer[<group>]``: kNN label transfer from the reference (paired) batches to the cells of each
  single-modality group (``label_transfer_accuracy``), and ``majority`` its majority-class rate;
* ``ilisi_mod``: modality-mixing iLISI (availability group as batch), ``ilisi_batch``, ``bio``,
  ``batch``, ``total``: the scIB numbers of ``integration_metrics`` on the joint latent;
* ``impute[<m>]``: per-cell Pearson (or within-peak AUROC for ATAC) of the hidden modality, with the
  mean-profile floor, and the 90 % interval coverage for ADT;
* diagnostics: ``gap_ratio`` = median over cell types (>= 5 cells on both sides) of the distance
  between the type's latent centroid in the reference batches and in the other batches, divided
  by the type's median within-reference spread (about 1 = mixed, >> 1 = separate islands);
  ``expert_transfer[<m>]`` = label transfer from the joint latent of half the reference cells to
  the latent that modality ``m`` alone gives the other half (does the single-modality expert
  place *paired-batch* cells right?); ``nll_swap[<m>]`` = mean NLL of the non-reference cells' own
  ``m`` decoded with their own batch code and with a reference batch code (how much of the data
  the batch code explains); ``single_vs_joint`` / ``group_vs_paired_single`` / ``norm`` (see
  :func:`_posterior_mismatch`).

Results are appended as JSON lines to ``--out`` (default ``benchmarks/results/confounded.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _gap_ratio(z, labels, ref):
    import numpy as np

    ratios = []
    for t in np.unique(labels):
        a, b = z[(labels == t) & ref], z[(labels == t) & ~ref]
        if len(a) < 5 or len(b) < 5:
            continue
        spread = np.median(np.linalg.norm(a - a.mean(0), axis=1))
        ratios.append(np.linalg.norm(a.mean(0) - b.mean(0)) / max(spread, 1e-8))
    return float(np.median(ratios)) if ratios else float("nan")


def _nll_swap(model, cells, modality, ref_code):
    """Mean NLL of ``modality`` on ``cells`` decoded with their own and with batch ``ref_code``."""
    import torch

    from remadom.module import MODULE_KEYS

    module = model.module
    keys = MODULE_KEYS
    out = {"own": 0.0, "reference": 0.0}
    n = 0
    with torch.inference_mode():
        for tensors in model._loader(model.adata, cells, 256):
            inf = module.inference(**module._get_inference_input(tensors))
            gen_in = module._get_generative_input(tensors, inf)
            x = inf[keys.X_PREPARED_KEY][modality]
            own = gen_in[keys.BATCH_INDEX_KEY]
            for key, bidx in (("own", own), ("reference", torch.full_like(own, ref_code))):
                gen = module.generative(inf[keys.QZ_MEAN_KEY], gen_in[keys.LIBRARY_KEY], bidx, gen_in[keys.CAT_COVS_KEY],
                                        gen_in[keys.CONT_COVS_KEY], target_modalities=[modality])
                out[key] += float(module.heads[modality].nll(x, gen[keys.PARAMS_KEY][modality]).sum())
            n += x.shape[0]
    return {k: v / max(n, 1) for k, v in out.items()}


def _posterior_mismatch(model, z, labels, groups, scn) -> dict:
    """Is the gap a batch effect or a unimodal-vs-joint posterior mismatch?

    ``single_vs_joint[m]``: modality iLISI between the joint latent of the paired cells and the
    latent that ``m`` alone gives the *same* cells (1 = indistinguishable); ``group_vs_paired_single[g]``:
    iLISI between the single-modality group ``g`` and the paired cells encoded from that one
    modality (high = no batch effect in the expert); ``norm[g]``: mean latent norm of each group.
    """
    import numpy as np

    from remadom.eval import modality_mixing

    out = {}
    paired = scn.paired_idx
    single = {m: model.get_latent_representation(indices=paired, modalities=[m]) for m in scn.modalities}
    for m, zs in single.items():
        tag = np.array(["joint"] * paired.size + ["single"] * paired.size)
        both = np.concatenate([z[paired], zs])
        out[f"single_vs_joint[{m}]"] = modality_mixing(both, tag, np.concatenate([labels[paired]] * 2))["ilisi_modality"]
    for g in np.unique(groups):
        inside = groups == g
        out[f"norm[{g}]"] = float(np.linalg.norm(z[inside], axis=1).mean())
        mods = [m for m in scn.modalities if scn.masks[m][inside].all()]
        if len(mods) == 1 and not np.array_equal(np.flatnonzero(inside), paired):
            tag = np.array(["paired"] * paired.size + ["group"] * int(inside.sum()))
            both = np.concatenate([single[mods[0]], z[inside]])
            lab = np.concatenate([labels[paired], labels[inside]])
            out[f"group_vs_paired_single[{g}]"] = modality_mixing(both, tag, lab)["ilisi_modality"]
    return out


def run_variant(scn, name: str, spec: dict, epochs: int | None, seed: int, diagnose: bool) -> dict:
    import numpy as np
    from _scenarios import KIND
    from _variant import fit_and_score

    from remadom.eval import (
        imputation_metrics,
        interval_coverage,
        label_transfer_accuracy,
        mean_profile_baseline,
    )

    fit = fit_and_score(scn, name, spec, epochs, seed)
    model, out, res = fit.model, fit.out, fit.res
    z, labels, groups = out.latent, fit.labels, fit.groups
    ref = np.isin(fit.batch, scn.reference_batches)
    for m, pred in out.imputed.items():
        truth = scn.truth[m].X
        base = mean_profile_baseline(scn.mdata.mod[m].X, n_cells=truth.shape[0], kind=KIND[m])
        key = "auroc_per_feature_mean" if KIND[m] == "atac" else "pearson_cell_mean"
        res[f"impute[{m}]"] = imputation_metrics(pred, truth, KIND[m], seed=seed)[key]
        res[f"floor[{m}]"] = imputation_metrics(base, truth, KIND[m], seed=seed)[key]
        if m in out.intervals:
            res[f"coverage90[{m}]"] = interval_coverage(*out.intervals[m], truth)["coverage"]
    if diagnose and (~ref).any():
        res["gap_ratio"] = _gap_ratio(z, labels, ref)
        rng = np.random.default_rng(seed)
        ref_idx = np.flatnonzero(ref & np.all(np.stack(list(scn.masks.values())), 0))
        half = rng.permutation(ref_idx)
        src, tgt = half[: half.size // 2], half[half.size // 2 :]
        for m in scn.modalities:
            z_m = model.get_latent_representation(indices=tgt, modalities=[m])
            zz = np.concatenate([z[src], z_m])
            lab = np.concatenate([labels[src], labels[tgt]])
            srcmask = np.arange(zz.shape[0]) < src.size
            res[f"expert_transfer[{m}]"] = label_transfer_accuracy(zz, lab, srcmask, ~srcmask)["accuracy"]
        res.update(_posterior_mismatch(model, z, labels, groups, scn))
        codes = model.adata_manager.get_from_registry("batch").ravel()
        ref_code = int(codes[np.flatnonzero(ref)[0]])
        other = np.flatnonzero(~ref)
        masks = scn.masks
        for m in scn.modalities:
            cells = other[masks[m][other]]
            if cells.size:
                sw = _nll_swap(model, cells, m, ref_code)
                res[f"nll_swap[{m}]"] = f"{sw['own']:.1f}->{sw['reference']:.1f}"
    return res


def _epochs_arg(value: str) -> int | None:
    return None if value == "default" else int(value)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=["bmmc_cite_study"], help="one or more scenarios")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--epochs", type=_epochs_arg, default=50,
                   help="an integer, or 'default' for REMADOM's train() defaults (early stopping on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-diagnose", action="store_true")
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    p.add_argument("--out", default=str(HERE / "results" / "confounded.jsonl"))
    args = p.parse_args(argv)

    from _scenarios import build_scenario

    rows = []
    for scenario in args.scenario:
        scn = build_scenario(scenario, args.data_dir, n_cells=args.n_cells, seed=args.seed)
        rows += _run_all(scn, args)
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("variant", "spec")))
    print("\n| variant | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for r in rows:
        vals = [f"{r.get(k):.3f}" if isinstance(r.get(k), float) else str(r.get(k, "–")) for k in keys]
        print(f"| {r['variant']} | " + " | ".join(vals) + " |")
    return 0


def _run_all(scn, args) -> list[dict]:
    rows = []
    for name, spec in args.variant:
        t0 = time.perf_counter()
        res = run_variant(scn, name, json.loads(spec), args.epochs, args.seed, not args.no_diagnose)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(res)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k != "spec"}), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
