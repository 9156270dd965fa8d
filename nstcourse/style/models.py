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
    names and "cin") or an ``AdaINNet`` ("adain", with the data pack's VGG-19 as encoder).

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
    """Load any ``train_style`` file: a TransformNet, or a Decoder wrapped in an AdaINNet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"style checkpoint {path} not found")
    kind = check_style_info(checkpoint_info(path), path)
    device = pick_device(device)
    if kind == "TransformNet":
        return load_model(TransformNet, path, device=device)
    decoder = load_model(Decoder, path, device=device)
    encoder = VGGFeatures(list(STYLE_LAYERS[decoder.layer]), arch="vgg19", device=device)
    return AdaINNet(encoder, decoder).eval()


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
