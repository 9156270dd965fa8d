"""Verified downloads and safe archive extraction.

``download_file`` streams a URL into a temporary file beside the target, hashing as it
goes, and renames it into place only when the sha256 matches; a failed or interrupted
download never leaves a file behind. ``safe_extract`` unpacks zip and tar archives and
refuses any member that would land outside the target folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from nstcourse.files import atomic_path


class DownloadError(RuntimeError):
    """A download that could not be made (offline, bad URL, HTTP error)."""


class ChecksumError(RuntimeError):
    """Downloaded bytes whose sha256 is not the expected one; nothing was kept."""


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the target folder."""


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, keeping it only if its sha256 starts with ``sha256``.

    ``sha256`` is the full hex digest or a prefix of at least 8 hex digits (torchvision
    names its files by such a prefix). Raises ``DownloadError`` (naming the URL and the
    file) when the URL cannot be read, ``ChecksumError`` on a mismatch.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"sha256 must be at least 8 hex digits, got {sha256!r}")
    digest = hashlib.sha256()
    received = 0
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        # HTTPException: a connection cut mid-transfer (IncompleteRead) is not an OSError.
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(f"could not download {url} to {dest}: {err}") from err
        if total is not None and received < total:
            raise DownloadError(
                f"could not download {url} to {dest}: the connection closed after "
                f"{received} of {total} bytes"
            )
        got = digest.hexdigest()
        if not got.startswith(expected):
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}…, got {got}; "
                f"the download was discarded and {dest} was not written"
            )
    return dest


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a .zip or .tar(.gz|.bz2|.xz) archive into the folder ``dest``.

    Every member is checked before anything is written: absolute paths, ``..``
    components, and links (symbolic or hard) are refused with ``UnsafeArchiveError``.
    The archive is unpacked into a temporary folder beside ``dest`` and moved into
    place only when complete, so a failure leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(archive, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: symbolic link {info.filename!r} refused")
            return _extract_atomically(dest, zf.extractall)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _check_member_name(archive, member.name)
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a link or special file; refused"
                    )
            return _extract_atomically(dest, lambda path: _extract_tar(tf, path))
    raise ValueError(f"{archive}: not a zip or tar archive")


def _check_member_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would leave the target folder")


def _extract_tar(tf: tarfile.TarFile, path: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: a second line of defence
        tf.extractall(path, filter="data")
    else:
        tf.extractall(path)  # noqa: S202 -- every member was checked above


def _extract_atomically(dest: Path, extract) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        extract(staging)
        if dest.exists():
            # Merge into an existing folder: move each top-level entry.
            for entry in staging.iterdir():
                target = dest / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                os.replace(entry, target)
        else:
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
