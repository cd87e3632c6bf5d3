"""Optional preprocessing hooks for mosaic AnnData (RNA in a layer, ATAC/ADT in ``obsm``).

REMADOM itself trains on raw counts; these helpers produce the usual derived views
(log-normalized RNA, highly variable genes, ATAC TF-IDF/LSI, ADT CLR) for baselines,
plots and feature selection. Each writes only the keys it documents, never touches
raw counts, computes statistics over *observed* cells only (the ``has_<modality>``
mask, when present) and leaves hidden cells at zero. Like scanpy, ``copy=False``
writes into ``adata`` and returns ``None``; ``copy=True`` returns a modified copy.

Backends: scanpy (normalization, log1p, HVG), scikit-learn (``TruncatedSVD`` for LSI),
numpy/scipy (TF-IDF, CLR; the CLR formula is muon's ``prot.pp.clr``; not muon's own
functions: muon is not a dependency, and these take their statistics over the observed
cells only, which muon's ``atac.pp.tfidf`` / ``prot.pp.clr`` cannot be told). A missing
optional backend (e.g. ``scikit-misc`` for ``flavor="seurat_v3"``) gives a warning and
a fallback or a no-op, never an import error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["normalize_rna", "highly_variable_genes", "tfidf", "lsi", "clr"]


def _observed(adata: AnnData, mask_key: str | None) -> np.ndarray:
    """Rows where the modality was measured (all rows without a mask column)."""
    if mask_key is not None and mask_key in adata.obs:
        from ..model._validation import mask_from_obs

        return mask_from_obs(adata.obs, mask_key, mask_key)
    return np.ones(adata.n_obs, dtype=bool)


def _rna_counts(adata: AnnData, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} is not in adata.layers (available: {list(adata.layers)}).")
    return adata.layers[layer]


def _obsm(adata: AnnData, key: str):
    if key not in adata.obsm:
        raise KeyError(f"obsm key {key!r} is not in adata.obsm (available: {list(adata.obsm)}).")
    return adata.obsm[key]


def normalize_rna(
    adata: AnnData,
    *,
    layer: str | None = "counts",
    target_sum: float = 1e4,
    log1p: bool = True,
    key_added: str = "lognorm",
    copy: bool = False,
) -> AnnData | None:
    """Library-size normalize (and log1p) RNA counts into a new layer.

    Uses :func:`scanpy.pp.normalize_total` (``inplace=False``) and :func:`numpy.log1p`
    on the stored values. Cells without RNA (all-zero rows) stay zero.

    Parameters
    ----------
    adata
        AnnData with raw counts.
    layer
        Layer holding raw counts (``None``: ``X``). Left unchanged.
    target_sum
        Total counts per cell after normalization.
    log1p
        Apply ``log1p`` after normalizing.
    key_added
        Writes ``adata.layers[key_added]``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    counts = _rna_counts(adata, layer)
    tmp = AnnData(X=counts.copy(), obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zero.*", category=UserWarning)
        norm = sc.pp.normalize_total(tmp, target_sum=target_sum, inplace=False)["X"]
    if log1p:
        if sp.issparse(norm):
            norm = norm.tocsr(copy=True)
            np.log1p(norm.data, out=norm.data)
        else:
            norm = np.log1p(norm)
    adata.layers[key_added] = norm
    return adata if copy else None


def highly_variable_genes(
    adata: AnnData,
    n_top_genes: int = 2000,
    *,
    layer: str | None = "counts",
    flavor: str = "seurat_v3",
    batch_key: str | None = None,
    mask_key: str | None = "has_rna",
    copy: bool = False,
) -> AnnData | None:
    """Select highly variable genes from the cells that have RNA.

    Uses :func:`scanpy.pp.highly_variable_genes`. ``flavor="seurat_v3"`` works on raw
    counts and needs ``scikit-misc``; without it, a warning is given and the ``seurat``
    flavor is run on log-normalized counts instead.

    Parameters
    ----------
    adata
        AnnData with raw counts.
    n_top_genes
        Number of genes to flag (capped at the number of genes).
    layer
        Layer holding raw counts (``None``: ``X``).
    flavor
        scanpy flavor.
    batch_key
        Optional ``obs`` column for batch-aware selection.
    mask_key
        ``obs`` column of the RNA mask; cells without RNA are left out.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``. Writes ``adata.var["highly_variable"]``
    (bool) and scanpy's per-gene statistics (``means``, ``variances``/``dispersions``,
    ``highly_variable_rank`` depending on the flavor), all in ``var``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    rows = _observed(adata, mask_key)
    counts = _rna_counts(adata, layer)[rows]
    obs = adata.obs.loc[rows, [batch_key]] if batch_key is not None else pd.DataFrame(index=adata.obs_names[rows])
    tmp = AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=adata.var_names))
    if flavor == "seurat_v3":
        try:
            import skmisc  # noqa: F401
        except ImportError:
            warnings.warn(
                "flavor='seurat_v3' needs scikit-misc (pip install scikit-misc); falling back to "
                "flavor='seurat' on log-normalized counts.",
                stacklevel=2,
            )
            flavor = "seurat"
    if flavor != "seurat_v3":
        sc.pp.normalize_total(tmp, target_sum=1e4)
        sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(
        tmp, n_top_genes=min(n_top_genes, adata.n_vars), flavor=flavor, batch_key=batch_key, subset=False
    )
    for col in tmp.var.columns:
        adata.var[col] = tmp.var[col].to_numpy()
    return adata if copy else None


def _tfidf_matrix(x, rows: np.ndarray, scale_factor: float, log_tf: bool):
    """TF-IDF of a cells x peaks matrix; IDF from ``rows``; sparse stays sparse."""
    x = sp.csr_matrix(x, dtype=np.float32)
    n_obs = max(int(rows.sum()), 1)
    open_cells = np.asarray((x[rows] > 0).sum(axis=0)).ravel()
    idf = (n_obs / (1.0 + open_cells)).astype(np.float32)
    depth = np.asarray(x.sum(axis=1)).ravel()
    inv_depth = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0).astype(np.float32)
    tf = sp.diags(inv_depth) @ x
    if log_tf:
        tf = tf.tocsr()
        tf.data = np.log1p(tf.data * scale_factor)
        out = tf @ sp.diags(np.log1p(idf))
    else:
        out = tf @ sp.diags(idf)
        out.data = np.log1p(out.data * scale_factor)
    return sp.csr_matrix(out, dtype=np.float32)


def tfidf(
    adata: AnnData,
    *,
    obsm_key: str = "X_atac",
    key_added: str = "X_atac_tfidf",
    mask_key: str | None = "has_atac",
    scale_factor: float = 1e4,
    log_tf: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """TF-IDF transform of ATAC peaks (sparse in, sparse out; nothing is densified).

    Default: ``log1p(tf * idf * scale_factor)`` with ``tf = x / cell depth`` and
    ``idf = n_observed_cells / (1 + cells with the peak open)`` (Signac/muon
    ``tfidf`` method 1). ``log_tf=True`` gives ``log1p(tf * scale_factor) * log1p(idf)``.
    Cells without ATAC stay zero.

    Parameters
    ----------
    adata
        AnnData with peaks in ``obsm[obsm_key]``.
    obsm_key
        Input peaks (cells x peaks, sparse or dense). Left unchanged.
    key_added
        Writes ``adata.obsm[key_added]`` (CSR float32).
    mask_key
        ``obs`` column of the ATAC mask; the IDF uses observed cells only.
    scale_factor
        Multiplier before the log.
    log_tf
        Log the term frequencies instead of the product.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.
    """
    adata = adata.copy() if copy else adata
    x = _obsm(adata, obsm_key)
    adata.obsm[key_added] = _tfidf_matrix(x, _observed(adata, mask_key), scale_factor, log_tf)
    return adata if copy else None


def lsi(
    adata: AnnData,
    n_components: int = 50,
    *,
    obsm_key: str = "X_atac",
    key_added: str = "X_lsi",
    mask_key: str | None = "has_atac",
    use_tfidf: bool = True,
    drop_first: bool = True,
    seed: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Latent semantic indexing of ATAC: TF-IDF, then truncated SVD on the sparse matrix.

    Uses :class:`sklearn.decomposition.TruncatedSVD` (randomized) fitted on the observed
    cells only; the sparse matrix is never densified. Without scikit-learn this warns
    and does nothing.

    Parameters
    ----------
    adata
        AnnData with peaks in ``obsm[obsm_key]``.
    n_components
        Components to keep (after dropping the first one if ``drop_first``).
    obsm_key
        Input peaks. Left unchanged.
    key_added
        Writes ``adata.obsm[key_added]`` (float32, cells x components; zero rows for
        cells without ATAC) and ``adata.uns[key_added]`` with
        ``explained_variance_ratio`` and ``components`` (components x peaks).
    mask_key
        ``obs`` column of the ATAC mask.
    use_tfidf
        Apply :func:`tfidf` first (otherwise the SVD sees the input as is).
    drop_first
        Drop the first component, which mostly tracks sequencing depth.
    seed
        ``random_state`` of the SVD.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.
    """
    try:
        from sklearn.decomposition import TruncatedSVD
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        warnings.warn("lsi needs scikit-learn (pip install scikit-learn); nothing was computed.", stacklevel=2)
        return adata.copy() if copy else None
    adata = adata.copy() if copy else adata
    rows = _observed(adata, mask_key)
    x = _obsm(adata, obsm_key)
    x = _tfidf_matrix(x, rows, 1e4, False) if use_tfidf else sp.csr_matrix(x, dtype=np.float32)
    n_fit = n_components + int(drop_first)
    max_rank = min(int(rows.sum()), x.shape[1]) - 1
    if n_fit > max_rank:
        raise ValueError(
            f"n_components={n_components} is too large for {int(rows.sum())} observed cells x "
            f"{x.shape[1]} peaks; use at most {max_rank - int(drop_first)}."
        )
    svd = TruncatedSVD(n_components=n_fit, random_state=seed)
    svd.fit(x[rows])
    start = int(drop_first)
    emb = np.zeros((adata.n_obs, n_components), dtype=np.float32)
    emb[rows] = svd.transform(x[rows])[:, start:]
    adata.obsm[key_added] = emb
    adata.uns[key_added] = {
        "explained_variance_ratio": svd.explained_variance_ratio_[start:],
        "components": svd.components_[start:].astype(np.float32),
    }
    return adata if copy else None


def clr(
    adata: AnnData,
    *,
    obsm_key: str = "X_adt",
    key_added: str = "X_adt_clr",
    axis: int = 1,
    mask_key: str | None = "has_adt",
    copy: bool = False,
) -> AnnData | None:
    """Centered log-ratio transform of ADT counts: ``log1p(x / exp(mean(log1p(x))))``.

    Same formula as muon's ``mu.prot.pp.clr`` (computed here with numpy, so muon is not
    needed). ``axis=1`` normalizes each cell across its proteins (Seurat ``margin=2``
    style); ``axis=0`` each protein across the observed cells (muon's default).

    Parameters
    ----------
    adata
        AnnData with protein counts in ``obsm[obsm_key]`` (array, sparse or DataFrame).
    obsm_key
        Input counts. Left unchanged.
    key_added
        Writes ``adata.obsm[key_added]``: float32 array, or a DataFrame with the same
        columns if the input is one. Cells without ADT stay zero.
    axis
        ``1``: per cell; ``0``: per protein.
    mask_key
        ``obs`` column of the ADT mask; with ``axis=0`` only observed cells enter the mean.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.
    """
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (per protein) or 1 (per cell), got {axis}.")
    adata = adata.copy() if copy else adata
    raw = _obsm(adata, obsm_key)
    x = raw.to_numpy() if isinstance(raw, pd.DataFrame) else (raw.toarray() if sp.issparse(raw) else raw)
    x = np.asarray(x, dtype=np.float64)
    rows = _observed(adata, mask_key)
    out = np.zeros_like(x, dtype=np.float32)
    obs_x = x[rows]
    geo = np.exp(np.log1p(obs_x).mean(axis=axis, keepdims=True))
    out[rows] = np.log1p(obs_x / geo)
    if isinstance(raw, pd.DataFrame):
        out = pd.DataFrame(out, index=raw.index, columns=raw.columns)
    adata.obsm[key_added] = out
    return adata if copy else None
