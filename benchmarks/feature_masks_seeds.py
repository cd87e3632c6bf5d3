"""Mean and spread over seeds of ``benchmarks/feature_masks.py`` result JSONs (issue #11).

    python benchmarks/feature_masks_seeds.py --scenario bmmc_cite_panels \
        benchmarks/results/feature_masks benchmarks/results/feature_masks_seeds/seed1 ...

One folder per seed (``feature_masks.py --seed N --out DIR``); for each method present in every
folder, prints the mean, the standard deviation over seeds and the per-seed values of each metric,
and for each REMADOM method the paired difference to the peer (same seed = same panel split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = ("pearson_cell_mean", "pearson_cell_mean_withbg", "pearson_cell_mean_rnaenc", "background_share",
           "pearson_feature_mean",
           "pearson_feature_mean_withbg", "baseline_pearson_cell_mean", "auroc", "auroc_refdepth",
           "baseline_auroc", "baseline_depth_auroc", "auroc_per_feature_mean", "scib_bio_conservation",
           "scib_batch_correction", "scib_total", "foscttm")


def load(folders: list[Path], scenario: str) -> dict[str, list[dict]]:
    """``{method: [row per folder]}`` for the methods found in every folder."""
    rows = [{p.stem.split("__", 1)[1]: json.loads(p.read_text()) for p in f.glob(f"{scenario}__*.json")}
            for f in folders]
    common = set.intersection(*(set(r) for r in rows)) if rows else set()
    return {m: [r[m] for r in rows] for m in sorted(common)}


def summarize(by_method: dict[str, list[dict]], peer: str | None) -> list[str]:
    """Lines ``method metric mean sd [values]`` and paired differences to ``peer``."""
    lines = []
    for method, rows in by_method.items():
        for key in METRICS:
            values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if np.isnan(values).all():
                continue
            line = f"{method:32s} {key:28s} {np.nanmean(values):.4f} ± {np.nanstd(values, ddof=1):.4f}  {np.round(values, 4).tolist()}"
            if peer in by_method and method != peer:
                other = np.array([r.get(key, np.nan) for r in by_method[peer]], dtype=float)
                if not np.isnan(other).all():
                    diff = values - other
                    line += f"  vs {peer}: {np.nanmean(diff):+.4f} ({np.round(diff, 4).tolist()})"
            lines.append(line)
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--scenario", required=True)
    p.add_argument("--peer", default=None, help="method to pair against (default: totalvi / multivi if present)")
    args = p.parse_args(argv)
    by_method = load(args.folders, args.scenario)
    peer = args.peer or next((m for m in ("totalvi", "multivi") if m in by_method), None)
    print(f"{args.scenario}: {len(args.folders)} seeds")
    print("\n".join(summarize(by_method, peer)))


if __name__ == "__main__":
    main()
