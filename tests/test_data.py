"""The sample-image catalog and where its files are found: data dir, cache, download."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nstcourse import data
from nstcourse.data import CatalogItem, cache_dir, catalog, image_path, list_samples, load_sample
from nstcourse.files import sha256_file

HEX64 = re.compile(r"[0-9a-f]{64}")


def png_bytes(seed: int = 0) -> bytes:
    """A small seeded PNG, as bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_item(url: str, payload: bytes, name: str = "test_photo") -> CatalogItem:
    return CatalogItem(
        name=name,
        kind="content",
        path=f"images/content/{name}.png",
        sha256=hashlib.sha256(payload).hexdigest(),
        bytes=len(payload),
        url=url,
        source="made by the test",
        licence="CC0",
    )


def use_catalog(monkeypatch: pytest.MonkeyPatch, *items: CatalogItem) -> None:
    """Make nstcourse.data see only ``items``."""
    monkeypatch.setattr(data, "catalog", lambda: {item.name: item for item in items})


@pytest.fixture
def empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data_dir"
    folder.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    return folder


# ---------------------------------------------------------------- the catalog


def test_catalog_items_are_complete() -> None:
    items = catalog()
    assert items, "the catalog is empty"
    for name, item in items.items():
        assert item.name == name
        assert HEX64.fullmatch(item.sha256), name
        assert item.url.startswith("https://"), name
        assert item.licence.strip(), name
        assert item.kind in ("content", "style"), name
        assert item.bytes > 0, name
        assert not Path(item.path).is_absolute() and ".." not in Path(item.path).parts, name


def test_catalog_has_enough_content_and_style_images() -> None:
    assert len(list_samples("content")) >= 10
    assert len(list_samples("style")) >= 15


def test_catalog_paths_are_unique() -> None:
    paths = [item.path for item in catalog().values()]
    assert len(paths) == len(set(paths))


def test_list_samples_all_includes_skimage_samples() -> None:
    names = list_samples()
    assert "skimage:astronaut" in names
    assert set(list_samples("content")) | set(list_samples("style")) <= set(names)
    assert not any(name.startswith("skimage:") for name in list_samples("style"))


def test_every_catalog_item_matches_the_data_pack(data_pack: Path) -> None:
    for item in catalog().values():
        path = data_pack / item.path
        assert path.is_file(), f"{item.path} missing from the data pack"
        assert path.stat().st_size == item.bytes, item.path
        assert sha256_file(path) == item.sha256, item.path


# ---------------------------------------------------------------- lookup order


def test_image_path_finds_file_in_data_dir(data_pack: Path, monkeypatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_pack))
    assert image_path("tubingen") == data_pack / catalog()["tubingen"].path


def test_image_path_uses_cache_when_data_dir_lacks_file(
    data_pack: Path, empty_data_dir: Path, tmp_path: Path
) -> None:
    item = catalog()["starry_night"]
    cached = tmp_path / "cache" / "nstcourse" / item.path
    assert cache_dir() == tmp_path / "cache" / "nstcourse"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(data_pack / item.path, cached)
    assert image_path("starry_night", download=False) == cached


def test_image_path_prefers_data_dir_over_cache(
    monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, closed_port_url: str
) -> None:
    payload = png_bytes()
    item = fake_item(closed_port_url, payload)
    use_catalog(monkeypatch, item)
    for folder in (empty_data_dir, cache_dir()):
        (folder / item.path).parent.mkdir(parents=True)
        (folder / item.path).write_bytes(payload)
    assert image_path(item.name) == empty_data_dir / item.path


def test_image_path_wrong_hash_local_copy_is_value_error(
    monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, closed_port_url: str
) -> None:
    item = fake_item(closed_port_url, png_bytes(seed=1))
    use_catalog(monkeypatch, item)
    local = empty_data_dir / item.path
    local.parent.mkdir(parents=True)
    local.write_bytes(png_bytes(seed=2))
    with pytest.raises(ValueError) as excinfo:
        image_path(item.name)
    assert str(local) in str(excinfo.value)
    assert local.read_bytes() == png_bytes(seed=2)  # not deleted or replaced


def test_image_path_downloads_into_cache_with_checksum(
    monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, http_server
) -> None:
    payload = png_bytes()
    item = fake_item(http_server.add("photo.png", payload), payload)
    use_catalog(monkeypatch, item)
    path = image_path(item.name)
    assert path == cache_dir() / item.path
    assert sha256_file(path) == item.sha256
    assert not (empty_data_dir / item.path).exists()
    assert load_sample(item.name).shape == (1, 3, 6, 10)


def test_image_path_downloads_a_real_catalog_item(
    data_pack: Path, monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, http_server
) -> None:
    real = catalog()["mosaic"]
    url = http_server.add("mosaic.jpg", (data_pack / real.path).read_bytes())
    item = CatalogItem(**{**real.__dict__, "url": url})
    use_catalog(monkeypatch, item)
    path = image_path("mosaic")
    assert path == cache_dir() / real.path
    assert sha256_file(path) == real.sha256


def test_image_path_download_with_wrong_bytes_keeps_nothing(
    monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, http_server
) -> None:
    item = fake_item(http_server.add("photo.png", png_bytes(seed=3)), png_bytes(seed=4))
    use_catalog(monkeypatch, item)
    with pytest.raises(FileNotFoundError, match="checksum"):
        image_path(item.name)
    assert not (cache_dir() / item.path).exists()


def test_image_path_offline_error_names_path_url_and_folders(
    monkeypatch: pytest.MonkeyPatch, empty_data_dir: Path, closed_port_url: str
) -> None:
    item = fake_item(closed_port_url, png_bytes())
    use_catalog(monkeypatch, item)
    with pytest.raises(FileNotFoundError) as excinfo:
        image_path(item.name)
    message = str(excinfo.value)
    for part in (item.path, item.url, str(empty_data_dir), str(cache_dir()), data.DATA_DIR_ENV):
        assert part in message
    assert not (cache_dir() / item.path).exists()


def test_image_path_without_data_dir_looks_only_in_cache(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str
) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    item = fake_item(closed_port_url, png_bytes())
    use_catalog(monkeypatch, item)
    with pytest.raises(FileNotFoundError) as excinfo:
        image_path(item.name, download=False)
    assert item.path in str(excinfo.value)
    assert str(cache_dir()) in str(excinfo.value)
    assert item.url in str(excinfo.value)


def test_image_path_unknown_name_is_key_error_listing_names() -> None:
    with pytest.raises(KeyError) as excinfo:
        image_path("no_such_picture")
    message = excinfo.value.args[0]
    assert "no_such_picture" in message
    assert "tubingen" in message and "starry_night" in message
    assert "astronaut" in message


# ---------------------------------------------------------------- load_sample


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_load_sample_skimage_works_offline(no_network: None) -> None:
    image = load_sample("skimage:astronaut")
    assert image.shape == (1, 3, 512, 512)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert load_sample("skimage:coffee", long_side=50).shape[-2:] == (33, 50)


def test_load_sample_skimage_long_side() -> None:
    image = load_sample("skimage:astronaut", long_side=64)
    assert image.shape == (1, 3, 64, 64)


def test_load_sample_unknown_skimage_name_is_key_error() -> None:
    with pytest.raises(KeyError, match="astronaut"):
        load_sample("skimage:camera_obscura")


def test_load_sample_catalog_image_from_data_pack(
    data_pack: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_pack))
    image = load_sample("tubingen", long_side=96)
    assert image.dim() == 4 and image.shape[:2] == (1, 3)
    assert max(image.shape[-2:]) == 96
    assert image.min() >= 0.0 and image.max() <= 1.0
