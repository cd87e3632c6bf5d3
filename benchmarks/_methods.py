"""Methods compared in the benchmark, each behind one function with the same signature.

``fit_<method>(scn, cfg) -> MethodOutput``. Every method gets the same data, seed, number of
epochs and batch size; everything else is the method's default. Early stopping is off so that all
methods train for exactly ``cfg.epochs`` epochs, except under ``run.py --epochs default``
(``cfg.own_defaults``), where every method also keeps its own early stopping.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import numpy as np
from _method_api import MethodOutput, MethodUnavailable, RunConfig, _epochs_run, _other, train_timed
from _methods_external import _chromosome_chunks, _clr, fit_midas, fit_multigrate  # noqa: F401
from _scenarios import KIND, Scenario, padded_mudata

HERE = Path(__file__).resolve().parent


# --- REMADOM -------------------------------------------------------------------------------------


def fit_remadom(
    scn: Scenario,
    cfg: RunConfig,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    adjust_model=None,
    likelihoods: dict | None = None,
) -> MethodOutput:
    """REMADOM with its defaults; ``model_kwargs``/``train_kwargs``/``adjust_model(model)`` are for
    ablations (``benchmarks/ablate.py``), never used by ``run.py``; ``likelihoods`` (``{modality:
    name}``) for the ``remadom_cellbg`` variant."""
    from remadom import REMADOM

    mdata = scn.mdata.copy()
    likelihoods = likelihoods or {}
    REMADOM.setup_mudata(
        mdata, modalities={m: ({"mod": m, "likelihood": likelihoods[m]} if m in likelihoods else m)
                           for m in scn.modalities},
        batch_key=scn.batch_key, labels_key=None,
    )
    model = REMADOM(mdata, **(model_kwargs or {}))
    if adjust_model is not None:
        adjust_model(model)
    train_time = train_timed(model, cfg, **(train_kwargs or {}))
    out = remadom_outputs(model, scn)
    out.train_time_s = train_time
    out.epochs_run = _epochs_run(model, cfg.epochs)
    return out


def remadom_outputs(model, scn: Scenario) -> MethodOutput:
    """Latents and imputations of a trained (or training: ``benchmarks/convergence.py``) REMADOM."""
    out = MethodOutput(latent=model.get_latent_representation())
    paired = scn.paired_idx
    if paired.size > 1:
        for m in scn.modalities:
            out.latent_single[m] = model.get_latent_representation(indices=paired, modalities=[m])
    for m in scn.truth:
        idx = scn.hidden_idx(m)
        # 90 % intervals only where they are on the truth's scale: ADT raw counts (RNA draws are at
        # a fixed library size, ATAC is binary)
        if KIND[m] != "adt":
            out.imputed[m] = model.impute(m, from_modalities=[_other(scn, m)], indices=idx, library_size=1e4)
            continue
        out.imputed[m], spread = model.impute(
            m, from_modalities=[_other(scn, m)], indices=idx, library_size=1e4, return_uncertainty=True
        )
        out.intervals[m] = (spread["lower"], spread["upper"])
    return out


# --- MULTIVI -------------------------------------------------------------------------------------

_MULTIVI_LAYER = {"rna": "rna_layer", "atac": "atac_layer", "adt": "protein_layer"}
_MULTIVI_LATENT = {"rna": "expression", "atac": "accessibility", "adt": "protein"}


def fit_multivi(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    """scvi-tools MULTIVI on the zero-padded MuData (how its users feed mosaic data).

    MULTIVI detects a missing modality from an all-zero row, so a cell with a truly all-zero
    measurement is treated as missing (scvi-tools issue #1250).
    """
    import scvi

    pad = padded_mudata(scn)
    mods = {_MULTIVI_LAYER[m]: m for m in scn.modalities}
    mods["batch_key"] = "rna"
    scvi.model.MULTIVI.setup_mudata(pad, batch_key=scn.batch_key, modalities=mods)
    model = scvi.model.MULTIVI(pad)
    train_time = train_timed(model, cfg)
    out = MethodOutput(latent=model.get_latent_representation(), train_time_s=train_time)
    out.epochs_run = _epochs_run(model, cfg.epochs)
    paired = scn.paired_idx
    if paired.size > 1:
        for m in scn.modalities:
            out.latent_single[m] = model.get_latent_representation(
                indices=paired, modality=_MULTIVI_LATENT[m]
            )
    for m in scn.truth:
        idx = scn.hidden_idx(m)
        if m == "rna":
            out.imputed[m] = np.asarray(model.get_normalized_expression(indices=idx, return_numpy=True))
        elif m == "atac":
            acc = model.get_normalized_accessibility(indices=idx, return_numpy=True)
            out.imputed[m] = acc.toarray() if hasattr(acc, "toarray") else np.asarray(acc)
        elif m == "adt":
            out.imputed[m] = _multivi_protein_foreground(model, idx, cfg.batch_size)
    return out


def _multivi_protein_foreground(model, indices, batch_size: int) -> np.ndarray:
    """Expected foreground protein counts ``(1 - pi) * rate_fore`` from MULTIVI's decoder.

    MULTIVI 1.4.2 has no public protein-expression getter; this mirrors
    ``get_protein_foreground_probability`` but returns the foreground mean (the quantity REMADOM's
    ``impute("adt")`` returns).
    """
    import torch

    model.module.eval()
    res = []
    with torch.inference_mode():
        for tensors in model._make_data_loader(adata=model.adata, indices=indices, batch_size=batch_size):
            _, gen = model.module.forward(tensors, compute_loss=False, generative_kwargs={"use_z_mean": True})
            py = gen["py_"]
            res.append(((1 - torch.sigmoid(py["mixing"])) * py["rate_fore"]).cpu().numpy())
    return np.concatenate(res, axis=0)


# --- TOTALVI -------------------------------------------------------------------------------------


def fit_totalvi(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    """scvi-tools TOTALVI (RNA+ADT). It needs RNA in every cell: ADT-only cells are left out.

    Proteins missing in a whole batch are handled by TOTALVI's batch mask; they are imputed by
    decoding with ``transform_batch`` set to the batches where protein was measured.
    """
    import scvi

    if set(scn.modalities) != {"rna", "adt"}:
        raise MethodUnavailable("TOTALVI needs RNA+ADT data")
    masks = scn.masks
    keep = np.flatnonzero(masks["rna"])
    pad = padded_mudata(scn)[keep].copy()
    # scvi-tools 1.4.2 TOTALVI protein priors fail on a sparse protein matrix with a batch mask
    pad.mod["adt"].X = np.asarray(pad.mod["adt"].X.toarray(), dtype=np.float32)
    notes = []
    if keep.size < scn.mdata.n_obs:
        notes.append(f"{scn.mdata.n_obs - keep.size} ADT-only cells left out (TOTALVI needs RNA)")
    has_adt = masks["adt"][keep]
    batches = pad.obs[scn.batch_key].astype(str).to_numpy()
    protein_batches = sorted(set(batches[has_adt]))
    incomplete = sorted(set(batches[~has_adt]) & set(protein_batches))
    if incomplete:
        notes.append(
            f"batches {incomplete} mix cells with and without ADT; TOTALVI treats their zero rows as measured"
        )
    scvi.model.TOTALVI.setup_mudata(
        pad,
        batch_key=scn.batch_key,
        modalities={"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"},
    )
    model = scvi.model.TOTALVI(pad)
    train_time = train_timed(model, cfg)
    out = MethodOutput(
        latent=model.get_latent_representation(), train_time_s=train_time, eval_idx=keep, notes=notes
    )
    out.epochs_run = _epochs_run(model, cfg.epochs)
    if "adt" in scn.truth:
        hidden = scn.hidden_idx("adt")
        local = np.searchsorted(keep, hidden)
        _, pro = model.get_normalized_expression(
            indices=local,
            transform_batch=protein_batches,
            library_size=1,
            include_protein_background=False,
            return_numpy=True,
        )
        out.imputed["adt"] = np.asarray(pro)
    return out


_PACKAGES = {
    "remadom": "remadom",
    "remadom_cellbg": "remadom",
    "multivi": "scvi",
    "totalvi": "scvi",
    "multigrate": "multigrate",
    "midas": "scmidas",
}
_DISTRIBUTIONS = {"remadom": "remadom", "remadom_cellbg": "remadom", "multivi": "scvi-tools", "totalvi": "scvi-tools"}
_SETUP_SCRIPTS = {
    "multigrate": "benchmarks/envs/setup_multigrate.sh",
    "midas": "benchmarks/envs/setup_midas.sh",
}


def python_env_var(method: str) -> str:
    return f"REMADOM_BENCH_PYTHON_{method.upper()}"


def method_python(method: str) -> str | None:
    """Interpreter for ``method``'s worker, or None for the current one.

    ``$REMADOM_BENCH_PYTHON_<METHOD>`` when set, else ``benchmarks/.venvs/<method>/bin/python``
    when it exists (what ``benchmarks/envs/setup_<method>.sh`` creates).
    """
    env = os.environ.get(python_env_var(method))
    if env:
        return env
    venv = HERE / ".venvs" / method / "bin" / "python"
    return str(venv) if venv.exists() else None


def _not_installed(method: str) -> str:
    msg = f"{_PACKAGES.get(method, method)} is not installed"
    if method in _SETUP_SCRIPTS:
        msg += f": run bash {_SETUP_SCRIPTS[method]}"
    return msg


@functools.cache
def _import_problem(python: str, package: str) -> str | None:
    """Why ``import package`` fails in interpreter ``python`` (None when it works)."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"interpreter {python} not found"
    try:
        proc = subprocess.run(
            [python, "-c", f"import {package}"], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        return f"`import {package}` timed out in {python}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"`import {package}` failed in {python}: {last[:200]}"
    return None


def precheck(method: str, modalities: list[str]) -> str | None:
    """Cheap reason why ``method`` cannot run on data with ``modalities`` (None if it may run).

    Availability is checked in the interpreter that will run the method (``method_python``).
    """
    import importlib.util

    if method not in METHODS:
        return f"unknown method {method!r}"
    python = method_python(method)
    if python is None:
        if importlib.util.find_spec(_PACKAGES[method]) is None:
            return _not_installed(method)
    else:
        problem = _import_problem(python, _PACKAGES[method])
        if problem is not None:
            if os.environ.get(python_env_var(method)):
                problem = problem.replace(python, f"${python_env_var(method)}={python}", 1)
            return f"{_not_installed(method)} ({problem})"
    if method == "totalvi" and set(modalities) != {"rna", "adt"}:
        return "TOTALVI needs RNA+ADT data"
    return None


def method_versions(method: str) -> dict[str, str]:
    """Versions of the packages a run used (read inside the worker's interpreter)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "scvi-tools", _DISTRIBUTIONS.get(method, _PACKAGES[method])):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


METHODS = {
    "remadom": fit_remadom,
    # #11: the ADT likelihood with a per-cell background (totalVI's log_beta), not the default
    "remadom_cellbg": functools.partial(fit_remadom, likelihoods={"adt": "nbmixture_cellbg"}),
    "multivi": fit_multivi,
    "totalvi": fit_totalvi,
    "multigrate": fit_multigrate,
    "midas": fit_midas,
}
