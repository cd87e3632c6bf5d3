"""The REMADOM module: per-modality Gaussian experts, PoE fusion, masked ELBO."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal

from .._constants import mask_key, modality_key
from ..modalities import ModalitySpec
from ..nn._alignment_cycle import cycle_consistency_loss, cycle_targets
from ..nn.alignment import batch_mmd
from ..nn.likelihoods import LIKELIHOODS
from ..nn.networks import ConditionalDecoder, GaussianExpertEncoder, to_dense
from ..nn.poe import kl_between_gaussians, kl_to_standard_normal, product_of_experts


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.nonzero(as_tuple=True)[0]


def _take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t[rows]`` for the sorted, unique ``rows`` of :func:`_rows`, without a copy when all are taken."""
    return t if rows.numel() == t.shape[0] else t[rows]


class RemadomModule(BaseModuleClass):
    """Mosaic multimodal VAE with a Product of Experts over observed modalities.

    Parameters
    ----------
    modalities
        One dict per modality (:class:`~remadom.modalities.ModalitySpec` fields plus
        ``n_features``), in model order.
    n_batch
        Number of batches; decoders are conditioned on batch.
    n_latent, n_hidden, n_layers, dropout_rate
        Network sizes.
    n_cats_per_cov
        Number of categories of each extra categorical covariate (decoder input).
    n_continuous_cov
        Number of continuous covariates (decoder input).
    modality_weights
        Weight of each modality's reconstruction term (default 1).
    modality_dropout
        During training, each observed modality of a cell with two or more is hidden
        from the encoder with this probability (at least one stays), while all its
        observed modalities are still reconstructed. This trains cross-modal prediction
        and puts single-modality posteriors in the joint space.
    consistency_weight
        Weight of ``KL(q_joint || q_m)`` pulling each unimodal posterior (its expert
        times the prior) towards the stop-gradient joint posterior, on cells with two
        or more modalities.
    dispersion
        Dispersion of the count likelihoods: ``"gene"``, ``"gene-batch"`` or ``"gene-cell"``.
    batch_effect
        How batch enters the decoders. ``"nonlinear"``: the batch one-hot is an input of the
        decoder's hidden layer (scVI). ``"additive"``: it is an input of the last (likelihood)
        layer only, i.e. a per-feature, per-batch offset of the logit / log-scale; the decoder
        cannot remap the latent space per batch, which keeps batches that lack a modality
        aligned with the others.
    modality_stats
        Per-modality data statistics used at initialization (``idf`` for ATAC,
        ``background_init`` for the ADT mixture).
    encoder_inputs
        ``{modality: transform}`` overriding the kind's encoder input transform (see
        :class:`~remadom.nn.networks.EncoderInput`).
    """

    def __init__(
        self,
        modalities: Sequence[dict],
        n_batch: int = 0,
        n_latent: int = 20,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        n_cats_per_cov: Sequence[int] | None = None,
        n_continuous_cov: int = 0,
        modality_weights: dict[str, float] | None = None,
        modality_dropout: float = 0.3,
        consistency_weight: float = 0.0,
        dispersion: str = "gene",
        modality_stats: dict[str, dict] | None = None,
        batch_effect: str = "nonlinear",
        encoder_inputs: dict[str, str] | None = None,
    ):
        super().__init__()
        self.specs = [ModalitySpec(**{k: v for k, v in m.items() if k != "n_features"}) for m in modalities]
        self.modality_names = [s.name for s in self.specs]
        self.n_features = {m["name"]: int(m["n_features"]) for m in modalities}
        self.n_latent = n_latent
        self.n_batch = n_batch
        self.modality_dropout = modality_dropout
        self.consistency_weight = consistency_weight
        weights = modality_weights or {}
        unknown = set(weights) - set(self.modality_names)
        if unknown:
            raise ValueError(f"modality_weights names unknown modalities {sorted(unknown)}; "
                             f"the model has {self.modality_names}.")
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modality_names}
        stats = modality_stats or {}
        if batch_effect not in ("nonlinear", "additive"):
            raise ValueError(f"batch_effect={batch_effect!r}; use 'nonlinear' or 'additive'.")
        self.batch_effect = batch_effect
        # additive: the batch one-hot joins the likelihood layer's input instead of the trunk's
        self.n_batch_offsets = n_batch if batch_effect == "additive" and n_batch > 1 else 0
        decoder_cats = ([n_batch] if batch_effect == "nonlinear" else []) + list(n_cats_per_cov or [])

        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for spec in self.specs:
            mstats = stats.get(spec.name, {})
            self.encoders[spec.name] = GaussianExpertEncoder(
                self.n_features[spec.name], n_latent, (encoder_inputs or {}).get(spec.name, spec.encoder_input),
                n_hidden=n_hidden, n_layers=n_layers, dropout_rate=dropout_rate, idf=mstats.get("idf"),
            )
            self.decoders[spec.name] = ConditionalDecoder(
                n_latent, n_cat_list=decoder_cats, n_cont=n_continuous_cov,
                n_hidden=n_hidden, n_layers=n_layers,
            )
            self.heads[spec.name] = LIKELIHOODS[spec.likelihood](
                n_hidden + self.n_batch_offsets, self.n_features[spec.name], n_batch, dispersion=dispersion,
                background_init=mstats.get("background_init"), log_depth_ref=mstats.get("log_depth_ref"),
                open_rate=mstats.get("open_rate"),
                mean_proportion=mstats.get("mean_proportion"),
            )

    # ------------------------------------------------------------------ inputs
    def _get_inference_input(self, tensors: dict) -> dict:
        return {
            "x": {m: tensors[modality_key(m)] for m in self.modality_names},
            "masks": {m: tensors.get(mask_key(m)) for m in self.modality_names},
        }

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        cat = tensors.get(REGISTRY_KEYS.CAT_COVS_KEY)
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
            "cat_covs": cat,
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
            "decode_masks": inference_outputs["observed"],
        }

    # --------------------------------------------------------------- inference
    def observed_masks(self, x: dict, masks: dict) -> torch.Tensor:
        """Stack availability masks into ``(n_modalities, n_cells)``; no mask = all observed."""
        n = next(iter(x.values())).shape[0]
        device = next(iter(x.values())).device
        rows = []
        for m in self.modality_names:
            mk = masks.get(m)
            rows.append(torch.ones(n, device=device) if mk is None else mk.view(-1).float().to(device))
        return torch.stack(rows)

    def _modality_dropout(self, observed: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand_like(observed) > self.modality_dropout).float() * observed
        none_left = keep.sum(0) == 0
        # cells that lost every modality keep one observed modality chosen at random
        rescue = torch.rand_like(observed) * observed
        chosen = torch.zeros_like(observed).scatter_(0, rescue.argmax(0, keepdim=True), 1.0) * observed
        return torch.where(none_left.unsqueeze(0), chosen, keep)

    @auto_move_data
    def inference(
        self,
        x: dict,
        masks: dict,
        use_modalities: Sequence[str] | None = None,
        n_samples: int = 1,
    ) -> dict:
        """Encode observed modalities and fuse their experts.

        Parameters
        ----------
        x
            Raw values per modality (dense or sparse tensors).
        masks
            Availability mask per modality (``None`` = all observed).
        use_modalities
            Encode from this subset only (others are treated as missing).
        n_samples
            Number of posterior samples of ``z``.
        """
        # data as each likelihood scores it (ATAC binarized once, while still sparse)
        prepared = {m: self.heads[m].prepare(v) for m, v in x.items()}
        x = {m: to_dense(v) for m, v in prepared.items()}
        observed = self.observed_masks(x, masks)
        encode = observed
        if use_modalities is not None:
            keep = torch.tensor([m in use_modalities for m in self.modality_names], device=observed.device)
            encode = observed * keep.float().unsqueeze(1)
        if self.training and self.modality_dropout > 0:
            encode = self._modality_dropout(encode)

        n_cells = observed.shape[1]
        means = observed.new_zeros(len(self.modality_names), n_cells, self.n_latent)
        logvars = torch.zeros_like(means)
        # during training every observed expert is computed (the consistency term needs
        # them); modality dropout then acts on the fusion only
        compute = observed if self.training else encode
        for i, m in enumerate(self.modality_names):
            rows = _rows(compute[i])
            if rows.numel() == 0:
                continue
            encoder = self.encoders[m]
            mu, lv = encoder.encode(_take(encoder.input(prepared[m]), rows))
            means[i] = means[i].index_put((rows,), mu.float())
            logvars[i] = logvars[i].index_put((rows,), lv.float())
        qz_m, qz_logvar = product_of_experts(means, logvars, encode)
        qz = Normal(qz_m, torch.exp(0.5 * qz_logvar))
        z = qz.rsample() if n_samples == 1 else qz.rsample((n_samples,))
        library = {m: self.heads[m].library(x[m]) for m in self.modality_names}
        return {
            "z": z, "qz": qz, "qz_m": qz_m, "qz_logvar": qz_logvar,
            "expert_means": means, "expert_logvars": logvars,
            "observed": observed, "encoded": encode, "library": library, "x_dense": x,
        }

    # -------------------------------------------------------------- generative
    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        library: dict,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        decode_masks: torch.Tensor | None = None,
        target_modalities: Sequence[str] | None = None,
    ) -> dict:
        """Decode ``z`` into likelihood parameters per modality.

        With ``decode_masks`` (training), each modality is decoded only for the cells
        that have it; the returned ``rows`` say which.
        """
        n = z.shape[0]
        if batch_index is None:
            batch_index = torch.zeros(n, 1, device=z.device, dtype=torch.long)
        cats = [] if cat_covs is None else list(torch.split(cat_covs, 1, dim=1))
        params, rows_out = {}, {}
        for m in target_modalities or self.modality_names:
            idx = self.modality_names.index(m)
            rows = (_rows(decode_masks[idx]) if decode_masks is not None
                    else torch.arange(n, device=z.device))
            rows_out[m] = rows
            if rows.numel() == 0:
                params[m] = None
                continue
            cont = None if cont_covs is None else cont_covs[rows]
            batch_rows = batch_index[rows]
            trunk_cats = [c[rows] for c in cats]
            if self.batch_effect == "nonlinear":
                trunk_cats = [batch_rows, *trunk_cats]
            h = self.decoders[m](z[rows], *trunk_cats, cont=cont)
            if self.n_batch_offsets:
                onehot = F.one_hot(batch_rows.view(-1).long(), self.n_batch_offsets).to(h.dtype)
                h = torch.cat([h, onehot], dim=-1)
            params[m] = self.heads[m](h, batch_rows, library[m][rows])
        return {"params": params, "rows": rows_out}

    # -------------------------------------------------------------------- loss
    def consistency(self, inference_outputs: dict) -> torch.Tensor:
        """Per-cell ``sum_m KL(sg(q_joint) || q_m)`` over cells with two or more modalities."""
        observed = inference_outputs["observed"]
        means, logvars = inference_outputs["expert_means"], inference_outputs["expert_logvars"]
        joint_m, joint_lv = product_of_experts(means, logvars, observed)
        multi = (observed.sum(0) >= 2).float()
        total = joint_m.new_zeros(joint_m.shape[0])
        for i in range(len(self.modality_names)):
            single = observed[i : i + 1]
            uni_m, uni_lv = product_of_experts(means[i : i + 1], logvars[i : i + 1], single)
            kl = kl_between_gaussians(joint_m.detach(), joint_lv.detach(), uni_m, uni_lv)
            total = total + kl * single[0]
        return total * multi

    @staticmethod
    def alignment_groups(tensors: dict, observed: torch.Tensor, alignment_on: str) -> torch.Tensor | None:
        """Group of each cell for the MMD alignment: its batch, or its set of observed modalities."""
        if alignment_on == "batch":
            return tensors.get(REGISTRY_KEYS.BATCH_KEY)
        if alignment_on == "availability":
            bits = 2 ** torch.arange(observed.shape[0], device=observed.device, dtype=observed.dtype)
            return (observed * bits.unsqueeze(1)).sum(0).long()
        raise ValueError(f"alignment_on={alignment_on!r}; use 'batch' or 'availability'.")

    def loss(
        self,
        tensors: dict,
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
        modality_weights: dict[str, float] | None = None,
        alignment_weight: float = 0.0,
        alignment_on: str = "batch",
        cycle_weight: float = 0.0,
    ) -> LossOutput:
        """Masked ELBO: observed-modality reconstruction + beta * KL, plus optional terms.

        ``cycle_weight`` > 0 adds the cross-modal cycle consistency of cells that lack a modality
        (:mod:`remadom.nn._alignment_cycle`).
        """
        x = inference_outputs["x_dense"]
        observed = inference_outputs["observed"]
        weights = {**self.modality_weights, **(modality_weights or {})}
        n_cells = observed.shape[1]
        reconstruction, extra = {}, {}
        for i, m in enumerate(self.modality_names):
            rows = generative_outputs["rows"][m]
            nll = observed.new_zeros(n_cells)
            if rows.numel() > 0:
                nll = nll.index_put((rows,), self.heads[m].nll(_take(x[m], rows), generative_outputs["params"][m]))
            reconstruction[m] = weights[m] * nll
            extra[f"nll_{m}"] = nll.sum().detach() / observed[i].sum().clamp(min=1.0)
        kl = kl_to_standard_normal(inference_outputs["qz_m"], inference_outputs["qz_logvar"])
        per_cell = sum(reconstruction.values()) + kl_weight * kl
        if self.consistency_weight > 0 and len(self.modality_names) > 1:
            cons = self.consistency(inference_outputs)
            per_cell = per_cell + self.consistency_weight * cons
            extra["consistency"] = cons.mean().detach()
        loss = per_cell.mean()
        if alignment_weight > 0:
            groups = self.alignment_groups(tensors, observed, alignment_on)
            if groups is not None:
                align = batch_mmd(inference_outputs["qz_m"], groups)
                loss = loss + alignment_weight * align
                extra["mmd"] = align.detach()
        if cycle_weight > 0:
            gen_in = self._get_generative_input(tensors, inference_outputs)
            pairs = cycle_targets(self, inference_outputs, gen_in["batch_index"], gen_in["cat_covs"],
                                  gen_in["cont_covs"])
            if pairs:
                cycle = cycle_consistency_loss(pairs)
                loss = loss + cycle_weight * cycle
                extra["cycle"] = cycle.detach()
        return LossOutput(
            loss=loss, reconstruction_loss=reconstruction, kl_local={"kl_z": kl}, extra_metrics=extra
        )
