"""Safe file handling: atomic writes and checksums.

A file the course writes (an image, a download, a checkpoint) either appears whole
or not at all: it is written to a temporary file in the same folder and renamed over
the target only when complete, so an interrupted write never replaces a good file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp_beside(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _create_temp_beside(path: Path) -> Path:
    """Create an empty, uniquely named ``.NAME.*.part`` file beside ``path``.

    Unlike ``tempfile.mkstemp`` (always 0600), the file gets the permissions a plain
    ``open(path, "w")`` would give (0666 less the umask), and so does ``path`` after the
    rename.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (works for files larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
