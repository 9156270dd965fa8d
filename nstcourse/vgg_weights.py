"""Find, download, verify and read pretrained VGG weights.

VGG weights come in two input conventions, and the convention belongs to the weights:

* ``"torchvision"``: torchvision's ImageNet checkpoints. Input RGB in [0, 1],
  normalised by the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
* ``"caffe"``: the original Oxford VGG weights converted from Caffe (what Gatys et al.
  and neural-style used). Input BGR in [0, 255] minus the mean (B, G, R) =
  (103.939, 116.779, 123.68), no std.

A file is recognised by its sha256 in ``VGG_CATALOG`` (or the caller states the
convention). Resolution order: explicit path -> ``$NSTCOURSE_WEIGHTS_DIR`` -> torch
hub cache -> download from torchvision's URL with its sha256 prefix checked. Of the files
found, the first that has every layer asked for is taken (``find_vgg_file``).

A file may cover only the first layers (the course data pack's VGG-19 stops at
conv3_4); ``VGGWeights.layers`` says which conv layers it has. Deciding what to do
about the others is the feature extractor's job (``nstcourse.features``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from nstcourse.download import download_file
from nstcourse.files import sha256_file

CONVENTIONS = ("torchvision", "caffe")
WEIGHTS_DIR_ENV = "NSTCOURSE_WEIGHTS_DIR"

# Channels per conv layer, "M" for max pooling (Simonyan & Zisserman 2015, configs D and E).
# fmt: off
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# fmt: on


@dataclass(frozen=True)
class KnownWeights:
    """A VGG weights file the course recognises by its sha256 (full or prefix)."""

    filename: str
    arch: str
    convention: str
    sha256: str
    url: str | None
    description: str


VGG_CATALOG: tuple[KnownWeights, ...] = (
    KnownWeights(
        "vgg19-dcbb9e9d.pth",
        "vgg19",
        "torchvision",
        "dcbb9e9d",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "torchvision VGG-19, ImageNet (IMAGENET1K_V1)",
    ),
    KnownWeights(
        "vgg16-397923af.pth",
        "vgg16",
        "torchvision",
        "397923af",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision VGG-16, ImageNet (IMAGENET1K_V1)",
    ),
    # J. Johnson's conversion of the Oxford Caffe models (BGR, 0-255, mean subtracted).
    # Recognised when present; not downloaded by default.
    KnownWeights(
        "vgg19-d01eb7cb.pth",
        "vgg19",
        "caffe",
        "d01eb7cb",
        "https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg19-d01eb7cb.pth",
        "Oxford VGG-19 converted from Caffe",
    ),
    KnownWeights(
        "vgg16-00b39a1b.pth",
        "vgg16",
        "caffe",
        "00b39a1b",
        "https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg16-00b39a1b.pth",
        "Oxford VGG-16 converted from Caffe",
    ),
    KnownWeights(
        "vgg19_keras_caffe_conv1_1-conv3_4.pth",
        "vgg19",
        "caffe",
        "ec76ebde9301c2552adaff3f52c4a166176fbb664b5e1dc71a52ceb9448f23ab",
        None,
        "course data pack: Oxford VGG-19 via Keras, conv1_1 … conv3_4 only",
    ),
)


class WeightsError(RuntimeError):
    """Weights that cannot be found, identified or read; the message says what to do."""


@dataclass(frozen=True)
class VGGWeights:
    """VGG conv weights read from one file.

    Attributes:
        path: the file.
        source: where it was found: "explicit", "$NSTCOURSE_WEIGHTS_DIR", "torch hub
            cache" or "downloaded".
        arch: "vgg16" or "vgg19".
        convention: "torchvision" or "caffe" (see the module docstring).
        known: the catalog entry, or None for a file identified by an explicit convention.
        convs: conv name ("conv1_1") -> (weight (C_out, C_in, 3, 3), bias (C_out,)),
            only for the layers the file has.
    """

    path: Path
    source: str
    arch: str
    convention: str
    known: KnownWeights | None
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def layers(self) -> list[str]:
        """Conv layers present in the file, in network order."""
        return [name for name in conv_names(self.arch) if name in self.convs]


def layer_names(arch: str = "vgg19") -> list[str]:
    """All layer names of ``arch``'s feature stack, in order (index = torchvision index).

    VGG-19: conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 … relu5_4 pool5.
    """
    names, block, index = [], 1, 1
    for item in _config(arch):
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def min_input_side(arch: str, layers: Iterable[str]) -> int:
    """The smallest image side that reaches the deepest of ``layers``: each pooling before
    it halves the image, so 2^(number of poolings) px."""
    names = layer_names(arch)
    deepest = max(names.index(name) for name in layers)
    return 2 ** sum(name.startswith("pool") for name in names[: deepest + 1])


def conv_names(arch: str) -> list[str]:
    """Conv layer names of a VGG in order: ['conv1_1', 'conv1_2', 'conv2_1', ...]."""
    return [name for name in layer_names(arch) if name.startswith("conv")]


def conv_channels(arch: str) -> list[int]:
    """Output channels of each conv layer, in the order of ``conv_names``."""
    return [int(item) for item in _config(arch) if item != "M"]


def _config(arch: str) -> list[int | str]:
    if arch not in VGG_CONFIGS:
        raise ValueError(
            f"arch={arch!r} is not a VGG the course knows; use one of {sorted(VGG_CONFIGS)}"
        )
    return VGG_CONFIGS[arch]


def load_vgg_weights(
    arch: str = "vgg19",
    path: str | os.PathLike | None = None,
    *,
    convention: str | None = None,
    download: bool = True,
    layers: Iterable[str] | None = None,
) -> VGGWeights:
    """Find and read VGG weights for ``arch``.

    Args:
        arch: "vgg16" or "vgg19".
        path: an explicit file (full checkpoint, ``features`` state dict, or
            .safetensors). If None, search ``$NSTCOURSE_WEIGHTS_DIR``, then the torch hub
            cache, then download torchvision's file (``find_vgg_file``).
        convention: "torchvision" or "caffe"; required for files not in ``VGG_CATALOG``,
            and checked against the catalog for files in it.
        download: allow downloading when nothing is found locally.
        layers: the layers that will be used (e.g. ``["relu3_1"]``): the search takes the
            first file that has every conv up to the deepest of them. None: all of them.
    """
    _config(arch)
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; use one of {CONVENTIONS}")
    file, source = find_vgg_file(arch, path, download=download, layers=layers)
    known = identify(file)
    if known is not None and known.arch != arch:
        raise WeightsError(
            f"{file} holds {known.arch} weights ({known.description}), "
            f"but arch={arch!r} was asked for"
        )
    if known is not None and convention is not None and convention != known.convention:
        raise WeightsError(
            f"{file} is {known.description}, whose convention is "
            f"{known.convention!r}, not {convention!r}"
        )
    if convention is None and known is not None:
        convention = known.convention
    if convention is None:
        raise WeightsError(
            f"{file} is not in nstcourse.vgg_weights.VGG_CATALOG (sha256 {weights_sha256(file)}); "
            "say how it expects its input: 'torchvision' or 'caffe' (convention= in Python, "
            "--convention on the command line)"
        )
    convs = _read_convs(str(file), file.stat().st_mtime_ns, arch)
    return VGGWeights(
        path=file,
        source=source,
        arch=arch,
        convention=convention,
        known=known,
        convs=convs,
    )


def search_places() -> list[tuple[Path, str]]:
    """The folders searched for catalog files, in order, each with the name that
    ``VGGWeights.source`` gives it: ``$NSTCOURSE_WEIGHTS_DIR`` (if set), the torch hub cache."""
    places = []
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        places.append((Path(weights_dir), f"${WEIGHTS_DIR_ENV}"))
    places.append((Path(torch.hub.get_dir()) / "checkpoints", "torch hub cache"))
    return places


def convs_needed(arch: str, layers: Iterable[str] | None = None) -> list[str]:
    """The conv layers a network cut after the deepest of ``layers`` runs through
    (``["relu2_1"]`` → conv1_1, conv1_2, conv2_1); None: every conv of ``arch``."""
    names = layer_names(arch)
    layers = list(names if layers is None else layers)
    unknown = [name for name in layers if name not in names]
    if unknown or not layers:
        raise ValueError(f"unknown {arch} layer(s) {unknown or layers}; known: {', '.join(names)}")
    deepest = max(names.index(name) for name in layers)
    return [name for name in names[: deepest + 1] if name.startswith("conv")]


def _covers(file: Path, arch: str, convs: list[str]) -> bool:
    """``file`` has all of ``convs`` (read once: the load that follows reuses it)."""
    identify(file)  # a catalog name on other bytes is refused before anything is read
    have = _read_convs(str(file), file.stat().st_mtime_ns, arch)
    return all(name in have for name in convs)


def find_vgg_file(
    arch: str,
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    layers: Iterable[str] | None = None,
) -> tuple[Path, str]:
    """Return (file, where it was found) following the resolution order above.

    Of the catalog files found (each place in ``search_places``, each in catalog order)
    the first that has every conv up to the deepest of ``layers`` (None: all) wins, so
    that a partial file early in the search does not hide a full one after it; if none
    has them all, the first found (the feature extractor then says what is missing).
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG weights file not found: {path}")
        return path, "explicit"
    wanted = convs_needed(arch, layers)
    candidates = [k for k in VGG_CATALOG if k.arch == arch]
    found = [
        (place / known.filename, source)
        for place, source in search_places()
        for known in candidates
        if (place / known.filename).is_file()
    ]
    if found:
        return next((item for item in found if _covers(item[0], arch, wanted)), found[0])
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    default = next(k for k in candidates if k.convention == "torchvision")
    target = hub_dir / default.filename
    where = f"${WEIGHTS_DIR_ENV} ({weights_dir}) or {hub_dir}" if weights_dir else str(hub_dir)
    if not download:
        raise WeightsError(
            f"no {arch} weights found and download=False: put {default.filename} "
            f"(from {default.url}) in {where}"
        )
    if default.url is None:
        raise WeightsError(f"{default.filename} has no download address; put it in {where}")
    try:
        return download_file(default.url, target, sha256=default.sha256), "downloaded"
    except Exception as err:
        raise WeightsError(
            f"no {arch} weights found locally and the download failed ({err}).\n"
            f"Download {default.filename} from {default.url} and put it in {where}, "
            f"or point ${WEIGHTS_DIR_ENV} at a folder that has it."
        ) from err


def weights_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a weights file, hashed once per process while it is unchanged:
    how the catalog recognises a file, and what a checkpoint records of its VGG."""
    stat = Path(path).stat()
    return _sha256_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def identify(path: str | os.PathLike) -> KnownWeights | None:
    """The catalog entry whose sha256 matches the file, or None.

    A file that has a catalog name but other bytes is refused: it is not what its
    name says.
    """
    path = Path(path)
    digest = weights_sha256(path)
    for known in VGG_CATALOG:
        if digest.startswith(known.sha256):
            return known
    for known in VGG_CATALOG:
        if path.name == known.filename:
            again = f"download it again from {known.url}" if known.url else "copy it again"
            raise WeightsError(
                f"{path} is named like {known.description} but its sha256 is "
                f"{digest}, not {known.sha256}…; the file is corrupt or different: {again}. "
                "If it is a file of your own, give it another name: a catalog name is "
                "always checked, and a convention (convention=, --convention) does not "
                "bypass that check"
            )
    return None


@functools.lru_cache(maxsize=2)
def _read_convs(
    path: str, mtime_ns: int, arch: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read a checkpoint and return its VGG conv layers by name, shapes checked."""
    state = _read_state_dict(Path(path))
    features = _features_state(Path(path), state)
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    all_names, c_in = layer_names(arch), 3
    for name, c_out in zip(conv_names(arch), conv_channels(arch), strict=True):
        index = all_names.index(name)  # torchvision's features index
        weight, bias = features.get(f"{index}.weight"), features.get(f"{index}.bias")
        if weight is not None:
            if tuple(weight.shape) != (c_out, c_in, 3, 3) or bias is None:
                raise WeightsError(
                    f"{path}: {name} (features.{index}) has shape {tuple(weight.shape)}, "
                    f"expected {(c_out, c_in, 3, 3)} with a bias; is this really {arch}?"
                )
            convs[name] = (weight.float(), bias.float())
        c_in = c_out
    if not convs:
        raise WeightsError(f"{path}: no VGG conv layers found")
    return convs


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # weights_only: never unpickle arbitrary objects; map_location: GPU files load on CPU.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path}: cannot read as a PyTorch/safetensors state dict ({err})"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def _features_state(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys 'features.N.weight' (full model) or 'N.weight' (features only) -> 'N.weight'."""
    pattern = re.compile(r"^(?:features\.)?(\d+)\.(weight|bias)$")
    features = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match:
            features[f"{match[1]}.{match[2]}"] = value
    if not features:
        raise WeightsError(
            f"{path}: no VGG feature keys ('features.0.weight' or '0.weight'); "
            f"first keys are {list(state)[:4]}"
        )
    return features
