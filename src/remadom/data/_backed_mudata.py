"""A mosaic ``.h5mu`` larger than RAM -> REMADOM's padded layout in an ``.h5ad``, chunk by chunk.

``REMADOM.setup_mudata`` registers a MuData through a padded in-memory AnnData
(:func:`remadom.model._mudata.mudata_to_mosaic_anndata`): rows ``mdata.obs_names``, the first
modality in ``X``, the others in ``obsm["X_<modality>"]`` with their feature names in
``uns["<modality>_names"]``, a ``has_<modality>`` mask in ``obs``, the per-batch feature masks
of ``varm["remadom_measured"]`` in ``uns["remadom_feature_masks"]``, and empty rows for the
cells a modality lacks. :func:`mudata_to_backed_h5ad` writes that same AnnData to disk without
reading any modality whole, so the out-of-core path (:func:`remadom.data.read_h5ad_backed`,
scvi-tools' own data loader over anndata's on-disk CSR matrices) trains on a MuData too.

How it stays bounded
--------------------
* The layout (``obs``, masks, names, feature masks, which modality row goes to which padded
  row) comes from the *same code* as ``setup_mudata`` (:func:`~remadom.model._mudata.mosaic_layout`),
  run on a skeleton MuData built from the file's ``obs`` / ``var`` / ``varm`` only, whose
  matrices are empty sparse placeholders (a row pointer each). So the layout is the in-memory
  one by construction, including mudata's own rules for the global ``obs``.
* The values are streamed: ``chunk_size`` padded rows at a time, the modality rows they need
  are read from the ``.h5mu`` (sorted, one HDF5 read per CSR array, :func:`remadom._row_reads.read_rows`;
  dense matrices by a row selection), placed as ``setup_mudata`` places them
  (:func:`~remadom.model._mudata._pad_rows`: float32, a cell absent from a modality costs one
  row-pointer entry) and appended to anndata-encoded CSR groups (dense stays dense). Peak
  memory is one chunk's rows of each modality plus per-cell vectors (``obs``, row maps, row
  pointers); modality rows in another order than ``mdata.obs_names`` only make the reads less
  sequential.

The source file is opened read-only and never written; the output is written to a temporary
name and renamed at the end, so a failed conversion leaves no partial file.

Why a conversion and not ``setup_mudata(backed_mdata)``: scvi-tools' ``setup_*`` methods register
the object they are given and write no files; this one writes a file as large as the data and
takes minutes at atlas size, so it is an explicit, one-off step whose output is reused by every
later run (``setup_mudata`` on a backed MuData stops with an error naming this function).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from anndata.io import read_elem, write_elem

from .._row_reads import read_rows
from ..model._feature_masks import MEASURED_VARM_KEY
from ..model._mudata import MosaicLayout, _pad_rows
from ..model._validation import RemadomSetupError
from ._scale import _CSRAppender

__all__ = ["SETUP_UNS_KEY", "mudata_to_backed_h5ad", "stored_setup_kwargs"]

#: ``uns`` key of the converted file holding the ``setup_anndata`` keyword arguments (JSON).
SETUP_UNS_KEY = "remadom_setup_anndata"


def _encoding(elem) -> str | None:
    value = elem.attrs.get("encoding-type")
    return value.decode() if isinstance(value, bytes) else value


def _mod_order(group: h5py.Group) -> list[str]:
    """``mdata.mod`` keys in mudata's order (the ``mod-order`` attribute when it names them all)."""
    keys = list(group.keys())
    order = group.attrs.get("mod-order")
    if order is not None:
        order = [o.decode() if isinstance(o, bytes) else str(o) for o in np.atleast_1d(order)]
        if all(m in group for m in order):
            return order
    return keys


def _skeleton_mudata(f: h5py.File):
    """The file's MuData with its ``obs``, ``var`` and feature masks, and empty placeholder matrices.

    Built as :func:`mudata.read_h5mu` builds it (``MuData(mods, obs=..., var=..., obsmap=...,
    varmap=..., axis=...)``), so ``obs_names`` and ``obs`` are what an in-memory read would give.
    """
    import mudata as md

    mods = {}
    for key in _mod_order(f["mod"]):
        g = f["mod"][key]
        obs, var = read_elem(g["obs"]), read_elem(g["var"])
        empty = sp.csr_matrix((len(obs), len(var)), dtype=np.float32)  # a row pointer, no values
        layers = {k: empty for k in g["layers"]} if "layers" in g else {}
        varm = {}
        if "varm" in g and MEASURED_VARM_KEY in g["varm"]:
            varm[MEASURED_VARM_KEY] = read_elem(g["varm"][MEASURED_VARM_KEY])
        mods[key] = AnnData(X=empty if "X" in g else None, obs=obs, var=var, layers=layers, varm=varm)
    kwargs = {k: read_elem(f[k]) for k in ("obs", "var", "obsmap", "varmap") if k in f}
    if "axis" in f.attrs:
        kwargs["axis"] = int(f.attrs["axis"])
    return md.MuData(mods, **kwargs)


class _RowSource:
    """Reads sorted rows of one modality matrix of the ``.h5mu`` (CSR group or dense dataset)."""

    def __init__(self, group: h5py.Group, name: str, mod: str, layer: str | None):
        where = f"mdata.mod[{mod!r}]." + ("X" if layer is None else f"layers[{layer!r}]")
        if layer is None and "X" not in group:
            raise RemadomSetupError(f"Modality {name!r}: {where} is not in the file; pass the layer with the counts.")
        elem = group["X"] if layer is None else group["layers"][layer]
        self.where, self.elem = where, elem
        encoding = _encoding(elem)
        if isinstance(elem, h5py.Group) and encoding == "csr_matrix":
            self.sparse = True
            self.n_cols = int(elem.attrs["shape"][1])
            self.indptr = elem["indptr"][...].astype(np.int64)  # 8 bytes per cell
        elif isinstance(elem, h5py.Group) and encoding == "csc_matrix":
            raise RemadomSetupError(
                f"{where} (modality {name!r}) is a CSC matrix on disk; reading it by cells would read it "
                "whole for every chunk. Store it as CSR (rows are cells), e.g. write the modality with "
                "adata.X = adata.X.tocsr() where it fits in memory, then convert again."
            )
        elif isinstance(elem, h5py.Dataset) and elem.ndim == 2:
            self.sparse = False
            self.n_cols = int(elem.shape[1])
        else:
            raise RemadomSetupError(
                f"{where} (modality {name!r}) is stored as {encoding or type(elem).__name__}; the converter "
                "reads CSR sparse matrices and dense arrays."
            )

    def read(self, rows: np.ndarray):
        """Rows ``rows`` (increasing, unique) as a scipy CSR matrix or a numpy array."""
        if self.sparse:
            return read_rows(self.elem, self.indptr, rows, self.n_cols)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # one contiguous block
            return self.elem[int(rows[0]):int(rows[-1]) + 1]
        return self.elem[rows] if len(rows) else np.zeros((0, self.n_cols), dtype=self.elem.dtype)


class _DenseSink:
    """A dense anndata ``array`` element written row block by row block (contiguous: fast random rows)."""

    def __init__(self, parent: h5py.Group, key: str, shape: tuple[int, int]):
        self.ds = parent.create_dataset(key, shape=shape, dtype=np.float32)
        self.ds.attrs["encoding-type"], self.ds.attrs["encoding-version"] = "array", "0.2.0"
        self.n_rows = 0

    def append(self, block: np.ndarray) -> None:
        self.ds[self.n_rows:self.n_rows + len(block)] = block
        self.n_rows += len(block)

    def close(self) -> None:
        pass


def _chunk_rows(slot_rows: np.ndarray, n_obs: int) -> np.ndarray:
    """For each padded row, its row in the modality (-1: the cell lacks the modality)."""
    source = np.full(n_obs, -1, dtype=np.int64)
    ok = slot_rows >= 0
    source[slot_rows[ok]] = np.flatnonzero(ok)
    return source


def _write_values(f_in: h5py.File, f_out: h5py.File, layout: MosaicLayout, chunk_size: int) -> None:
    """Stream every modality of ``layout`` from ``f_in`` to ``X`` / ``obsm`` of ``f_out``."""
    plans = []
    for name, slot in layout.slots.items():
        source = _RowSource(f_in["mod"][slot.mod], name, slot.mod, slot.layer)
        parent, key = (f_out, "X") if slot.obsm_key is None else (f_out["obsm"], slot.obsm_key)
        if source.sparse:
            sink = _CSRAppender(parent.create_group(key), source.n_cols)
        else:
            sink = _DenseSink(parent, key, (layout.n_obs, source.n_cols))
        plans.append((source, sink, _chunk_rows(slot.rows, layout.n_obs)))
    for start in range(0, layout.n_obs, chunk_size):
        stop = min(start + chunk_size, layout.n_obs)
        for source, sink, rows_in_mod in plans:
            wanted = rows_in_mod[start:stop]
            have = np.flatnonzero(wanted >= 0)
            order = np.argsort(wanted[have], kind="stable")
            block = source.read(wanted[have][order])  # sorted, as HDF5 wants
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            block = block[inverse] if len(order) else block  # back to the padded rows' order
            sink.append(_pad_rows(block, have, stop - start))  # setup_mudata's placement and dtype
    for _, sink, _ in plans:
        sink.close()


def _source_path(h5mu) -> Path:
    if hasattr(h5mu, "mod") and not isinstance(h5mu, str | os.PathLike):
        filename = getattr(h5mu, "filename", None)
        if not getattr(h5mu, "isbacked", False) or filename is None:
            raise RemadomSetupError(
                "mudata_to_backed_h5ad reads an .h5mu file: pass its path (or a MuData opened with "
                "mudata.read_h5mu(path, backed=True)). An in-memory MuData needs no conversion: "
                "REMADOM.setup_mudata(mdata, ...)."
            )
        return Path(filename)
    path = Path(h5mu)
    if not path.is_file():
        raise FileNotFoundError(f"No .h5mu file at {str(path)!r}.")
    return path


def mudata_to_backed_h5ad(
    h5mu,
    out: str | Path,
    modalities: dict[str, str | dict] | None = None,
    *,
    rna_layer: str | None = None,
    layers: dict[str, str | None] | None = None,
    kinds: dict[str, str] | None = None,
    mask_keys: dict[str, str] | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
    categorical_covariate_keys: list[str] | None = None,
    continuous_covariate_keys: list[str] | None = None,
    drop_cells_without_modalities: bool = False,
    chunk_size: int = 10_000,
    overwrite: bool = False,
) -> dict:
    """Write the padded AnnData ``setup_mudata`` would build for an ``.h5mu`` to ``out``, chunk by chunk.

    For a mosaic MuData larger than RAM: the result opens with
    :func:`~remadom.data.read_h5ad_backed` (every matrix on disk) and trains out of core with
    ``REMADOM.setup_anndata(adata, **setup)``, where ``setup`` is what this function returns.
    The file holds exactly the in-memory view of ``setup_mudata`` with the same arguments: rows
    ``mdata.obs_names``, the first modality in ``X``, the others in ``obsm["X_<modality>"]``
    (names in ``uns["<modality>_names"]``), ``obs["has_<modality>"]``, per-batch feature masks
    from ``varm["remadom_measured"]``; sparse matrices are CSR (a cell absent from a modality is
    an empty row), dense ones dense, all float32. No modality is read whole: at most
    ``chunk_size`` rows of each at a time (see :mod:`remadom.data._backed_mudata`). The
    ``.h5mu`` is only read.

    Parameters
    ----------
    h5mu
        Path of the ``.h5mu`` file, or a MuData opened from it with ``mudata.read_h5mu(path, backed=True)``.
        Its modality matrices must be CSR sparse or dense (not CSC) on disk.
    out
        The ``.h5ad`` to write.
    modalities, rna_layer, layers, kinds, mask_keys, batch_key, labels_key, categorical_covariate_keys, continuous_covariate_keys, drop_cells_without_modalities
        As in :meth:`remadom.REMADOM.setup_mudata`, with the same defaults and checks. Per-cell
        feature masks (``setup_mudata(feature_masks={"adt": "<obsm key>"})``) are not converted.
    chunk_size
        Padded rows (cells) read and written at a time; memory grows with it.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    The keyword arguments of :meth:`remadom.REMADOM.setup_anndata` that register the file as
    ``setup_mudata`` registers the MuData (``modalities``, ``batch_key``, ...). They are also
    stored in the file (:func:`stored_setup_kwargs` reads them back).

    Examples
    --------
    >>> setup = remadom.data.mudata_to_backed_h5ad("atlas.h5mu", "atlas_padded.h5ad", batch_key="batch")
    >>> adata = remadom.data.read_h5ad_backed("atlas_padded.h5ad")
    >>> remadom.REMADOM.setup_anndata(adata, **setup)
    """
    from ..model._checks import check_mudata_args
    from ..model._mudata_setup import MuDataSetupMixin

    source, out = _source_path(h5mu), Path(out)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (rows per chunk), got {chunk_size!r}.")
    if out.exists() and out.resolve() == source.resolve():
        raise ValueError(f"out={str(out)!r} is the .h5mu being converted; write the padded file elsewhere.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} exists; pass overwrite=True to replace it.")
    mudata_setup = {
        "modalities": modalities, "rna_layer": rna_layer, "layers": layers, "kinds": kinds,
        "mask_keys": mask_keys, "batch_key": batch_key, "labels_key": labels_key,
        "categorical_covariate_keys": categorical_covariate_keys,
        "continuous_covariate_keys": continuous_covariate_keys,
        "drop_cells_without_modalities": drop_cells_without_modalities,
    }
    covariates = {k: mudata_setup[k] for k in ("batch_key", "labels_key", "categorical_covariate_keys",
                                                 "continuous_covariate_keys")}
    partial = out.with_name(out.name + ".partial")
    try:
        with h5py.File(source, "r") as f_in:
            if "mod" not in f_in:
                raise RemadomSetupError(
                    f"{str(source)!r} has no 'mod' group, so it is not a MuData .h5mu file. For an .h5ad "
                    "with the modalities in X / obsm use remadom.data.read_h5ad_backed directly."
                )
            skeleton = _skeleton_mudata(f_in)
            check_mudata_args(skeleton, modalities, rna_layer, layers, batch_key, labels_key, mask_keys,
                              categorical_covariate_keys, continuous_covariate_keys)
            layout, _ = MuDataSetupMixin._mudata_layout(skeleton, mudata_setup)
            del skeleton
            setup = {"modalities": layout.registered, **covariates}
            with h5py.File(partial, "w") as f_out:
                f_out.attrs["encoding-type"], f_out.attrs["encoding-version"] = "anndata", "0.1.0"
                for key in ("obsm", "layers", "obsp", "varm", "varp"):
                    write_elem(f_out, key, {})
                _write_values(f_in, f_out, layout, int(chunk_size))
                write_elem(f_out, "obs", layout.obs)
                write_elem(f_out, "var", layout.var)
                write_elem(f_out, "uns", {**layout.uns, SETUP_UNS_KEY: json.dumps(setup)})
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return setup


def stored_setup_kwargs(adata: AnnData) -> dict:
    """The ``setup_anndata`` keyword arguments :func:`mudata_to_backed_h5ad` stored in its file.

    Parameters
    ----------
    adata
        The converted file, e.g. ``read_h5ad_backed(path)``.

    Examples
    --------
    >>> adata = remadom.data.read_h5ad_backed("atlas_padded.h5ad")
    >>> remadom.REMADOM.setup_anndata(adata, **remadom.data.stored_setup_kwargs(adata))
    """
    if SETUP_UNS_KEY not in adata.uns:
        raise RemadomSetupError(
            f"adata.uns has no {SETUP_UNS_KEY!r}: this AnnData was not written by "
            "remadom.data.mudata_to_backed_h5ad. Register it with REMADOM.setup_anndata(adata, ...) directly."
        )
    return json.loads(adata.uns[SETUP_UNS_KEY])
