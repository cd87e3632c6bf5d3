"""Loaders for small real multi-omic subsets (MuData ``.h5mu``), like ``scvi.data``.

Every loader returns an unpadded MuData: modalities ``rna``, ``atac`` and/or ``adt``
with raw counts (float32 CSR) in ``X``; a cell lacking a modality is absent from it;
``mdata.obs`` has ``batch`` and ``cell_type`` (the PBMC CITE mosaic file's ``celltype``
is copied to ``cell_type`` too).

Where the file is read from, in order: ``path=`` (a local file or its folder; an error if
it is not there), ``$REMADOM_DATA_DIR``, ``../shared/data`` beside the current directory,
then the copy shipped with the package (the PBMC mosaic, 2.8 MB) or a checksum-verified
download cached by :func:`remadom.datasets.fetch_file` (the others).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_DIR_ENV",
    "FILES",
    "resolve_data_file",
    "load_pbmc_cite_mosaic",
    "load_bmmc_cite",
    "load_bmmc_multiome",
    "load_mouse_cortex_snareseq",
    "load_pbmc_reapseq",
]

#: Environment variable naming the real-data folder.
DATA_DIR_ENV = "REMADOM_DATA_DIR"

#: Loader name -> file name.
FILES = {
    "pbmc_cite_mosaic": "pbmc_cite_mosaic_hao2021.h5mu",
    "bmmc_cite": "bmmc_cite_neurips2021_starter.h5mu",
    "bmmc_multiome": "bmmc_multiome_neurips2021_starter.h5mu",
    "mouse_cortex_snareseq": "mouse_cortex_snareseq_chen2019.h5mu",
    "pbmc_reapseq": "pbmc_reapseq_peterson2017.h5mu",
}


def resolve_data_file(filename: str, path: str | os.PathLike | None = None) -> Path:
    """Find a data file.

    Looks, in order, at ``path`` (the file itself, or a folder holding ``filename``),
    ``$REMADOM_DATA_DIR/filename`` and ``../shared/data/filename`` relative to the
    current directory.

    Raises
    ------
    FileNotFoundError
        Naming every place that was tried.
    """
    candidates = []
    if path is not None:
        path = Path(path).expanduser()
        candidates.append(path / filename if path.is_dir() else path)
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]).expanduser() / filename)
    candidates.append(Path.cwd().parent / "shared" / "data" / filename)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = "\n".join(f"  - {c}" for c in candidates)
    raise FileNotFoundError(
        f"Could not find {filename!r}. Tried:\n{tried}\n"
        f"Pass path= (the file or its folder), or set ${DATA_DIR_ENV} to the folder holding it."
    )


#: Files shipped inside the package (``remadom/datasets/data``).
PACKAGED = {"pbmc_cite_mosaic"}


def _locate(key: str, path) -> Path:
    if path is not None:
        return resolve_data_file(FILES[key], path)
    try:
        return resolve_data_file(FILES[key])
    except FileNotFoundError:
        pass
    if key in PACKAGED:
        from importlib import resources

        packaged = Path(str(resources.files("remadom.datasets").joinpath("data", FILES[key])))
        if packaged.is_file():
            return packaged
    from ._fetch import fetch_file

    return fetch_file(key)


def _read(key: str, path):
    import mudata as md

    mdata = md.read_h5mu(_locate(key, path))
    if "cell_type" not in mdata.obs and "celltype" in mdata.obs:
        mdata.obs["cell_type"] = mdata.obs["celltype"]
    return mdata


def load_pbmc_cite_mosaic(path: str | os.PathLike | None = None):
    """PBMC CITE-seq, native RNA+ADT mosaic (1,600 cells, 500 genes, 224 ADT).

    Batches (donors): ``p1_0`` RNA only, ``p2_0`` ADT only, ``p3_0`` and ``p4_0`` paired
    (400 cells each). Labels: ``obs["celltype"]`` (8 Azimuth level-1 types), copied to
    ``obs["cell_type"]``.

    Provenance: quick-start file shipped in the ``scmidas`` 0.3.0 wheel on PyPI (MIT);
    subset of the Seurat v4 PBMC CITE-seq atlas, Hao et al. 2021, *Cell*, GEO GSE164378.

    Parameters
    ----------
    path
        The ``.h5mu`` file or its folder; default ``$REMADOM_DATA_DIR``, then
        ``../shared/data``, then the copy shipped with the package (no download).

    Returns
    -------
    MuData with modalities ``rna`` (1,200 x 500) and ``adt`` (1,200 x 224).
    """
    return _read("pbmc_cite_mosaic", path)


def load_bmmc_cite(path: str | os.PathLike | None = None):
    """NeurIPS 2021 bone marrow CITE-seq starter subset, paired RNA+ADT (600 cells).

    1,000 genes, 134 ADT; ``obs["cell_type"]`` (41 types), ``obs["batch"]`` (``s1d1``,
    ``s1d2``). Same donors and sites as :func:`load_bmmc_multiome`; the two share 100
    genes and no cells.

    Provenance: openproblems-bio/neurips2021_multimodal_viash,
    ``resources_test/common/openproblems_bmmc_cite_starter`` (MIT); NeurIPS 2021
    multimodal single-cell integration challenge, Luecken et al., GEO GSE194122.

    Parameters
    ----------
    path
        The ``.h5mu`` file or its folder; default ``$REMADOM_DATA_DIR``, then
        ``../shared/data``, then a download cached by :func:`~remadom.datasets.fetch_file`
        (needs ``$REMADOM_DATA_URL``: this subset has no public URL yet).

    Returns
    -------
    MuData with modalities ``rna`` (600 x 1,000) and ``adt`` (600 x 134).
    """
    return _read("bmmc_cite", path)


def load_bmmc_multiome(path: str | os.PathLike | None = None):
    """NeurIPS 2021 bone marrow Multiome starter subset, paired RNA+ATAC (500 cells).

    600 genes, 600 peaks; ``obs["cell_type"]`` (21 types), ``obs["batch"]`` (2 batches).

    Provenance: openproblems-bio/neurips2021_multimodal_viash,
    ``resources_test/common/openproblems_bmmc_multiome_starter`` (MIT); NeurIPS 2021
    multimodal single-cell integration challenge, GEO GSE194122.

    Parameters
    ----------
    path
        The ``.h5mu`` file or its folder; default ``$REMADOM_DATA_DIR``, then
        ``../shared/data``, then a download cached by :func:`~remadom.datasets.fetch_file`
        (needs ``$REMADOM_DATA_URL``: this subset has no public URL yet).

    Returns
    -------
    MuData with modalities ``rna`` (500 x 600) and ``atac`` (500 x 600).
    """
    return _read("bmmc_multiome", path)


def load_mouse_cortex_snareseq(path: str | os.PathLike | None = None):
    """Adult mouse cortex SNARE-seq, paired RNA+ATAC (10,309 cells).

    1,677 genes, 25,734 sparse peaks; ``obs["cell_type"]`` (23), ``obs["cell_type_coarse"]``
    (15), ``obs["batch"]`` (12 libraries). The largest file: use it for ATAC speed and
    memory checks.

    Provenance: PeterZZQ/scMoMaT ``data/real/MOp_5batches`` (MIT); Chen, Lake & Zhang
    2019, *Nat. Biotechnol.*, GEO GSE126074.

    Parameters
    ----------
    path
        The ``.h5mu`` file or its folder; default ``$REMADOM_DATA_DIR``, then
        ``../shared/data``, then a download cached by :func:`~remadom.datasets.fetch_file`
        (needs ``$REMADOM_DATA_URL``: this subset has no public URL yet).

    Returns
    -------
    MuData with modalities ``rna`` (10,309 x 1,677) and ``atac`` (10,309 x 25,734).
    """
    return _read("mouse_cortex_snareseq", path)


def load_pbmc_reapseq(path: str | os.PathLike | None = None):
    """PBMC REAP-seq, paired RNA+ADT (7,488 cells, 32,738 genes, 48 ADT).

    No cell-type labels; ``obs["batch"]`` (``reap_s2``, ``reap_s3``).

    Provenance: jaydu1/scVAEIT reproducibility data (MIT); Peterson et al. 2017,
    *Nat. Biotechnol.*, GEO GSE100501.

    Parameters
    ----------
    path
        The ``.h5mu`` file or its folder; default ``$REMADOM_DATA_DIR``, then
        ``../shared/data``, then a download cached by :func:`~remadom.datasets.fetch_file`
        (needs ``$REMADOM_DATA_URL``: this subset has no public URL yet).

    Returns
    -------
    MuData with modalities ``rna`` (7,488 x 32,738) and ``adt`` (7,488 x 48).
    """
    return _read("pbmc_reapseq", path)
