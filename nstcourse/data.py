"""Named sample images: the catalog in ``data/catalog.json`` and where files are found.

Each catalog item (a content photo or a style painting) names its source URL, sha256
and licence. ``image_path(name)`` looks in ``$NSTCOURSE_DATA_DIR``, then in the
per-user cache, then downloads into the cache with the checksum verified.
scikit-image's bundled images (``SKIMAGE_SAMPLES``) need no file and no network, so
the first notebooks never dead-end offline.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nstcourse.download import download_file
from nstcourse.files import sha256_file
from nstcourse.images import IMAGE_SUFFIXES, from_numpy, load_image, resize_long_side

DATA_DIR_ENV = "NSTCOURSE_DATA_DIR"
# Colour images that ship inside scikit-image's wheel (no download).
SKIMAGE_SAMPLES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
)


@dataclass(frozen=True)
class CatalogItem:
    """One sample image. ``path`` is relative to the data dir (the data pack's layout)."""

    name: str
    kind: str
    path: str
    sha256: str
    bytes: int
    url: str
    source: str
    licence: str


def catalog_file() -> Path:
    """The catalog: ``data/catalog.json`` in a checkout, a copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "data" / "catalog.json", here / "catalog.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"nstcourse catalog not found beside {here}")


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, CatalogItem]:
    """All catalog items by name."""
    with open(catalog_file(), encoding="utf-8") as f:
        items = json.load(f)["images"]
    return {item["name"]: CatalogItem(**item) for item in items}


def list_samples(kind: str | None = None) -> list[str]:
    """Names of catalog images ("content" or "style", or all), then scikit-image's."""
    names = [name for name, item in catalog().items() if kind in (None, item.kind)]
    return names + ([f"skimage:{name}" for name in SKIMAGE_SAMPLES] if kind is None else [])


def data_dir() -> Path | None:
    """``$NSTCOURSE_DATA_DIR`` as a Path, or None when unset."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Per-user cache for downloaded samples: ``$XDG_CACHE_HOME/nstcourse`` or ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "nstcourse"


def image_path(name: str, *, download: bool = True) -> Path:
    """Local path of catalog image ``name``: data dir -> cache -> verified download.

    A local copy whose sha256 is not the catalog's is an error (it is not the image the
    notebooks were written for). Offline and missing: the error names the file, the URL
    and the folders it was looked for in.
    """
    items = catalog()
    if name not in items:
        raise KeyError(
            f"no sample image named {name!r}; known: {', '.join(sorted(items))} "
            f"and skimage:{{{', '.join(SKIMAGE_SAMPLES)}}}"
        )
    item = items[name]
    folders = [d for d in (data_dir(), cache_dir()) if d is not None]
    for folder in folders:
        path = folder / item.path
        if path.is_file():
            digest = sha256_file(path)
            if digest != item.sha256:
                raise ValueError(
                    f"{path}: sha256 {digest} is not the catalog's {item.sha256}; "
                    "delete the file to download it again"
                )
            return path
    target = cache_dir() / item.path
    if not download:
        raise FileNotFoundError(
            f"{item.path} not found in {' or '.join(map(str, folders))} and "
            f"download=False; download it from {item.url}"
        )
    try:
        return download_file(item.url, target, sha256=item.sha256, progress=False)
    except Exception as err:
        raise FileNotFoundError(
            f"sample image {name!r} ({item.path}) is not in {' or '.join(map(str, folders))} "
            f"and could not be downloaded from {item.url}: {err}. Put the file there, or "
            f"set ${DATA_DIR_ENV} to a folder that has it."
        ) from err


def load_sample(name: str, *, long_side: int | None = None) -> torch.Tensor:
    """A sample image as a (1, 3, H, W) tensor in [0, 1].

    ``name`` is a catalog name ("tubingen", "starry_night") or "skimage:NAME" for one of
    scikit-image's bundled images, which is always available offline.
    """
    if name.startswith("skimage:"):
        short = name.removeprefix("skimage:")
        if short not in SKIMAGE_SAMPLES:
            raise KeyError(f"{name!r}: bundled scikit-image samples are {SKIMAGE_SAMPLES}")
        import skimage.data

        image = from_numpy(getattr(skimage.data, short)())
        return image if long_side is None else resize_long_side(image, long_side)
    return load_image(image_path(name), long_side=long_side)


def load_style_images(paths: Sequence[str], *, long_side: int | None = None) -> list[torch.Tensor]:
    """Style images (1, 3, H, W) in [0, 1]: absolute paths, or relative to the data dir."""
    images = []
    for name in paths:
        path = Path(name)
        if not path.is_absolute():
            root = data_dir()
            if root is None:
                raise FileNotFoundError(
                    f"style image {name}: ${DATA_DIR_ENV} is not set; set it to the data "
                    "pack, or give absolute paths"
                )
            path = root / path
        if not path.is_file():
            raise FileNotFoundError(f"style image not found: {path}")
        images.append(load_image(path, long_side=long_side))
    return images


def load_training_images(
    folders: Sequence[str], *, max_images: int | None = None
) -> list[torch.Tensor]:
    """The images in ``<data dir>/<folder>`` for each folder, sorted by name, as
    (1, 3, H, W) tensors in [0, 1]; at most ``max_images`` per folder."""
    root = data_dir()
    if root is None:
        raise FileNotFoundError(
            f"training data: ${DATA_DIR_ENV} is not set; set it to the folder that "
            f"holds {', '.join(folders)}"
        )
    images = []
    for folder in folders:
        path = root / folder
        if not path.is_dir():
            raise FileNotFoundError(f"training data: folder {path} not found")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"training data: no images in {path}")
        images += [load_image(p) for p in files[:max_images]]
    return images
