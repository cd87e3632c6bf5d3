"""Benchmark of feature-level masks (issue #11): batches that measured different features.

Scenarios (``benchmarks/_scenarios.py`` ``build_feature_mask_scenario``): ``bmmc_cite_panels``
(two antibody panels) and ``snare_peaksets`` (two peak sets). Methods:

* ``remadom_masks``: REMADOM on the ``concat_mosaic`` join, feature masks registered;
* ``remadom_masks_norescale``: masks, but the encoder input only zero-filled (no rescaling);
* ``remadom_masks_shared_encoder`` / ``remadom_masks_batch_encoder``: masks; the encoders see the
  features every batch measured (the default since this benchmark) / those the cell's batch measured;
* ``remadom_masks_cellbg``: masks, ADT likelihood ``nbmixture_cellbg`` (per-cell background);
* ``remadom_zeros``: the same join with the masks removed (unmeasured zeros scored as data);
* ``remadom_full``: REMADOM on the same cells with every feature measured (integration reference);
* ``totalvi`` (ADT) / ``multivi`` (ATAC): scvi-tools on the zero-filled join.

Metrics: imputation of the unmeasured entries against the hidden truth (ADT per-cell / per-feature
Pearson, ATAC AUROC) and the mean-profile baseline (mean over the cells of the batches that measured
each feature), scIB bio / batch / total, FOSCTTM (RNA-only vs other-modality-only latent).

    python benchmarks/feature_masks.py --scenario bmmc_cite_panels --epochs 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from _scenarios import FeatureMaskScenario, build_feature_mask_scenario

import remadom.nn.networks as networks
from remadom.eval import foscttm, imputation_metrics, integration_metrics, mean_profile_baseline
from remadom.nn.masked import masked_encoder_input

HERE = Path(__file__).resolve().parent
MEASURED = "remadom_measured"


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _remadom(mdata, scn: FeatureMaskScenario, epochs: int | None, batch_size: int, encoder_masks: str | None = None,
             likelihood: str | None = None):
    from remadom import REMADOM

    spec = scn.modality if likelihood is None else {"mod": scn.modality, "likelihood": likelihood}
    REMADOM.setup_mudata(mdata, modalities={"rna": "rna", scn.modality: spec}, batch_key=scn.batch_key)
    model = REMADOM(mdata)
    if encoder_masks is not None:
        model.module.encoder_feature_masks = encoder_masks
    t0 = time.perf_counter()
    # a fixed budget trains exactly `epochs`; `--epochs default` keeps train()'s own early stopping
    stopping = {} if epochs is None else {"early_stopping": False}
    model.train(max_epochs=epochs, batch_size=batch_size, enable_progress_bar=False, **stopping)
    out = {"train_s": time.perf_counter() - t0, "latent": model.get_latent_representation(),
           "epochs": _epochs_run(model), "latent_rna": model.get_latent_representation(modalities=["rna"]),
           "latent_other": model.get_latent_representation(modalities=[scn.modality])}
    binary = model.module.heads[scn.modality].binary
    # binary (ATAC): the probability the cell's own measurement is open (its depth from its measured
    # peaks); the reference-depth profile is scored too (`*_refdepth`), as the ablation
    out["impute"] = lambda cells, batch: model.impute(scn.modality, indices=cells, cell_depth=binary)
    if binary:
        out["variants"] = {"refdepth": lambda cells, batch: model.impute(scn.modality, indices=cells)}
    elif scn.modality == "adt":  # background included: the mean of a new measurement (scale of the raw counts)
        out["variants"] = {"withbg": lambda cells, batch: model.impute(scn.modality, indices=cells,
                                                                        include_background=True),
                           # diagnosis: the latent from RNA alone (does the ADT encoder's input help?)
                           "rnaenc": lambda cells, batch: model.impute(scn.modality, indices=cells,
                                                                        from_modalities=["rna"])}
    out["n_masked_modalities"] = len(model.get_feature_masks())
    return out


def _batch_into_every_modality(mdata, batch_key: str) -> None:
    """Copy the global ``obs[batch_key]`` into each modality's ``obs`` (where scvi-tools' peers read it)."""
    for m in mdata.mod:
        mdata.mod[m].obs[batch_key] = mdata.obs.loc[mdata.mod[m].obs_names, batch_key].to_numpy()


def _totalvi(mdata, scn, epochs, batch_size):
    import scvi

    pad = mdata.copy()
    pad.mod["adt"].X = _dense(pad.mod["adt"].X).astype(np.float32)
    _batch_into_every_modality(pad, scn.batch_key)
    scvi.model.TOTALVI.setup_mudata(pad, batch_key=scn.batch_key,
                                    modalities={"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"})
    model = scvi.model.TOTALVI(pad)
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=batch_size, early_stopping=False, enable_progress_bar=False)
    batches = sorted(scn.hidden)

    def impute(cells, batch, background=False):
        others = [b for b in batches if b != batch]
        _, pro = model.get_normalized_expression(indices=cells, transform_batch=others, library_size=1,
                                                 include_protein_background=background, return_numpy=True)
        return np.asarray(pro)

    return {"train_s": time.perf_counter() - t0, "latent": model.get_latent_representation(), "impute": impute,
            "epochs": _epochs_run(model), "variants": {"withbg": lambda cells, batch: impute(cells, batch, background=True)}}


def _multivi(mdata, scn, epochs, batch_size):
    import scvi

    pad = mdata.copy()
    _batch_into_every_modality(pad, scn.batch_key)
    scvi.model.MULTIVI.setup_mudata(pad, batch_key=scn.batch_key,
                                    modalities={"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"})
    model = scvi.model.MULTIVI(pad)
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=batch_size, early_stopping=False, enable_progress_bar=False)

    def impute(cells, batch):  # like REMADOM's cell_depth=True: the cell's library and region factors back in
        acc = model.get_normalized_accessibility(indices=cells, normalize_cells=True, normalize_regions=True,
                                                 return_numpy=True)
        return _dense(acc)

    def impute_refdepth(cells, batch):  # MULTIVI's default normalized accessibility
        return _dense(model.get_normalized_accessibility(indices=cells, return_numpy=True))

    return {"train_s": time.perf_counter() - t0, "latent": model.get_latent_representation(),
            "epochs": _epochs_run(model), "latent_rna": model.get_latent_representation(modality="expression"),
            "latent_other": model.get_latent_representation(modality="accessibility"), "impute": impute,
            "variants": {"refdepth": impute_refdepth}}


def _zero_fill_only(x_in, mask, rescale=True):
    return masked_encoder_input(x_in, mask, rescale=False)


def _without_masks(mdata):
    out = mdata.copy()
    for m in out.mod:
        if MEASURED in out.mod[m].varm:
            del out.mod[m].varm[MEASURED]
    return out


def _binary(kind: str) -> bool:
    from remadom.modalities import MODALITY_KINDS
    from remadom.nn.likelihoods import LIKELIHOODS

    return LIKELIHOODS[MODALITY_KINDS[kind].default_likelihood].binary


def _depth_baseline(profile: np.ndarray, measured_counts, n_measured: int, n_features: int) -> np.ndarray:
    """Mean profile x the cell's depth: each cell's open measured peaks, rescaled to the full peak set.

    The floor for a prediction that uses the cell's depth (``cell_depth=True``): any ranking of
    (cell, peak) entries by depth x open rate needs no model.
    """
    n_open = np.asarray((sp.csr_matrix(measured_counts) > 0).sum(1)).ravel() * (n_features / n_measured)
    return profile * (n_open / max(n_open.mean(), 1e-12))[:, None]


def _imputation(fit, scn: FeatureMaskScenario) -> dict:
    """Metrics on the unmeasured entries, pooled over batches with the same hidden set."""
    kind = scn.modality
    obs_batch = scn.mdata.obs[scn.batch_key].astype(str).to_numpy()
    features = np.asarray(scn.mdata.mod[kind].var_names)
    truth_mod = scn.full.mod[kind]
    groups: dict[tuple, list[str]] = {}
    for batch, hidden in scn.hidden.items():
        if hidden.size:
            groups.setdefault(tuple(hidden), []).append(batch)
    rows, weights = [], []
    for hidden, batches in groups.items():
        cols = np.flatnonzero(np.isin(features, hidden))
        cells = np.flatnonzero(np.isin(obs_batch, batches))
        donors = np.flatnonzero(~np.isin(obs_batch, batches))  # cells of batches that measured them
        truth = truth_mod[scn.mdata.obs_names[cells]].X[:, cols]
        pred = np.concatenate([
            np.asarray(fit["impute"](cells[obs_batch[cells] == b], b))[:, cols] for b in batches
        ]) if fit else None
        order = np.concatenate([np.flatnonzero(obs_batch[cells] == b) for b in batches])
        truth = truth[order]
        base = mean_profile_baseline(truth_mod[scn.mdata.obs_names[donors]].X[:, cols], len(cells), kind)
        row = {f"baseline_{k}": v for k, v in imputation_metrics(base, truth, kind).items()}
        if pred is not None:
            row.update(imputation_metrics(pred, truth, kind))
        for suffix, variant in (fit or {}).get("variants", {}).items():  # ablations of the prediction
            alt = np.concatenate([np.asarray(variant(cells[obs_batch[cells] == b], b))[:, cols] for b in batches])
            row.update({f"{k}_{suffix}": v for k, v in imputation_metrics(alt, truth, kind).items()})
            if suffix == "withbg" and pred is not None:  # share of the predicted counts that is background
                row["background_share"] = float(1.0 - pred.sum() / max(alt.sum(), 1e-12))
        if _binary(kind):  # the floor of a depth-aware prediction
            cell_names = scn.mdata.obs_names[cells[order]]
            measured_cols = np.flatnonzero(~np.isin(features, hidden))
            depth_base = _depth_baseline(base, scn.mdata.mod[kind][cell_names].X[:, measured_cols],
                                         len(measured_cols), len(features))
            row.update({f"baseline_depth_{k}": v for k, v in imputation_metrics(depth_base, truth, kind).items()})
        rows.append(row)
        weights.append(len(cells))
    keys = set.intersection(*(set(r) for r in rows))
    return {k: float(np.average([r[k] for r in rows], weights=weights)) for k in sorted(keys)
            if not k.endswith("n_defined") and not k.endswith("n_entries")}


#: ``--epochs default``: each method's own default (REMADOM: its ``train()`` default, ``None``).
DEFAULT_EPOCHS = {"totalvi": 400, "multivi": 500}


def _epochs_run(model) -> int:
    """Epochs a trained scvi-tools / REMADOM model ran (the length of its history)."""
    return int(len(next(iter(model.history.values()))))


def run(scenario: str, methods: list[str], epochs: int | None, batch_size: int, n_cells: int | None,
        data_dir: str, seed: int, out_dir: Path) -> list[dict]:
    """Run ``methods`` on ``scenario``; ``epochs=None`` trains each at its own default (``DEFAULT_EPOCHS``)."""
    torch.manual_seed(seed)
    scn = build_feature_mask_scenario(scenario, data_dir, n_cells=n_cells, seed=seed)
    print(f"{scenario}: {scn.mdata.n_obs} cells, {scn.description}", flush=True)
    labels = scn.mdata.obs[scn.labels_key].astype(str).to_numpy()
    batch = scn.mdata.obs[scn.batch_key].astype(str).to_numpy()
    results = []
    for method in methods:
        import scvi

        scvi.settings.seed = seed
        t0 = time.perf_counter()
        method_epochs = DEFAULT_EPOCHS.get(method) if epochs is None else epochs
        if method == "remadom_masks":
            fit = _remadom(scn.mdata.copy(), scn, method_epochs, batch_size)
            assert fit["n_masked_modalities"] == 1, "the masks were not registered"
        elif method == "remadom_masks_norescale":  # ablation of the encoder input: zero-fill only
            networks.masked_encoder_input = _zero_fill_only
            fit = _remadom(scn.mdata.copy(), scn, method_epochs, batch_size)
        elif method == "remadom_masks_shared_encoder":  # encoders see only features every batch measured
            fit = _remadom(scn.mdata.copy(), scn, method_epochs, batch_size, encoder_masks="shared")
        elif method == "remadom_masks_batch_encoder":  # encoders see the features the cell's batch measured
            fit = _remadom(scn.mdata.copy(), scn, method_epochs, batch_size, encoder_masks="batch")
        elif method == "remadom_masks_cellbg":  # the ADT head with a per-cell background (totalVI's log_beta)
            fit = _remadom(scn.mdata.copy(), scn, method_epochs, batch_size, likelihood="nbmixture_cellbg")
        elif method == "remadom_zeros":
            fit = _remadom(_without_masks(scn.mdata), scn, method_epochs, batch_size)
            assert fit["n_masked_modalities"] == 0
        elif method == "remadom_full":
            fit = _remadom(scn.full.copy(), scn, method_epochs, batch_size)
        elif method == "totalvi":
            fit = _totalvi(_without_masks(scn.mdata), scn, method_epochs, batch_size)
        elif method == "multivi":
            fit = _multivi(_without_masks(scn.mdata), scn, method_epochs, batch_size)
        else:
            raise ValueError(f"unknown method {method!r}")
        row = {"scenario": scenario, "method": method, "epochs": fit.get("epochs", method_epochs),
               "epochs_setting": "default" if epochs is None else "fixed", "n_cells": int(scn.mdata.n_obs),
               "train_s": round(fit["train_s"], 1)}
        row.update({f"scib_{k}": v for k, v in integration_metrics(fit["latent"], labels, batch).items()})
        if "latent_rna" in fit:
            row["foscttm"] = foscttm(fit["latent_rna"], fit["latent_other"])
        if method != "remadom_full":
            row.update(_imputation(fit, scn))
        networks.masked_encoder_input = masked_encoder_input  # undo the ablation, if any
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        results.append(row)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{scenario}__{method}.json").write_text(json.dumps(row, indent=1))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, choices=["bmmc_cite_panels", "snare_peaksets"])
    p.add_argument("--methods", default=None, help="comma-separated (default: all for the scenario)")
    p.add_argument("--epochs", default="100",
                   help="an integer for every method, or 'default': REMADOM's train() default, TOTALVI 400, MULTIVI 500")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "feature_masks"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peer = "totalvi" if args.scenario == "bmmc_cite_panels" else "multivi"
    methods = args.methods.split(",") if args.methods else ["remadom_masks", "remadom_zeros", "remadom_full", peer]
    epochs = None if args.epochs == "default" else int(args.epochs)
    run(args.scenario, methods, epochs, args.batch_size, args.n_cells, args.data_dir, args.seed, Path(args.out))


if __name__ == "__main__":
    main()
