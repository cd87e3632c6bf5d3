"""Methods compared in the benchmark, each behind one function with the same signature.

``fit_<method>(scn, cfg) -> MethodOutput``. Every method gets the same data, seed, number of
epochs and batch size; everything else is the method's default. Early stopping is off so that all
methods train for exactly ``cfg.epochs`` epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from _scenarios import Scenario, padded_mudata


class MethodUnavailable(Exception):
    """The method cannot run here (not installed, or the scenario is outside its scope)."""


@dataclass
class RunConfig:
    epochs: int
    batch_size: int = 256
    seed: int = 0
    accelerator: str = "auto"


@dataclass
class MethodOutput:
    latent: np.ndarray  # joint latent of the evaluated cells
    latent_single: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> latent of paired cells
    imputed: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> prediction for hidden cells
    train_time_s: float = float("nan")
    epochs_run: int = 0
    eval_idx: np.ndarray | None = None  # positions in scn.mdata of evaluated cells (None = all)
    notes: list[str] = field(default_factory=list)


def _other(scn: Scenario, m: str) -> str:
    return next(x for x in scn.modalities if x != m)


def _epochs_run(model, fallback: int) -> int:
    hist = getattr(model, "history", None) or {}
    for key in ("elbo_train", "reconstruction_loss_train", "train_loss_epoch"):
        if key in hist:
            return len(hist[key])
    return fallback


# --- REMADOM -------------------------------------------------------------------------------------


def fit_remadom(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    import remadom

    if not hasattr(remadom, "REMADOM"):
        raise MethodUnavailable("remadom.REMADOM is not implemented yet")
    from remadom import REMADOM

    mdata = scn.mdata.copy()
    REMADOM.setup_mudata(
        mdata, modalities={m: m for m in scn.modalities}, batch_key=scn.batch_key, labels_key=None
    )
    model = REMADOM(mdata)
    t0 = time.perf_counter()
    model.train(
        max_epochs=cfg.epochs, batch_size=cfg.batch_size, accelerator=cfg.accelerator, early_stopping=False
    )
    train_time = time.perf_counter() - t0
    out = MethodOutput(latent=model.get_latent_representation(), train_time_s=train_time)
    out.epochs_run = _epochs_run(model, cfg.epochs)
    paired = scn.paired_idx
    if paired.size > 1:
        for m in scn.modalities:
            out.latent_single[m] = model.get_latent_representation(indices=paired, modalities=[m])
    for m in scn.truth:
        idx = scn.hidden_idx(m)
        out.imputed[m] = model.impute(m, from_modalities=[_other(scn, m)], indices=idx, library_size=1e4)
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
    t0 = time.perf_counter()
    model.train(
        max_epochs=cfg.epochs, batch_size=cfg.batch_size, accelerator=cfg.accelerator, early_stopping=False
    )
    train_time = time.perf_counter() - t0
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
    t0 = time.perf_counter()
    model.train(
        max_epochs=cfg.epochs, batch_size=cfg.batch_size, accelerator=cfg.accelerator, early_stopping=False
    )
    train_time = time.perf_counter() - t0
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


# --- optional third-party methods ----------------------------------------------------------------


def fit_multigrate(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    try:
        import multigrate  # noqa: F401
    except ImportError as err:
        raise MethodUnavailable("multigrate is not installed") from err
    raise MethodUnavailable("multigrate adapter not written yet")


def fit_midas(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    try:
        import scmidas  # noqa: F401
    except ImportError as err:
        raise MethodUnavailable("scmidas is not installed") from err
    raise MethodUnavailable("MIDAS adapter not written yet")


_PACKAGES = {
    "remadom": "remadom",
    "multivi": "scvi",
    "totalvi": "scvi",
    "multigrate": "multigrate",
    "midas": "scmidas",
}


def precheck(method: str, modalities: list[str]) -> str | None:
    """Cheap reason why ``method`` cannot run on data with ``modalities`` (None if it may run)."""
    import importlib.util

    if method not in METHODS:
        return f"unknown method {method!r}"
    if importlib.util.find_spec(_PACKAGES[method]) is None:
        return f"{_PACKAGES[method]} is not installed"
    if method == "totalvi" and set(modalities) != {"rna", "adt"}:
        return "TOTALVI needs RNA+ADT data"
    return None


METHODS = {
    "remadom": fit_remadom,
    "multivi": fit_multivi,
    "totalvi": fit_totalvi,
    "multigrate": fit_multigrate,
    "midas": fit_midas,
}
