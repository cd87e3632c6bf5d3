"""Table of the issue #13 numbers from ``run.py`` result JSONs (study-confounded scenarios).

    python benchmarks/study_table.py benchmarks/results/study50/2026-12-01 benchmarks/results/study50/2026-12-02

One row per (scenario, method, epochs run), from every ``<scenario>__<method>.json`` in the given
directories (a later directory's file replaces an earlier one with the same name): scIB bio /
batch / total, modality-mixing iLISI (the #13 target is >= 0.5), label transfer from the reference
(paired) batches to each single-modality group, imputation of each hidden modality (per-cell
Pearson, or ATAC AUROC; mean-profile floor after the slash), the within-peak ATAC AUROC (0.5 is the
floor), the 90 % interval coverage of held-out ADT, training time and the 1-minute load average.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, nd=3) -> str:
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def _imputation(r: dict) -> tuple[str, str, str]:
    cells, peaks, cover = [], [], []
    for m, d in r.get("imputation", {}).items():
        model, floor = d["model"], d["mean_profile_baseline"]
        key = "auroc" if "auroc" in model else "pearson_cell_mean"
        cells.append(f"{m} {_f(model[key])} / {_f(floor[key])}")
        if "auroc_per_feature_mean" in model:
            peaks.append(f"{m} {_f(model['auroc_per_feature_mean'])}")
        if "interval_90" in d:
            cover.append(f"{m} {_f(d['interval_90']['coverage'])}")
    return "; ".join(cells) or "–", "; ".join(peaks) or "–", "; ".join(cover) or "–"


def study_table(results: list[dict]) -> str:
    """Markdown table of the #13 columns, one line per result."""
    head = ("| scenario | method | epochs | cells | bio | batch | scIB total | iLISI mod. | label transfer "
            "| imputation (model / floor) | within-peak AUROC | cov90 | train s | load |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if r.get("status") != "ok":
            lines.append(f"| {r['scenario']} | {r['method']} | {r.get('status')}: "
                         f"{str(r.get('reason', ''))[:60]} |" + " |" * 11)
            continue
        lat = r.get("latent", {})
        transfer = "; ".join(f"{g} {_f(d['accuracy'])}"
                             for g, d in r.get("label_transfer", {}).get("per_group", {}).items()) or "–"
        imp, peaks, cover = _imputation(r)
        lines.append("| " + " | ".join([
            r["scenario"], r["method"], str(r.get("epochs_run")), str(r.get("n_cells_eval")),
            _f(lat.get("bio_conservation")), _f(lat.get("batch_correction")), _f(lat.get("total")),
            _f(r.get("modality_mixing", {}).get("ilisi_modality")), transfer, imp, peaks, cover,
            _f(r.get("train_time_s"), 1), _f(r.get("load_avg_1m"), 1),
        ]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    dirs = [Path(d) for d in (sys.argv[1:] if argv is None else argv)]
    files: dict[str, Path] = {}
    for d in dirs:
        for f in sorted(d.glob("*__*.json")):
            files[f.name] = f
    results = [json.loads(f.read_text()) for f in files.values()]
    results.sort(key=lambda r: (r["scenario"], r["method"]))
    print(study_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
