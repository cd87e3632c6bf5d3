"""Adapters for Multigrate and MIDAS, which run in their own venvs (see ``_methods.py``)."""

from __future__ import annotations

import time

import numpy as np
from _method_api import MethodOutput, MethodUnavailable, RunConfig, _epochs_run, _other, train_timed  # noqa: F401
from _scenarios import Scenario


def _install_hint(method: str) -> str:
    from _methods import _not_installed

    return _not_installed(method)


# --- third-party methods with their own venvs ----------------------------------------------------
#
# Multigrate and MIDAS pin versions that clash with the main environment, so each may run in its
# own interpreter (``method_python``); ``benchmarks/envs/setup_<method>.sh`` builds it.


def _availability(scn: Scenario) -> np.ndarray:
    """Each cell's availability group, e.g. ``"rna+adt"``, ``"rna"``, ``"adt"`` (scenario masks)."""
    masks = scn.masks
    stacked = np.stack([masks[m] for m in scn.modalities], axis=1)
    return np.asarray(["+".join(m for m, o in zip(scn.modalities, row) if o) or "none" for row in stacked])


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def _clr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """muon's ``prot.pp.clr`` (axis 0, per protein across cells): ``log1p(x / g)``, ``g = exp(mean log1p x)``."""
    scale = np.exp(np.log1p(x).mean(axis=0, keepdims=True))
    return np.log1p(x / scale), scale


def _lognorm(x: np.ndarray, target_sum: float = 1e4) -> np.ndarray:
    """Total-count normalization to ``target_sum`` then ``log1p`` (an all-zero row stays zero)."""
    tot = x.sum(axis=1, keepdims=True)
    return np.log1p(np.divide(x * target_sum, tot, out=np.zeros_like(x), where=tot > 0))


# Multigrate's recommended losses / normalizations (paired-integration tutorial):
# RNA raw counts + NB, ADT CLR + MSE, ATAC total-count + log normalization + MSE.
_MULTIGRATE_LOSS = {"rna": "nb", "adt": "mse", "atac": "mse"}
# Mosaic data: the trimodal tutorial's setup (integrate on the modality-availability group, MMD on
# the unimodal marginals so that single-modality cells land with the paired ones).
_MULTIGRATE_MOSAIC = {
    "integrate_on": "mg_group",
    "alignment_type": "marginal",
    "modality_alignment": "MMD",
    "loss_coefs": {"integ": 500},
}


def fit_multigrate(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    """Multigrate 1.0.1 ``MultiVAE`` (Product of Experts VAE on scvi-tools).

    Input (as Multigrate's tutorials recommend): RNA raw counts with the NB loss
    (``rna_indices_end`` = number of genes, for the size factors), ADT CLR-normalized (muon's
    formula, per protein over the cells that have ADT) with MSE, ATAC total-count (1e4) + log1p
    normalized with MSE. Cells are grouped by availability (``rna+adt``, ``rna``, ``adt``) and
    passed to ``organize_multimodal_anndatas`` with ``None`` for the missing modalities: Multigrate
    zero-pads them and infers a missing modality from an all-zero row (``x.sum(1) > 0``), so a
    measured all-zero row is also treated as missing. On mosaic data the model integrates on the
    availability group with MMD on the marginals (trimodal tutorial); otherwise its defaults.

    Outputs: the joint latent is the PoE posterior mean ``mu`` (``get_model_output`` stores a
    sample); single-modality latents are the PoE of that modality's expert alone (the latent a
    cell measured in only that modality gets). Imputations decode the joint mean with the
    availability-group covariate set to a group that measured the modality (the fully observed
    one when there is one; each cell keeps its batch): RNA = NB mean
    proportions (normalized expression), ADT = CLR prediction mapped back to counts
    (``expm1(clr) * g``), ATAC = predicted log-normalized accessibility (a score, not a probability).
    """
    try:
        import multigrate as mtg
    except ImportError as err:
        raise MethodUnavailable(_install_hint("multigrate")) from err
    import anndata as ad
    import pandas as pd

    if "rna" not in scn.modalities:
        raise MethodUnavailable("the Multigrate adapter needs RNA (its size factors come from RNA counts)")
    mods = sorted(scn.modalities, key=lambda m: m != "rna")  # RNA first (rna_indices_end)
    masks = scn.masks
    group = _availability(scn)
    names = scn.mdata.obs_names
    obs = pd.DataFrame(
        {"batch": scn.mdata.obs[scn.batch_key].astype(str).to_numpy(), "mg_group": group}, index=names
    )

    notes = [
        "inputs: RNA counts (NB), ADT CLR (MSE), ATAC log-normalized (MSE); missing modalities "
        "zero-padded by organize_multimodal_anndatas (Multigrate infers missingness from all-zero rows)"
    ]
    prepared: dict[str, ad.AnnData] = {}
    clr_scale = None
    for m in mods:
        cells = names[masks[m]]
        x = _dense(scn.mdata.mod[m][cells].X)
        if m == "adt":
            x, clr_scale = _clr(x)
        elif m == "atac":
            x = _lognorm(x)
        prepared[m] = ad.AnnData(
            X=x, obs=obs.loc[cells].copy(), var=pd.DataFrame(index=scn.mdata.mod[m].var_names)
        )
        n_zero = int((x.sum(axis=1) == 0).sum())
        if n_zero:
            notes.append(
                f"{n_zero} cells with a measured all-zero {m} row count as missing {m} for Multigrate"
            )
    groups = sorted({str(g) for g in group}, key=lambda g: (-g.count("+"), g))  # fully observed first
    adatas = []
    for m in mods:
        row = []
        for g in groups:
            cells = names[group == g]
            row.append(prepared[m][cells].copy() if masks[m][group == g].all() else None)
        adatas.append(row)
    adata = mtg.data.organize_multimodal_anndatas(adatas=adatas)
    adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    adata.obs["mg_group"] = adata.obs["mg_group"].astype("category")
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    mosaic = len(groups) > 1
    cat_keys = ["mg_group", "batch"] if mosaic else ["batch"]
    mtg.model.MultiVAE.setup_anndata(
        adata, categorical_covariate_keys=cat_keys, rna_indices_end=scn.mdata.mod["rna"].n_vars
    )
    model_kwargs = {"losses": [_MULTIGRATE_LOSS[m] for m in mods]}
    if mosaic:
        model_kwargs.update(_MULTIGRATE_MOSAIC)
        notes.append(
            "mosaic: covariates [availability group, batch], integrate_on=availability group, "
            "alignment_type='marginal', modality_alignment='MMD', loss_coefs={'integ': 500} (trimodal tutorial)"
        )
    model = mtg.model.MultiVAE(adata, **model_kwargs)
    train_time = train_timed(model, cfg)

    pos = adata.obs_names.get_indexer(names)  # scenario order -> row of adata
    if (pos < 0).any():
        raise RuntimeError("organize_multimodal_anndatas lost cells")
    latent, _ = _multigrate_pass(model, pos, cfg.batch_size)
    out = MethodOutput(latent=latent, train_time_s=train_time, notes=notes)
    out.epochs_run = _epochs_run(model, cfg.epochs)
    paired = scn.paired_idx
    if paired.size > 1:
        for i, m in enumerate(mods):
            out.latent_single[m], _ = _multigrate_pass(model, pos[paired], cfg.batch_size, experts=[i])
    if scn.truth and mosaic:
        mapping = list(
            model.adata_manager.get_state_registry("extra_categorical_covs")["mappings"]["mg_group"]
        )
        targets = {}
        for m in scn.truth:
            i = mods.index(m)
            # decode with a group that measured m (the fully observed one when there is one)
            target = targets[m] = next(g for g in groups if m in g.split("+"))
            idx = scn.hidden_idx(m)
            _, rec = _multigrate_pass(
                model, pos[idx], cfg.batch_size, decode=i, group_code=mapping.index(target)
            )
            if m == "rna":
                rec = rec / np.clip(rec.sum(axis=1, keepdims=True), 1e-12, None)
            elif m == "adt":
                rec = np.clip(np.expm1(rec) * clr_scale, 0, None)
            out.imputed[m] = rec
        out.notes.append(f"imputation decoded with availability-group covariate {targets}, own batch")
    return out


def _multigrate_pass(model, indices, batch_size, experts=None, decode=None, group_code=None):
    """Joint posterior mean (optionally from ``experts`` only) and, if ``decode``, that modality's decoder output."""
    import torch

    module = model.module
    module.eval()
    lat, rec = [], []
    with torch.inference_mode():
        for tensors in model._make_data_loader(adata=model.adata, indices=indices, batch_size=batch_size):
            inp = module._get_inference_input(tensors)
            kw = {}
            if experts is not None:
                masks = torch.zeros(inp["x"].shape[0], module.n_modality, dtype=torch.bool)
                masks[:, experts] = True
                kw["masks"] = masks.to(module.device)
            inf = module.inference(**inp, **kw)
            mu = inf["mu"]
            lat.append(mu.cpu().numpy())
            if decode is not None:
                cat = inp["cat_covs"]
                if group_code is not None:
                    cat = cat.clone()
                    cat[:, 0] = group_code  # "mg_group" is the first categorical covariate
                gen = module.generative(z_joint=mu, cat_covs=cat, cont_covs=inp["cont_covs"])
                rec.append(gen["rs"][decode].cpu().numpy())
    return np.concatenate(lat), (np.concatenate(rec) if rec else None)


def _chromosome_chunks(var_names) -> tuple[np.ndarray, list[int]] | None:
    """Peak order grouped by chromosome and the chunk sizes, for MIDAS' per-chromosome ATAC encoders.

    Peak names ``<contig>[-_:]<start>[-_]<end>``; chr1..chrN, chrX, chrY in natural order, every
    other contig (chrM, unplaced scaffolds like ``GL000205.2``) in one last chunk. None when a
    name does not parse.
    """
    import re

    keys = []
    for v in var_names:
        hit = re.match(r"^(.+?)[:_-]\d+[-_]\d+$", str(v))
        if hit is None:
            return None
        c = hit.group(1)
        num = re.fullmatch(r"chr(\d+)", c)
        keys.append((0, int(num.group(1)), "") if num else (1, 0, c) if c in ("chrX", "chrY") else (2, 0, ""))
    uniq = sorted(set(keys))
    rank = {k: i for i, k in enumerate(uniq)}
    ranks = np.asarray([rank[k] for k in keys])
    return np.argsort(ranks, kind="stable"), [int((ranks == i).sum()) for i in range(len(uniq))]


def fit_midas(scn: Scenario, cfg: RunConfig) -> MethodOutput:
    """MIDAS (``scmidas``) with its default configuration (``load_config()``, lr 1e-4).

    MIDAS takes a MuData in which each modality holds only the cells that measured it, and needs
    every MIDAS "batch" to have one modality combination, so its batch key is
    ``<batch>|<availability group>`` (the scenario masks decide which modality holds which cell; no
    zero padding). Inputs are raw counts (MIDAS log1p-transforms RNA/ADT in its encoder and
    binarizes ATAC); ATAC peaks are ordered and chunked by chromosome when their names allow it
    (the published architecture). One MIDAS epoch is ``ceil(largest batch / batch_size)``
    minibatches from each batch (its ``MultiBatchSampler``), not one pass over the cells.
    Data-loader workers are set to 0 (the default 20 is for a big machine).

    Outputs: joint latent = ``z_c`` (biological part, what ``get_latent_representation`` returns);
    single-modality latents = ``predict(mod_latent=True)`` ``z_c`` of each modality; imputations =
    ``predict(impute=True)`` from the joint latent: RNA Poisson rates normalized per cell
    (normalized expression), ADT Poisson rates (expected counts), ATAC Bernoulli probabilities.
    """
    try:
        import lightning as L
        import scmidas
        from scmidas.config import load_config
    except ImportError as err:
        raise MethodUnavailable(_install_hint("midas")) from err
    import tempfile

    import anndata as ad
    import mudata as md
    import pandas as pd
    import torch

    masks = scn.masks
    group = _availability(scn)
    names = scn.mdata.obs_names
    bkey = "midas_batch"
    obs = pd.DataFrame({bkey: scn.mdata.obs[scn.batch_key].astype(str).to_numpy() + "|" + group}, index=names)
    notes = ["MIDAS batch = <batch>|<availability group> (MIDAS needs one modality combination per batch)"]
    configs = dict(load_config())
    configs.update(num_workers=0, persistent_workers=False, pin_memory=torch.cuda.is_available())
    dims_x: dict[str, list[int]] = {}
    var_order: dict[str, np.ndarray] = {}
    mods = {}
    for m in scn.modalities:
        src = scn.mdata.mod[m]
        x = src[names[masks[m]]].X
        order = np.arange(src.n_vars)
        dims_x[m] = [int(src.n_vars)]
        if m == "atac":
            chunks = _chromosome_chunks(src.var_names)
            if chunks is None or len(chunks[1]) < 2:
                configs.pop("dims_before_enc_atac", None)
                configs.pop("dims_after_dec_atac", None)
                notes.append("ATAC peak names carry no chromosome: encoded as one chunk")
            else:
                order, dims_x[m] = chunks
                notes.append(f"ATAC peaks encoded in {len(dims_x[m])} per-chromosome chunks")
        var_order[m] = order
        mods[m] = ad.AnnData(
            X=np.asarray(_dense(x)[:, order], dtype=np.float32),
            obs=obs.loc[names[masks[m]]].copy(),
            var=pd.DataFrame(index=src.var_names[order]),
        )
    mdata = md.MuData(mods)
    scmidas.MIDAS.setup_mudata(mdata, batch_key=bkey, dims_x=dims_x)
    with tempfile.TemporaryDirectory() as tmp:
        model = scmidas.MIDAS(mdata, configs=configs, batch_size=cfg.batch_size, save_model_path=tmp)
        sizes = [len(d) for d in model.datalist]
        n_iter = -(-min(max(sizes), configs["n_max"]) // cfg.batch_size)
        notes.append(
            f"one MIDAS epoch = {n_iter} minibatch(es) of {cfg.batch_size} from each of its {len(sizes)} "
            f"batches (sizes {sizes}); data-loader workers 0"
        )
        trainer = L.Trainer(
            max_epochs=cfg.epochs,
            accelerator="cpu" if cfg.accelerator == "cpu" else "auto",
            devices=1,
            default_root_dir=tmp,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        t0 = time.perf_counter()
        trainer.fit(model)  # what MIDAS.train(**kwargs) does
        train_time = time.perf_counter() - t0
        pred = model.predict(joint_latent=True, mod_latent=True, impute=bool(scn.truth), verbose=False)

    # stitch the per-batch outputs back to scenario order (as MIDAS.get_latent_representation does)
    rows: dict[str, np.ndarray] = {}
    for b_id, b in enumerate(model.batch_names):
        first = model.combs[b_id][0]
        a = mdata.mod[first]
        rows[b] = names.get_indexer(a.obs_names[a.obs[bkey].astype(str) == str(b)])

    def stitch(get, n_feat):
        arr = np.full((names.size, n_feat), np.nan, dtype=np.float32)
        for b, pos in rows.items():
            val = get(pred[b])
            if val is not None:
                arr[pos] = val
        return arr

    latent = stitch(lambda p: p["z_c"]["joint"], configs["dim_c"])
    out = MethodOutput(
        latent=latent, train_time_s=train_time, epochs_run=int(trainer.current_epoch), notes=notes
    )
    paired = scn.paired_idx
    if paired.size > 1:
        for m in scn.modalities:
            z = stitch(lambda p, m=m: p["z_c"].get(m), configs["dim_c"])
            out.latent_single[m] = z[paired]
    for m in scn.truth:
        inv = np.argsort(var_order[m])
        x = stitch(lambda p, m=m: p["x_impt"][m], int(sum(dims_x[m])))[:, inv]
        x = x[scn.hidden_idx(m)]
        if m == "rna":
            x = x / np.clip(x.sum(axis=1, keepdims=True), 1e-12, None)
        out.imputed[m] = x
    return out
