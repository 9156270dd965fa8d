"""Shared fixtures. Tests are CPU-only, seeded and small."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from browser import browser_unavailable

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


@pytest.fixture
def data_env(data_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$NSTCOURSE_DATA_DIR and $NSTCOURSE_WEIGHTS_DIR pointed at the data pack."""
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))


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


class LocalServer:
    """A static HTTP server on 127.0.0.1 serving the files under ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` as ``name``; return its URL."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url(name)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 must not go through a proxy from the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def http_server(tmp_path: Path, no_proxy: None) -> Iterator[LocalServer]:
    """Serve tmp_path/"served" on 127.0.0.1 (a free port) in a thread; stopped afterwards."""
    root = tmp_path / "served"
    root.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args) -> None:  # keep pytest output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield LocalServer(root, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url(no_proxy: None) -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/missing.jpg"


@pytest.fixture
def browser_available() -> None:
    """Chromium and Playwright are there; missing: a failure in CI, a skip elsewhere."""
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $NSTCOURSE_ARTIFACTS/browser, else tmp_path/browser."""
    folder = Path(os.environ.get("NSTCOURSE_ARTIFACTS", tmp_path)) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
