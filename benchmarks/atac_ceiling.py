"""How much a study-confounded RNA/ATAC scenario allows, without any model (issue #13d diagnosis).

    python benchmarks/atac_ceiling.py --scenario bmmc_multiome_study
    python benchmarks/atac_ceiling.py --scenario snare_study --n-cells 3000

For each scenario, model-free reference points built from the scenario's visible data only
(nothing here sees the hidden truth except as the score's target, and the "oracle" rows, which
are labelled as such):

* label transfer from the reference (paired) batches to the single-modality batch, from each
  modality alone: 15-NN on TF-IDF + LSI (ATAC) or log-normalized PCA (RNA), and a supervised
  logistic regression trained on the reference batches' labels (what the modality can tell about
  the cell type across batches at best, roughly);
* for a hidden RNA modality, the per-cell Pearson (``remadom.eval.imputation_metrics``) of the
  mean-profile floor, of the oracle (each cell gets the reference mean profile of its *true*
  cell type, and blends of it with the overall mean), and of the soft / hard profiles of the ATAC
  classifier;
* for a hidden ATAC modality, the within-peak AUROC of a prediction that is only the cell's depth:
  the true (hidden) number of open peaks (oracle) and the cell's RNA library size (available).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _tfidf_lsi(x, n=20):
    import numpy as np
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    b = sp.csr_matrix((x > 0).astype(np.float64))
    tf = sp.diags(1 / np.maximum(b.sum(1).A1, 1)) @ b
    idf = np.log1p(b.shape[0] / np.maximum(b.sum(0).A1, 1))
    tfidf = (tf @ sp.diags(idf)).tocsr()
    tfidf.data = np.log1p(tfidf.data * 1e4)
    return tfidf, TruncatedSVD(n + 1, random_state=0).fit_transform(tfidf)[:, 1:]


def _lognorm_pca(x, n=20):
    import numpy as np
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    r = sp.csr_matrix(x).astype(np.float64)
    r = (sp.diags(1e4 / np.maximum(r.sum(1).A1, 1)) @ r).tocsr()
    r.data = np.log1p(r.data)
    return r, TruncatedSVD(n, random_state=0).fit_transform(r)


def ceiling(scn) -> dict:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    from remadom.eval import imputation_metrics, mean_profile_baseline, per_feature_auroc

    obs = scn.mdata.obs
    labels = obs[scn.labels_key].astype(str)
    batch = obs[scn.batch_key].astype(str)
    out = {"scenario": scn.name, "n_cells": int(scn.mdata.n_obs)}
    feats = {"atac": _tfidf_lsi, "rna": _lognorm_pca}
    for m in scn.modalities:
        mod = scn.mdata.mod[m]
        ref = batch.loc[mod.obs_names].isin(scn.reference_batches).to_numpy()
        y = labels.loc[mod.obs_names].to_numpy()
        if ref.all() or not ref.any():
            continue
        full, low = feats[m](mod.X)
        knn = KNeighborsClassifier(15).fit(low[ref], y[ref])
        out[f"knn_transfer[{m}]"] = float((knn.predict(low[~ref]) == y[~ref]).mean())
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(full[ref], y[ref])
        out[f"logreg_transfer[{m}]"] = float((clf.predict(full[~ref]) == y[~ref]).mean())
    truth_labels = labels.to_numpy()
    if "rna" in scn.truth and "atac" in scn.modalities:
        truth = scn.truth["rna"].X
        idx = scn.hidden_idx("rna")
        rna = scn.mdata.mod["rna"]
        r = sp.csr_matrix(rna.X).astype(np.float64)
        r = sp.diags(1e4 / np.maximum(r.sum(1).A1, 1)) @ r
        y_rna = labels.loc[rna.obs_names].to_numpy()
        mean = np.asarray(r.mean(0)).ravel()
        prof = {t: np.asarray(r[y_rna == t].mean(0)).ravel() for t in np.unique(y_rna)}
        score = lambda p: imputation_metrics(p, truth, "rna")["pearson_cell_mean"]  # noqa: E731
        base = mean_profile_baseline(rna.X, n_cells=truth.shape[0], kind="rna")
        out["rna_floor"] = score(base)
        oracle = np.stack([prof.get(t, mean) for t in truth_labels[idx]])
        for w in (1.0, 0.5, 0.25):
            out[f"rna_oracle_type_profile[w={w}]"] = score(w * oracle + (1 - w) * mean)
        atac = scn.mdata.mod["atac"]
        full, _ = _tfidf_lsi(atac.X)
        pos = {n: i for i, n in enumerate(atac.obs_names)}
        train = np.array([pos[n] for n in rna.obs_names if n in pos])
        y_train = labels.loc[atac.obs_names[train]].to_numpy()
        test = np.array([pos[n] for n in scn.mdata.obs_names[idx]])
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(full[train], y_train)
        proba = clf.predict_proba(full[test])
        out["rna_atac_classifier_soft_profile"] = score(proba @ np.stack([prof[t] for t in clf.classes_]))
        out["rna_atac_classifier_hard_profile"] = score(np.stack([prof[t] for t in clf.predict(full[test])]))
    if "atac" in scn.truth and "rna" in scn.modalities:
        truth = scn.truth["atac"].X
        names = scn.mdata.obs_names[scn.hidden_idx("atac")]
        depth = np.asarray((truth > 0).sum(1)).ravel().astype(np.float64)
        lib = np.asarray(scn.mdata.mod["rna"][names].X.sum(1)).ravel().astype(np.float64)
        out["corr_log_rna_library_vs_log_atac_depth"] = float(np.corrcoef(np.log1p(lib), np.log1p(depth))[0, 1])
        ones = np.ones((1, truth.shape[1]))
        for key, s in (("oracle_depth", depth), ("rna_library", lib)):
            out[f"within_peak[{key}]"] = per_feature_auroc(s[:, None] * ones, truth)["auroc_per_feature_mean"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=["bmmc_multiome_study"])
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--n-cells", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "atac_ceiling.jsonl"))
    args = p.parse_args(argv)

    from _scenarios import build_scenario

    for name in args.scenario:
        res = ceiling(build_scenario(name, args.data_dir, n_cells=args.n_cells, seed=args.seed))
        res["n_cells_arg"] = args.n_cells
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(json.dumps(res, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
