"""Safe file handling: atomic writes and checksums.

A file the course writes (an image, a download, a checkpoint) either appears whole
or not at all: it is written to a temporary file in the same folder and renamed over
the target only when complete, so an interrupted write never replaces a good file.

The temporary file is ``.NAME.HOST-PID-RANDOM.part`` (NAME shortened, with a hash of it, when
the whole would exceed the file system's name limit, so every legal NAME can be written).
HOST and PID say which process writes it: a process killed mid-write (SIGKILL, or SIGTERM
without a handler) leaves its ``.part`` behind, and the next write of the same target removes
those whose writer, on this host, is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".part"
# What follows ".NAME" in a temporary name: ".HOST-PID-RANDOM.part", at most this many bytes
# (8 hex digits of host, a pid of up to 10 digits, 8 hex digits of randomness).
_TEMP_TAIL_BYTES = len(".") + 8 + 1 + 10 + 1 + 8 + len(TEMP_SUFFIX)
_TEMP_TAIL = re.compile(r"([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{8}\.part")
_DEFAULT_NAME_MAX = 255  # bytes, when the file system does not say (Linux, macOS, Windows)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left untouched. A ``path`` that is a folder or whose name is too long is
    refused before the caller writes anything; errors name ``path``, never the temporary
    file. The file ends with the permissions a plain ``open(path, "w")`` would give, even
    when the caller replaced the temporary file (``safetensors.torch.save_file`` does).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_target(path)
    remove_stale_temps(path)
    try:
        tmp = _create_temp_beside(path)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        created = os.stat(tmp)
        yield tmp
        _restore_plain_mode(tmp, created)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise _naming(err, path) from err
    finally:
        tmp.unlink(missing_ok=True)


def _check_target(path: Path) -> None:
    """Refuse a target the final rename could never create, before any work is done."""
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    if len(os.fsencode(path.name)) > _name_max(path.parent):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))


def _naming(err: OSError, path: Path) -> OSError:
    """The same kind of error as ``err``, naming ``path`` instead of a temporary file."""
    return type(err)(err.errno, err.strerror or str(err), str(path))


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of ``folder`` accepts."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or it won't say
        return _DEFAULT_NAME_MAX


def temp_prefix(path: Path) -> str:
    """``.NAME.`` -- how every temporary file for ``path`` begins.

    When the whole temporary name would be longer than the file system allows, NAME is cut
    (on a character boundary) and marked with ``~`` and 8 hex digits of its sha256, so it
    stays recognisable and distinct from the prefix of another long name.
    """
    budget = _name_max(path.parent) - len(".") - _TEMP_TAIL_BYTES
    raw = os.fsencode(path.name)
    if len(raw) <= budget:
        return f".{path.name}."
    tag = "~" + hashlib.sha256(raw).hexdigest()[:8]
    kept = path.name
    while kept and len(os.fsencode(kept)) > budget - len(tag):
        kept = kept[:-1]
    return f".{kept}{tag}."


def _host_tag() -> str:
    """8 hex digits naming this host: a pid means something only on the host that made it."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _create_temp_beside(path: Path) -> Path:
    """Create an empty, uniquely named ``.NAME.HOST-PID-RANDOM.part`` file beside ``path``.

    Unlike ``tempfile.mkstemp`` (always 0600), the file gets the permissions a plain
    ``open(path, "w")`` would give (0666 less the umask), and so does ``path`` after the
    rename.
    """
    prefix = f"{temp_prefix(path)}{_host_tag()}-{os.getpid()}-"
    while True:
        tmp = path.with_name(f"{prefix}{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _restore_plain_mode(tmp: Path, created: os.stat_result) -> None:
    """Give ``tmp`` the mode it was created with if the caller replaced the file.

    ``safetensors.torch.save_file`` writes its own temporary file (mode 0600) and renames
    it over ``tmp``; a file the caller wrote into (and perhaps chmod-ed) is left alone.
    """
    now = os.stat(tmp, follow_symlinks=False)
    replaced = (now.st_ino, now.st_dev) != (created.st_ino, created.st_dev)
    if replaced and stat.S_ISREG(now.st_mode):
        os.chmod(tmp, stat.S_IMODE(created.st_mode))


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that were killed.

    Only files named like ``atomic_path``'s for this very ``path`` are considered, and only
    those made on this host by a process that no longer exists (never this process's own,
    which may be in use). Returns the files removed. Does nothing where a pid cannot be
    checked safely (not POSIX).
    """
    path = Path(path)
    if os.name != "posix":
        return []
    prefix, host, removed = temp_prefix(path), _host_tag(), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        tail = _TEMP_TAIL.fullmatch(entry.name[len(prefix) :])
        if tail is None or tail[1] != host or not _writer_gone(int(tail[2])):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _writer_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this host (a live or unknown one is kept)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: it exists, under another user
        return False
    return False


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (works for files larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
