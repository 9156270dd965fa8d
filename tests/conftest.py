"""Shared fixtures. Tests are CPU-only, seeded and small."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _data_pack() -> Path | None:
    """The course data pack: $NSTCOURSE_DATA_DIR, else ../shared/data beside the repo."""
    for candidate in (os.environ.get("NSTCOURSE_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MANIFEST.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_pack() -> Path:
    """Path of the data pack. Missing: a failure in CI (CI=true), a skip elsewhere."""
    path = _data_pack()
    if path is None:
        message = "data pack not found: set NSTCOURSE_DATA_DIR or put ../shared/data beside"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def partial_vgg19(data_pack: Path) -> Path:
    """The data pack's VGG-19 (Caffe convention, conv1_1 … conv3_4 only)."""
    return data_pack / "weights" / "vgg19_keras_caffe_conv1_1-conv3_4.pth"


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Seed torch; keep each test's caches (torch hub, sample downloads) in tmp_path."""
    torch.manual_seed(0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
