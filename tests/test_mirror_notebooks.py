"""Acceptance: the whole course on a student's machine with only a campus mirror.

The data pack is served over HTTP on 127.0.0.1 as ``$NSTCOURSE_DATA_MIRROR``, with
``$NSTCOURSE_DATA_DIR`` unset and an empty per-user cache: every notebook runs in smoke
mode, fetching what it reads. Then the server is stopped and every notebook runs again,
from the cache alone. VGG weights are not data: ``$NSTCOURSE_WEIGHTS_DIR`` stays the data
pack's, with ``NSTCOURSE_VGG_MISSING=random``. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_on_demand import leftovers, serve_folder

from nstcourse import data
from nstcourse.runner import NotebookResult, find_notebooks, run_notebooks

REPO = Path(__file__).resolve().parent.parent


def failures(results: list[NotebookResult]) -> list[str]:
    return [f"{r.notebook}: {r.error}" for r in results if r.status != "ok"]


@pytest.mark.datapack
def test_every_notebook_runs_from_the_mirror_then_from_the_cache_alone(
    data_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy: None
) -> None:
    notebooks = find_notebooks(REPO / "notebooks")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    for name, value in {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # empty: nothing fetched yet
        "NSTCOURSE_WEIGHTS_DIR": str(data_pack / "weights"),
        "NSTCOURSE_VGG_MISSING": "random",
        "NSTCOURSE_MODE": "smoke",
        "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(name, value)
    assert leftovers(data.cache_dir()) == []

    with serve_folder(data_pack) as mirror:
        monkeypatch.setenv(data.MIRROR_ENV, mirror.url)
        online = run_notebooks(notebooks, tmp_path / "online", mode="smoke")
    assert not failures(online), failures(online)
    assert len(online) == len(notebooks) >= 11
    fetched = {p.relative_to(data.cache_dir()).as_posix() for p in leftovers(data.cache_dir())}
    assert {"sr/Set5/baby.png", "images/content/tubingen.jpg"} <= fetched
    assert any(p.startswith("photos/bsds500_train/") for p in fetched)
    assert {f"/{p}" for p in fetched} <= set(mirror.paths)

    # The server is stopped: any download now fails, so passing means none was needed.
    offline = run_notebooks(notebooks, tmp_path / "offline", mode="smoke")
    assert not failures(offline), failures(offline)
