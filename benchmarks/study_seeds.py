"""Mean and sd over seeds of ``run.py`` result JSONs (issue #13c: is a defaults-vs-defaults gap real?).

    python benchmarks/study_seeds.py remadom=benchmarks/results/defaults_combined/2026-12-02 \\
        totalvi=benchmarks/results/defaults/2026-12-02 benchmarks/results/i13c_seeds/seed1/2026-12-02 \\
        benchmarks/results/i13c_seeds/seed2/2026-12-02 --scenario bmmc_cite_mosaic3

Each directory holds one seed's ``<scenario>__<method>.json``; ``METHOD=DIR`` takes only that
method's file from ``DIR``. Prints, per method, the scIB bio / batch / total, the modality iLISI and the per-cell Pearson of each imputed modality as
``mean ± sd`` (sd with ``ddof=1``), and REMADOM's scores on the cells with RNA
(``latent_subsets.with_rna``, the cells TOTALVI embeds) when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def scores(d: dict) -> dict:
    """The compared numbers of one result JSON."""
    lat = d["latent"]
    out = {"bio": lat["bio_conservation"], "batch": lat["batch_correction"], "total": lat["total"]}
    if d.get("modality_mixing"):
        out["ilisi_mod"] = d["modality_mixing"]["ilisi_modality"]
    for m, imp in (d.get("imputation") or {}).items():
        out[f"{m}_r_cell"] = imp["model"]["pearson_cell_mean"]
    sub = (d.get("latent_subsets") or {}).get("with_rna")
    if sub:
        out.update({"rna_cells_bio": sub["bio_conservation"], "rna_cells_batch": sub["batch_correction"],
                    "rna_cells_total": sub["total"], "rna_cells_ilisi_mod": sub["modality_mixing"]["ilisi_modality"]})
    out["epochs_run"] = d["epochs_run"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", help="DIR or METHOD=DIR")
    p.add_argument("--scenario", required=True)
    args = p.parse_args(argv)
    per_method: dict[str, list[dict]] = {}
    for entry in args.dirs:
        method, _, d = entry.rpartition("=")
        for f in sorted(Path(d).glob(f"{args.scenario}__{method or '*'}.json")):
            res = json.loads(f.read_text())
            if res.get("status", "ok") == "ok" and "latent" in res:
                per_method.setdefault(res["method"], []).append(scores(res))
    for method, rows in per_method.items():
        keys = list(dict.fromkeys(k for r in rows for k in r))
        cells = []
        for k in keys:
            a = np.array([r.get(k, np.nan) for r in rows], float)
            sd = a.std(ddof=1) if a.size > 1 else float("nan")
            cells.append(f"{k} {np.nanmean(a):.3f} ± {sd:.3f}")
        print(f"{method} (n={len(rows)}): " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
