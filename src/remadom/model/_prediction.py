"""Outputs of a trained model: latent representation, imputation and reconstruction error.

:class:`PredictionMixin` is mixed into :class:`~remadom.REMADOM`; it relies on the model's
``module``, ``specs``, ``adata_manager``, ``_loader`` and ``_validate_anndata``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from ..module import MODULE_KEYS
from . import _checks
from ._depth_prediction import fit_depth_regression
from ._feature_masks import fill_unmeasured
from ._shrinkage import resolve_shrinkage
from ._uncertainty import predictive_summary
from ._unencodable import blank_unencodable
from ._validation import read_mask


class PredictionMixin:
    """``get_latent_representation``, ``impute`` and friends for :class:`~remadom.REMADOM`."""

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        modalities: Sequence[str] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Fused posterior of each cell.

        Parameters
        ----------
        adata
            AnnData/MuData set up like the training data (default: the training data).
        indices
            Cells to use (default: all).
        modalities
            Embed from this subset of modalities only. A cell that has none of them has
            nothing to embed from: its row is NaN, with an
            :class:`~remadom.model.UnencodableCellsWarning` giving the count.
        give_mean
            Posterior mean (default) or one sample.
        batch_size
            Minibatch size for inference.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)``.
        """
        self._check_if_trained(warn=False)
        self._check_modalities(modalities, "modalities")
        adata = self._validate_anndata(adata)
        self.module.eval()
        out, encodable = [], []
        for tensors in self._loader(adata, indices, batch_size):
            inf = self.module.inference(**self.module._get_inference_input(tensors), use_modalities=modalities)
            out.append((inf[MODULE_KEYS.QZ_MEAN_KEY] if give_mean else inf[MODULE_KEYS.Z_KEY]).float().cpu())
            encodable.append(inf[MODULE_KEYS.ENCODED_KEY].sum(0).cpu() > 0)
        return blank_unencodable(torch.cat(out).numpy(), torch.cat(encodable).numpy(), modalities,
                                 "get_latent_representation")

    def _valid_decode_batches(self, target: str) -> np.ndarray:
        """Batch codes in which ``target`` was observed in the training data.

        For a query model, also the reference batches that measured it (a query may lack ``target``
        entirely).
        """
        spec = next(s for s in self.specs if s.name == target)
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
        observed = read_mask(self.adata, spec)
        valid = np.union1d(np.unique(codes[observed]), self._reference_decode_batches(target))
        if not len(valid):
            raise ValueError(
                f"No batch of this model measured {target!r}, so there is no decoder to impute it with. "
                "Impute it with the reference model, or map the query again with this version of REMADOM "
                "(it records the reference batches that measured each modality)."
            )
        return valid.astype(np.int64)

    @torch.inference_mode()
    def impute(
        self,
        target: str,
        from_modalities: Sequence[str] | None = None,
        adata=None,
        indices: Sequence[int] | None = None,
        n_samples: int = 1,
        library_size: float = 1e4,
        batch_size: int | None = None,
        return_numpy: bool = True,
        return_uncertainty: bool = False,
        interval: float = 0.9,
        cell_depth: bool | str = False,
        include_background: bool = False,
        shrinkage: float | str = "auto",
    ):
        """Predict modality ``target`` for each cell from (a subset of) its modalities.

        Decoding uses the cell's own batch when ``target`` was measured in that batch,
        and otherwise averages over the batches in which it was measured. With feature masks
        (:meth:`get_feature_masks`) the same holds per feature: a feature the cell's batch did not
        measure is decoded with the batches that measured it, so every cell gets every feature.
        A per-cell mask (``feature_masks={target: "<obsm key>"}``) changes nothing here: every
        feature of every cell is predicted with the cell's own batch decoder (the mask only keeps
        the cell's unmeasured entries out of training and out of the encoder).

        Parameters
        ----------
        target
            Modality to predict.
        from_modalities
            Modalities to encode from (default: every modality the cell has). Predictions
            are made for the cells that have at least one of them; the rows of the other
            cells are NaN, with an :class:`~remadom.model.UnencodableCellsWarning` giving
            the count.
        adata, indices, batch_size
            Cells to predict, as in :meth:`get_latent_representation`.
        n_samples
            1: decode the posterior mean. More: average the prediction over posterior
            samples.
        library_size
            RNA/count modalities are returned as expected counts at this library size.
        return_numpy
            Return an array, or an AnnData with the feature names.
        return_uncertainty
            Also return the posterior-predictive spread (see
            :func:`remadom.model._uncertainty.predictive_summary`): ``max(n_samples, 100)`` draws
            of ``z`` from the posterior, each decoded and drawn through the likelihood.
        interval
            Central mass of the predictive interval returned with ``return_uncertainty``.
        cell_depth
            Binary modalities (ATAC) only. ``False``: accessibility at the reference depth (the
            mean over training cells), comparable across cells. ``True``: the probability that the
            cell's own measurement shows the feature open, with the cell's depth (its open measured
            features, rescaled to the full feature set under a feature mask) in the logit: the
            prediction to score against the cell's observed accessibility, e.g. its unmeasured
            peaks. Cells without ``target`` have no depth and get the reference depth.
            ``"predicted"``: as ``True``, but cells without ``target`` get a depth predicted from
            the modalities they are encoded from (a ridge regression of the ``log1p`` depth on the
            latent mean and the sources' ``log1p`` library sizes, fitted on the training cells that
            measured both; :mod:`remadom.model._depth_prediction`): a cell-specific depth where
            ``True`` puts the same reference depth in every such cell.
        include_background
            Return the mean of a new measurement, background included (the likelihood head's
            ``observation_mean``), instead of the signal alone; it only differs for ``nbmixture``
            ADT, whose default is the foreground. Use it to compare with observed counts.
        shrinkage
            Hedge of a *cross-modal* prediction (a cell that did not encode from ``target``: it
            never measured it, or ``from_modalities`` leaves it out) towards the population
            profile of ``target`` (mean per-cell proportion for RNA/counts, open rate for ATAC, over
            the training cells that measured it): ``(1 - w) * prediction + w * profile``.
            ``"auto"`` (default): ``w`` maximizes the held-out log-likelihood of ``target`` on the
            model's validation cells that measured it, predicted from the sources alone
            (:mod:`remadom.model._shrinkage`); ``w`` is near 0 where the cross-modal map
            generalizes, and 0 without validation cells (``train_size=1.0``), under feature masks,
            and for ADT/Gaussian heads. A number in [0, 1]: that ``w``; ``0``: the decoded
            prediction alone (the behaviour before this option). Cells that encoded from
            ``target`` (reconstruction) are never shrunk; the spread of ``return_uncertainty`` is
            the model's, unshrunk. With ``return_numpy=False`` the weight used is in
            ``.uns["shrinkage"]``.

        Returns
        -------
        ``(n_cells, n_features)``: RNA/counts expected counts at ``library_size``, ATAC
        accessibility probabilities, ADT foreground expected counts (``nbmixture``), CLR
        means (``gaussian_clr``) or means on the values' scale (``gaussian``). With ``return_uncertainty``, a tuple ``(values, spread)`` where
        ``spread`` has ``std``, ``lower`` and ``upper`` arrays (the predictive distribution of a
        new measurement: raw counts, at ``library_size`` for RNA/counts, background included for
        ADT) and ``mean``, ``interval``, ``n_samples``.
        """
        self._check_if_trained(warn=False)
        _checks.check_int("n_samples", n_samples)
        _checks.check_float("library_size", library_size, low=0.0, low_open=True)
        self._check_modalities([target], "target")
        self._check_modalities(from_modalities, "from_modalities")
        adata_view = self._validate_anndata(adata)
        self.module.eval()
        scales = self.module.heads[target].scales_with_library
        if cell_depth not in (True, False, "predicted"):
            raise ValueError(f"cell_depth must be True, False or 'predicted', got {cell_depth!r}.")
        if cell_depth and not self.module.heads[target].binary:
            raise ValueError(f"cell_depth=True applies to binary (accessibility) modalities; {target!r} is not one.")
        mean = "at_cell_depth" if cell_depth else "with_background" if include_background else "expected"
        depth_model = None
        if cell_depth == "predicted":
            depth_model = fit_depth_regression(self, target, from_modalities, batch_size=batch_size)
            mean = "at_given_depth"
        valid = torch.as_tensor(self._valid_decode_batches(target))
        t_index = self.module.modality_names.index(target)
        shrink = None  # fitted when the first cross-modal row comes
        if isinstance(shrinkage, str) and shrinkage != "auto":
            raise ValueError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}.")
        if not isinstance(shrinkage, str):
            shrink = resolve_shrinkage(self, target, from_modalities, shrinkage, batch_size)
        out, encodable = [], []
        for tensors in self._loader(adata_view, indices, batch_size):
            inf = self.module.inference(**self.module._get_inference_input(tensors),
                                        use_modalities=from_modalities)
            encodable.append(inf[MODULE_KEYS.ENCODED_KEY].sum(0).cpu() > 0)
            gen_in = self.module._get_generative_input(tensors, inf)
            if depth_model is not None:  # the unmeasured target's depth predicted from the sources
                gen_in[MODULE_KEYS.LIBRARY_KEY] = depth_model.fill_library(inf, self.module.modality_names)
            qz_m = inf[MODULE_KEYS.QZ_MEAN_KEY]
            batch_index = gen_in[MODULE_KEYS.BATCH_INDEX_KEY]
            own_ok = torch.isin(batch_index.view(-1).cpu(), valid).to(qz_m.device)
            acc = 0.0
            for _ in range(n_samples):
                z = qz_m if n_samples == 1 else inf[MODULE_KEYS.QZ_KEY].sample()
                acc = acc + self._decode_expected(target, z, gen_in, own_ok, valid, mean)
            pred = acc / n_samples
            cross = ~inf[MODULE_KEYS.ENCODED_KEY][t_index].bool().view(-1)
            if bool(cross.any()):
                if shrink is None:
                    shrink = resolve_shrinkage(self, target, from_modalities, shrinkage, batch_size)
                pred = shrink.apply(pred, cross)
            if scales:
                pred = pred * library_size
            out.append(pred.float().cpu())
        values = blank_unencodable(torch.cat(out).numpy(), torch.cat(encodable).numpy(), from_modalities, "impute")
        if not return_numpy:
            obs = adata_view.obs.iloc[indices] if indices is not None else adata_view.obs
            values = AnnData(X=values, obs=obs.copy(), var=pd.DataFrame(index=self.feature_names_[target]))
            values.uns["shrinkage"] = 0.0 if shrink is None else shrink.weight
        if return_uncertainty:
            spread = predictive_summary(self, target, from_modalities, adata_view, indices, interval=interval,
                                        n_samples=max(n_samples, 100), library_size=library_size)
            blank = np.isnan(values.X if isinstance(values, AnnData) else values).all(1)
            for key in ("std", "lower", "upper", "mean"):  # no prediction, no spread
                if key in spread and blank.any():
                    spread[key] = np.where(blank[:, None], np.nan, spread[key])
            return values, spread
        return values

    def _decode_expected(self, target, z, gen_in, own_ok, valid, mean="expected"):
        k = MODULE_KEYS
        head = self.module.heads[target]
        cell_depth = mean == "at_cell_depth"
        if cell_depth:  # the cell's own depth where it has the target; the reference depth elsewhere
            has_target = gen_in[k.DECODE_MASKS_KEY][self.module.modality_names.index(target)].bool().view(-1, 1)

        def decode(batch_index):
            gen = self.module.generative(
                z, gen_in[k.LIBRARY_KEY], batch_index, gen_in[k.CAT_COVS_KEY], gen_in[k.CONT_COVS_KEY],
                target_modalities=[target],
            )
            params = gen[k.PARAMS_KEY][target]
            if cell_depth:
                return torch.where(has_target, head.expected_at_cell_depth(params), head.expected(params))
            if mean == "at_given_depth":  # every cell at the depth in its library (own or predicted)
                return head.expected_at_cell_depth(params)
            if mean == "with_background":
                return head.observation_mean(params)
            return head.expected(params)

        pred = decode(gen_in[k.BATCH_INDEX_KEY])
        if not bool(own_ok.all()):
            bad = ~own_ok
            avg = 0.0
            for code in valid.tolist():
                avg = avg + decode(torch.full_like(gen_in[k.BATCH_INDEX_KEY], code))[bad]
            pred[bad] = avg / len(valid)
        table = self.module.feature_masks.batch_masks(target)
        if table is not None:  # features the cell's batch did not measure: decoders of batches that did
            batch_index = gen_in[k.BATCH_INDEX_KEY]
            pred = fill_unmeasured(pred, batch_index, own_ok, table,
                                   lambda code: decode(torch.full_like(batch_index, code)), valid.tolist())
        return pred

    def get_normalized_expression(self, adata=None, indices=None, library_size: float = 1e4,
                                  from_modalities=None, n_samples: int = 1, batch_size=None,
                                  return_numpy: bool = True, shrinkage: float | str = "auto"):
        """RNA expression at ``library_size``; shorthand for ``impute("rna", ...)``."""
        return self.impute("rna", from_modalities=from_modalities, adata=adata, indices=indices,
                           n_samples=n_samples, library_size=library_size, batch_size=batch_size,
                           return_numpy=return_numpy, shrinkage=shrinkage)

    @torch.inference_mode()
    def get_reconstruction_error(self, adata=None, indices=None, batch_size=None) -> dict:
        """Mean negative log-likelihood per modality, over the cells that have it.

        The plain NLL of each modality's likelihood: ``modality_weights`` do not apply.
        """
        adata = self._validate_anndata(adata)
        self.module.eval()
        totals = dict.fromkeys(self.modality_names, 0.0)
        counts = dict.fromkeys(self.modality_names, 0.0)
        unweighted = {"modality_weights": dict.fromkeys(self.modality_names, 1.0)}
        for tensors in self._loader(adata, indices, batch_size):
            inf, _, loss = self.module(tensors, loss_kwargs=unweighted)
            observed = inf[MODULE_KEYS.OBSERVED_KEY]
            for i, m in enumerate(self.modality_names):
                totals[m] += float(loss.reconstruction_loss[m].sum())
                counts[m] += float(observed[i].sum())
        return {f"reconstruction_loss_{m}": totals[m] / max(counts[m], 1.0) for m in self.modality_names}
