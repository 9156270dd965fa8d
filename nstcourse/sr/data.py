"""Super-resolution data: the papers' degradation, benchmark sets and patches.

SRCNN (Dong et al. 2014), VDSR (Kim et al. 2016), ESPCN (Shi et al. 2016) and SRGAN
(Ledig et al. 2017) all make the low-resolution (LR) input from a high-resolution (HR)
image the same way, in MATLAB:

    hr = modcrop(hr, s);  lr = imresize(hr, 1/s, 'bicubic');

and score on the luminance Y of MATLAB's ``rgb2ycbcr`` (``colour.y_channel``). PSNRs
are only comparable when this is reproduced exactly, so ``imresize(method="matlab")``
re-implements MATLAB's bicubic resize (antialiased when shrinking, mirrored borders);
``"pil"`` and ``"torch"`` are the two resizes PyTorch code often uses instead, to show
the difference.

Images are float tensors (N, C, H, W) in [0, 1], RGB unless said otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from nstcourse import data
from nstcourse.colour import _check_rgb, quantize_8bit, y_channel
from nstcourse.images import IMAGE_SUFFIXES, from_pil, load_image, to_pil

METHODS = ("matlab", "pil", "torch")
SR_SETS = ("Set5", "Set14", "BSD100", "Urban100_subset20", "T91")

# --- cropping and resizing ------------------------------------------------------------


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right so that H and W are multiples of ``scale``.

    Works on (C, H, W) and (N, C, H, W); returns a view.
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if image.dim() not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' (1981) cubic convolution kernel with a = -0.5, as MATLAB's ``imresize``.

    .. math::
        k(x) = \\begin{cases}
            1.5|x|^3 - 2.5|x|^2 + 1 & |x| \\le 1 \\\\
            -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 & 1 < |x| \\le 2 \\\\
            0 & \\text{otherwise}
        \\end{cases}
    """
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def matlab_resize_taps(
    in_length: int, out_length: int, scale: float, *, start: int = 0, stop: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's bicubic resize along one axis as taps: output pixel x (0-based) is
    ``sum_k weights[x, k] * input[index[x, k]]``.

    Output pixel x (1-based) samples the input at u = x / s + 0.5 (1 - 1/s). When
    shrinking (s < 1) the kernel is stretched to antialias: h(t) = s k(s t), width 4 / s.
    Each row holds the weights h(u - j) of the ceil(width) + 2 taps j around u, normalised
    to sum 1; taps outside [1, in_length] are mirrored back (1, 2, ..., L, L, ..., 1).
    Taps whose weight is 0 for every output are dropped (MATLAB drops them too).

    Only the outputs ``start:stop`` (default all) are computed, each exactly as in the
    full table, so a window of an image resizes to the same numbers as the whole.

    Returns:
        index (stop - start, taps) int64, 0-based input pixels; weights, the same shape,
        float64.
    """
    stop = out_length if stop is None else stop
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = torch.arange(start + 1, stop + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # (out,)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    j = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    distance = u[:, None] - j
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror: index j (1-based) -> position in [1..L, L..1] repeated.
    period = (j.long() - 1) % (2 * in_length)
    index = torch.where(period < in_length, period, 2 * in_length - 1 - period)
    used = (weights != 0).any(dim=0)
    return index[:, used], weights[:, used]


def matlab_resize_matrix(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The (out_length, in_length) float64 matrix of MATLAB's bicubic resize along one
    axis: ``matlab_resize_taps`` written out densely (for teaching; ``imresize`` applies
    the taps, which needs no (out × in) matrix: 1.5 GB for an 8000-px side at ×3)."""
    index, weights = matlab_resize_taps(in_length, out_length, scale)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, index, weights)  # a mirrored tap may land on a used column
    return matrix


def _output_size(
    height: int, width: int, scale: float | tuple[float, float] | None, size: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """(out_h, out_w) and per-axis scale, as MATLAB: out = ceil(s * in) or s = out / in."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale= or size=")
    if scale is None and size is not None:
        out_h, out_w = (int(n) for n in size)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"size must be positive, got {size}")
        return (out_h, out_w), (out_h / height, out_w / width)
    assert scale is not None  # exactly one of the two, checked above
    scale_h, scale_w = (scale, scale) if isinstance(scale, (int, float)) else scale
    if scale_h <= 0 or scale_w <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    # 1e-9: so that 50 * 1.1 = 55.00000000000001 gives 55, not 56 (float rounding).
    out_h = math.ceil(height * scale_h - 1e-9)
    out_w = math.ceil(width * scale_w - 1e-9)
    return (out_h, out_w), (float(scale_h), float(scale_w))


def imresize(
    image: torch.Tensor,
    *,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    method: str = "matlab",
    window: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Bicubic resize of an (N, C, H, W) float tensor, by ``scale`` or to ``size`` (H, W).

    Methods:
        ``"matlab"``: MATLAB's ``imresize(x, s, 'bicubic')`` on a double image: Keys
            kernel (a = -0.5), antialiased when shrinking, mirrored borders; applied as
            one set of taps per axis (``matlab_resize_taps``; the same as one matrix per
            axis, without building it), the axis with the smaller scale first (MATLAB's
            order; height first on a tie). Computed in float64. **Not clamped**: overshoot
            below 0 or above 1 is kept; callers clamp or quantise.
        ``"pil"``: Pillow's ``Image.BICUBIC`` on the image rounded to 8 bits (a = -0.5,
            antialiased, but borders clamped and 8-bit rounding after each axis); the
            result is 8-bit levels in [0, 1]. What many PyTorch repositories do.
        ``"torch"``: ``F.interpolate(mode="bicubic", align_corners=False,
            antialias=False)``: a = -0.75, no antialiasing when shrinking, borders
            clamped. What naive code does. Not clamped.

    The output size is ceil(s * in) per axis, as MATLAB's.

    ``window`` (top, bottom, left, right), "matlab" only: compute only the output rows
    top:bottom and columns left:right, from the input pixels they need; the numbers are
    exactly those of the whole resize, so a large image can be resized tile by tile
    (``nstcourse.sr.models.super_resolve`` does) in a fraction of the memory.

    Returns:
        (N, C, out_h, out_w) tensor of the input's dtype (the window's size with
        ``window``).
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (N, C, H, W), got shape {tuple(image.shape)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    height, width = image.shape[-2:]
    (out_h, out_w), (scale_h, scale_w) = _output_size(height, width, scale, size)
    if method == "matlab":
        box = _check_window(window, out_h, out_w)
        return _resize_matlab(image, out_h, out_w, scale_h, scale_w, box)
    if window is not None:
        raise ValueError(f'window= is for method="matlab" only, not {method!r}')
    if method == "pil":
        return _resize_pil(image, out_h, out_w)
    resized = F.interpolate(
        image, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=False
    )
    return resized


def _check_window(
    window: tuple[int, int, int, int] | None, out_h: int, out_w: int
) -> tuple[int, int, int, int]:
    """``window`` as (top, bottom, left, right) within the (out_h, out_w) output; None is
    the whole output."""
    if window is None:
        return 0, out_h, 0, out_w
    top, bottom, left, right = (int(n) for n in window)
    if not (0 <= top < bottom <= out_h and 0 <= left < right <= out_w):
        raise ValueError(
            f"window {tuple(window)} is not a non-empty (top, bottom, left, right) "
            f"within the {out_h}x{out_w} output"
        )
    return top, bottom, left, right


def _resize_matlab(
    image: torch.Tensor,
    out_h: int,
    out_w: int,
    scale_h: float,
    scale_w: float,
    window: tuple[int, int, int, int],
) -> torch.Tensor:
    """The ``window`` (top, bottom, left, right) of MATLAB's resize, from the input pixels
    its taps reach only; in float64, with at most the output and one term more in memory
    (no (out × in) matrices)."""
    height, width = image.shape[-2:]
    top, bottom, left, right = window
    rows = matlab_resize_taps(height, out_h, scale_h, start=top, stop=bottom)
    cols = matlab_resize_taps(width, out_w, scale_w, start=left, stop=right)
    r0, r1 = int(rows[0].min()), int(rows[0].max()) + 1  # the input rows the taps reach
    c0, c1 = int(cols[0].min()), int(cols[0].max()) + 1
    x = image[..., r0:r1, c0:c1].to(torch.float64)
    rows, cols = (rows[0] - r0, rows[1]), (cols[0] - c0, cols[1])
    if scale_h <= scale_w:  # MATLAB resizes the axis with the smaller scale first
        return _apply_taps(_apply_taps(x, *rows, dim=-2), *cols, dim=-1).to(image.dtype)
    return _apply_taps(_apply_taps(x, *cols, dim=-1), *rows, dim=-2).to(image.dtype)


def _apply_taps(
    x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, *, dim: int
) -> torch.Tensor:
    """Resample ``x`` along ``dim``: out[.., o, ..] = sum_k weights[o, k] x[.., index[o, k], ..],
    one tap at a time (the sum runs in the order of the taps)."""
    shape = [1] * x.dim()
    shape[dim] = -1
    index, weights = index.to(x.device), weights.to(x.device)
    out = x.index_select(dim, index[:, 0]) * weights[:, 0].view(shape)
    for k in range(1, index.shape[1]):
        out.add_(x.index_select(dim, index[:, k]) * weights[:, k].view(shape))
    return out


def _resize_pil(image: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    bicubic = Image.Resampling.BICUBIC
    out = []
    for single in image:  # (C, H, W)
        if single.shape[0] == 3:
            out.append(from_pil(to_pil(single).resize((out_w, out_h), bicubic))[0])
            continue
        channels = []
        for channel in single:  # any other channel count: one 8-bit "L" image per channel
            levels = np.round(channel.detach().clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
            resized = Image.fromarray(levels, mode="L").resize((out_w, out_h), bicubic)
            channels.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0))
        out.append(torch.stack(channels))
    return torch.stack(out).to(device=image.device, dtype=image.dtype)


def degrade(
    hr: torch.Tensor, scale: int, *, method: str = "matlab", quantize: bool = True
) -> torch.Tensor:
    """The LR image of the SR papers: ``imresize(modcrop(hr, s), 1/s, 'bicubic')``.

    Args:
        hr: (N, C, H, W) in [0, 1].
        scale: the integer upscaling factor s.
        method: "matlab" (the papers'), "pil" or "torch"; see ``imresize``.
        quantize: round to 8-bit levels, as the papers' MATLAB scripts saved uint8 images.

    Returns:
        (N, C, H // s, W // s), clamped to [0, 1].
    """
    hr = modcrop(hr, scale)
    lr = imresize(hr, scale=1 / scale, method=method).clamp(0, 1)
    return quantize_8bit(lr) if quantize else lr


def bicubic_upscale(
    lr: torch.Tensor,
    scale: int,
    *,
    method: str = "matlab",
    window: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Bicubic ×``scale`` upscaling: the bicubic baseline and the SRCNN/VDSR input.

    (N, C, h, w) in [0, 1] -> (N, C, h·s, w·s), clamped to [0, 1] (not quantised);
    ``window``: only that part of the output, as in ``imresize``.
    """
    return imresize(lr, scale=float(scale), method=method, window=window).clamp(0, 1)


# --- colour ---------------------------------------------------------------------------


# --- benchmark and training sets ------------------------------------------------------


def load_sr_set(
    name: str, *, data_dir: str | os.PathLike | None = None
) -> list[tuple[str, torch.Tensor]]:
    """The HR images of an SR set as (stem, (1, 3, H, W) tensor in [0, 1]), sorted by name.

    ``name`` is one of ``SR_SETS``; the images are read from ``<data_dir>/sr/<name>`` when
    ``data_dir`` is given, else found by ``data.folder_files``:
    ``$NSTCOURSE_DATA_DIR/sr/<name>``, the per-user cache, or fetched into it on first use
    (from ``$NSTCOURSE_DATA_MIRROR`` when set). Grayscale images (Set14's bridge) come
    back with three equal channels.
    """
    if name not in SR_SETS:
        raise ValueError(f"name must be one of {SR_SETS}, got {name!r}")
    if data_dir is None:
        files = data.folder_files(f"sr/{name}")
    else:
        folder = Path(data_dir).expanduser() / "sr" / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"SR set {name!r}: folder {folder} not found; put the set's HR images there, "
                f"or leave data_dir= out to use ${data.DATA_DIR_ENV} or the download"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"SR set {name!r}: no images in {folder}")
    return [(path.stem, load_image(path)) for path in files]


class PatchDataset(Dataset):
    """Aligned random (LR, HR) patch pairs for training SR networks.

    Each HR image is mod-cropped and degraded once (``degrade``); item ``index`` is a
    random crop of image ``index % len(images)``: an LR patch of ``patch_size`` at
    (i, j) and the HR patch of ``patch_size * scale`` at (i·s, j·s). With
    ``pre_upsample`` the LR patch is cut from the bicubic-upscaled LR image instead, at
    the HR patch's size and place (the SRCNN/VDSR input). Augmentation: a random
    horizontal flip and a rotation by 0/90/180/270°, the same for both.

    Item ``index`` depends only on (``seed``, ``index``), so a resumed run sees exactly
    the patches it would have seen.

    Returns per item ``(lr, hr)``: (C, p, p) or (C, p·s, p·s) and (C, p·s, p·s) in
    [0, 1], C = 1 for ``channels="y"`` (the Y of ``rgb_to_ycbcr``, not rounded), 3 for
    ``"rgb"``.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        *,
        scale: int,
        patch_size: int,
        degradation: str = "matlab",  # the papers' MATLAB bicubic
        channels: str = "y",  # SRCNN, ESPCN and VDSR train on Y only
        pre_upsample: bool = False,
        augment: bool = True,
        patches_per_image: int = 100,  # T91: 9,100 patches per epoch
        seed: int = 0,
    ) -> None:
        if channels not in ("y", "rgb"):
            raise ValueError(f'channels must be "y" or "rgb", got {channels!r}')
        if degradation not in METHODS:
            raise ValueError(f"degradation must be one of {METHODS}, got {degradation!r}")
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if patches_per_image < 1:
            raise ValueError(f"patches_per_image must be positive, got {patches_per_image}")
        if len(images) == 0:
            raise ValueError("images is empty")
        self.scale, self.patch_size = scale, patch_size
        self.pre_upsample, self.augment = pre_upsample, augment
        self.patches_per_image, self.seed = patches_per_image, seed
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for number, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
                raise ValueError(f"images[{number}] must be a (3, H, W) or (1, 3, H, W) tensor")
            hr = modcrop(image if image.dim() == 4 else image[None], scale)
            _check_rgb(hr, f"images[{number}]")
            if min(hr.shape[-2:]) < patch_size * scale:
                raise ValueError(
                    f"images[{number}] is {tuple(hr.shape[-2:])} after modcrop, smaller than "
                    f"the HR patch {patch_size * scale} (patch_size={patch_size} × scale={scale})"
                )
            lr = degrade(hr, scale, method=degradation)
            if pre_upsample:
                lr = bicubic_upscale(lr, scale, method=degradation)
            if channels == "y":
                hr, lr = y_channel(hr), y_channel(lr)
            self.pairs.append((lr[0].contiguous(), hr[0].contiguous()))

    def __len__(self) -> int:
        return len(self.pairs) * self.patches_per_image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        lr, hr = self.pairs[index % len(self.pairs)]
        rng = np.random.default_rng([self.seed, index])
        s, p = self.scale, self.patch_size
        i = int(rng.integers(0, hr.shape[-2] // s - p + 1))  # LR-grid top-left
        j = int(rng.integers(0, hr.shape[-1] // s - p + 1))
        hr_patch = hr[:, i * s : (i + p) * s, j * s : (j + p) * s]
        if self.pre_upsample:
            lr_patch = lr[:, i * s : (i + p) * s, j * s : (j + p) * s]
        else:
            lr_patch = lr[:, i : i + p, j : j + p]
        if self.augment:
            flip, turns = bool(rng.integers(0, 2)), int(rng.integers(0, 4))
            lr_patch, hr_patch = (_flip_rotate(x, flip, turns) for x in (lr_patch, hr_patch))
        return lr_patch.contiguous(), hr_patch.contiguous()


def _flip_rotate(patch: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    """Horizontal flip (optional), then rotation by ``turns`` × 90° counter-clockwise."""
    if flip:
        patch = patch.flip(-1)
    return torch.rot90(patch, turns, dims=(-2, -1))
