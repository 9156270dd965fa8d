"""Atomic writes, checksums, verified downloads and safe archive extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nstcourse.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_file,
    safe_extract,
)
from nstcourse.files import atomic_path, sha256_file

PAYLOAD = bytes(range(256)) * 40  # 10 KiB, not a multiple of small chunk sizes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def names_in(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden temp files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- atomic_path


def test_atomic_path_renames_onto_target_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert names_in(tmp_path / "sub") == ["file.bin"]


def test_atomic_path_exception_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert names_in(tmp_path) == ["file.bin"]


def test_atomic_path_keyboard_interrupt_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert names_in(tmp_path) == []


def test_atomic_path_file_gets_plain_file_permissions(tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"plain")
    target = tmp_path / "atomic.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"atomic")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


# ---------------------------------------------------------------- sha256_file


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_sha256_file_matches_hashlib(tmp_path: Path, chunk_size: int) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(PAYLOAD)
    assert sha256_file(path, chunk_size=chunk_size) == PAYLOAD_SHA256


def test_sha256_file_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------- download_file


def test_download_file_with_full_sha256(http_server, tmp_path: Path) -> None:
    url = http_server.add("payload.bin", PAYLOAD)
    dest = tmp_path / "downloads" / "payload.bin"
    result = download_file(url, dest, sha256=PAYLOAD_SHA256, progress=False, timeout=10)
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert names_in(dest.parent) == ["payload.bin"]


def test_download_file_with_8_hex_prefix_any_case(http_server, tmp_path: Path) -> None:
    url = http_server.add("payload.bin", PAYLOAD)
    dest = tmp_path / "downloads" / "payload.bin"
    download_file(url, dest, sha256=PAYLOAD_SHA256[:8].upper(), progress=False, timeout=10)
    assert dest.read_bytes() == PAYLOAD


def test_download_file_bad_checksum_writes_nothing(http_server, tmp_path: Path) -> None:
    url = http_server.add("payload.bin", PAYLOAD)
    dest = tmp_path / "downloads" / "payload.bin"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumError) as excinfo:
        download_file(url, dest, sha256=wrong, progress=False, timeout=10)
    assert url in str(excinfo.value)
    assert not dest.exists()
    assert names_in(dest.parent) == []


def test_download_file_bad_checksum_keeps_existing_good_file(http_server, tmp_path: Path) -> None:
    dest = tmp_path / "downloads" / "payload.bin"
    download_file(http_server.add("good.bin", PAYLOAD), dest, sha256=PAYLOAD_SHA256, progress=False)
    tampered_url = http_server.add("tampered.bin", PAYLOAD[::-1])
    with pytest.raises(ChecksumError):
        download_file(tampered_url, dest, sha256=PAYLOAD_SHA256, progress=False, timeout=10)
    assert dest.read_bytes() == PAYLOAD
    assert names_in(dest.parent) == ["payload.bin"]


def test_download_file_404_is_download_error(http_server, tmp_path: Path) -> None:
    url = http_server.url("not-there.bin")
    dest = tmp_path / "downloads" / "x.bin"
    with pytest.raises(DownloadError) as excinfo:
        download_file(url, dest, sha256=PAYLOAD_SHA256, progress=False, timeout=10)
    assert url in str(excinfo.value)
    assert str(dest) in str(excinfo.value)
    assert not dest.exists()
    assert names_in(dest.parent) == []


def test_download_file_closed_port_is_download_error(closed_port_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "downloads" / "x.bin"
    with pytest.raises(DownloadError) as excinfo:
        download_file(closed_port_url, dest, sha256=PAYLOAD_SHA256, progress=False, timeout=10)
    assert closed_port_url in str(excinfo.value)
    assert str(dest) in str(excinfo.value)
    assert names_in(dest.parent) == []


class CutShortHandler(http.server.BaseHTTPRequestHandler):
    """Sends 10 bytes of the body, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"a\r\n0123456789\r\n8\r\n0123")  # second chunk cut short
        else:
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
        self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # keep pytest output quiet
        pass


@pytest.fixture
def cut_short_server(no_proxy: None) -> Iterator[str]:
    """Base URL of a 127.0.0.1 server whose responses break off mid-body."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShortHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("path", ["/content-length", "/chunked"])
def test_download_file_cut_short_is_download_error_and_keeps_nothing(
    cut_short_server: str, tmp_path: Path, path: str
) -> None:
    url = cut_short_server + path
    dest = tmp_path / "downloads" / "x.bin"
    with pytest.raises(DownloadError) as excinfo:
        download_file(url, dest, sha256=PAYLOAD_SHA256, progress=False, timeout=10)
    assert url in str(excinfo.value)
    assert str(dest) in str(excinfo.value)
    assert names_in(dest.parent) == []


@pytest.mark.parametrize("bad", ["", "abc", "1234567", "xyz12345", "12345678 ", "g" * 64])
def test_download_file_rejects_invalid_sha256(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x", sha256=bad, progress=False)
    assert names_in(tmp_path) == []


# ---------------------------------------------------------------- safe_extract: good archives

NESTED = {"top.txt": b"top", "sub/inner.txt": b"inner", "sub/deeper/leaf.bin": b"\x00\x01"}


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def add_tar_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            add_tar_file(tf, name, data)
    return path


def assert_extracted(dest: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        assert (dest / name).read_bytes() == data
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(members)


def test_safe_extract_zip_with_nested_files(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", NESTED)
    dest = tmp_path / "out" / "dest"
    assert safe_extract(archive, dest) == dest
    assert_extracted(dest, NESTED)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dest"]  # no staging left


def test_safe_extract_tar_gz_with_nested_files(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", NESTED)
    dest = tmp_path / "out" / "dest"
    safe_extract(archive, dest)
    assert_extracted(dest, NESTED)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dest"]


def test_safe_extract_merges_into_existing_folder(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"keep")
    (dest / "top.txt").write_bytes(b"top")  # the same bytes: kept (other bytes: refused)
    safe_extract(make_tar(tmp_path / "good.tar", NESTED, mode="w"), dest)
    assert (dest / "keep.txt").read_bytes() == b"keep"
    assert (dest / "top.txt").read_bytes() == b"top"
    assert (dest / "sub" / "deeper" / "leaf.bin").read_bytes() == b"\x00\x01"


# ---------------------------------------------------------------- safe_extract: refused


def zip_with_path_traversal(path: Path) -> Path:
    return make_zip(path, {"ok.txt": b"fine", "../evil.txt": b"evil"})


def zip_with_absolute_path(path: Path) -> Path:
    return make_zip(path, {"ok.txt": b"fine", "/tmp/nstcourse-test-evil-zip.txt": b"evil"})


def zip_with_symlink(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "../../outside")
    return path


def tar_with_path_traversal(path: Path) -> Path:
    return make_tar(path, {"ok.txt": b"fine", "../evil.txt": b"evil"})


def tar_with_absolute_path(path: Path) -> Path:
    return make_tar(path, {"ok.txt": b"fine", "/tmp/nstcourse-test-evil-tar.txt": b"evil"})


def tar_with_symlink(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add_tar_file(tf, "ok.txt", b"fine")
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../outside"
        tf.addfile(link)
    return path


def tar_with_hardlink(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add_tar_file(tf, "ok.txt", b"fine")
        link = tarfile.TarInfo("hard")
        link.type = tarfile.LNKTYPE
        link.linkname = "ok.txt"
        tf.addfile(link)
    return path


@pytest.mark.parametrize(
    "make_archive, suffix",
    [
        (zip_with_path_traversal, ".zip"),
        (zip_with_absolute_path, ".zip"),
        (zip_with_symlink, ".zip"),
        (tar_with_path_traversal, ".tar.gz"),
        (tar_with_absolute_path, ".tar.gz"),
        (tar_with_symlink, ".tar.gz"),
        (tar_with_hardlink, ".tar.gz"),
    ],
)
def test_safe_extract_refuses_unsafe_member_and_writes_nothing(
    tmp_path: Path, make_archive, suffix: str
) -> None:
    archive = make_archive(tmp_path / f"bad{suffix}")
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract(archive, dest)
    assert str(archive) in str(excinfo.value)
    assert not dest.exists()
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive.name, "work"])
    assert not Path("/tmp/nstcourse-test-evil-zip.txt").exists()
    assert not Path("/tmp/nstcourse-test-evil-tar.txt").exists()


def test_safe_extract_refusal_leaves_existing_dest_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "work" / "dest"
    dest.mkdir(parents=True)
    (dest / "ok.txt").write_bytes(b"original")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zip_with_path_traversal(tmp_path / "bad.zip"), dest)
    assert names_in(tmp_path / "work") == ["dest", "dest/ok.txt"]
    assert (dest / "ok.txt").read_bytes() == b"original"


def test_safe_extract_non_archive_is_value_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not an archive\n")
    with pytest.raises(ValueError, match="not a zip or tar archive") as excinfo:
        safe_extract(path, tmp_path / "dest")
    assert not isinstance(excinfo.value, UnsafeArchiveError)
    assert not (tmp_path / "dest").exists()
