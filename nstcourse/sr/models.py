"""Using the super-resolution models: what each is fed, upscaling, scoring, checkpoints.

The five papers feed their networks differently:

==========  ==============================  ==========================================  =======
name        class                           input (all in [0, 1])                       scales
==========  ==============================  ==========================================  =======
srcnn       ``srcnn.SRCNN``                 Y of the LR image, bicubic-upscaled ×s      3
espcn       ``espcn.ESPCN``                 Y of the LR image                           2, 3, 4
vdsr        ``vdsr.VDSR``                   Y, bicubic-upscaled; one model for all s    2, 3, 4
srresnet    ``srgan.SRResNet``              the RGB LR image                            4
srgan       ``srgan.SRResNet``              the RGB LR image (adversarially trained G)  4
perceptual  ``perceptual.PerceptualSRNet``  the RGB LR image (Johnson et al. 2016)      4, 8
==========  ==============================  ==========================================  =======

("bicubic" is always MATLAB's, ``sr.data.imresize(method="matlab")``.) The Y models
(Dong et al. 2014, Shi et al. 2016, Kim et al. 2016) only sharpen the luminance: the
chroma Cb, Cr is bicubic-upscaled and recombined with the network's Y.

The scales column is what the course ships as checkpoints (``checkpoints/``): files
``srcnn_x3.safetensors``, ``espcn_x{2,3,4}.safetensors``, ``vdsr.safetensors`` (every
scale), ``srresnet_x4.safetensors``, ``srgan_x4.safetensors`` and
``perceptual_x{4,8}.safetensors``, written by
``nstcourse.sr.recipes.train_sr`` (``nstcourse train-sr``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nstcourse.budget import meta_copy, peak_bytes
from nstcourse.checkpoints import (
    CHECKPOINTS_DIR_ENV,
    CheckpointError,
    checkpoint_info,
    find_checkpoints_dir,
    load_model,
)
from nstcourse.colour import rgb_to_ycbcr, ycbcr_to_rgb
from nstcourse.features import VGGFeatures
from nstcourse.metrics import mean_gradient, psnr, ssim
from nstcourse.runmode import pick_device
from nstcourse.sr.data import bicubic_upscale, degrade, load_sr_set, modcrop
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.perceptual import PerceptualSRNet, feature_distance
from nstcourse.sr.srcnn import SRCNN
from nstcourse.sr.srgan import SRResNet
from nstcourse.sr.vdsr import VDSR


@dataclass(frozen=True)
class SRModel:
    """How one SR model is used.

    Attributes:
        cls: the network class.
        channels: "y" (the net sees and returns MATLAB's Y only) or "rgb".
        pre_upsample: the input is bicubic-upscaled to the output size first.
        scales: the scales the course ships checkpoints for.
        multi_scale: one checkpoint serves every scale (VDSR).
        min_input_side: the smallest input side (in the net's input pixels) accepted:
            the first layer's kernel. Smaller, and the zero padding is most of what the
            first layer sees.
    """

    cls: type[nn.Module]
    channels: str
    pre_upsample: bool
    scales: tuple[int, ...]
    multi_scale: bool = False
    min_input_side: int = 3

    def min_lr_side(self, scale: int) -> int:
        """The smallest LR image side this model accepts at ``scale``."""
        per_input = self.min_input_side / scale if self.pre_upsample else self.min_input_side
        return max(1, math.ceil(per_input))


FEATURE_LAYER = "relu2_2"  # what the perceptual measures of ``evaluate`` compare

MODELS: dict[str, SRModel] = {
    "srcnn": SRModel(SRCNN, "y", pre_upsample=True, scales=(3,), min_input_side=9),
    "espcn": SRModel(ESPCN, "y", pre_upsample=False, scales=(2, 3, 4), min_input_side=5),
    "vdsr": SRModel(VDSR, "y", pre_upsample=True, scales=(2, 3, 4), multi_scale=True),
    "srresnet": SRModel(SRResNet, "rgb", pre_upsample=False, scales=(4,), min_input_side=9),
    "srgan": SRModel(SRResNet, "rgb", pre_upsample=False, scales=(4,), min_input_side=9),
    "perceptual": SRModel(
        PerceptualSRNet, "rgb", pre_upsample=False, scales=(4, 8), min_input_side=9
    ),
}


def model_spec(name: str) -> SRModel:
    """``MODELS[name]``, or a ValueError listing the known names."""
    if name not in MODELS:
        raise ValueError(f"unknown SR model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


# --- upscaling ---------------------------------------------------------------------------


def super_resolve(
    model: nn.Module,
    lr: torch.Tensor,
    *,
    name: str,
    scale: int,
    tile: int | None = None,
) -> torch.Tensor:
    """Upscale one RGB image with an SR network, fed the way its paper feeds it.

    Y models (srcnn, espcn, vdsr): x = Y of ``rgb_to_ycbcr(lr)`` (bicubic-upscaled ×s
    first for srcnn and vdsr); the output is ``ycbcr_to_rgb([net(x), Cb↑, Cr↑])`` with
    Cb↑, Cr↑ the MATLAB-bicubic-upscaled chroma. RGB models (srresnet, srgan): the
    output is ``net(lr)``. The result is clamped to [0, 1].

    Runs under ``torch.inference_mode`` with the model in eval mode (its mode is
    restored afterwards), on the model's device.

    Args:
        model: the network (e.g. from ``load_pretrained``).
        lr: (1, 3, h, w) RGB in [0, 1].
        name: a key of ``MODELS``: how the model is fed.
        scale: the upscaling factor s (the model must have been built/trained for it).
        tile: None runs the whole image at once; an int runs every step on tiles of at
            most tile × tile pixels of the net's input (the LR image, or its bicubic
            upscaling for srcnn and vdsr): the net sees each tile with a margin as wide as
            its receptive field, the bicubic chroma and pre-upsampling are computed for
            the tile only (``sr.data.imresize``'s ``window``), and each tile is written
            into the output. The result is the same up to float rounding; the memory is
            the image, the output and one tile's work (``super_resolve_bytes``).

    Returns:
        (1, 3, s·h, s·w) RGB in [0, 1], float32, on the input's device.
    """
    spec = model_spec(name)
    _check_request(lr.shape, spec, name, scale, tile)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            job = _Upscale(model, lr, spec=spec, name=name, scale=scale, tile=tile)
            for box in job.boxes:
                job.run(box)
    finally:
        model.train(was_training)
    return job.out


def super_resolve_bytes(
    model: nn.Module, height: int, width: int, *, name: str, scale: int, tile: int | None = None
) -> int:
    """The peak bytes ``super_resolve`` allocates for a ``height`` × ``width`` image
    beyond the image itself: its output, the image in YCbCr, and the largest tile's
    activations and bicubic temporaries (the whole image's when ``tile`` is None).

    Counted by running the same code on a ``meta`` copy of the model
    (``budget.peak_bytes``): no memory is used and the model's own layers are followed,
    whatever their settings. The tiles are alike, so one (the largest) is run.
    """
    spec = model_spec(name)
    _check_request((1, 3, height, width), spec, name, scale, tile)
    meta_model = meta_copy(model).eval()
    lr = torch.empty(1, 3, height, width, device="meta")

    def largest_tile() -> torch.Tensor:
        with torch.inference_mode():
            job = _Upscale(meta_model, lr, spec=spec, name=name, scale=scale, tile=tile)
            job.run(max(job.boxes, key=lambda box: (box[1] - box[0]) * (box[3] - box[2])))
        return job.out

    return peak_bytes(largest_tile)


def _check_request(
    shape: Sequence[int], spec: SRModel, name: str, scale: int, tile: int | None
) -> None:
    """ValueErrors for what ``super_resolve`` cannot do: not one RGB image, a bad scale or
    tile, an image smaller than the model's first layer."""
    if len(shape) != 4 or tuple(shape[:2]) != (1, 3):
        raise ValueError(f"lr must be one RGB image (1, 3, h, w), got {tuple(shape)}")
    if not isinstance(scale, int) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    smallest = spec.min_lr_side(scale)
    if min(shape[-2:]) < smallest:
        raise ValueError(
            f"a {shape[-1]}x{shape[-2]} image is too small for {name} x{scale}: "
            f"both sides need at least {smallest} px"
        )


def _check_output(out: torch.Tensor, expected: tuple[int, ...], name: str, scale: int) -> None:
    if tuple(out.shape) != expected:
        raise ValueError(
            f"{name}: the network returned {tuple(out.shape)}, expected {expected}; "
            f"was it built for x{scale}?"
        )


Box = tuple[int, int, int, int]  # top, bottom, left, right


class _Upscale:
    """One ``super_resolve`` call, tile by tile: the image is prepared once (moved to the
    model's device; its YCbCr for the Y models) and the output allocated; ``run(box)``
    computes one tile of the net's input grid and writes it into ``out``.

    The grid is the LR image (espcn, srresnet, srgan: the net's output is ``scale`` times
    larger) or its bicubic upscaling (srcnn, vdsr: the net keeps the size).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: torch.Tensor,
        *,
        spec: SRModel,
        name: str,
        scale: int,
        tile: int | None,
    ) -> None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else lr.device
        height, width = lr.shape[-2:]
        self.model, self.name, self.scale = model, name, scale
        self.out = torch.empty(1, 3, scale * height, scale * width, device=lr.device)
        x = lr.to(device=device, dtype=torch.float32)
        self.ycbcr = None if spec.channels == "rgb" else rgb_to_ycbcr(x)  # (1, 3, h, w)
        self.source = x if self.ycbcr is None else self.ycbcr[:, :1]
        self.pre_upsample = spec.pre_upsample
        self.net_scale = 1 if spec.pre_upsample else scale  # output px per net-input px
        grid = (scale * height, scale * width) if spec.pre_upsample else (height, width)
        self.grid, self.margin = grid, receptive_radius(model)
        self.boxes = _tiles(grid, tile)

    def run(self, box: Box) -> None:
        """Compute the output of net-input tile ``box`` and write it into ``out``."""
        top, bottom, left, right = box
        height, width = self.grid
        t0, t1 = max(top - self.margin, 0), min(bottom + self.margin, height)
        l0, l1 = max(left - self.margin, 0), min(right + self.margin, width)
        if self.pre_upsample:  # the bicubic upscaling of this tile (and margin) only
            x = bicubic_upscale(self.source, self.scale, method="matlab", window=(t0, t1, l0, l1))
        else:
            x = self.source[..., t0:t1, l0:l1]
        y = self.model(x)
        s = self.net_scale
        _check_output(y, (1, x.shape[1], (t1 - t0) * s, (l1 - l0) * s), self.name, self.scale)
        y = y[..., (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s]
        window = (top * s, bottom * s, left * s, right * s)  # in output pixels
        if self.ycbcr is not None:  # the net's Y with the bicubic chroma of the same window
            chroma = bicubic_upscale(self.ycbcr[:, 1:], self.scale, method="matlab", window=window)
            y = ycbcr_to_rgb(torch.cat([y, chroma], dim=1))
        self.out[..., window[0] : window[1], window[2] : window[3]] = y.clamp(0, 1)


def _tiles(grid: tuple[int, int], tile: int | None) -> list[Box]:
    """The (top, bottom, left, right) tiles of at most ``tile`` px covering ``grid``, row
    by row; one box for the whole grid when ``tile`` is None."""
    height, width = grid
    if tile is None:
        return [(0, height, 0, width)]
    return [
        (top, min(top + tile, height), left, min(left + tile, width))
        for top in range(0, height, tile)
        for left in range(0, width, tile)
    ]


def receptive_radius(model: nn.Module) -> int:
    """An upper bound on how far (in input pixels) an output pixel sees: the sum of the
    convolutions' half-widths (exact for nets whose convolutions all run at input size;
    an overestimate for layers after an upsampling, which is safe for tiling)."""
    radius = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            dh, dw = module.dilation
            radius += max((kh - 1) // 2 * dh, (kw - 1) // 2 * dw)
    return radius


# --- scoring ---------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    name: str,
    scale: int,
    images: str | Sequence[tuple[str, torch.Tensor]],
    *,
    shave: int | None = None,
    tile: int | None = None,
    features: VGGFeatures | None = None,
) -> dict[str, Any]:
    """PSNR-Y and SSIM-Y of ``model`` and of bicubic upscaling under the papers' protocol.

    For each HR image: hr = modcrop(hr, s); lr = ``degrade(hr, s, method="matlab")``
    (8-bit); sr = ``super_resolve(model, lr)`` and the baseline
    ``bicubic_upscale(lr, s, method="matlab")``; both scored against hr on MATLAB's Y
    with 8-bit rounding and a ``shave``-pixel border removed (``metrics.psnr``/``ssim``).

    Args:
        model, name, scale: as for ``super_resolve``.
        images: an SR set name (``sr.data.SR_SETS``, read with ``load_sr_set``) or a list
            of (stem, (1, 3, H, W) HR tensor in [0, 1]).
        shave: border pixels removed before scoring; None means ``scale`` (the papers).
        tile: passed to ``super_resolve``.
        features: a ``VGGFeatures`` returning ``FEATURE_LAYER`` (relu2_2): then also what
            a perceptual loss sees, for the model and bicubic: "feature_distance"
            (``perceptual.feature_distance`` at relu2_2, in the extractor's units) and
            "sharpness" (``metrics.mean_gradient`` relative to the HR image's; 1 = as steep
            as the truth), both on the shaved RGB images.

    Returns:
        ``{"psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y"`` (and with ``features``
        "feature_distance", "sharpness" and their "bicubic_" twins)``: means over the
        images, "per_image": {stem: the same}}``; floats in dB (PSNR) and [0, 1] (SSIM),
        JSON-serialisable.
    """
    if isinstance(images, str):
        images = load_sr_set(images)
    if len(images) == 0:
        raise ValueError("evaluate: no images")
    shave = scale if shave is None else shave
    per_image: dict[str, dict[str, float]] = {}
    for stem, image in images:
        hr = modcrop(image, scale)
        lr = degrade(hr, scale, method="matlab")
        sr = super_resolve(model, lr, name=name, scale=scale, tile=tile)
        bicubic = bicubic_upscale(lr, scale, method="matlab")
        per_image[stem] = {
            "psnr_y": float(psnr(sr, hr, shave=shave)),
            "ssim_y": float(ssim(sr, hr, shave=shave)),
            "bicubic_psnr_y": float(psnr(bicubic, hr, shave=shave)),
            "bicubic_ssim_y": float(ssim(bicubic, hr, shave=shave)),
        }
        if features is not None:
            hr_gradient = mean_gradient(hr, shave=shave)
            for prefix, image in (("", sr), ("bicubic_", bicubic)):
                per_image[stem] |= {
                    f"{prefix}feature_distance": feature_distance(
                        image, hr, features, layer=FEATURE_LAYER, shave=shave
                    ),
                    f"{prefix}sharpness": mean_gradient(image, shave=shave) / hr_gradient,
                }
    keys = next(iter(per_image.values())).keys()
    means = {key: sum(m[key] for m in per_image.values()) / len(per_image) for key in keys}
    return {**means, "per_image": per_image}


# --- course checkpoints ---------------------------------------------------------------------


def checkpoint_name(name: str, scale: int | None = None) -> str:
    """The file name of a course checkpoint: ``<name>_x<scale>.safetensors``, or
    ``vdsr.safetensors`` for the multi-scale VDSR (``scale`` then only checked)."""
    spec = model_spec(name)
    scale = _shipped_scale(name, spec, scale)
    return f"{name}.safetensors" if spec.multi_scale else f"{name}_x{scale}.safetensors"


def checkpoint_path(
    name: str, scale: int | None = None, *, checkpoints_dir: str | os.PathLike | None = None
) -> Path:
    """Path of the course checkpoint for ``name`` at ``scale`` (it may not exist yet)."""
    return find_checkpoints_dir(checkpoints_dir) / checkpoint_name(name, scale)


def train_command(name: str, scale: int | None, out: str | os.PathLike) -> str:
    """The ``nstcourse train-sr`` command that writes checkpoint ``out``."""
    spec = model_spec(name)
    scales = ",".join(map(str, spec.scales)) if spec.multi_scale else str(scale)
    return f"nstcourse train-sr {name} --scale {scales} --steps N -o {out}"


def load_pretrained(
    name: str,
    scale: int | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoints_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A course checkpoint (see the module docstring) as a model in eval mode.

    Args:
        name: a key of ``MODELS``.
        scale: the upscaling factor; may be omitted when the model ships one scale
            (srcnn 3, srresnet/srgan 4) or one model for all (vdsr).
        device: None picks CUDA, then MPS, then CPU.
        checkpoints_dir: the folder (default: see ``find_checkpoints_dir``).

    Raises:
        FileNotFoundError: the file is missing; the message names the file and the
            ``nstcourse train-sr`` command that makes it.
        ValueError: unknown name, a scale the course does not ship, or a file that does
            not hold that model.
    """
    spec = model_spec(name)
    scale = _shipped_scale(name, spec, scale)
    path = checkpoint_path(name, scale, checkpoints_dir=checkpoints_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} checkpoint {path} not found; train it with: "
            f"{train_command(name, scale, path)}"
            f" (or point ${CHECKPOINTS_DIR_ENV} at a folder that has {path.name})"
        )
    return load_sr_checkpoint(path, name=name, scale=scale, device=device)


def load_sr_checkpoint(
    path: str | os.PathLike,
    *,
    name: str,
    scale: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Load a ``checkpoints.save_model`` file holding SR model ``name``, checking that it
    is that model's class and, if ``scale`` is given, that it was trained for that scale
    (by its metadata and, for nets built for one scale, by its settings).

    Raises:
        FileNotFoundError: no such file.
        ValueError: (``CheckpointError``) the file holds something else, another scale,
            or is damaged or crafted (see ``checkpoints.load_model``); the message names it.
    """
    spec = model_spec(name)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    info = checkpoint_info(path)
    check_sr_class(info, path, name)
    scales = checkpoint_scales(info)
    if scale is not None and scales and scale not in scales:
        raise CheckpointError(
            f"{path} was trained for x{', x'.join(map(str, scales))}, not x{scale}"
        )
    built_for = info["kwargs"].get("scale")
    if scale is not None and not spec.pre_upsample and built_for not in (None, scale):
        raise CheckpointError(f"{path}: its settings build a x{built_for} {name}, not x{scale}")
    return load_model(spec.cls, path, device=pick_device(device))


def check_sr_class(info: dict[str, Any], path: str | os.PathLike, name: str) -> None:
    """A CheckpointError naming ``path`` unless its metadata (``checkpoint_info``) holds
    the class of SR model ``name``; the message says what the file holds instead."""
    expected = model_spec(name).cls.__name__
    held = info["class"]
    if held == expected:
        return
    if held in {spec.cls.__name__ for spec in MODELS.values()}:
        raise CheckpointError(f"{path} holds a {held}, not a {name} ({expected})")
    raise CheckpointError(
        f"{path} holds a {held}, not an SR model (one of {', '.join(MODELS)}); "
        "SR checkpoints come from nstcourse train-sr"
    )


def checkpoint_scales(info: dict[str, Any]) -> tuple[int, ...]:
    """The scale(s) a checkpoint's metadata says it was trained for (() if none)."""
    if "scales" in info:
        return tuple(int(s) for s in info["scales"])
    if "scale" in info:
        return (int(info["scale"]),)
    return ()


def _shipped_scale(name: str, spec: SRModel, scale: int | None) -> int | None:
    if scale is None:
        if len(spec.scales) == 1:
            return spec.scales[0]
        if spec.multi_scale:
            return None
        raise ValueError(
            f"{name}: give a scale; the course ships x{', x'.join(map(str, spec.scales))}"
        )
    if scale not in spec.scales:
        raise ValueError(
            f"{name} has no x{scale} checkpoint; the course ships {_format_scales(spec.scales)}"
        )
    return scale


def _format_scales(scales: Sequence[int]) -> str:
    """(2, 3, 4) -> 'x2, x3, x4'."""
    return ", ".join(f"x{s}" for s in scales)
