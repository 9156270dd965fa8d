"""The shipped CycleGAN, and a generator applied to an image of any size (notebook 11,
``nstcourse translate``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from nstcourse.checkpoints import find_checkpoints_dir, load_model
from nstcourse.runmode import pick_device
from nstcourse.translate.cyclegan import MULTIPLE, CycleGAN

CHECKPOINT = "cyclegan_horse2zebra.safetensors"  # G: horse → zebra, F: zebra → horse
# The course's model names: name → reverse (F instead of G).
DIRECTIONS = {"horse2zebra": False, "zebra2horse": True}


def checkpoint_path(*, checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Path of the shipped horse ↔ zebra checkpoint (it may not exist)."""
    return find_checkpoints_dir(checkpoints_dir) / CHECKPOINT


def load_cyclegan(
    path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoints_dir: str | os.PathLike | None = None,
) -> CycleGAN:
    """A ``CycleGAN`` (G and F) in eval mode: the file at ``path`` (one written by
    ``train_cyclegan``), by default the course's horse ↔ zebra model.

    Raises:
        FileNotFoundError: no such file; for the course's model the message names the
            command that trains one.
        CheckpointError: a damaged file, or one holding another network (named).
    """
    if path is None:
        path = checkpoint_path(checkpoints_dir=checkpoints_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; train a horse ↔ zebra CycleGAN with "
                "`nstcourse train-cyclegan --steps N -o FILE` and load FILE"
            )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CycleGAN checkpoint {path}: no such file")
    return load_model(CycleGAN, path, device=pick_device(device)).eval()


def translate_image(generator: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """``generator(image)`` for (1, 3, H, W) in [0, 1] with H, W ≥ ``cyclegan.MIN_SIZE``:
    the image is reflect-padded up to multiples of 4 and the output cropped back to
    H × W; the result is on the CPU."""
    device = next(generator.parameters()).device
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
    with torch.inference_mode():
        x = F.pad(image.to(device), (0, pad_w, 0, pad_h), mode="reflect")
        return generator(x)[..., :height, :width].cpu()
