"""Download and cache the real-data files with :mod:`pooch` (as ``scvi.data`` does).

Each file in :data:`REGISTRY` has a SHA-256 checksum. Where a public URL exists it is
recorded (the PBMC mosaic is inside the ``scmidas`` 0.3.0 wheel on PyPI). The other four
are subsets derived for REMADOM that have no public host yet; they are fetched from a
mirror that holds them by file name, given as ``base_url=`` or ``$REMADOM_DATA_URL``
(``https://``, ``http://``, ``ftp://`` or ``file://``). Downloads are cached under
``$REMADOM_CACHE_DIR`` or the user cache directory (``pooch.os_cache("remadom")``, e.g.
``~/.cache/remadom``) and checked against the checksum on every fetch.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["BASE_URL_ENV", "CACHE_DIR_ENV", "REGISTRY", "RemoteFile", "cache_dir", "fetch_file"]

#: Environment variable naming a mirror (URL of a folder holding the files by name).
BASE_URL_ENV = "REMADOM_DATA_URL"
#: Environment variable overriding the cache folder.
CACHE_DIR_ENV = "REMADOM_CACHE_DIR"


@dataclass(frozen=True)
class RemoteFile:
    """Where a data file can be downloaded from, and its checksum.

    Parameters
    ----------
    filename
        The file's name (in a mirror, and in the cache).
    sha256
        SHA-256 of the file itself.
    url
        A public URL, or ``None`` when the file is only available from a mirror.
    archive_member
        When ``url`` is a zip archive (e.g. a wheel): the member to extract.
    archive_sha256
        SHA-256 of the archive at ``url``.
    """

    filename: str
    sha256: str
    url: str | None = None
    archive_member: str | None = None
    archive_sha256: str | None = None


_SCMIDAS_WHEEL = (
    "https://files.pythonhosted.org/packages/78/cb/bf09c17b06f6f05dfa20a497c0d10d85ae0e434ec9cc3f851dfacdfb2b68/"
    "scmidas-0.3.0-py3-none-any.whl"
)

#: Dataset key -> :class:`RemoteFile`.
REGISTRY: dict[str, RemoteFile] = {
    "pbmc_cite_mosaic": RemoteFile(
        "pbmc_cite_mosaic_hao2021.h5mu",
        "ba7e65819b77dca7cae0473043893a471920e25a07ee08bc91b3eb9fcc2e1cdd",
        url=_SCMIDAS_WHEEL,
        archive_member="scmidas/data/quickstart_pbmc_mosaic.h5mu",
        archive_sha256="24df81372decc6d3edf6c2481d7b0c58f4685386d2ac938564946916f1bd9522",
    ),
    "bmmc_cite": RemoteFile(
        "bmmc_cite_neurips2021_starter.h5mu",
        "02a65625e5b3434f37a8a1ff33ec29a3f02c042c0746a673ded939d15bd7a1a1",
    ),
    "bmmc_multiome": RemoteFile(
        "bmmc_multiome_neurips2021_starter.h5mu",
        "975664a65b77beab1b574cfd0f9d0969398f7b87acbb33e38348b791e84e361e",
    ),
    "mouse_cortex_snareseq": RemoteFile(
        "mouse_cortex_snareseq_chen2019.h5mu",
        "0da11420be45dfcfac863428587549d95833d4b9fd9287e44d9c2f397e77c060",
    ),
    "pbmc_reapseq": RemoteFile(
        "pbmc_reapseq_peterson2017.h5mu", "bfb1d6bfb6be8b22e781f0d63fc09a58bfa514d2d8a53fcb53a547d2136a3d57"
    ),
}


def cache_dir() -> Path:
    """The download cache: ``$REMADOM_CACHE_DIR``, else the user cache folder for ``remadom``."""
    import pooch

    return Path(os.environ.get(CACHE_DIR_ENV) or pooch.os_cache("remadom")).expanduser()


def _copy_file_url(url: str, output_file, pooch_obj) -> None:
    """Pooch downloader for ``file://`` URLs (pooch handles http(s)/ftp/sftp/doi only)."""
    source = Path(unquote(urlparse(url).path))
    if not source.is_file():
        raise FileNotFoundError(f"{source} (from {url}) does not exist")
    if isinstance(output_file, str | os.PathLike):
        shutil.copyfile(source, output_file)
    else:
        with open(source, "rb") as fh:
            shutil.copyfileobj(fh, output_file)


def _sha256(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _retrieve(url: str, known_hash: str, fname: str, folder: Path, progressbar: bool) -> Path:
    import pooch

    downloader = _copy_file_url if url.startswith("file://") else None
    if downloader is None:
        downloader = pooch.choose_downloader(url, progressbar=progressbar)
    return Path(
        pooch.retrieve(
            url,
            known_hash=f"sha256:{known_hash}",
            fname=fname,
            path=folder,
            downloader=downloader,
            progressbar=progressbar,
        )
    )


def fetch_file(
    key: str, base_url: str | None = None, folder: str | os.PathLike | None = None, progressbar: bool = False
) -> Path:
    """Download (once) and return the local path of a registered data file.

    Parameters
    ----------
    key
        A key of :data:`REGISTRY`, e.g. ``"bmmc_cite"``.
    base_url
        A mirror: URL of a folder holding the file by its name; default ``$REMADOM_DATA_URL``,
        else the file's public URL.
    folder
        Cache folder; default :func:`cache_dir`.
    progressbar
        Show a download progress bar.

    Returns
    -------
    Path of the cached, checksum-verified file.

    Raises
    ------
    ValueError
        If the download does not match the recorded SHA-256.
    FileNotFoundError
        If the file has no public URL and no mirror is given.
    """
    import pooch

    entry = REGISTRY[key]
    folder = Path(folder).expanduser() if folder is not None else cache_dir()
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    pooch.get_logger().setLevel("WARNING")  # pooch announces every download and cache hit at INFO
    if base_url:
        return _retrieve(
            base_url.rstrip("/") + "/" + entry.filename, entry.sha256, entry.filename, folder, progressbar
        )
    if entry.url is None:
        raise FileNotFoundError(
            f"{entry.filename!r} is a subset derived for REMADOM with no public download URL yet. "
            f"Pass path= (the local file or its folder), or point ${BASE_URL_ENV} (or base_url=) at a mirror "
            "holding it."
        )
    if entry.archive_member is None:
        return _retrieve(entry.url, entry.sha256, entry.filename, folder, progressbar)
    target = folder / entry.filename
    if target.is_file() and _sha256(target) == entry.sha256:
        return target
    archive = _retrieve(
        entry.url, entry.archive_sha256, Path(urlparse(entry.url).path).name, folder, progressbar
    )
    import zipfile

    with zipfile.ZipFile(archive) as zf, zf.open(entry.archive_member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    if _sha256(target) != entry.sha256:
        target.unlink()
        raise ValueError(
            f"{entry.archive_member} in {archive} does not match the recorded SHA-256 of "
            f"{entry.filename}; delete {archive} and fetch again."
        )
    return target
