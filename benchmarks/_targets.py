"""Check the benchmark targets: REMADOM against the best peer of the same run, per scenario.

Built from the run's JSON results only (no hand transcription), so the table in
``benchmarks/README.md`` always says what the numbers say.
"""

from __future__ import annotations

THROUGHPUT_TARGET = 4.0  # x MULTIVI's cells/s on SNARE-seq
RSS_TARGET = 0.5  # x MULTIVI's peak RSS on SNARE-seq
BASELINE_MARGIN = 0.02  # "clearly beats the mean-profile baseline": by at least this much


def _get(r: dict, path: str):
    cur = r
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _foscttm(r: dict):
    return next((v for k, v in r.items() if k.startswith("foscttm_")), None)


def _imp(r: dict, modality: str, who: str = "model"):
    d = _get(r, f"imputation.{modality}.{who}") or {}
    key = "auroc" if "auroc" in d else "pearson_cell_mean"
    return d.get(key), ("AUROC" if key == "auroc" else "r_cell")


def _compare(ours, peers: dict, higher: bool) -> str:
    peers = {k: v for k, v in peers.items() if v is not None and v == v}
    if ours is None or not peers:
        return "–"
    best_name, best = (max if higher else min)(peers.items(), key=lambda kv: kv[1])
    met = ours >= best if higher else ours <= best
    return f"{'✅' if met else '❌'} {ours:.3f} vs {best:.3f} ({best_name})"


def targets_table(results: list[dict]) -> str:
    """Markdown table: one row per target, one column per scenario."""
    ok = [r for r in results if r.get("status") == "ok"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in ok))
    rows: dict[str, list[str]] = {
        "bio conservation ≥ best peer": [],
        "batch correction ≥ best peer": [],
        "modality-mixing iLISI ≥ best peer": [],
        "FOSCTTM ≤ best peer": [],
        "ADT per-cell Pearson ≥ best peer": [],
        "ATAC AUROC ≥ best peer": [],
        f"imputation beats the mean-profile baseline by ≥ {BASELINE_MARGIN}": [],
    }
    used = []
    for scn in scenarios:
        runs = {r["method"]: r for r in ok if r["scenario"] == scn}
        ours = runs.get("remadom")
        if ours is None:
            continue
        used.append(scn)
        peers = {k: v for k, v in runs.items() if k != "remadom"}
        vals = iter(rows.values())
        for path in ("latent.bio_conservation", "latent.batch_correction", "modality_mixing.ilisi_modality"):
            next(vals).append(_compare(_get(ours, path), {k: _get(v, path) for k, v in peers.items()}, True))
        next(vals).append(_compare(_foscttm(ours), {k: _foscttm(v) for k, v in peers.items()}, False))
        for m in ("adt", "atac"):
            ours_m = _imp(ours, m)[0]
            next(vals).append(_compare(ours_m, {k: _imp(v, m)[0] for k, v in peers.items()}, True))
        cells = []
        for m in ours.get("imputation") or {}:
            (model, name), (base, _) = _imp(ours, m), _imp(ours, m, "mean_profile_baseline")
            if model is not None and base is not None:
                mark = "✅" if model - base >= BASELINE_MARGIN else "❌"
                cells.append(f"{mark} {m} {name} {model:.3f} vs {base:.3f}")
        next(vals).append("; ".join(cells) or "–")
    lines = ["| target | " + " | ".join(used) + " |", "|---|" + "---|" * len(used)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    lines.append("")
    lines.append(cost_summary(ok))
    return "\n".join(lines)


def cost_summary(ok: list[dict]) -> str:
    """Throughput and peak-RSS ratios against MULTIVI on the SNARE-seq scenarios."""
    out = []
    for r in ok:
        if r["method"] != "remadom" or not r["scenario"].startswith("snare"):
            continue
        peer = next((p for p in ok if p["scenario"] == r["scenario"] and p["method"] == "multivi"), None)
        if peer is None:
            continue
        speed = r["cells_per_s"] / peer["cells_per_s"]
        rss = r["peak_rss_mb"] / peer["peak_rss_mb"]
        extra = (r["peak_rss_mb"] - r["rss_after_load_mb"]) / max(
            peer["peak_rss_mb"] - peer["rss_after_load_mb"], 1
        )
        out.append(
            f"- `{r['scenario']}`: throughput {r['cells_per_s']:.0f} vs {peer['cells_per_s']:.0f} cells/s = "
            f"**{speed:.2f}×** MULTIVI ({'✅' if speed >= THROUGHPUT_TARGET else '❌'} target "
            f"{THROUGHPUT_TARGET:g}×; load {r.get('load_avg_1m', float('nan')):.1f} / "
            f"{peer.get('load_avg_1m', float('nan')):.1f}); peak RSS {r['peak_rss_mb']:.0f} vs "
            f"{peer['peak_rss_mb']:.0f} MB = **{rss:.2f}×** ({'✅' if rss <= RSS_TARGET else '❌'} target "
            f"≤ {RSS_TARGET:g}×; above the post-import baseline: {extra:.2f}×)"
        )
    return "\n".join(out)
