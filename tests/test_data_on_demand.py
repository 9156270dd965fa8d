"""Datasets on demand: the catalog's datasets, the campus mirror, failed downloads that
leave nothing behind, and ``nstcourse fetch-data``."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run

from nstcourse import data, download
from nstcourse.data import CatalogFile, DataNotFoundError, Dataset
from nstcourse.sr.data import load_sr_set

REPO = Path(__file__).resolve().parent.parent


class Served:
    """A folder served over HTTP on 127.0.0.1; ``paths`` are the paths asked for."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.paths: list[str] = []


@contextlib.contextmanager
def serve_folder(root: Path, *, lie_about_length: bool = False) -> Iterator[Served]:
    """Serve ``root`` (a mirror) until the block ends. ``lie_about_length``: announce one
    byte more than each file has, then close: a transfer cut short."""
    served: Served

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def send_header(self, keyword: str, value: str) -> None:
            if lie_about_length and keyword == "Content-Length":
                value = str(int(value) + 1)
            super().send_header(keyword, value)

        def do_GET(self) -> None:
            served.paths.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served = Served(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def nothing_set(monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> None:
    """A student's machine: no data dir, no mirror (the cache is tmp_path's, conftest)."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)


@pytest.fixture
def pack_mirror(data_pack: Path, nothing_set: None, monkeypatch) -> Iterator[Served]:
    """The data pack served as a campus mirror, and $NSTCOURSE_DATA_MIRROR set to it."""
    with serve_folder(data_pack) as served:
        monkeypatch.setenv(data.MIRROR_ENV, served.url + "/")
        yield served


def leftovers(folder: Path) -> list[Path]:
    """Every file under ``folder`` (temporary ``.part`` files included)."""
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def one_file_dataset(payload: bytes, url: str) -> Dataset:
    """A dataset "test/set" of one PNG whose catalog bytes and sha256 are ``payload``'s."""
    entry = CatalogFile(
        path="test/set/a.png",
        bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        urls=(url,),
        item="test/set",
    )
    return Dataset("test/set", "made by the test", "the test", "CC0", (entry,))


def use_datasets(monkeypatch: pytest.MonkeyPatch, *sets: Dataset) -> None:
    monkeypatch.setattr(data, "datasets", lambda: {d.name: d for d in sets})


# ---------------------------------------------------------------- the catalog


def test_every_dataset_is_in_the_catalog_with_a_raw_github_source() -> None:
    names = set(data.datasets())
    wanted = {f"sr/{name}" for name in ("Set5", "Set14", "BSD100", "Urban100_subset20", "T91")}
    assert wanted | {"photos/bsds500_train", "photos/bsds500_test", "unpaired/horse2zebra"} <= names
    for dataset in data.datasets().values():
        assert dataset.files and dataset.licence and dataset.source
        for entry in dataset.files:
            assert entry.path.startswith(dataset.name + "/") and len(entry.sha256) == 64
            assert entry.urls[0].startswith("https://raw.githubusercontent.com/")
    assert len(data.datasets()["sr/T91"].files) == 91
    assert len(data.datasets()["unpaired/horse2zebra"].files) == 1260


@pytest.mark.datapack
def test_the_catalog_is_what_make_catalog_writes(data_pack: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_catalog", REPO / "data/make_catalog.py")
    assert spec and spec.loader
    make_catalog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_catalog)
    rows = make_catalog.read_provenance(data_pack / "PROVENANCE.tsv")
    records = [make_catalog.dataset_record(*s, rows) for s in make_catalog.DATASETS]
    assert data._catalog_json()["datasets"] == records


@pytest.mark.datapack
def test_every_catalog_file_is_in_the_data_pack_at_its_path(data_pack: Path) -> None:
    files = data.catalog_files()
    assert len(files) == 35 + 1891
    wrong = [p for p, e in files.items() if (data_pack / p).stat().st_size != e.bytes]
    assert not wrong


def test_select_files_by_image_dataset_and_folder() -> None:
    assert [e.path for e in data.select_files(["tubingen"])] == ["images/content/tubingen.jpg"]
    assert len(data.select_files(["sr/Set5"])) == 5
    assert len(data.select_files(["sr/"])) == 5 + 14 + 100 + 21 + 91
    assert len(data.select_files(["sr/Set5", "sr/Set5/baby.png"])) == 5  # no duplicates
    assert len(data.select_files()) == len(data.catalog_files())
    with pytest.raises(ValueError, match="'nope' is not a catalog item.*sr/Set5"):
        data.select_files(["nope"])


def test_mirror_urls_are_the_catalog_path_under_the_mirror(monkeypatch) -> None:
    entry = data.catalog_files()["unpaired/horse2zebra/testA/n02381460_1000.jpg"]
    assert "LiorYaacov" in data.source_urls(entry)[0]
    monkeypatch.setenv(data.MIRROR_ENV, "http://lab.example/data/")
    assert data.source_urls(entry) == (f"http://lab.example/data/{entry.path}",)


# ---------------------------------------------------------------- loading with nothing set


@pytest.mark.datapack
def test_load_sr_set_with_nothing_set_fetches_through_the_mirror(
    pack_mirror: Served, data_pack: Path
) -> None:
    set5 = load_sr_set("Set5")
    assert [stem for stem, _ in set5] == ["baby", "bird", "butterfly", "head", "woman"]
    assert set5[0][1].shape == (1, 3, 512, 512)
    cached = data.cache_dir() / "sr/Set5/baby.png"
    assert cached.read_bytes() == (data_pack / "sr/Set5/baby.png").read_bytes()
    assert "/sr/Set5/baby.png" in pack_mirror.paths
    asked = len(pack_mirror.paths)
    assert len(load_sr_set("Set5")) == 5 and len(pack_mirror.paths) == asked  # from the cache


@pytest.mark.datapack
def test_training_images_fetch_only_the_first_max_images(pack_mirror: Served) -> None:
    photos = data.load_training_images(["photos/bsds500_train"], max_images=2)
    assert len(photos) == 2 and photos[0].shape[:2] == (1, 3)
    assert len(leftovers(data.cache_dir())) == 2
    assert data.count_images("photos/bsds500_train") == 200  # counted, not fetched
    assert len(leftovers(data.cache_dir())) == 2
    horses = data.load_training_images(["unpaired/horse2zebra/testA"], max_images=1)
    assert horses[0].shape == (1, 3, 256, 256)


@pytest.mark.datapack
def test_style_images_and_samples_with_nothing_set(pack_mirror: Served) -> None:
    (wave,) = data.load_style_images(["images/style/engstrom_training/wave.jpg"], long_side=64)
    assert max(wave.shape[-2:]) == 64
    assert data.load_sample("tubingen", long_side=32).shape[1] == 3
    assert data.image_path("tubingen") == data.cache_dir() / "images/content/tubingen.jpg"
    with pytest.raises(FileNotFoundError, match="images/style/nope.jpg: not found"):
        data.load_style_images(["images/style/nope.jpg"])


@pytest.mark.datapack
def test_a_data_dir_without_the_folder_falls_back_to_the_mirror(
    pack_mirror: Served, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "partial"))
    (tmp_path / "partial").mkdir()
    assert len(load_sr_set("Set5")) == 5
    assert (data.cache_dir() / "sr/Set5/head.png").is_file()


# ---------------------------------------------------------------- failed downloads


def test_offline_error_names_item_urls_folder_and_mirror(
    monkeypatch, nothing_set: None, closed_port_url: str, tmp_path: Path
) -> None:
    use_datasets(monkeypatch, one_file_dataset(b"png bytes", closed_port_url))
    with pytest.raises(DataNotFoundError) as excinfo:
        data.load_training_images(["test/set"])
    message = str(excinfo.value)
    for part in ("test/set", closed_port_url, str(data.cache_dir() / "test/set/a.png")):
        assert part in message
    assert data.MIRROR_ENV in message and data.DATA_DIR_ENV in message
    assert "fetch-data" in message
    assert leftovers(data.cache_dir()) == []


@pytest.mark.parametrize("served", [b"other bytes", b"png bytes and more", b"png"])
def test_corrupted_or_wrong_size_download_leaves_nothing(
    monkeypatch, nothing_set: None, http_server, tmp_path: Path, served: bytes
) -> None:
    url = http_server.add("a.png", served)
    use_datasets(monkeypatch, one_file_dataset(b"png bytes", url))
    with pytest.raises(DataNotFoundError, match="checksum mismatch"):
        data.folder_files("test/set")
    assert leftovers(data.cache_dir()) == []


def test_a_transfer_cut_short_leaves_nothing(monkeypatch, nothing_set: None, tmp_path) -> None:
    (tmp_path / "mirror/test/set").mkdir(parents=True)
    (tmp_path / "mirror/test/set/a.png").write_bytes(b"png bytes")
    use_datasets(monkeypatch, one_file_dataset(b"png bytes", "unused"))
    with serve_folder(tmp_path / "mirror", lie_about_length=True) as served:
        monkeypatch.setenv(data.MIRROR_ENV, served.url)
        with pytest.raises(DataNotFoundError, match="connection closed after 9 of 10 bytes"):
            data.folder_files("test/set")
    assert leftovers(data.cache_dir()) == []


def test_an_interrupted_download_leaves_nothing(
    monkeypatch, nothing_set: None, http_server, tmp_path: Path
) -> None:
    class InterruptedBar:  # Ctrl-C as the first chunk arrives
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self) -> InterruptedBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "tqdm", InterruptedBar)
    url = http_server.add("a.png", b"png bytes")
    use_datasets(monkeypatch, one_file_dataset(b"png bytes", url))
    with pytest.raises(KeyboardInterrupt):
        data.folder_files("test/set")
    assert leftovers(data.cache_dir()) == []


def test_a_catalog_path_that_leaves_the_folder_is_refused(tmp_path: Path) -> None:
    for path in ("../escape.png", "/tmp/escape.png"):
        entry = CatalogFile(path, 3, "0" * 64, ("http://127.0.0.1:9/x",), "bad")
        with pytest.raises(ValueError, match="would leave"):
            data.fetch_files([entry], tmp_path / "cache", progress=False)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- nstcourse fetch-data


@pytest.mark.datapack
def test_fetch_data_fills_a_folder_that_then_serves_as_the_data_dir(
    pack_mirror: Served, tmp_path: Path, capsys, monkeypatch, data_pack: Path
) -> None:
    target = tmp_path / "lab"
    code, out, err = run(capsys, ["fetch-data", target, "sr/Set5", "tubingen", "-q"])
    assert code == 0, err
    assert "6 files fetched" in out
    assert (target / "sr/Set5/woman.png").is_file()
    assert (target / "images/content/tubingen.jpg").is_file()

    (target / "sr/Set5/bird.png").write_bytes(b"damaged")  # replaced on the next run
    code, out, err = run(capsys, ["fetch-data", target, "sr/Set5", "tubingen", "-q"])
    assert code == 0 and "1 files fetched" in out and "5 already there" in out
    bird = (target / "sr/Set5/bird.png").read_bytes()
    assert bird == (data_pack / "sr/Set5/bird.png").read_bytes()

    monkeypatch.delenv(data.MIRROR_ENV)  # offline now: only the folder
    monkeypatch.setenv(data.DATA_DIR_ENV, str(target))
    asked = len(pack_mirror.paths)
    assert len(load_sr_set("Set5")) == 5
    assert data.image_path("tubingen") == target / "images/content/tubingen.jpg"
    assert len(pack_mirror.paths) == asked and leftovers(data.cache_dir()) == []


def test_fetch_data_unknown_item_exits_2(tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, ["fetch-data", tmp_path / "lab", "no_such_set"])
    assert code == 2
    assert "'no_such_set' is not a catalog item" in err and "Traceback" not in err
    assert not (tmp_path / "lab").exists()


def test_fetch_data_offline_exits_1_naming_the_mirror(
    tmp_path: Path, capsys, monkeypatch, nothing_set: None, closed_port_url: str
) -> None:
    monkeypatch.setenv(data.MIRROR_ENV, closed_port_url.rsplit("/", 1)[0])
    code, out, err = run(capsys, ["fetch-data", tmp_path / "lab", "sr/Set5", "-q"])
    assert code == 1
    assert "sr/Set5" in err and data.MIRROR_ENV in err and "Traceback" not in err
    assert leftovers(tmp_path / "lab") == []
