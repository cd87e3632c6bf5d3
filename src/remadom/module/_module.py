"""The REMADOM module: per-modality Gaussian experts, PoE fusion, masked ELBO."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal

from .._constants import cell_feature_mask_key, mask_key, modality_key
from ..modalities import ModalitySpec
from ..nn._alignment_adversarial import adversarial_losses
from ..nn._alignment_anchor import FUSIONS, paired_anchor_loss, single_to_joint_sum
from ..nn._alignment_cycle import cycle_consistency_loss, cycle_targets
from ..nn._alignment_ot import availability_ot_loss
from ..nn._low_rank import FactorisedDecoder, check_ranks, factorise_encoder_input
from ..nn._sampled_bernoulli import configure_negative_sampling
from ..nn.alignment import batch_mmd
from ..nn.likelihoods import BernoulliHead, PeakVIBernoulliHead
from ..nn.masked import FeatureMaskBank, cell_entry_masks
from ..nn.networks import ConditionalDecoder, GaussianExpertEncoder, to_dense
from ..nn.poe import kl_between_gaussians, kl_to_standard_normal
from ._constants import MODULE_KEYS as K


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
    paired_anchor_weight
        Weight of the paired-anchor term (:mod:`remadom.nn._alignment_anchor`): on cells with two
        or more modalities, the squared distance between each single-modality posterior mean and
        the stop-gradient joint one. 0 = off.
    fusion
        ``"poe"``: the Product of Experts with the standard-normal prior expert. ``"unshrunk"``:
        the same precision-weighted mean without the prior's shrinkage (a single expert's
        posterior mean is its own mean), the PoE's variance
        (:func:`~remadom.nn._alignment_anchor.unshrunk_fusion`).
    dispersion
        Dispersion of the count likelihoods: ``"gene"``, ``"gene-batch"`` or ``"gene-cell"``.
    batch_effect
        How batch enters the decoders. ``"nonlinear"``: the batch one-hot is an input of the
        decoder's hidden layer (scVI). ``"additive"``: it is an input of the last (likelihood)
        layer only, i.e. a per-feature, per-batch offset of the logit / log-scale; the decoder
        cannot remap the latent space per batch, which keeps batches that lack a modality
        aligned with the others.
    modality_stats
        Per-modality data statistics used at initialization,
        ``{name: {"head": {...}, "encoder": {...}}}`` as computed by
        :func:`remadom.model._setup.modality_statistics`: keyword arguments of the likelihood
        head (its :meth:`~remadom.nn.LikelihoodHead.data_statistics`) and of the encoder input
        (``idf`` for ``tfidf``).
    feature_masks
        ``{modality: (n_batch, n_features) bool}``: the features each batch measured (see
        :mod:`remadom.nn.masked`). Unmeasured entries add nothing to the NLL, are left out of
        library sizes and are shown to the encoder as missing. Kept as buffers (state dict).
    negative_sampling
        Fraction of features sampled for the training NLL of modalities whose likelihood
        supports it (Bernoulli): unbiased, see :mod:`remadom.nn._sampled_bernoulli`.
        ``None``: the full likelihood.
    encoder_inputs
        ``{modality: transform}`` overriding the modality's encoder input transform (its spec's
        ``encoder_input``, else its likelihood head's ``default_encoder_input``; see
        :class:`~remadom.nn.networks.EncoderInput`).
    decoder_rank, encoder_rank
        ``{modality: rank}``: factorise that modality's output layer (``n_hidden -> rank ->
        n_features``) / encoder input layer (``n_features -> rank -> n_hidden``) so the wide
        product costs ``rank`` instead of ``n_hidden`` per feature (:mod:`remadom.nn._low_rank`).
        ``None``: full layers.
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
        feature_masks: dict | None = None,
        cell_feature_masks: Sequence[str] | None = None,
        negative_sampling: float | None = None,
        encoder_inputs: dict[str, str] | None = None,
        paired_anchor_weight: float = 0.0,
        fusion: str = "poe",
        decoder_rank: dict[str, int] | None = None,
        encoder_rank: dict[str, int] | None = None,
    ):
        super().__init__()
        self.specs = [ModalitySpec(**{k: v for k, v in m.items() if k != "n_features"}) for m in modalities]
        self.modality_names = [s.name for s in self.specs]
        self.n_features = {m["name"]: int(m["n_features"]) for m in modalities}
        self.n_latent = n_latent
        self.n_batch = n_batch
        self.modality_dropout = modality_dropout
        self.consistency_weight = consistency_weight
        self.paired_anchor_weight = float(paired_anchor_weight)
        #: Distance of the paired-anchor term (see :func:`~remadom.nn._alignment_anchor.paired_anchor_loss`).
        self.paired_anchor_kind = "mean"
        if fusion not in FUSIONS:
            raise ValueError(f"fusion={fusion!r}; use one of {sorted(FUSIONS)}.")
        #: How the experts are fused: ``"poe"`` or ``"unshrunk"`` (see :data:`remadom.nn._alignment_anchor.FUSIONS`).
        self.fusion = fusion
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

        self.feature_masks = FeatureMaskBank(feature_masks)
        unknown = set(self.feature_masks.modalities) - set(self.modality_names)
        if unknown:
            raise ValueError(f"feature_masks names unknown modalities {sorted(unknown)}; "
                             f"the model has {self.modality_names}.")
        #: Modalities with a per-cell feature mask (a minibatch tensor, ANDed with the per-batch table).
        self.cell_feature_masks = sorted(cell_feature_masks or [])
        unknown = set(self.cell_feature_masks) - set(self.modality_names)
        if unknown:
            raise ValueError(f"cell_feature_masks names unknown modalities {sorted(unknown)}; "
                             f"the model has {self.modality_names}.")
        for spec in self.specs:
            masked = spec.name in self.feature_masks or spec.name in self.cell_feature_masks
            if masked and not spec.head.supports_feature_masks():
                raise ValueError(
                    f"Modality {spec.name!r} has feature masks, but its likelihood {spec.head.name!r} "
                    "scores every entry: its `nll` or `library` takes no `mask`. Give the head's per-entry terms in "
                    "`nll_entries` (the base `nll` then skips unmeasured entries), or drop the feature masks."
                )
        #: Features the encoders see under feature masks: ``"shared"`` (default; those every batch
        #: measured, so the pattern of unmeasured features cannot tell the encoder the batch; a
        #: modality whose batches share no feature falls back to ``"batch"``) or ``"batch"`` (those
        #: the cell's batch measured). The likelihood always scores what the cell's batch measured.
        #: ``benchmarks/results_feature_masks.md`` (bmmc_cite_panels) measures both.
        self.encoder_feature_masks = "shared"
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        #: ``{modality: rank}`` of the factorised output / encoder input layers (:mod:`remadom.nn._low_rank`).
        self.decoder_rank = check_ranks(decoder_rank, self.modality_names, "decoder_rank")
        self.encoder_rank = check_ranks(encoder_rank, self.modality_names, "encoder_rank")
        for spec in self.specs:
            mstats = stats.get(spec.name, {})
            encoder_args = dict(n_hidden=n_hidden, n_layers=n_layers, dropout_rate=dropout_rate,
                                idf=mstats.get("encoder", {}).get("idf"))
            transform = (encoder_inputs or {}).get(spec.name, spec.resolved_encoder_input)
            if spec.name in self.encoder_rank:
                self.encoders[spec.name] = factorise_encoder_input(
                    self.n_features[spec.name], self.encoder_rank[spec.name], n_latent, transform, **encoder_args)
            else:
                self.encoders[spec.name] = GaussianExpertEncoder(
                    self.n_features[spec.name], n_latent, transform, **encoder_args)
            decoder_args = dict(n_cat_list=decoder_cats, n_cont=n_continuous_cov, n_hidden=n_hidden, n_layers=n_layers)
            rank = self.decoder_rank.get(spec.name)
            self.decoders[spec.name] = (ConditionalDecoder(n_latent, **decoder_args) if rank is None
                                        else FactorisedDecoder(n_latent, rank, **decoder_args))
            options = {"dispersion": dispersion} if spec.head.uses_dispersion else {}
            self.heads[spec.name] = spec.head(
                (n_hidden if rank is None else rank) + self.n_batch_offsets, self.n_features[spec.name], n_batch,
                **options, **mstats.get("head", {}),
            )
        configure_negative_sampling(self.heads, negative_sampling)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Give a Bernoulli head PeakVI's product form when ``state_dict`` was saved with it.

        Models saved by 0.1.0 development versions used that form (recognised by the head's
        ``region_logit`` parameter); the head is swapped before the children load their state.
        """
        for m, head in self.heads.items():
            if isinstance(head, BernoulliHead) and f"{prefix}heads.{m}.region_logit" in state_dict:
                n_hidden = head.logit_layer.in_features - 1
                self.heads[m] = PeakVIBernoulliHead(n_hidden, head.n_features, head.n_batch).to(
                    head.logit_layer.weight.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ inputs
    def _get_inference_input(self, tensors: dict) -> dict:
        x = {m: tensors[modality_key(m)] for m in self.modality_names}
        return {
            K.X_KEY: x, K.OBSERVED_KEY: self.observed_masks(tensors),
            K.BATCH_INDEX_KEY: tensors.get(REGISTRY_KEYS.BATCH_KEY),
            K.CELL_MASKS_KEY: {m: tensors[cell_feature_mask_key(m)] for m in self.cell_feature_masks},
        }

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {
            K.Z_KEY: inference_outputs[K.Z_KEY],
            K.LIBRARY_KEY: inference_outputs[K.LIBRARY_KEY],
            K.BATCH_INDEX_KEY: tensors.get(REGISTRY_KEYS.BATCH_KEY),
            K.CAT_COVS_KEY: tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            K.CONT_COVS_KEY: tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
            K.DECODE_MASKS_KEY: inference_outputs[K.OBSERVED_KEY],
        }

    # --------------------------------------------------------------- inference
    def observed_masks(self, tensors: dict) -> torch.Tensor:
        """The ``(n_modalities, n_cells)`` availability of a minibatch; a modality with no registered mask is observed everywhere.

        The one place where the module reads the registered masks.
        """
        first = tensors[modality_key(self.modality_names[0])]
        n, device = first.shape[0], first.device
        rows = []
        for m in self.modality_names:
            mk = tensors.get(mask_key(m))
            rows.append(torch.ones(n, device=device) if mk is None else mk.view(-1).float().to(device))
        return torch.stack(rows)

    def _modality_dropout(self, observed: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand_like(observed) > self.modality_dropout).float() * observed
        none_left = keep.sum(0) == 0
        # cells that lost every modality keep one observed modality chosen at random
        rescue = torch.rand_like(observed) * observed
        chosen = torch.zeros_like(observed).scatter_(0, rescue.argmax(0, keepdim=True), 1.0) * observed
        return torch.where(none_left.unsqueeze(0), chosen, keep)

    def _encoder_mask(self, m: str, entry_masks: dict) -> torch.Tensor | None:
        mask = entry_masks.get(m)
        if mask is None or self.encoder_feature_masks == "batch" or m in self.cell_feature_masks:
            return mask  # a per-cell mask: the encoder sees the cell's own unmeasured entries as missing
        shared = self.feature_masks.shared_mask(m, mask.shape[0]).to(mask.device)
        return shared if bool(shared[:1].any()) else mask

    @auto_move_data
    def inference(
        self,
        x: dict,
        observed: torch.Tensor,
        use_modalities: Sequence[str] | None = None,
        batch_index: torch.Tensor | None = None,
        cell_masks: dict | None = None,
    ) -> dict:
        """Encode observed modalities and fuse their experts.

        Parameters
        ----------
        x
            Raw values per modality (dense or sparse tensors).
        observed
            ``(n_modalities, n_cells)`` availability, from :meth:`observed_masks`.
        use_modalities
            Encode from this subset only (others are treated as missing).
        batch_index
            Batch code of each cell; needed only by modalities with feature masks.
        cell_masks
            ``{modality: (n_cells, n_features)}`` per-cell feature masks (nonzero = measured), ANDed
            with the per-batch masks; needed by the modalities in :attr:`cell_feature_masks`.

        Returns
        -------
        dict keyed by :data:`~remadom.module.MODULE_KEYS`; ``x_prepared`` holds each modality
        as its likelihood scores it (dense, unmeasured entries of a feature mask set to 0), the
        data :meth:`loss` reads, and ``entry_masks`` the ``(n_cells, n_features)`` feature mask
        of each modality that has one.
        """
        # data as each likelihood scores it (binary heads binarize once, while still sparse)
        prepared = {m: self.heads[m].prepare(v) for m, v in x.items()}
        dense = {m: to_dense(v) for m, v in prepared.items()}
        entry_masks = cell_entry_masks(self.feature_masks, self.modality_names, batch_index,
                                       self.cell_feature_masks, cell_masks)
        for m, emask in entry_masks.items():  # unmeasured entries hold no data: zero them everywhere
            dense[m] = dense[m] * emask.to(dense[m].dtype)
            prepared[m] = dense[m]
        observed = observed.float()
        encode = observed
        if use_modalities is not None:
            keep = torch.tensor([m in use_modalities for m in self.modality_names], device=observed.device)
            encode = observed * keep.float().unsqueeze(1)
        if self.training and self.modality_dropout > 0:
            encode = self._modality_dropout(encode)

        n_cells = observed.shape[1]
        means = observed.new_zeros(len(self.modality_names), n_cells, self.n_latent)
        logvars = torch.zeros_like(means)
        # the consistency and paired-anchor terms need every observed expert during training;
        # without them, an expert that modality dropout leaves out of the fusion is not computed
        # (#14: ~25 % of a paired cell's encoder work at dropout 0.3)
        needs_all_experts = self.consistency_weight > 0 or self.paired_anchor_weight > 0
        compute = observed if self.training and needs_all_experts else encode
        for i, m in enumerate(self.modality_names):
            rows = _rows(compute[i])
            if rows.numel() == 0:
                continue
            encoder = self.encoders[m]
            mu, lv = encoder.encode(_take(encoder.input(prepared[m], self._encoder_mask(m, entry_masks)), rows))
            means[i] = means[i].index_put((rows,), mu.float())
            logvars[i] = logvars[i].index_put((rows,), lv.float())
        qz_m, qz_logvar = FUSIONS[self.fusion](means, logvars, encode)
        qz = Normal(qz_m, torch.exp(0.5 * qz_logvar))
        library = {m: (self.heads[m].library(dense[m]) if m not in entry_masks
                       else self.heads[m].library(dense[m], entry_masks[m])) for m in self.modality_names}
        return {
            K.Z_KEY: qz.rsample(), K.QZ_KEY: qz, K.QZ_MEAN_KEY: qz_m, K.QZ_LOGVAR_KEY: qz_logvar,
            K.EXPERT_MEANS_KEY: means, K.EXPERT_LOGVARS_KEY: logvars,
            K.OBSERVED_KEY: observed, K.ENCODED_KEY: encode, K.LIBRARY_KEY: library, K.X_PREPARED_KEY: dense,
            K.ENTRY_MASKS_KEY: entry_masks,
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
        return {K.PARAMS_KEY: params, K.ROWS_KEY: rows_out}

    # -------------------------------------------------------------------- loss
    def consistency(self, inference_outputs: dict) -> torch.Tensor:
        """Per-cell ``sum_m KL(sg(q_joint) || q_m)`` over cells with two or more modalities."""
        return single_to_joint_sum(
            inference_outputs[K.EXPERT_MEANS_KEY], inference_outputs[K.EXPERT_LOGVARS_KEY],
            inference_outputs[K.OBSERVED_KEY],
            lambda uni_m, uni_lv, joint_m, joint_lv: kl_between_gaussians(joint_m, joint_lv, uni_m, uni_lv),
        )

    @staticmethod
    def alignment_groups(tensors: dict, observed: torch.Tensor, alignment_on: str) -> torch.Tensor | None:
        """Group of each cell for the MMD alignment: its batch, or its set of observed modalities."""
        if alignment_on == "batch":
            return tensors.get(REGISTRY_KEYS.BATCH_KEY)
        if alignment_on == "availability":
            bits = 2 ** torch.arange(observed.shape[0], device=observed.device, dtype=observed.dtype)
            return (observed * bits.unsqueeze(1)).sum(0).long()
        raise ValueError(f"alignment_on={alignment_on!r}; use 'batch' or 'availability'.")

    def n_alignment_groups(self, alignment_on: str) -> int:
        """How many values :meth:`alignment_groups` can take (at least 1): batches, or modality subsets."""
        return max(self.n_batch if alignment_on == "batch" else 2 ** len(self.modality_names), 1)

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
        availability_ot_weight: float = 0.0,
        availability_ot_reach: float | None = 1.0,
        availability_ot_blur: float = 0.1,
        adversarial_classifier: nn.Module | None = None,
        adversarial_weight: float = 0.0,
        adversarial_on: str = "batch",
    ) -> LossOutput:
        """Masked ELBO: observed-modality reconstruction + beta * KL, plus optional terms.

        ``cycle_weight`` > 0 adds the cross-modal cycle consistency of cells that lack a modality
        (:mod:`remadom.nn._alignment_cycle`). ``availability_ot_weight`` > 0 adds the unbalanced
        OT divergence between availability groups (:mod:`remadom.nn._alignment_ot`). With an
        ``adversarial_classifier`` (the training plan's), ``adversarial_weight`` times the fool term
        and the classifier's own loss are added (:mod:`remadom.nn._alignment_adversarial`).
        """
        x = inference_outputs[K.X_PREPARED_KEY]
        observed = inference_outputs[K.OBSERVED_KEY]
        weights = {**self.modality_weights, **(modality_weights or {})}
        n_cells = observed.shape[1]
        reconstruction, extra, kl_heads = {}, {}, {}
        entry_masks = inference_outputs.get(K.ENTRY_MASKS_KEY, {})
        for i, m in enumerate(self.modality_names):
            rows = generative_outputs[K.ROWS_KEY][m]
            nll = observed.new_zeros(n_cells)
            if rows.numel() > 0:
                params_m = generative_outputs[K.PARAMS_KEY][m]
                x_m = _take(x[m], rows)
                emask = entry_masks.get(m)
                if emask is None:  # heads written without a mask argument score fully measured data
                    cell_nll = self.heads[m].nll(x_m, params_m)
                else:
                    cell_nll = self.heads[m].nll(x_m, params_m, mask=_take(emask, rows))
                nll = nll.index_put((rows,), cell_nll)
                emask_rows = None if emask is None else _take(emask, rows)
                head_kl = self.heads[m].kl(params_m, mask=emask_rows)  # a head's own per-cell factors
                if head_kl is not None:
                    kl_heads[f"kl_{m}"] = observed.new_zeros(n_cells).index_put((rows,), head_kl)
            reconstruction[m] = weights[m] * nll
            extra[f"nll_{m}"] = nll.sum().detach() / observed[i].sum().clamp(min=1.0)
        kl = kl_to_standard_normal(inference_outputs[K.QZ_MEAN_KEY], inference_outputs[K.QZ_LOGVAR_KEY])
        per_cell = sum(reconstruction.values()) + kl_weight * (kl + sum(kl_heads.values()))
        if self.consistency_weight > 0 and len(self.modality_names) > 1:
            cons = self.consistency(inference_outputs)
            per_cell = per_cell + self.consistency_weight * cons
            extra["consistency"] = cons.mean().detach()
        if self.paired_anchor_weight > 0 and len(self.modality_names) > 1:
            anchor = paired_anchor_loss(inference_outputs[K.EXPERT_MEANS_KEY], inference_outputs[K.EXPERT_LOGVARS_KEY],
                                        observed, kind=self.paired_anchor_kind, fusion=self.fusion)
            per_cell = per_cell + self.paired_anchor_weight * anchor
            extra["paired_anchor"] = anchor.mean().detach()
        loss = per_cell.mean()
        if alignment_weight > 0:
            groups = self.alignment_groups(tensors, observed, alignment_on)
            if groups is not None:
                align = batch_mmd(inference_outputs[K.QZ_MEAN_KEY], groups)
                loss = loss + alignment_weight * align
                extra["mmd"] = align.detach()
        if cycle_weight > 0:
            gen_in = self._get_generative_input(tensors, inference_outputs)
            pairs = cycle_targets(self, inference_outputs, gen_in[K.BATCH_INDEX_KEY], gen_in[K.CAT_COVS_KEY],
                                  gen_in[K.CONT_COVS_KEY])
            if pairs:
                cycle = cycle_consistency_loss(pairs)
                loss = loss + cycle_weight * cycle
                extra["cycle"] = cycle.detach()
        if availability_ot_weight > 0:
            groups = self.alignment_groups(tensors, observed, "availability")
            ot = availability_ot_loss(inference_outputs[K.QZ_MEAN_KEY], groups,
                                      reach=availability_ot_reach, blur=availability_ot_blur)
            loss = loss + availability_ot_weight * ot
            extra["availability_ot"] = ot.detach()
        if adversarial_classifier is not None:
            groups = self.alignment_groups(tensors, observed, adversarial_on)
            fool, discriminate = adversarial_losses(adversarial_classifier, inference_outputs[K.Z_KEY], groups,
                                                    self.n_alignment_groups(adversarial_on))
            loss = loss + adversarial_weight * fool + discriminate
            extra.update(adversarial_fool=fool.detach(), adversarial_classifier=discriminate.detach())
        return LossOutput(
            loss=loss, reconstruction_loss=reconstruction, kl_local={"kl_z": kl, **kl_heads}, extra_metrics=extra
        )
