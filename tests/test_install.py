"""An installed wheel works away from the checkout: it carries the shipped checkpoints.

The wheel is built from this checkout and installed with ``pip --target`` into a temporary
folder; the commands then run from an empty folder with only that folder on
``PYTHONPATH``, so the installed copy (not the checkout) is what gets imported.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nstcourse.checkpoints import (
    CHECKPOINTS_DIR_ENV,
    PACKAGE_CHECKPOINTS_DIR,
    REPO_CHECKPOINTS_DIR,
    find_checkpoints_dir,
)

REPO = Path(__file__).resolve().parent.parent


def _pip(*args: str) -> None:
    """Run pip in this interpreter; a failure shows pip's own output."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the nstcourse wheel built from this checkout, installed with pip."""
    root = tmp_path_factory.mktemp("install")
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    _pip("wheel", "--no-deps", "-q", *isolation, "-w", str(root / "wheel"), str(REPO))
    (wheel,) = (root / "wheel").glob("nstcourse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "nstcourse/shipped_checkpoints/espcn_x3.safetensors" in names
    assert not any(name.endswith((".sh", "make_readme.py")) for name in names)
    _pip("install", "--no-deps", "-q", "--target", str(root / "site"), str(wheel))
    return root / "site"


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m nstcourse.cli ARGS`` from ``cwd`` with only ``site`` on the path."""
    env = {key: value for key, value in os.environ.items() if key != CHECKPOINTS_DIR_ENV}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "nstcourse.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 40×32 random photo in an empty folder outside the checkout."""
    work = tmp_path / "work"
    work.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(work / "photo.png")
    return work / "photo.png"


def test_installed_package_is_the_one_imported(site: Path, tmp_path: Path):
    code = "import nstcourse.checkpoints as c; print(c.__file__); print(c.find_checkpoints_dir())"
    env = {key: value for key, value in os.environ.items() if key != CHECKPOINTS_DIR_ENV}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    module, checkpoints = done.stdout.split()
    assert Path(module).resolve().is_relative_to(site.resolve())
    assert Path(checkpoints) == site.resolve() / "nstcourse" / "shipped_checkpoints"
    assert (Path(checkpoints) / "adain.safetensors").is_file()


def test_installed_wheel_upscales_and_fast_stylises(site: Path, photo: Path):
    work = photo.parent
    done = _run_installed(
        site, work, "upscale", "photo.png", "-o", "big.png", "--model", "espcn", "--scale", "3"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(work / "big.png").size == (120, 96)
    done = _run_installed(
        site, work, "fast-stylize", "photo.png", "-o", "wave.png", "--model", "wave"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(work / "wave.png").size == (40, 32)


def test_checkout_checkpoints_come_before_the_package_copy(monkeypatch, tmp_path: Path):
    monkeypatch.delenv(CHECKPOINTS_DIR_ENV, raising=False)
    assert find_checkpoints_dir() == REPO_CHECKPOINTS_DIR == REPO / "checkpoints"
    assert PACKAGE_CHECKPOINTS_DIR == REPO / "nstcourse" / "shipped_checkpoints"
    monkeypatch.setenv(CHECKPOINTS_DIR_ENV, str(tmp_path))
    assert find_checkpoints_dir() == tmp_path
    assert find_checkpoints_dir(tmp_path / "given") == tmp_path / "given"
