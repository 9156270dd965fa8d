"""The course's data: named sample images and datasets, found locally or fetched on demand.

``data/catalog.json`` lists every file a notebook, command or benchmark reads: sample
images (content photos, style paintings) by name, and datasets (``sr/Set5``, ``sr/T91``,
``photos/bsds500_train``, ``unpaired/horse2zebra``, ...) as folders of files. Each file
has a path inside the data folder (the data pack's layout), bytes, sha256, a public
source URL and a licence.

Where a file is found, in order:

1. ``$NSTCOURSE_DATA_DIR/<path>``: the override for offline use (read as it is);
2. the per-user cache ``cache_dir()/<path>``;
3. downloaded into the cache with a progress bar, kept only if its sha256 matches
   (``download.download_file``: atomic, nothing left behind on failure), from the
   source URL, or from ``$NSTCOURSE_DATA_MIRROR/<path>`` when that is set (a campus
   mirror: any folder laid out like the data dir, served over HTTP;
   ``nstcourse fetch-data DIR`` fills one).

scikit-image's bundled images (``SKIMAGE_SAMPLES``) need no file and no network, so the
first notebooks never dead-end offline.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.parse
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from tqdm.auto import tqdm

from nstcourse.download import ChecksumError, DownloadError, download_file
from nstcourse.files import sha256_file
from nstcourse.images import IMAGE_SUFFIXES, from_numpy, load_image, resize_long_side

DATA_DIR_ENV = "NSTCOURSE_DATA_DIR"
MIRROR_ENV = "NSTCOURSE_DATA_MIRROR"
# Files downloaded at once: datasets are hundreds of small files, each a round trip.
FETCH_WORKERS = 8
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


@dataclass(frozen=True)
class CatalogFile:
    """One file of the data folder: where it goes, what it must be, where it comes from.

    ``item`` is the catalog item it belongs to: an image name or a dataset name.
    """

    path: str
    bytes: int
    sha256: str
    urls: tuple[str, ...]
    item: str


@dataclass(frozen=True)
class Dataset:
    """A folder of the data dir (``name``, e.g. "sr/Set5") and the files in it."""

    name: str
    description: str
    source: str
    licence: str
    files: tuple[CatalogFile, ...]


class DataNotFoundError(FileNotFoundError):
    """A catalog file that is in no local folder and could not be downloaded now."""


def catalog_file() -> Path:
    """The catalog: ``data/catalog.json`` in a checkout, a copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "data" / "catalog.json", here / "catalog.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"nstcourse catalog not found beside {here}")


@functools.lru_cache(maxsize=1)
def _catalog_json() -> dict:
    with open(catalog_file(), encoding="utf-8") as f:
        return json.load(f)


def catalog() -> dict[str, CatalogItem]:
    """All sample images by name."""
    return {item["name"]: CatalogItem(**item) for item in _catalog_json()["images"]}


@functools.lru_cache(maxsize=1)
def datasets() -> dict[str, Dataset]:
    """All datasets by name (their folder in the data dir, e.g. "sr/Set5")."""
    return {record["name"]: _dataset(record) for record in _catalog_json().get("datasets", [])}


def _dataset(record: dict) -> Dataset:
    """A catalog record: files as [name in the folder, bytes, sha256, path under url_base]."""
    name = record["name"]
    files = tuple(
        CatalogFile(
            path=f"{name}/{file_name}",
            bytes=size,
            sha256=digest,
            urls=(record["url_base"] + urllib.parse.quote(source_path),),
            item=name,
        )
        for file_name, size, digest, source_path in record["files"]
    )
    return Dataset(name, record["description"], record["source"], record["licence"], files)


def catalog_files() -> dict[str, CatalogFile]:
    """Every file of the catalog (images and datasets) by its path in the data dir."""
    files = {
        item.path: CatalogFile(item.path, item.bytes, item.sha256, (item.url,), item.name)
        for item in catalog().values()
    }
    for dataset in datasets().values():
        files.update((entry.path, entry) for entry in dataset.files)
    return files


def select_files(names: Sequence[str] = ()) -> list[CatalogFile]:
    """The catalog files that ``names`` denote, sorted by path; all of them when empty.

    A name is an image ("tubingen"), a dataset ("sr/Set5"), or any folder or file path of
    the data dir ("sr", "images/style/wave.jpg"). An unknown name is a ValueError listing
    the datasets.
    """
    files = catalog_files()
    if not names:
        return sorted(files.values(), key=lambda entry: entry.path)
    images = catalog()
    chosen: dict[str, CatalogFile] = {}
    for name in names:
        key = name.strip("/")
        if key in images:
            found = [files[images[key].path]]
        else:
            found = [e for p, e in files.items() if p == key or p.startswith(key + "/")]
        if not found:
            raise ValueError(
                f"{name!r} is not a catalog item: give an image name (as list_samples() "
                f"shows), a dataset ({', '.join(datasets())}), or a folder such as 'sr'"
            )
        chosen.update((entry.path, entry) for entry in found)
    return sorted(chosen.values(), key=lambda entry: entry.path)


def list_samples(kind: str | None = None) -> list[str]:
    """Names of catalog images ("content" or "style", or all), then scikit-image's."""
    names = [name for name, item in catalog().items() if kind in (None, item.kind)]
    return names + ([f"skimage:{name}" for name in SKIMAGE_SAMPLES] if kind is None else [])


def data_dir() -> Path | None:
    """``$NSTCOURSE_DATA_DIR`` as a Path, or None when unset."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Per-user cache for downloaded data: ``$XDG_CACHE_HOME/nstcourse`` or ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "nstcourse"


def mirror_url() -> str | None:
    """``$NSTCOURSE_DATA_MIRROR`` without a trailing slash, or None when unset."""
    value = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    return value or None


def source_urls(entry: CatalogFile) -> tuple[str, ...]:
    """Where ``entry`` is downloaded from: ``<mirror>/<path>`` when a mirror is set (only
    there: a lab without internet should fail fast), else its public source URL(s)."""
    mirror = mirror_url()
    return (f"{mirror}/{urllib.parse.quote(entry.path)}",) if mirror else entry.urls


def fetch_files(
    entries: Sequence[CatalogFile],
    dest: Path,
    *,
    verify: bool = False,
    progress: bool = True,
    looked_in: Sequence[Path] = (),
) -> list[Path]:
    """``dest/<path>`` of each entry, downloading into ``dest`` those not there.

    A file already there counts when its size is the catalog's (``verify``: its sha256
    too; a file that fails is downloaded again, replacing it). Downloads run in
    ``FETCH_WORKERS`` threads under one progress bar, each verified and atomic; the first
    failure cancels the rest and raises a DataNotFoundError that names the item, the
    URL(s), the folder to put the file in (and ``looked_in``) and the mirror variable.
    """
    missing = missing_files(entries, dest, verify=verify)
    if missing:
        _download_all(missing, dest, progress=progress, looked_in=looked_in)
    return [dest / entry.path for entry in entries]


def missing_files(
    entries: Sequence[CatalogFile], dest: Path, *, verify: bool = False
) -> list[CatalogFile]:
    """The entries not yet in ``dest`` (by size; with ``verify`` by sha256 too)."""
    return [entry for entry in entries if not _present(dest / entry.path, entry, verify)]


def _present(path: Path, entry: CatalogFile, verify: bool) -> bool:
    if not path.is_file() or path.stat().st_size != entry.bytes:
        return False
    return not verify or sha256_file(path) == entry.sha256


def _download_all(
    entries: Sequence[CatalogFile], dest: Path, *, progress: bool, looked_in: Sequence[Path]
) -> None:
    """Download ``entries`` into ``dest`` in threads; stop at the first failure."""
    items = sorted({entry.item for entry in entries})
    label = items[0] if len(items) == 1 else f"{len(items)} data items"
    total = sum(entry.bytes for entry in entries)
    with (
        tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool,
    ):
        futures = {pool.submit(_download_one, e, dest, looked_in): e for e in entries}
        try:
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future].bytes)
        except BaseException:  # a failure or Ctrl-C: start nothing more
            for future in futures:
                future.cancel()
            raise


def _download_one(entry: CatalogFile, dest: Path, looked_in: Sequence[Path]) -> Path:
    """Download one entry from its first URL that works; DataNotFoundError if none does."""
    target = dest / entry.path
    if ".." in PurePosixPath(entry.path).parts or not target.resolve().is_relative_to(
        dest.resolve()
    ):
        raise ValueError(f"catalog path {entry.path!r} would leave {dest}; refused")
    urls = source_urls(entry)
    problems = []
    for url in urls:
        try:
            return download_file(url, target, sha256=entry.sha256, progress=False)
        except (DownloadError, ChecksumError) as err:
            problems.append(str(err))
    raise DataNotFoundError(_not_found_message(entry, dest, urls, problems, looked_in))


def _not_found_message(
    entry: CatalogFile,
    dest: Path,
    urls: Sequence[str],
    problems: Sequence[str],
    looked_in: Sequence[Path],
) -> str:
    folders = [*dict.fromkeys([*looked_in, dest])]
    return (
        f"{entry.item}: {entry.path} is not in {' or '.join(map(str, folders))} and could not "
        f"be downloaded from {' or '.join(urls)} ({'; '.join(problems)}). To fix: put the "
        f"file at {dest / entry.path} (`nstcourse fetch-data DIR {entry.item}` on a machine "
        f"with internet fetches it), set ${MIRROR_ENV} to a mirror URL that serves "
        f"<mirror>/{entry.path}, or set ${DATA_DIR_ENV} to a folder that has {entry.path}."
    )


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
    entry = CatalogFile(item.path, item.bytes, item.sha256, (item.url,), item.name)
    if not download:
        raise FileNotFoundError(
            f"{item.path} not found in {' or '.join(map(str, folders))} and "
            f"download=False; download it from {' or '.join(source_urls(entry))}"
        )
    return fetch_files([entry], cache_dir(), looked_in=folders)[0]


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


def data_file(path: str) -> Path:
    """A file of the data folder by its path there ("images/style/wave.jpg"):
    ``$NSTCOURSE_DATA_DIR/<path>`` as it is, else the cache, else fetched (catalog files
    only). An absolute path is used as it is."""
    given = Path(path).expanduser()
    root = data_dir()
    local = given if given.is_absolute() else (root / given if root is not None else None)
    if local is not None and local.is_file():
        return local
    entry = None if given.is_absolute() else catalog_files().get(PurePosixPath(path).as_posix())
    if entry is None:
        where = str(local) if local is not None else f"nowhere (${DATA_DIR_ENV} is not set)"
        raise FileNotFoundError(
            f"{path}: not found ({where}) and not a catalog file (see data/catalog.json); "
            "give the path of an existing file"
        )
    return fetch_files([entry], cache_dir(), looked_in=[root] if root else [])[0]


def folder_files(folder: str, *, limit: int | None = None) -> list[Path]:
    """The images of a data folder ("sr/Set5", "photos/bsds500_train"), sorted by name; at
    most ``limit`` of them, the first ones (only those are fetched).

    A folder ``$NSTCOURSE_DATA_DIR/<folder>`` (or an absolute ``folder``) is read as it
    is; otherwise the catalog's files directly in ``folder`` come from the cache, fetched
    there on first use.
    """
    local = _local_folder(folder)
    if local is not None:
        files = sorted(p for p in local.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{local}: no images in this folder")
        return files[:limit]
    entries = _folder_entries(folder)
    root = data_dir()
    return fetch_files(entries[:limit], cache_dir(), looked_in=[root] if root else [])


def count_images(folder: str) -> int:
    """How many images ``folder_files(folder)`` gives, without fetching any."""
    local = _local_folder(folder)
    if local is not None:
        return sum(1 for p in local.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return len(_folder_entries(folder))


def _local_folder(folder: str) -> Path | None:
    """``folder`` (absolute) or ``$NSTCOURSE_DATA_DIR/<folder>`` when it is a folder."""
    given = Path(folder).expanduser()
    if given.is_absolute():
        if not given.is_dir():
            raise FileNotFoundError(f"{given}: folder not found")
        return given
    root = data_dir()
    return root / given if root is not None and (root / given).is_dir() else None


def _folder_entries(folder: str) -> list[CatalogFile]:
    """The catalog's image files directly in ``folder``, sorted by path."""
    key = PurePosixPath(folder).as_posix().strip("/")
    entries = [
        entry
        for path, entry in catalog_files().items()
        if str(PurePosixPath(path).parent) == key
        and PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES
    ]
    if not entries:
        root = data_dir()
        where = f"not in {root}, " if root is not None else ""
        raise FileNotFoundError(
            f"{folder}: {where}not a catalog folder; datasets: {', '.join(datasets())}"
        )
    return sorted(entries, key=lambda entry: entry.path)


def load_style_images(paths: Sequence[str], *, long_side: int | None = None) -> list[torch.Tensor]:
    """Style images (1, 3, H, W) in [0, 1]: absolute paths, or paths in the data folder
    ("images/style/wave.jpg", found or fetched by ``data_file``)."""
    return [load_image(data_file(name), long_side=long_side) for name in paths]


def load_training_images(
    folders: Iterable[str], *, max_images: int | None = None
) -> list[torch.Tensor]:
    """The images in each data folder (``folder_files``: ``$NSTCOURSE_DATA_DIR/<folder>``,
    else the cache, fetched on first use), sorted by name, as (1, 3, H, W) tensors in
    [0, 1]; at most ``max_images`` per folder."""
    images = []
    for folder in folders:
        images += [load_image(p) for p in folder_files(folder, limit=max_images)]
    return images
