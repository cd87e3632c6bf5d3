"""Feature masks: which features of a modality each batch measured.

A feature mask is a boolean ``DataFrame`` per modality, batches (rows, the values of ``batch_key``)
x features (columns, the modality's feature names); ``True`` = measured. It is stated in one of
three ways, in this order of precedence:

1. the ``feature_masks={"adt": DataFrame}`` argument of ``setup_anndata`` / ``setup_mudata``;
2. ``adata.uns["remadom_feature_masks"][modality]`` (same DataFrame), the AnnData convention;
3. ``varm["remadom_measured"]`` of the AnnData holding the modality's features (``adata`` for a
   modality in ``X``/a layer, ``mdata.mod[key]`` for a MuData): features x batches, the
   transposed layout, which is what :func:`remadom.data.concat_mosaic` writes.

A feature is never guessed missing from zeros. :class:`FeatureMaskField` validates the masks,
stores them in the scvi-tools registry (so save/load and ``view_anndata_setup`` carry them) and
the model turns them into module buffers (:class:`remadom.nn.masked.FeatureMaskBank`).

Rules (each broken rule is a :class:`~remadom.model._validation.RemadomSetupError`):

* every batch in which some cell has the modality needs a row; batches without such cells may be
  left out (their row is irrelevant);
* the columns are exactly the modality's features (any order);
* every feature is measured in at least one of those batches (drop it otherwise);
* a mask with every feature measured in every batch is dropped (nothing to mask);
* no such batch has every feature masked: a batch that measured none of a modality's features
  does not have the modality; say so with the modality's availability mask
  (``obs["has_<modality>"] = False`` or leave the cells out of ``mdata.mod[key]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import rich
import rich.pretty
import rich.table
from scvi.data.fields import BaseAnnDataField

from ._validation import RemadomSetupError, read_mask

#: ``uns`` key of the AnnData convention: ``{modality: DataFrame(batch x feature, bool)}``.
FEATURE_MASKS_UNS_KEY = "remadom_feature_masks"
#: ``varm`` key of the per-modality convention: ``DataFrame(feature x batch, bool)``.
MEASURED_VARM_KEY = "remadom_measured"
#: Registry key of :class:`FeatureMaskField`.
FEATURE_MASKS_REGISTRY_KEY = "feature_masks"


def _as_bool_frame(frame, where: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise RemadomSetupError(
            f"{where} must be a pandas DataFrame (batches x features, bool); got {type(frame).__name__}."
        )
    if frame.isna().to_numpy().any():
        raise RemadomSetupError(f"{where} has missing values; use True (measured) or False (not measured).")
    values = frame.to_numpy()
    if values.dtype != bool:
        if not np.isin(values, [0, 1]).all():
            raise RemadomSetupError(f"{where} must hold booleans (or 0/1).")
        frame = frame.astype(bool)
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    return frame


def stated_masks(adata, specs, explicit: dict | None) -> dict[str, tuple[pd.DataFrame, str]]:
    """The feature masks stated for ``adata``: ``{modality: (batch x feature DataFrame, source)}``."""
    names = [s.name for s in specs]
    explicit = dict(explicit or {})
    unknown = set(explicit) - set(names)
    if unknown:
        raise RemadomSetupError(
            f"feature_masks names unknown modalities {sorted(unknown)}; the modalities set up are {names}."
        )
    in_uns = adata.uns.get(FEATURE_MASKS_UNS_KEY, {}) or {}
    found = {}
    for spec in specs:
        if spec.name in explicit:
            found[spec.name] = (explicit[spec.name], f"feature_masks[{spec.name!r}]")
        elif spec.name in in_uns:
            found[spec.name] = (in_uns[spec.name], f"uns[{FEATURE_MASKS_UNS_KEY!r}][{spec.name!r}]")
        elif spec.attr == "layers" and MEASURED_VARM_KEY in adata.varm:
            found[spec.name] = (pd.DataFrame(adata.varm[MEASURED_VARM_KEY]).T, f"varm[{MEASURED_VARM_KEY!r}]")
    return {m: (_as_bool_frame(frame, where), where) for m, (frame, where) in found.items()}


def _examples(values) -> str:
    values = list(values)
    return ", ".join(map(str, values[:5])) + (f" ... ({len(values)} in all)" if len(values) > 5 else "")


def check_feature_mask(
    frame: pd.DataFrame, where: str, modality: str, features: np.ndarray, batches: np.ndarray,
    observed_batches: np.ndarray,
) -> np.ndarray:
    """Validate one modality's mask; return it as ``(n_batch, n_features)`` in model order.

    ``batches`` are all batch categories in code order, ``observed_batches`` those in which some
    cell has the modality. Batches not stated and without such cells are filled with ``True``.
    """
    if frame.index.has_duplicates or frame.columns.has_duplicates:
        raise RemadomSetupError(f"{where} has duplicated batch or feature names.")
    extra_batches = frame.index.difference(pd.Index(batches))
    if len(extra_batches):
        raise RemadomSetupError(
            f"{where} has rows for batches that are not in the data: {_examples(extra_batches)}. "
            f"The batches are {_examples(batches)}."
        )
    lacking = pd.Index(observed_batches).difference(frame.index)
    if len(lacking):
        raise RemadomSetupError(
            f"{where} has no row for batch(es) {_examples(lacking)}, whose cells have modality "
            f"{modality!r}. Add a row per batch (True = measured)."
        )
    feats = pd.Index(features.astype(str))
    missing, extra = feats.difference(frame.columns), frame.columns.difference(feats)
    if len(missing) or len(extra) or frame.shape[1] != len(feats):
        raise RemadomSetupError(
            f"The columns of {where} ({frame.shape[1]}) do not match the {len(feats)} features of modality "
            f"{modality!r}: missing {_examples(missing) or 'none'}; unknown {_examples(extra) or 'none'}."
        )
    table = frame.reindex(index=pd.Index(batches), columns=feats, fill_value=True).to_numpy(dtype=bool)
    observed_rows = pd.Index(batches).isin(observed_batches)
    never = ~table[observed_rows].any(0)
    if never.any():
        raise RemadomSetupError(
            f"{int(never.sum())} feature(s) of modality {modality!r} are measured in no batch ({where}): "
            f"{_examples(feats[never])}. Remove them from the data, or mark where they were measured."
        )
    empty = observed_rows & ~table.any(1)
    if empty.any():
        raise RemadomSetupError(
            f"{where} masks every feature of modality {modality!r} in batch(es) {_examples(np.asarray(batches)[empty])}, "
            f"whose cells are set up as having {modality!r}. A batch that measured none of its features does "
            f"not have the modality: mark it missing (obs['has_{modality}'] = False for those cells, or leave "
            "them out of the MuData modality)."
        )
    return table


class FeatureMaskField(BaseAnnDataField):
    """scvi-tools field that validates feature masks and keeps them in the state registry.

    It registers no tensor (the masks are per batch, gathered in the module by batch index).

    Parameters
    ----------
    specs
        The modality specs being set up.
    batch_key
        obs column of the batches the masks refer to.
    feature_masks
        Explicit ``{modality: DataFrame(batch x feature, bool)}``.
    feature_names
        ``{modality: feature names}`` in model order.
    """

    def __init__(self, specs, batch_key: str | None, feature_masks: dict | None, feature_names: dict):
        from ._cell_feature_masks import split_feature_masks

        super().__init__()
        self._specs = list(specs)
        self._batch_key = batch_key
        self._explicit, self._cells = split_feature_masks(feature_masks)
        self._feature_names = feature_names

    registry_key = FEATURE_MASKS_REGISTRY_KEY
    attr_name = "uns"
    attr_key = None

    @property
    def is_empty(self) -> bool:
        return False

    def get_data_registry(self) -> dict:
        return {}

    def validate_field(self, adata) -> None:
        self.register_field(adata)

    def register_field(self, adata) -> dict:
        unknown = set(self._cells) - {s.name for s in self._specs}
        if unknown:
            raise RemadomSetupError(f"feature_masks names unknown modalities {sorted(unknown)}; the modalities "
                                    f"set up are {[s.name for s in self._specs]}.")
        stated = stated_masks(adata, self._specs, self._explicit)
        masks = self._batch_masks(adata, stated) if stated else {}
        self._check_cell_masks(adata, masks)
        return {"masks": masks, "cell_masks": dict(self._cells)}

    def _check_cell_masks(self, adata, masks: dict) -> None:
        from ._cell_feature_masks import check_cell_feature_mask

        codes = adata.obs[self._batch_key].astype("category").cat.codes.to_numpy() if masks else None
        for spec in self._specs:
            if spec.name in self._cells:
                table = masks.get(spec.name)
                measured = None if table is None else np.asarray(table["measured"])
                check_cell_feature_mask(adata, spec, self._cells[spec.name], self._feature_names[spec.name],
                                        measured, None if table is None else codes)

    def _batch_masks(self, adata, stated: dict) -> dict:
        if self._batch_key is None:
            raise RemadomSetupError(
                f"Feature masks are stated for {sorted(stated)} ({', '.join(w for _, w in stated.values())}), "
                "but they are per batch and no batch_key was given. Pass batch_key=."
            )
        batch = adata.obs[self._batch_key].astype("category")
        batches = np.asarray(batch.cat.categories.astype(str))
        codes = batch.cat.codes.to_numpy()
        masks = {}
        for spec in self._specs:
            if spec.name not in stated:
                continue
            frame, where = stated[spec.name]
            observed_batches = batches[np.unique(codes[read_mask(adata, spec)])]
            table = check_feature_mask(frame, where, spec.name, self._feature_names[spec.name], batches,
                                       observed_batches)
            if table.all():  # every feature measured in every batch: nothing to mask
                continue
            masks[spec.name] = {"batches": batches.tolist(), "measured": table, "source": where}
        return masks

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        """New data is scored with the model's masks; new (query) batches get a row (see ``_query_masks``)."""
        from ._query_masks import extend_masks_to_new_batches

        return extend_masks_to_new_batches(state_registry, adata_target, self._batch_key)

    def get_summary_stats(self, state_registry: dict) -> dict:
        return {}

    def view_state_registry(self, state_registry: dict):
        masks = state_registry.get("masks", {})
        cells = state_registry.get("cell_masks", {}) or {}
        if not masks and not cells:
            return None
        table = rich.table.Table(title="Feature masks (features measured per batch / per cell)")
        table.add_column("Modality", justify="center", style="dodger_blue1", no_wrap=True)
        table.add_column("Batch", justify="center", style="green", no_wrap=True)
        table.add_column("Measured", justify="center", style="dark_violet", no_wrap=True)
        table.add_column("Source", justify="left", no_wrap=True)
        for name, entry in masks.items():
            measured = np.asarray(entry["measured"])
            for batch, row in zip(entry["batches"], measured):
                table.add_row(name, str(batch), f"{int(row.sum())} / {row.size}", entry["source"])
        for name, key in cells.items():
            table.add_row(name, "per cell", "-", f"obsm[{key!r}] (per-cell mask)")
        return table


def feature_mask_tables(adata_manager, batch_categories) -> dict[str, np.ndarray]:
    """``{modality: (n_batch, n_features) bool}`` in batch-code order, from the registry."""
    try:
        masks = adata_manager.get_state_registry(FEATURE_MASKS_REGISTRY_KEY).get("masks", {})
    except KeyError:  # set up before feature masks existed
        return {}
    out = {}
    for name, entry in masks.items():
        order = pd.Index(entry["batches"]).get_indexer(pd.Index(np.asarray(batch_categories).astype(str)))
        if (order < 0).any():
            raise RemadomSetupError(f"The feature masks of {name!r} do not cover every batch of the registry.")
        out[name] = np.asarray(entry["measured"], dtype=bool)[order]
    return out


def feature_mask_frames(bank, modality_names, batch_categories, feature_names) -> dict[str, pd.DataFrame]:
    """The module's masks as ``{modality: DataFrame(batch x feature, bool)}``."""
    out = {}
    for name in modality_names:
        table = bank.batch_masks(name)
        if table is not None:
            out[name] = pd.DataFrame(
                table.cpu().numpy(), index=pd.Index(np.asarray(batch_categories).astype(str), name="batch"),
                columns=pd.Index(np.asarray(feature_names[name]).astype(str)),
            )
    return out


def fill_unmeasured(pred, batch_index, own_ok, table, decode, valid_codes):
    """Replace the predictions of features a cell's batch did not measure.

    Each such entry becomes the average, over the batches that measured the feature (and have the
    modality), of the prediction decoded with that batch. ``decode(code)`` returns predictions for
    all cells decoded as batch ``code``; ``own_ok`` says which cells' own batch has the modality.
    """
    import torch

    table = table.to(pred.device)
    need = ~table[batch_index.view(-1).long()] | ~own_ok.view(-1, 1)
    if not bool(need.any()):
        return pred
    acc = torch.zeros_like(pred)
    count = torch.zeros(pred.shape[1], device=pred.device, dtype=pred.dtype)
    wanted = need.any(0)
    for code in valid_codes:
        measured = table[int(code)]
        if not bool((measured & wanted).any()):
            continue
        acc = acc + decode(int(code)) * measured.to(pred.dtype)
        count = count + measured.to(pred.dtype)
    return torch.where(need, acc / count.clamp(min=1.0), pred)


def read_feature_mask_table(path) -> pd.DataFrame:
    """Read a feature mask from a ``.csv``/``.tsv``/``.parquet`` file: batches x features, bool.

    The batch names are the first column of a text table (or a parquet file's index, else its first
    column when that holds strings); the other columns are the features, ``True``/``False`` or 1/0.
    What :meth:`pandas.DataFrame.to_csv` / ``to_parquet`` write from a mask of
    :meth:`remadom.REMADOM.get_feature_masks` reads back unchanged.

    Parameters
    ----------
    path
        The table file.

    Returns
    -------
    pandas.DataFrame
        Batches (index, str) x features (columns, str); validated later, at setup.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise RemadomSetupError(f"The feature mask table {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        if isinstance(frame.index, pd.RangeIndex) and frame.shape[1] and frame.iloc[:, 0].dtype == object:
            frame = frame.set_index(frame.columns[0])
    elif suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", index_col=0)
    else:
        raise RemadomSetupError(f"Cannot read a feature mask from {path}: use a .csv, .tsv or .parquet table.")
    return _as_bool_frame(frame, f"the feature mask table {path}")


def data_states_feature_mask(data, modality: str, mod_key: str | None = None) -> bool:
    """Whether ``data`` states a feature mask for ``modality`` by the uns/varm convention.

    ``mod_key`` is the ``mdata.mod`` key of the modality in a MuData (default: its name).
    """
    if hasattr(data, "mod"):  # MuData: the modality's varm (setup_mudata reads no mdata.uns masks)
        key = mod_key or modality
        return key in data.mod and MEASURED_VARM_KEY in data.mod[key].varm
    return modality in (data.uns.get(FEATURE_MASKS_UNS_KEY, {}) or {}) or MEASURED_VARM_KEY in data.varm


def measured_statistics(spec, x_observed, batch_codes: np.ndarray, table: np.ndarray) -> dict:
    """Initialization statistics of a partly measured modality, over its measured entries only.

    The unmeasured zeros of a join are not data, so they must not pull a feature's open rate, mean
    share or percentile down (the statistics of :func:`remadom.model._setup.modality_statistics`).
    The cells are grouped by their batch's row of ``table``; each group's statistics are computed on
    the features it measured and combined per feature, weighted by the group's number of cells
    (exact for means such as the open rate; a cell-weighted average for the others, e.g.
    percentiles and the inverse document frequency, good enough for an initialization).
    Scalars (the Bernoulli reference depth) are cell-weighted averages. A head whose
    ``data_statistics`` takes ``measured_fraction`` gets each group's measured fraction of
    features, so its depth is on the full-feature scale the head's ``library`` uses.

    Parameters
    ----------
    spec
        The modality's :class:`~remadom.modalities.ModalitySpec`.
    x_observed
        ``(n_cells, n_features)`` data of the modality's observed cells (binarized for binary heads),
        or an iterable of row chunks of it, in order (read one at a time; see
        :func:`~remadom.model._setup.modality_statistics`).
    batch_codes
        Batch code of each of those cells.
    table
        ``(n_batch, n_features)`` bool, the modality's feature mask.

    Returns
    -------
    dict
        ``{"head": ..., "encoder": ...}`` as :func:`~remadom.model._setup.modality_statistics`.
    """
    import inspect

    from ..nn.likelihoods._statistics import statistics_accumulator
    from ..nn.networks import encoder_input_accumulator

    table = np.asarray(table, dtype=bool)
    n_features = table.shape[1]
    head_takes_fraction = "measured_fraction" in inspect.signature(spec.head.data_statistics).parameters
    codes = np.asarray(batch_codes).astype(int)
    patterns = np.unique(table[codes], axis=0)
    groups = []  # per measured-feature pattern: its features and accumulators
    for pattern in patterns:
        cols = np.flatnonzero(pattern)
        kwargs = {"measured_fraction": len(cols) / n_features} if head_takes_fraction else {}
        groups.append((pattern, cols, statistics_accumulator(spec.head, **kwargs),
                       encoder_input_accumulator(spec.resolved_encoder_input, len(cols)), [0]))
    chunks = [x_observed] if hasattr(x_observed, "shape") else x_observed
    offset = 0
    for chunk in chunks:
        chunk_codes = codes[offset:offset + chunk.shape[0]]
        offset += chunk.shape[0]
        for pattern, cols, head, encoder, n_rows in groups:
            rows = np.flatnonzero((table[chunk_codes] == pattern).all(1))
            if not len(rows) or not len(cols):
                continue
            sub = chunk[rows][:, cols]
            head.update(sub)
            encoder.update(sub)
            n_rows[0] += len(rows)
    if offset != len(codes):
        raise ValueError(f"The chunks hold {offset} cells but {len(codes)} batch codes were given.")
    sums: dict[str, dict] = {"head": {}, "encoder": {}}
    weights: dict[str, dict] = {"head": {}, "encoder": {}}
    for _, cols, head, encoder, (n_rows,) in groups:
        if not n_rows:
            continue
        parts = {"head": head.result(), "encoder": encoder.result()}
        for part, values in parts.items():
            for key, value in values.items():
                value = np.asarray(value, dtype=np.float64)
                if value.ndim == 0:
                    sums[part][key] = sums[part].get(key, 0.0) + n_rows * value
                    weights[part][key] = weights[part].get(key, 0.0) + n_rows
                    continue
                acc = sums[part].setdefault(key, np.zeros(n_features))
                wts = weights[part].setdefault(key, np.zeros(n_features))
                acc[cols] += n_rows * value
                wts[cols] += n_rows
    out: dict[str, dict] = {"head": {}, "encoder": {}}
    for part in out:
        for key, acc in sums[part].items():
            wts = weights[part][key]
            if np.ndim(acc) == 0:
                out[part][key] = float(acc / wts)
                continue
            value = np.divide(acc, wts, out=np.zeros_like(acc), where=wts > 0)
            if (wts == 0).any():  # features no subsampled cell measured: the mean of the others
                value[wts == 0] = value[wts > 0].mean() if (wts > 0).any() else 0.0
            out[part][key] = value.astype(np.float32)
    return out
