"""Verified downloads and safe archive extraction.

``download_file`` streams a URL into a temporary file beside the target, hashing as it
goes, and renames it into place only when the sha256 matches; a failed or interrupted
download never leaves a file behind. ``safe_extract`` unpacks zip and tar archives,
refuses any member that would land outside the target folder and archives that expand
beyond a size limit, and never deletes or replaces a file that was already there.
"""

from __future__ import annotations

import errno
import filecmp
import gzip
import hashlib
import http.client
import lzma
import os
import secrets
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from nstcourse.files import atomic_path

# Default limits of safe_extract: far above any course archive, far below a full disk.
MAX_BYTES = 4 << 30  # 4 GiB uncompressed in all
MAX_MEMBERS = 100_000
# Uncompressed / archive size. Images and weights barely compress; a run of zeros does
# 1000:1. Only checked once the archive expands beyond RATIO_FLOOR_BYTES.
MAX_RATIO = 100.0
RATIO_FLOOR_BYTES = 16 << 20

# What reading a damaged or truncated archive raises (besides OSError, which writing can too).
_DAMAGED = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,  # an OSError: listed so that it is not taken for a write error
    EOFError,
    zlib.error,
    lzma.LZMAError,
)


class DownloadError(RuntimeError):
    """A download that could not be made (offline, bad URL, HTTP error, unwritable file)."""


class ChecksumError(RuntimeError):
    """Downloaded bytes whose sha256 is not the expected one; nothing was kept."""


class ArchiveError(ValueError):
    """An archive ``safe_extract`` will not extract as asked: not an archive, damaged, or a
    destination that is not a folder. Nothing of it was written."""


class UnsafeArchiveError(ArchiveError):
    """An archive member that would be written outside the target folder, or a link."""


class ArchiveTooLargeError(ArchiveError):
    """An archive that expands beyond ``safe_extract``'s limits (a zip bomb, or huge)."""


class ArchiveConflictError(ArchiveError):
    """Files already in the destination that the archive would replace."""


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
    names its files by such a prefix; anything else is a ValueError). Raises
    ``DownloadError`` (naming the URL and the file) when the URL cannot be read or ``dest``
    cannot be written (a folder, a read-only place), ``ChecksumError`` on a mismatch.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"sha256 must be at least 8 hex digits, got {sha256!r}")
    try:
        with atomic_path(dest) as tmp:
            got = _stream_to_file(url, dest, tmp, progress=progress, timeout=timeout)
            if not got.startswith(expected):
                raise ChecksumError(
                    f"checksum mismatch for {url}: expected sha256 {expected}…, got {got}; "
                    f"the download was discarded and {dest} was not written"
                )
    except OSError as err:  # from atomic_path: dest is a folder, read-only, name too long
        raise DownloadError(f"could not download {url} to {dest}: {err}") from err
    return dest


def _stream_to_file(url: str, dest: Path, tmp: Path, *, progress: bool, timeout: float) -> str:
    """Copy ``url`` into ``tmp``; return the hex sha256 of what was received."""
    digest = hashlib.sha256()
    received = 0
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
    return digest.hexdigest()


@dataclass(frozen=True)
class _Limits:
    archive_bytes: int  # the archive's own size, for the ratio
    max_bytes: int
    max_members: int
    max_ratio: float


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
    max_ratio: float = MAX_RATIO,
) -> Path:
    """Extract a .zip or .tar(.gz|.bz2|.xz) archive into the folder ``dest``.

    Every member is checked before anything is written: absolute paths, ``..``
    components, and links (symbolic or hard) are refused with ``UnsafeArchiveError``; an
    archive of more than ``max_members`` members, more than ``max_bytes`` uncompressed
    bytes, or (beyond 16 MiB) more than ``max_ratio`` times its own size is refused with
    ``ArchiveTooLargeError`` -- raise the limit for an archive you trust.

    The archive is unpacked into a temporary folder, then moved into place: as a whole
    when ``dest`` does not exist; otherwise merged into it file by file, each with an
    atomic rename that never replaces anything. A file already in ``dest`` with the same
    bytes is kept; one with other bytes (or a link, or a file where the archive has a
    folder) makes the whole extraction an ``ArchiveConflictError`` before anything is
    moved: keeping the old file would leave a mixture nobody asked for, replacing it
    would lose the user's data. A damaged or truncated archive, or a ``dest`` that is not
    a folder, is an ``ArchiveError`` naming them; a failure leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such archive", str(archive))
    limits = _Limits(archive.stat().st_size, max_bytes, max_members, max_ratio)
    if dest.exists() and not dest.is_dir():
        raise ArchiveError(f"cannot extract {archive} into {dest}: it is not a folder")
    try:
        return _extract_checked(archive, dest, limits)
    except _DAMAGED as err:
        raise ArchiveError(
            f"{archive} is damaged or truncated ({err}); nothing was extracted into {dest}. "
            "Download it again."
        ) from err
    except OSError as err:
        raise ArchiveError(f"could not extract {archive} into {dest}: {err}") from err


def _extract_checked(archive: Path, dest: Path, limits: _Limits) -> Path:
    """Check every member of ``archive`` against the rules, then extract it into ``dest``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_zip(archive, zf, limits)
            return _extract_atomically(archive, dest, zf.extractall)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _check_tar(archive, tf, limits)
            return _extract_atomically(archive, dest, lambda path: _extract_tar(tf, path))
    with open(archive, "rb") as f:
        if f.read(4) == b"PK\x03\x04":  # a zip's first member, but no directory at the end
            raise zipfile.BadZipFile("a zip whose central directory is missing")
    raise ArchiveError(f"{archive}: not a zip or tar archive")


def _check_zip(archive: Path, zf: zipfile.ZipFile, limits: _Limits) -> None:
    """Refuse unsafe names, symbolic links and sizes beyond ``limits`` (declared sizes are
    binding: zipfile stops reading a member at its declared size)."""
    infos = zf.infolist()
    _check_size(archive, limits, members=len(infos), total=0)
    total = 0
    for info in infos:
        _check_member_name(archive, info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeArchiveError(f"{archive}: symbolic link {info.filename!r} refused")
        total += info.file_size
    _check_size(archive, limits, members=len(infos), total=total)


def _check_tar(archive: Path, tf: tarfile.TarFile, limits: _Limits) -> None:
    """Refuse unsafe names, links, special files and sizes beyond ``limits``; stops reading
    as soon as a limit is passed (a tar's sizes are those of the bytes it holds)."""
    total = 0
    for members, member in enumerate(tf, start=1):
        _check_member_name(archive, member.name)
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a link or special file; refused"
            )
        total += member.size if member.isfile() else 0
        _check_size(archive, limits, members=members, total=total)


def _check_size(archive: Path, limits: _Limits, *, members: int, total: int) -> None:
    """Raise ArchiveTooLargeError when ``members`` or ``total`` bytes pass ``limits``."""
    size = limits.archive_bytes
    if members > limits.max_members:
        problem = f"has over {limits.max_members} members (max_members={limits.max_members})"
    elif total > limits.max_bytes:
        problem = f"expands to over {total} bytes (max_bytes={limits.max_bytes})"
    elif total > RATIO_FLOOR_BYTES and total > limits.max_ratio * size:
        problem = (
            f"expands to over {total} bytes from {size}, more than {limits.max_ratio:g} "
            f"times its size (max_ratio={limits.max_ratio:g}): a zip bomb?"
        )
    else:
        return
    raise ArchiveTooLargeError(
        f"{archive} {problem}; nothing was extracted. If you trust it, pass a larger limit "
        "to safe_extract."
    )


def _check_member_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would leave the target folder")


def _extract_tar(tf: tarfile.TarFile, path: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: a second line of defence
        tf.extractall(path, filter="data")
    else:
        tf.extractall(path)  # noqa: S202 -- every member was checked above


def _extract_atomically(archive: Path, dest: Path, extract: Callable[[Path], None]) -> Path:
    """Extract into a new hidden folder, then rename it to ``dest`` or merge it in."""
    merging = dest.is_dir()
    if not merging:
        dest.parent.mkdir(parents=True, exist_ok=True)
    # Inside dest when merging: the same file system, so every move is a rename.
    staging = _make_staging_dir(dest if merging else dest.parent, dest.name)
    try:
        extract(staging)
        if merging:
            _merge(archive, staging, dest)
        else:
            os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only ever the folder made here
    return dest


def _make_staging_dir(parent: Path, label: str) -> Path:
    """A new hidden folder in ``parent``, with the mode a plain mkdir gives (not 0700)."""
    while True:
        staging = parent / f".{label[:64]}.{secrets.token_hex(4)}.extracting"
        try:
            os.mkdir(staging, 0o777)
        except FileExistsError:
            continue
        return staging


def _merge(archive: Path, staging: Path, dest: Path) -> None:
    """Move what ``staging`` holds into ``dest``; refuse if anything there would change."""
    moves, conflicts = _plan_merge(staging, dest)
    if conflicts:
        shown = "; ".join(conflicts[:5]) + ("; …" if len(conflicts) > 5 else "")
        raise ArchiveConflictError(
            f"{archive} was not extracted into {dest}: {len(conflicts)} existing "
            f"entr{'y' if len(conflicts) == 1 else 'ies'} would be replaced ({shown}); "
            "nothing was written. Move them away, or extract into a new folder."
        )
    for item in moves:
        _move_without_replacing(staging / item, dest / item)


def _plan_merge(staging: Path, dest: Path) -> tuple[list[Path], list[str]]:
    """(entries to move: new files and whole new folders; conflicts, described)."""
    moves: list[Path] = []
    conflicts: list[str] = []
    pending = [Path()]
    while pending:
        folder = pending.pop()
        for src in sorted((staging / folder).iterdir()):
            item, target = folder / src.name, dest / folder / src.name
            if not os.path.lexists(target):
                moves.append(item)
            elif target.is_symlink():
                conflicts.append(f"{item} is a symbolic link")
            elif src.is_dir() and target.is_dir():
                pending.append(item)
            elif src.is_dir() or target.is_dir():
                conflicts.append(f"{item} is a {'file' if src.is_dir() else 'folder'}")
            elif not filecmp.cmp(src, target, shallow=False):
                conflicts.append(f"{item} has other content")
    return moves, conflicts


def _move_without_replacing(src: Path, target: Path) -> None:
    """Rename ``src`` to ``target``, which must not exist: a file through a hard link
    (atomic, and fails if the name is taken), a folder with a rename."""
    if src.is_dir():
        os.rename(src, target)  # Linux: fails on a non-empty folder, a file
        return
    try:
        os.link(src, target)
    except FileExistsError as err:
        raise ArchiveConflictError(f"{target} appeared during the extraction; kept") from err
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise ArchiveConflictError(f"{target} appeared during the extraction; kept") from None
        os.rename(src, target)
        return
    os.unlink(src)
