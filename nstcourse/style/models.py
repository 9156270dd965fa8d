"""The shipped feed-forward style networks: their names, files, and loading in one call.

=========  ===============================  =====================================  =========
name       file in ``checkpoints/``         what                                    trained by
=========  ===============================  =====================================  =========
wave       ``johnson_wave.safetensors``     TransformNet, Hokusai's Great Wave      johnson
scream     ``johnson_scream.safetensors``   TransformNet, Munch's The Scream        johnson
udnie      ``johnson_udnie.safetensors``    TransformNet, Picabia's Udnie           johnson
wreck      ``johnson_wreck.safetensors``    TransformNet, Turner's Shipwreck        johnson
cin        ``cin.safetensors``              TransformNet with CIN, S = 10 styles   cin
adain      ``adain.safetensors``            AdaIN decoder (relu3_1), any style     adain
=========  ===============================  =====================================  =========

The four single-style networks use the style images that lengstrom's reference nets
(data pack ``weights/fast_style_engstrom``) were trained on, so the two can be compared.
Each file is written by ``style.recipes.train_style`` (``nstcourse train-style``) and
holds its recipe and metrics (``checkpoint_info``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nstcourse.checkpoints import (
    CheckpointError,
    checkpoint_info,
    find_checkpoints_dir,
    load_model,
)
from nstcourse.features import VGGFeatures
from nstcourse.runmode import pick_device
from nstcourse.style.adain import STYLE_LAYERS, AdaINNet, Decoder
from nstcourse.style.fast_style import TransformNet
from nstcourse.vgg_weights import (
    CONVENTIONS,
    VGG_CATALOG,
    WEIGHTS_DIR_ENV,
    VGGWeights,
    WeightsError,
    load_vgg_weights,
    search_places,
    weights_sha256,
)

# The style image (relative to the data dir) of each single-style network.
JOHNSON_STYLES = {
    "wave": "images/style/engstrom_training/wave.jpg",
    "scream": "images/style/engstrom_training/the_scream.jpg",
    "udnie": "images/style/engstrom_training/udnie.jpg",
    "wreck": "images/style/the_shipwreck_of_the_minotaur.jpg",
}
MODELS = (*JOHNSON_STYLES, "cin", "adain")


def checkpoint_name(name: str) -> str:
    """``johnson_<style>.safetensors``, ``cin.safetensors`` or ``adain.safetensors``."""
    if name not in MODELS:
        raise ValueError(f"unknown style model {name!r}; known: {', '.join(MODELS)}")
    return f"johnson_{name}.safetensors" if name in JOHNSON_STYLES else f"{name}.safetensors"


def checkpoint_path(name: str, *, checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Path of the shipped checkpoint of style model ``name`` (it may not exist yet)."""
    return find_checkpoints_dir(checkpoints_dir) / checkpoint_name(name)


def train_command(name: str, out: str | os.PathLike) -> str:
    """The ``nstcourse train-style`` command that writes checkpoint ``out`` for ``name``."""
    if name in JOHNSON_STYLES:
        return f"nstcourse train-style johnson --style {JOHNSON_STYLES[name]} --steps N -o {out}"
    checkpoint_name(name)  # the name check
    return f"nstcourse train-style {name} --steps N -o {out}"


def load_style_model(
    name: str,
    *,
    device: str | torch.device | None = None,
    checkpoints_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A shipped style network in eval mode: a ``TransformNet`` (the four single-style
    names and "cin") or an ``AdaINNet`` ("adain", with the encoder its file carries).

    Raises:
        ValueError: unknown name, or a file that does not hold that network.
        FileNotFoundError: the file is missing; the message names it and the command
            that trains it.
    """
    path = checkpoint_path(name, checkpoints_dir=checkpoints_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"style model {name}: {path} not found; train it with: {train_command(name, path)}"
        )
    return load_style_checkpoint(path, device=device)


def load_style_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device | None = None
) -> TransformNet | AdaINNet:
    """Load any ``train_style`` file: a TransformNet, or a Decoder wrapped in an AdaINNet
    whose encoder is exactly the one the decoder was trained behind (``adain_encoder``).

    Raises:
        CheckpointError: a damaged or foreign file (the message names it).
        WeightsError: a decoder that carries no encoder, and its VGG-19 file is not here.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"style checkpoint {path} not found")
    info = checkpoint_info(path)
    kind = check_style_info(info, path)
    device = pick_device(device)
    if kind == "TransformNet":
        return load_model(TransformNet, path, device=device)
    decoder = load_model(Decoder, path, device=device)
    return AdaINNet(adain_encoder(decoder, info, path, device=device), decoder).eval()


def adain_encoder(
    decoder: Decoder,
    info: dict[str, Any],
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
) -> VGGFeatures:
    """The VGG-19 encoder of the decoder in checkpoint ``path`` (metadata ``info``).

    A decoder's features only mean something behind the encoder it was trained with:
    another VGG-19 (torchvision's weights instead of Caffe's) gives features ~60× larger
    and silently wrong pictures. So: the encoder the file carries (``Decoder(
    encoder_convention=...)``, what ``train-style adain`` writes); else the VGG file its
    metadata records (``vgg``: file, convention, sha256), found by name in the weights
    search and checked by sha256; else a WeightsError naming that file.
    """
    layers = list(STYLE_LAYERS[decoder.layer])
    if decoder.encoder_convention is not None:
        weights = VGGWeights(
            path=Path(path),
            source="checkpoint",
            arch="vgg19",
            convention=decoder.encoder_convention,
            known=None,
            convs=decoder.encoder_weights(),
        )
        return VGGFeatures(layers, arch="vgg19", weights=weights, missing="error", device=device)
    return VGGFeatures(layers, arch="vgg19", weights=_recorded_vgg(info, path), device=device)


def _recorded_vgg(info: dict[str, Any], path: str | os.PathLike) -> VGGWeights:
    """The VGG-19 file that a decoder without its encoder records in its metadata."""
    found = info.get("vgg")
    record: dict[str, Any] = found if isinstance(found, dict) else {}
    name, convention = record.get("file"), record.get("convention")
    if not isinstance(name, str) or Path(name).name != name or convention not in CONVENTIONS:
        raise CheckpointError(
            f"{path}: an AdaIN decoder that does not carry its encoder must record the "
            "VGG-19 it was trained with (metadata field 'vgg': file, convention, sha256); "
            "retrain it with nstcourse train-style adain, which stores the encoder"
        )
    sha256 = _recorded_sha256(record, name)
    places = [place for place, _source in search_places()]
    for place in places:
        candidate = place / name
        if candidate.is_file() and sha256 and weights_sha256(candidate).startswith(sha256):
            return load_vgg_weights("vgg19", candidate, convention=convention)
    where = " or ".join(map(str, places))
    raise WeightsError(
        f"{path}: this AdaIN decoder was trained behind the VGG-19 file {name} ({convention} "
        f"convention, sha256 {sha256 or 'not recorded'}) and gives wrong pictures behind any "
        f"other; put that file in {where} (${WEIGHTS_DIR_ENV}), or use a checkpoint that "
        "carries its encoder (nstcourse train-style adain writes one)"
    )


def _recorded_sha256(record: dict[str, Any], name: str) -> str:
    """The sha256 (or catalog prefix) of the VGG file a decoder records: its own field,
    else the catalog's for that file name (checkpoints older than the field); '' if none."""
    sha256 = record.get("sha256")
    if isinstance(sha256, str) and sha256:
        return sha256.lower()
    return next((known.sha256 for known in VGG_CATALOG if known.filename == name), "")


def check_style_info(info: dict[str, Any], path: str | os.PathLike) -> str:
    """The class of a style checkpoint from its metadata (``checkpoint_info``),
    "TransformNet" or "Decoder", after the checks only this track knows: a TransformNet's
    ``styles`` is an int >= 1, a Decoder's ``layer`` one of ``adain.STYLE_LAYERS``.
    Otherwise a CheckpointError naming ``path`` and the field."""
    kind, kwargs = info["class"], info["kwargs"]
    if kind == "TransformNet":
        styles = kwargs.get("styles", 1)
        if not (isinstance(styles, int) and not isinstance(styles, bool) and styles >= 1):
            raise _bad_setting(path, "styles", styles, "an integer >= 1")
    elif kind == "Decoder":
        layer = kwargs.get("layer", "relu3_1")
        if layer not in STYLE_LAYERS:
            raise _bad_setting(path, "layer", layer, f"one of {', '.join(STYLE_LAYERS)}")
    else:
        raise CheckpointError(f"{path} holds a {kind}, not a TransformNet or an AdaIN Decoder")
    return kind


def _bad_setting(path: str | os.PathLike, key: str, value: object, wanted: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: setting {key!r} in metadata field 'kwargs' is {value!r}, not {wanted}; "
        "use a checkpoint written by nstcourse train-style"
    )


def style_names(info: dict[str, Any]) -> list[str]:
    """The style of each index of a TransformNet checkpoint (from ``checkpoint_info``):
    the style images' file names without extension, in training order."""
    return [Path(style).stem for style in info["recipe"]["styles"]]
