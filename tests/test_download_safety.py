"""Hostile archives, shared folders and killed writers (reliability review M7, L2-L4, L8).

Each test reproduces a failure of the review: ``safe_extract`` deleting a user's files when
merging, a zip bomb extracted without limit, raw exceptions from a truncated archive or a
destination of the wrong kind, temporary names too long for a legal 255-byte name, ``.part``
files a killed writer leaves for ever, and checkpoints written 0600.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from nstcourse.checkpoints import save_model
from nstcourse.download import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveTooLargeError,
    DownloadError,
    download_file,
    safe_extract,
)
from nstcourse.files import atomic_path, remove_stale_temps, temp_prefix
from nstcourse.training import save_checkpoint

posix_only = pytest.mark.skipif(os.name != "posix", reason="pids and modes are POSIX")


def names_in(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def umask() -> Iterator[None]:
    """Run with umask 0022 (a usual default), restored afterwards."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# ------------------------------------------------ M7: merging never deletes or replaces


def test_merge_keeps_user_files_in_a_folder_the_archive_shares(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "d" / "old.txt").write_bytes(b"mine")
    safe_extract(make_zip(tmp_path / "a.zip", {"d/a.txt": b"new", "n/b.txt": b"b"}), dest)
    assert names_in(dest) == ["d", "d/a.txt", "d/old.txt", "n", "n/b.txt"]
    assert (dest / "d" / "old.txt").read_bytes() == b"mine"
    assert (dest / "d" / "a.txt").read_bytes() == b"new"


def test_reextracting_the_same_archive_keeps_identical_files(tmp_path: Path) -> None:
    archive = make_tar_gz(tmp_path / "a.tar.gz", {"d/a.txt": b"new", "top.txt": b"top"})
    dest = tmp_path / "dest"
    safe_extract(archive, dest)
    safe_extract(archive, dest)
    assert names_in(dest) == ["d", "d/a.txt", "top.txt"]


@pytest.mark.parametrize(
    "existing, kind",
    [("file", "has other content"), ("symlink", "symbolic link"), ("dir_is_file", "is a file")],
)
def test_merge_conflict_refuses_everything_and_changes_nothing(
    tmp_path: Path, existing: str, kind: str
) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    if existing == "file":
        (dest / "d").mkdir()
        (dest / "d" / "a.txt").write_bytes(b"mine")
    elif existing == "symlink":  # merging through it would write outside dest
        (dest / "d").symlink_to(outside, target_is_directory=True)
    else:
        (dest / "d").write_bytes(b"a file where the archive has a folder")
    before = names_in(dest)
    archive = make_zip(tmp_path / "a.zip", {"new.txt": b"n", "d/a.txt": b"archive's"})
    with pytest.raises(ArchiveConflictError, match=kind) as excinfo:
        safe_extract(archive, dest)
    message = str(excinfo.value)
    assert str(archive) in message and str(dest) in message and "d" in message
    assert names_in(dest) == before  # not even new.txt, and no staging folder left
    assert list(outside.iterdir()) == []
    if existing == "file":
        assert (dest / "d" / "a.txt").read_bytes() == b"mine"


@posix_only
def test_new_folder_gets_plain_mkdir_permissions(tmp_path: Path, umask: None) -> None:
    dest = tmp_path / "dest"
    safe_extract(make_zip(tmp_path / "a.zip", {"a.txt": b"a"}), dest)
    assert dest.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700


# ------------------------------------------------ L8: limits and the module's own errors


def write_zip_bomb(path: Path, megabytes: int) -> Path:
    """A zip of one member: ``megabytes`` MB of zeros, about 1000 times smaller."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as f:
        for _ in range(megabytes):
            f.write(bytes(1_000_000))
    return path


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = write_zip_bomb(tmp_path / "bomb.zip", 200)
    assert archive.stat().st_size < 250_000
    with pytest.raises(ArchiveTooLargeError, match="max_ratio") as excinfo:
        safe_extract(archive, tmp_path / "out" / "dest")
    assert str(archive) in str(excinfo.value)
    assert names_in(tmp_path) == ["bomb.zip"]


def test_size_and_member_limits_apply_and_can_be_raised(tmp_path: Path) -> None:
    members = {f"f{i}.bin": bytes([i]) * 1000 for i in range(5)}
    archive = make_tar_gz(tmp_path / "a.tar.gz", members)
    with pytest.raises(ArchiveTooLargeError, match="max_bytes=4000"):
        safe_extract(archive, tmp_path / "dest", max_bytes=4000)
    with pytest.raises(ArchiveTooLargeError, match="max_members=4"):
        safe_extract(archive, tmp_path / "dest", max_members=4)
    assert names_in(tmp_path) == ["a.tar.gz"]
    safe_extract(archive, tmp_path / "dest", max_bytes=5000, max_members=5)
    assert len(names_in(tmp_path / "dest")) == 5


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_truncated_archive_is_an_archive_error_naming_it(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    maker = make_zip if suffix == ".zip" else make_tar_gz
    maker(whole, {"x.bin": torch.randint(0, 256, (50_000,), dtype=torch.uint8).numpy().tobytes()})
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="damaged or truncated") as excinfo:
        safe_extract(cut, tmp_path / "dest")
    assert str(cut) in str(excinfo.value)
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([whole.name, cut.name])


def test_destination_that_is_a_file_is_an_archive_error_naming_it(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_bytes(b"precious")
    with pytest.raises(ArchiveError, match="not a folder") as excinfo:
        safe_extract(make_zip(tmp_path / "a.zip", {"a.txt": b"a"}), dest)
    assert str(dest) in str(excinfo.value)
    assert dest.read_bytes() == b"precious"


def test_download_to_a_folder_is_a_download_error_naming_it(http_server, tmp_path: Path) -> None:
    url = http_server.add("payload.bin", b"payload")
    dest = tmp_path / "dest"
    (dest / "inside").mkdir(parents=True)
    with pytest.raises(DownloadError) as excinfo:
        download_file(url, dest, sha256="0" * 64, progress=False, timeout=10)
    assert str(dest) in str(excinfo.value) and ".part" not in str(excinfo.value)
    assert names_in(dest) == ["inside"]


# ------------------------------------------------ L2: temporary names that fit any legal name


def test_longest_legal_names_can_be_written(tmp_path: Path) -> None:
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    for name in ["a" * name_max, "é" * (name_max // 2) + "a" * (name_max % 2)]:
        assert len(os.fsencode(name)) == name_max
        target = tmp_path / name
        with atomic_path(target) as tmp:
            assert len(os.fsencode(tmp.name)) <= name_max
            assert tmp.name.startswith(".") and tmp.name.endswith(".part")
            assert tmp.name.startswith(temp_prefix(target))
            tmp.write_bytes(b"x")
        assert target.read_bytes() == b"x"
    assert temp_prefix(tmp_path / ("a" * 250)) != temp_prefix(tmp_path / ("a" * 249 + "b"))
    assert len(list(tmp_path.iterdir())) == 2


def test_target_that_cannot_be_created_is_refused_before_the_work(tmp_path: Path) -> None:
    body_ran = False
    for target, error in [(tmp_path / ("a" * 256), errno.ENAMETOOLONG), (tmp_path, errno.EISDIR)]:
        with pytest.raises(OSError) as excinfo, atomic_path(target):
            body_ran = True
        assert excinfo.value.errno == error
        assert excinfo.value.filename == str(target)
    assert not body_ran


def test_error_at_the_rename_names_the_target_not_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(IsADirectoryError) as excinfo, atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        target.mkdir()  # appears while the work runs
    assert excinfo.value.filename == str(target)
    assert names_in(tmp_path) == ["out.png"]


# ------------------------------------------------ L3: stale .part files of killed writers

HOLD_TEMP = """
import sys, time
from nstcourse.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half written")
    print(tmp.name, flush=True)
    time.sleep(60)
"""


def start_writer(target: Path) -> tuple[subprocess.Popen, str]:
    """A child process inside ``atomic_path(target)``; returns it and its temporary name."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_TEMP, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    tmp_name = child.stdout.readline().strip()
    assert tmp_name, "the writer did not start"
    return child, tmp_name


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_next_write_removes_the_part_file_of_a_killed_writer(tmp_path: Path, sig: int) -> None:
    target = tmp_path / "model.safetensors"
    child, tmp_name = start_writer(target)
    child.send_signal(sig)
    child.wait(timeout=60)
    assert (tmp_path / tmp_name).exists()  # what the review saw: left behind
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert names_in(tmp_path) == ["model.safetensors"]
    assert target.read_bytes() == b"whole"


@posix_only
def test_part_files_in_use_or_not_this_targets_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "t.bin"
    child, live = start_writer(target)
    try:
        prefix = temp_prefix(target)
        host = live[len(prefix) :].split("-")[0]
        pid = dead_pid()
        kept = [
            live,  # a writer still at work
            f"{prefix}{'0' * 8 if host != '0' * 8 else '1' * 8}-{pid}-0badc0de.part",  # other host
            f"{temp_prefix(tmp_path / 't.bin.bak')}{host}-{pid}-0badc0de.part",  # other target
            ".t.bin.0123456789ab.part",  # an older version's name: whose, unknown
            ".t.bin.notes",  # the user's
        ]
        stale = f"{prefix}{host}-{pid}-0badc0de.part"
        for name in kept[1:] + [stale]:
            (tmp_path / name).write_bytes(b"x")
        assert remove_stale_temps(target) == [tmp_path / stale]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    finally:
        child.kill()
        child.wait(timeout=60)


# ------------------------------------------------ L4: files get a plain open()'s permissions


@posix_only
def test_safetensors_through_atomic_path_get_plain_permissions(tmp_path: Path, umask: None) -> None:
    target = tmp_path / "w.safetensors"
    with atomic_path(target) as tmp:  # save_file replaces tmp with its own 0600 file
        safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp))
    assert target.stat().st_mode & 0o777 == 0o644
    private = tmp_path / "private.bin"
    with atomic_path(private) as tmp:  # a mode the caller chose is kept
        tmp.write_bytes(b"x")
        tmp.chmod(0o600)
    assert private.stat().st_mode & 0o777 == 0o600


@posix_only
def test_trained_model_and_checkpoint_files_are_not_private(tmp_path: Path, umask: None) -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    save_model(model, tmp_path / "model.safetensors", kwargs={})
    save_checkpoint(tmp_path / "run", model, {}, {}, step=1, history={})
    files = [tmp_path / "model.safetensors", *sorted((tmp_path / "run").iterdir())]
    assert len(files) >= 3
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o644 for p in files}
