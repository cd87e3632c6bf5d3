"""Benchmark REMADOM against scvi-tools MULTIVI / TOTALVI on mosaic scenarios.

    python benchmarks/run.py --suite quick|full [--methods ...] [--scenarios ...] [--epochs N]
                             [--data-dir ../shared/data] [--out benchmarks/results]

Each (scenario, method) runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own.
A method with its own interpreter (``$REMADOM_BENCH_PYTHON_<METHOD>``, else
``benchmarks/.venvs/<method>/bin/python`` as made by ``benchmarks/envs/setup_<method>.sh``; used by
Multigrate and MIDAS, whose pins clash with the main environment) runs its worker there.
Writes ``<out>/<date>/<scenario>__<method>.json``, ``<out>/<date>/results.md`` and refreshes the
table in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

SUITES = {
    # ~15 min on 2 idle CPU cores (31 min measured with a load average of ~6); SNARE-seq subsampled
    "quick": {
        "scenarios": ["bmmc_cite_mosaic3", "bmmc_multiome_mosaic3", "pbmc_cite_native", "snare_mosaic3"],
        "epochs": 15,
        "n_cells": {"snare_mosaic3": 2000},
    },
    # every scenario at full size; 50 epochs (SNARE-seq: ~2,000 steps) keeps it to about 1.5 h on
    # 2 CPU cores with all five methods; small scenarios first
    "full": {
        "scenarios": [
            "bmmc_cite_mosaic3",
            "bmmc_cite_paired",
            "bmmc_multiome_mosaic3",
            "bmmc_multiome_paired",
            "pbmc_cite_native",
            "snare_mosaic3",
            "snare_paired",
        ],
        "epochs": 50,
        "n_cells": {},
    },
    # batch confounded with the modalities each study measured (issue #13), small ones first
    "study": {
        "scenarios": [
            "bmmc_cite_study",
            "bmmc_cite_study_rna",
            "bmmc_multiome_study",
            "pbmc_cite_native",
            "bmmc_cite_paired",
            "bmmc_multiome_paired",
            "snare_study",
            "snare_paired",
        ],
        "epochs": 50,
        "n_cells": {},
    },
}
DEFAULT_METHODS = ["remadom", "multivi", "totalvi", "multigrate", "midas"]
#: ``--epochs default``: each method's own default number of epochs (None = what its ``train()``
#: picks when given no ``max_epochs``: REMADOM scvi's heuristic, 400 up to 20,000 cells,
#: Multigrate/MIDAS theirs), and each method's own early stopping (REMADOM, MULTIVI, TOTALVI: on)
DEFAULT_EPOCHS = {"remadom": None, "multivi": 500, "totalvi": 400, "multigrate": None, "midas": None}
README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"


# --- worker: one (scenario, method) --------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def run_one(
    scenario: str,
    method: str,
    *,
    data_dir: str,
    epochs: int | None,
    batch_size: int = 256,
    seed: int = 0,
    n_cells: int | None = None,
    accelerator: str = "auto",
    metrics: bool = True,
    own_defaults: bool = False,
) -> dict:
    """Fit ``method`` on ``scenario`` and compute every metric; returns a JSON-able dict."""
    import numpy as np
    import scvi
    import torch
    from _methods import METHODS, MethodUnavailable, RunConfig, method_versions
    from _scenarios import KIND, build_scenario

    scvi.settings.seed = seed
    res: dict = {
        "scenario": scenario,
        "method": method,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "own_defaults": own_defaults,
    }
    scn = build_scenario(scenario, data_dir, n_cells=n_cells, seed=seed)
    res.update(
        dataset=scn.dataset,
        mosaic=scn.description,
        n_cells=int(scn.mdata.n_obs),
        n_features={m: int(scn.mdata.mod[m].n_vars) for m in scn.modalities},
        rss_after_load_mb=_rss_mb(),
        versions=method_versions(method),
    )
    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cfg = RunConfig(epochs=epochs, batch_size=batch_size, seed=seed, accelerator=accelerator, own_defaults=own_defaults)
    try:
        out = METHODS[method](scn, cfg)
    except MethodUnavailable as err:
        res.update(status="skipped", reason=str(err))
        return res
    res.update(
        status="ok",
        device="cuda:" + torch.cuda.get_device_name(0) if cuda else "cpu",
        torch_threads=torch.get_num_threads(),
        train_time_s=out.train_time_s,
        epochs_run=out.epochs_run,
        peak_rss_mb=_rss_mb(),
        load_avg_1m=os.getloadavg()[0],  # >> n cores means other processes shared the CPU: timings inflated
        notes=out.notes,
    )
    n_eval = scn.mdata.n_obs if out.eval_idx is None else len(out.eval_idx)
    res["n_cells_eval"] = int(n_eval)
    res["time_per_epoch_s"] = out.train_time_s / max(out.epochs_run, 1)
    res["cells_per_s"] = n_eval * out.epochs_run / out.train_time_s  # all cells (train + validation split)
    if cuda:
        res["gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if not metrics:
        return res

    from remadom.eval import (
        availability_groups,
        foscttm,
        imputation_metrics,
        integration_metrics,
        interval_coverage,
        mean_profile_baseline,
        modality_mixing,
    )

    t0 = time.perf_counter()
    eval_idx = np.arange(scn.mdata.n_obs) if out.eval_idx is None else out.eval_idx
    obs = scn.mdata.obs.iloc[eval_idx]
    labels = obs[scn.labels_key].astype(str).to_numpy()
    batch = obs[scn.batch_key].astype(str).to_numpy()
    res["latent"] = integration_metrics(out.latent, labels, batch)
    groups = availability_groups({m: v[eval_idx] for m, v in scn.masks.items()})
    if len(set(groups)) > 1:
        res["modality_mixing"] = modality_mixing(out.latent, groups, labels)
    if out.eval_idx is None:  # the cells a peer that needs modality m embeds (TOTALVI: RNA)
        res["latent_subsets"] = subset_metrics(out.latent, labels, batch, groups, scn.masks)
    res["label_transfer"] = label_transfer_report(out.latent, labels, batch, groups, scn.reference_batches)
    ms = scn.modalities
    if all(m in out.latent_single for m in ms):
        res[f"foscttm_{ms[0]}_{ms[1]}"] = foscttm(out.latent_single[ms[0]], out.latent_single[ms[1]])
    res["imputation"] = {}
    for m, pred in out.imputed.items():
        truth = scn.truth[m].X
        base = mean_profile_baseline(scn.mdata.mod[m].X, n_cells=truth.shape[0], kind=KIND[m])
        res["imputation"][m] = {
            "model": imputation_metrics(pred, truth, KIND[m], seed=seed),
            "mean_profile_baseline": imputation_metrics(base, truth, KIND[m], seed=seed),
            "n_cells": int(truth.shape[0]),
        }
        if m in out.intervals:  # (lower, upper) of the posterior predictive (REMADOM)
            lower, upper = out.intervals[m]
            res["imputation"][m]["interval_90"] = interval_coverage(lower, upper, truth)
    res["metrics_time_s"] = time.perf_counter() - t0
    return res


def subset_metrics(latent, labels, batch, groups, masks) -> dict:
    """scIB and modality-mixing metrics on the cells that have modality ``m``, for every ``m``
    some cells lack: REMADOM scored on the same cells as TOTALVI (which embeds only RNA cells)."""
    from remadom.eval import integration_metrics, modality_mixing

    out = {}
    for m, has in masks.items():
        if has.all() or has.sum() < 30:
            continue
        lat = integration_metrics(latent[has], labels[has], batch[has])
        out[f"with_{m}"] = {"n_cells": int(has.sum()), **lat}
        if len(set(groups[has])) > 1:
            out[f"with_{m}"]["modality_mixing"] = modality_mixing(latent[has], groups[has], labels[has])
    return out


def label_transfer_report(latent, labels, batch, groups, reference_batches) -> dict:
    """kNN label transfer from the reference (paired) batches to every other batch.

    ``per_group``: accuracy on the target cells of each availability group (e.g. ``adt`` for an
    ADT-only study); ``all``: on every target cell. A paired scenario uses the same reference
    batches as its study variant, so its ``all`` is the paired-to-paired accuracy that the study
    scenario's single-modality transfer is compared with.
    """
    import numpy as np

    from remadom.eval import label_transfer_accuracy

    source = np.isin(batch, list(reference_batches))
    target = ~source
    out = {"reference_batches": list(reference_batches), "per_group": {}}
    if not source.any() or not target.any():
        return out
    out["all"] = label_transfer_accuracy(latent, labels, source, target)
    for g in sorted(set(groups[target])):
        out["per_group"][g] = label_transfer_accuracy(latent, labels, source, target & (groups == g))
    return out


# --- reporting -----------------------------------------------------------------------------------


def _fmt(x, nd=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.{nd}f}"
    return str(x)


def markdown_table(results: list[dict]) -> str:
    """One row per run: latent metrics, mixing, FOSCTTM, imputation (model / baseline), cost."""
    head = (
        "| scenario | method | status | cells | bio | batch | scIB total | mod. mixing | FOSCTTM ↓ "
        "| imputation (model / baseline) | train s | s/epoch | cells/s | peak RSS MB | GPU MB | load |"
    )
    n_cols = head.count("|") - 1
    lines = [head, "|" + "---|" * n_cols]
    for r in results:
        if r.get("status") != "ok":
            reason = str(r.get("reason", "")).replace("|", "/").replace("\n", " ")[:80]
            lines.append(
                f"| {r['scenario']} | {r['method']} | {r.get('status')}: {reason} |" + " |" * (n_cols - 3)
            )
            continue
        lat = r.get("latent", {})
        mm = r.get("modality_mixing", {}).get("modality_mixing")
        fos = next((v for k, v in r.items() if k.startswith("foscttm_")), None)
        imp = []
        for m, d in r.get("imputation", {}).items():
            key = "auroc" if "auroc" in d["model"] else "pearson_cell_mean"
            short = "AUROC" if key == "auroc" else "r_cell"
            imp.append(f"{m} {short} {_fmt(d['model'][key])} / {_fmt(d['mean_profile_baseline'][key])}")
            if key != "auroc":
                imp.append(f"{m} r_feat {_fmt(d['model']['pearson_feature_mean'])}")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["scenario"],
                    r["method"],
                    "ok",
                    str(r.get("n_cells_eval")),
                    _fmt(lat.get("bio_conservation")),
                    _fmt(lat.get("batch_correction")),
                    _fmt(lat.get("total")),
                    _fmt(mm),
                    _fmt(fos),
                    "; ".join(imp) or "–",
                    _fmt(r.get("train_time_s"), 1),
                    _fmt(r.get("time_per_epoch_s"), 2),
                    _fmt(r.get("cells_per_s"), 0),
                    _fmt(r.get("peak_rss_mb"), 0),
                    _fmt(r.get("gpu_peak_mem_mb"), 0),
                    _fmt(r.get("load_avg_1m"), 1),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def machine_info() -> str:
    import torch

    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        mem = "RAM unknown"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import scvi

    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores visible, {mem}, {gpu}; "
        f"python {platform.python_version()}, torch {torch.__version__}, scvi-tools {scvi.__version__}"
    )


def update_readme(table: str, command: str, info: str, out_dir: Path) -> None:
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{README_BEGIN}\n{README_END}\n"
    if README_BEGIN not in text:
        text += f"\n{README_BEGIN}\n{README_END}\n"
    block = (
        f"{README_BEGIN}\n_Latest run: {dt.date.today().isoformat()}, results in "
        f"`{out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir}`._\n\n"
        f"Command: `{command}`\n\nMachine: {info}\n\n{table}\n{README_END}"
    )
    pre, rest = text.split(README_BEGIN, 1)
    post = rest.split(README_END, 1)[1]
    readme.write_text(pre + block + post)


# --- CLI -----------------------------------------------------------------------------------------


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--methods", nargs="+", default=None)
    p.add_argument("--scenarios", nargs="+", default=None)
    p.add_argument(
        "--epochs",
        default=None,
        help="epochs for every method (default: the suite's), or 'default': each method's own "
        "default (REMADOM its train() default, MULTIVI 500, TOTALVI 400) and its own early stopping",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-cells", type=int, default=None, help="subsample every scenario to this many cells")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument("--no-metrics", action="store_true", help="only train and time")
    p.add_argument("--report-only", metavar="DIR", help="rebuild results.md / README table from DIR/*.json")
    p.add_argument("--worker", nargs=2, metavar=("SCENARIO", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    suite = SUITES[args.suite]
    own_default = args.epochs == "default"
    epochs = None if own_default else int(args.epochs or suite["epochs"])
    if args.worker:
        scenario, method = args.worker
        if own_default:
            epochs = DEFAULT_EPOCHS.get(method)
        n_cells = args.n_cells or suite["n_cells"].get(scenario)
        try:
            res = run_one(
                scenario,
                method,
                data_dir=args.data_dir,
                epochs=epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                n_cells=n_cells,
                accelerator=args.accelerator,
                metrics=not args.no_metrics,
                own_defaults=own_default,
            )
        except Exception as err:  # noqa: BLE001 - record the failure, do not lose the other runs
            res = {"scenario": scenario, "method": method, "status": "error", "reason": repr(err)[:300]}
            res["traceback"] = traceback.format_exc()
        Path(args.worker_out).write_text(json.dumps(res, indent=1, default=_json_default))
        return 0

    if args.report_only:
        out_dir = Path(args.report_only)
        files = sorted(out_dir.glob("*__*.json"), key=lambda f: f.stat().st_mtime)  # run order
        results = [json.loads(f.read_text()) for f in files]
        command = f"python benchmarks/run.py --report-only {out_dir}"
        prev = out_dir / "results.md"
        if prev.exists() and "Command: `" in prev.read_text():  # keep the command that produced the runs
            command = prev.read_text().split("Command: `", 1)[1].split("`", 1)[0]
        _report(results, out_dir, command, args.no_readme)
        return 0

    from _methods import method_python, precheck
    from _scenarios import DATASETS, SCENARIOS

    scenarios = args.scenarios or suite["scenarios"]
    methods = args.methods or DEFAULT_METHODS
    out_dir = Path(args.out) / dt.datetime.now().strftime("%Y-%m-%d")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in scenarios:
        for method in methods:
            path = out_dir / f"{scenario}__{method}.json"
            reason = precheck(method, DATASETS[SCENARIOS[scenario][0]][2])
            if reason is not None:  # no subprocess for a run that cannot happen
                res = {"scenario": scenario, "method": method, "status": "skipped", "reason": reason}
                path.write_text(json.dumps(res, indent=1))
                print(f"[{scenario} / {method}] skipped: {reason}", flush=True)
                results.append(res)
                continue
            cmd = [
                method_python(method) or sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                scenario,
                method,
                "--worker-out",
                str(path),
            ]
            cmd += ["--suite", args.suite, "--epochs", "default" if own_default else str(epochs)]
            cmd += ["--batch-size", str(args.batch_size)]
            cmd += ["--seed", str(args.seed), "--data-dir", args.data_dir, "--accelerator", args.accelerator]
            if args.n_cells:
                cmd += ["--n-cells", str(args.n_cells)]
            if args.no_metrics:
                cmd.append("--no-metrics")
            t0 = time.perf_counter()
            print(f"[{scenario} / {method}] ...", flush=True)
            try:
                proc = subprocess.run(
                    cmd, timeout=args.timeout, capture_output=True, text=True, env=_worker_env(method)
                )
                res = json.loads(path.read_text()) if path.exists() else None
                if res is None:
                    res = {
                        "scenario": scenario,
                        "method": method,
                        "status": "error",
                        "reason": proc.stderr[-300:],
                    }
            except subprocess.TimeoutExpired:
                res = {
                    "scenario": scenario,
                    "method": method,
                    "status": "timeout",
                    "reason": f">{args.timeout}s",
                }
            res["wall_s"] = time.perf_counter() - t0
            path.write_text(json.dumps(res, indent=1, default=_json_default))
            print(f"  -> {res['status']} {res.get('reason', '')} ({res['wall_s']:.0f} s)", flush=True)
            results.append(res)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    _report(results, out_dir, command, args.no_readme)
    return 0


def _worker_env(method: str) -> dict[str, str] | None:
    """Environment of a worker run in the method's own venv: this checkout's ``src/`` first on
    ``PYTHONPATH``, so its metrics come from the REMADOM running the benchmark, not the copy the
    setup script installed (None = inherit, for the main interpreter)."""
    from _methods import method_python

    if method_python(method) is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def _report(results: list[dict], out_dir: Path, command: str, no_readme: bool) -> None:
    from _targets import targets_table

    table = (
        markdown_table(results)
        + "\n\n### Targets (computed from the rows above)\n\n"
        + targets_table(results)
    )
    info = machine_info()
    (out_dir / "results.md").write_text(
        f"# Benchmark results\n\nCommand: `{command}`\n\nMachine: {info}\n\n{table}\n"
    )
    if not no_readme:
        update_readme(table, command, info, out_dir)
    print(table)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
