"""Image quality metrics: the SR papers' PSNR and SSIM, on Y, with a border shave, and
``blob_share``, the saturated blobs a feed-forward style network paints (04, 09, 10), and
``mean_gradient``, a sharpness score (08).

The papers score an upscaled image against the HR ground truth on the luminance Y of
MATLAB's ``rgb2ycbcr``, after removing ``shave`` = s pixels at every border (the
border the bicubic input gets wrong). Their images are uint8, so with ``quantize=True``
(the default) we reproduce that:

1. both images are clamped and rounded to 8-bit levels, x = round(255 x) / 255;
2. Y is computed from those levels and rounded to 8-bit levels again, as MATLAB's
   ``rgb2ycbcr`` does on uint8 input;
3. PSNR/SSIM are computed on the rounded values (scaled to [0, 1]).

Images are (N, C, H, W) tensors in [0, ``data_range``]: RGB (C = 3) for either
channel setting, or an already-extracted Y (C = 1) for ``channel="y"``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label

from nstcourse.colour import quantize_8bit, y_channel

CHANNELS = ("y", "rgb")

# Wang, Bovik, Sheikh & Simoncelli (2004): 11x11 Gaussian window, sigma 1.5.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # scikit-image: int(3.5 * sigma + 0.5), an 11-tap filter
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _prepare(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    shave: int,
    channel: str,
    quantize: bool,
    data_range: float,
    min_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check, scale to [0, 1], quantise, take Y and shave: two float64 (N, C', h, w)."""
    if sr.shape != hr.shape:
        raise ValueError(
            f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )
    if sr.dim() != 4:
        raise ValueError(f"sr and hr must be (N, C, H, W), got shape {tuple(sr.shape)}")
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if channel == "y" and sr.shape[1] not in (1, 3):
        raise ValueError(f'channel="y" needs RGB or Y images (C = 3 or 1), got C = {sr.shape[1]}')
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if not isinstance(shave, int) or shave < 0:
        raise ValueError(f"shave must be a non-negative integer, got {shave!r}")
    height, width = sr.shape[-2:]
    if min(height, width) - 2 * shave < min_size:
        raise ValueError(
            f"shave={shave} leaves {height - 2 * shave}x{width - 2 * shave} of the "
            f"{height}x{width} images; at least {min_size}x{min_size} is needed"
        )
    images = []
    for image in (sr, hr):
        x = image.detach().to(torch.float64) / data_range
        if quantize:
            x = quantize_8bit(x)
        if channel == "y" and x.shape[1] == 3:
            x = y_channel(x)
            if quantize:
                x = quantize_8bit(x)  # MATLAB's rgb2ycbcr on uint8 returns uint8
        images.append(x[..., shave : height - shave, shave : width - shave])
    return images[0], images[1]


def _per_image(values: torch.Tensor) -> float | torch.Tensor:
    return values.item() if values.numel() == 1 else values


def psnr(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    shave: int = 0,
    channel: str = "y",
    quantize: bool = True,
    data_range: float = 1.0,
) -> float | torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    .. math::
        \\mathrm{PSNR} = 10 \\log_{10} \\frac{1}{\\mathrm{MSE}}, \\quad
        \\mathrm{MSE} = \\frac{1}{C h w} \\sum (x_{sr} - x_{hr})^2

    on images scaled to [0, 1] (``data_range`` is the peak of the inputs), after the
    quantisation and Y conversion described in the module docstring and a ``shave``-pixel
    border crop. Identical images give ``inf``.

    Args:
        sr, hr: (N, C, H, W) in [0, data_range].
        shave: pixels removed at each border (the papers use the scale factor).
        channel: "y" (MATLAB's Y) or "rgb" (all channels as given).
        quantize: round to 8-bit levels first, as the papers' uint8 images were.
        data_range: the inputs' peak value (1.0 for the package's images).

    Returns:
        a float for N = 1, else a float64 tensor (N,).
    """
    x, y = _prepare(sr, hr, shave=shave, channel=channel, quantize=quantize, data_range=data_range)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    return _per_image(10 * torch.log10(1 / mse))


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian, 2 r + 1 taps: (2r + 1,)."""
    t = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian mean over the valid region: (M, 1, h, w) -> (M, 1, h-2r, w-2r)."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    shave: int = 0,
    channel: str = "y",
    quantize: bool = True,
    data_range: float = 1.0,
) -> float | torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, mean over channels.

    .. math::
        \\mathrm{SSIM}(x, y) = \\frac{(2 \\mu_x \\mu_y + C_1)(2 \\sigma_{xy} + C_2)}
            {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)},
        \\quad C_1 = (0.01 L)^2, \\; C_2 = (0.03 L)^2

    with means and population (co)variances weighted by an 11×11 Gaussian window
    (σ = 1.5), averaged over every window that lies wholly inside the (shaved) image,
    so images must be at least 11×11 after shaving. This equals scikit-image's
    ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``, which filters with reflected borders
    and then discards the 5-pixel border the reflection reached (for RGB: per channel,
    then the mean). Preprocessing (quantisation, Y, shave) is as for ``psnr``.

    Returns:
        a float for N = 1, else a float64 tensor (N,).
    """
    x, y = _prepare(
        sr,
        hr,
        shave=shave,
        channel=channel,
        quantize=quantize,
        data_range=data_range,
        min_size=2 * SSIM_RADIUS + 1,
    )
    n, c, h, w = x.shape
    x, y = x.reshape(n * c, 1, h, w), y.reshape(n * c, 1, h, w)
    g = _gaussian_window(x.dtype, x.device)
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    var_x = _filter(x * x, g) - mu_x**2
    var_y = _filter(y * y, g) - mu_y**2
    cov_xy = _filter(x * y, g) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # L = 1 after scaling by data_range
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    per_channel = ssim_map.mean(dim=(1, 2, 3)).reshape(n, c)
    return _per_image(per_channel.mean(dim=1))


NEAR_WHITE = 235 / 255  # a channel at least this is at the top of its range; at most 1 − it: bottom
MIN_BLOB_AREA = 0.002  # a blob covers at least 0.2 % of the image
BLOB_KINDS = ("white", "dark", "clipped")


def saturated(
    image: torch.Tensor, kind: str = "white", *, level: float = NEAR_WHITE
) -> torch.Tensor:
    """Which pixels sit at the edge of the colour range, as ``kind`` says.

    A channel value c is *high* if c ≥ ``level`` and *low* if c ≤ 1 − ``level``.

    - "white": all three channels high (near-white);
    - "dark": all three low (near-black);
    - "clipped": at least two of the three channels high or low, in any mix: white, black,
      and also saturated colours such as red (1, 0, 0), yellow (1, 1, 0) or a dark green
      (0.01, 0.15, 0): the pixels a network gets when its output runs into the ends of
      its range, whatever the colour.

    Args:
        image: (1, 3, H, W) or (3, H, W) in [0, 1].
    Returns:
        an (H, W) bool tensor on the CPU.
    """
    x = image.detach().float().reshape(3, *image.shape[-2:]).cpu()
    high, low = x >= level, x <= 1 - level
    if kind == "white":
        return high.all(0)
    if kind == "dark":
        return low.all(0)
    if kind == "clipped":
        return (high | low).sum(0) >= 2
    raise ValueError(f"kind={kind!r}; use one of {BLOB_KINDS}")


def blob_share(
    image: torch.Tensor,
    photo: torch.Tensor,
    *,
    kind: str = "white",
    level: float = NEAR_WHITE,
    min_area: float = MIN_BLOB_AREA,
) -> float:
    """The share of ``image`` covered by saturated blobs that ``photo`` does not have.

    A pixel is saturated as ``saturated(…, kind)`` says: near-white ("white"), near-black
    ("dark": holes) or clipped in at least two channels ("clipped": blobs of any colour).
    A blob is an 8-connected region of pixels that are saturated in ``image`` where
    ``photo`` is not, kept if it covers at least ``min_area`` of the image (smaller specks
    are highlights and noise). Returns the kept blobs' total area over H·W, in [0, 1]: 0
    for a stylised image whose saturated areas all come from the photo (a white wall stays
    white, a grey sky does not turn white).

    Args:
        image: a stylised photo, (1, 3, H, W) or (3, H, W) in [0, 1].
        photo: the photo it was made from, the same shape.
        kind: "white", "dark" or "clipped".
        level: the threshold of ``saturated``, in (0.5, 1].
        min_area: the smallest blob counted, as a share of the image, in [0, 1).
    """
    if image.shape != photo.shape or image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            f"blob_share expects two (1, 3, H, W) or (3, H, W) images of one shape, got "
            f"{tuple(image.shape)} and {tuple(photo.shape)}"
        )
    if image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"blob_share takes one image, got a batch of {image.shape[0]}")
    if not 0.5 < level <= 1 or not 0 <= min_area < 1:
        raise ValueError(f"level={level} must be in (0.5, 1], min_area={min_area} in [0, 1)")

    new = saturated(image, kind, level=level) & ~saturated(photo, kind, level=level)
    mask = new.numpy()
    regions = label(mask, connectivity=2)
    areas = np.bincount(regions.ravel())[1:]  # label 0 is the background
    total = mask.size
    return float(areas[areas >= min_area * total].sum() / total)


def mean_gradient(image: torch.Tensor, *, shave: int = 0) -> float:
    r"""How steep the edges are: the mean gradient magnitude of the luminance Y.

    .. math::
        G(x) = \operatorname{mean}_{i,j} \sqrt{(Y_{i+1,j} - Y_{i,j})^2 + (Y_{i,j+1} - Y_{i,j})^2}

    with Y = ``colour.y_channel`` in [16, 235]/255, after removing ``shave`` pixels at
    each border. As a sharpness score it is read relative to the HR image's: G(sr) / G(hr)
    below 1 is softer than the truth, above 1 has more steep change than the truth (noise,
    artefacts and invented detail count as "sharp" too).

    Args:
        image: (1, 3, H, W) RGB in [0, 1].
    """
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"mean_gradient takes one (1, 3, H, W) image, got {tuple(image.shape)}")
    if shave:
        image = image[..., shave:-shave, shave:-shave]
    y = y_channel(image.float())[0, 0]
    dy, dx = y[1:, :-1] - y[:-1, :-1], y[:-1, 1:] - y[:-1, :-1]
    return (dy**2 + dx**2).sqrt().mean().item()
