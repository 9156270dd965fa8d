"""Colour control for style transfer (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017,
"Controlling Perceptual Factors in Neural Style Transfer", §5).

Three ways to keep the content's colours:

- luminance-only transfer: transfer style on the luminance channel only, after matching
  the style's luminance mean and spread to the content's (``match_luminance``), then put
  the content's chrominance back (``luminance_swap``);
- colour histogram matching: recolour the style so that its mean and covariance of RGB
  match the content's before transfer (``match_colour``);
- the post-hoc swap: transfer as usual and replace the result's chrominance by the
  content's (``luminance_swap``).

The super-resolution papers' colour space lives here too: MATLAB's ``rgb2ycbcr``
(``rgb_to_ycbcr``, ``ycbcr_to_rgb``, ``y_channel``: ITU-R BT.601 studio range), on whose
luminance Y the SR networks are trained and scored, and ``quantize_8bit``, the rounding
an 8-bit image file applies before scoring.

Images are (N, 3, H, W) RGB in [0, 1]; luminance channels are (N, 1, H, W).
"""

from __future__ import annotations

import torch

# NTSC YIQ (FCC 1953): Y is the luminance, I and Q the chrominance.
RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] → YIQ; Y in [0, 1], I in ±0.596, Q in ±0.523."""
    matrix = RGB_TO_YIQ.to(image)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_yiq`` (not clamped: out-of-gamut YIQ gives RGB outside [0, 1])."""
    matrix = torch.linalg.inv(RGB_TO_YIQ.double()).to(image)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y of YIQ (BT.601 weights): (N, 3, H, W) → (N, 1, H, W) in [0, 1]."""
    return rgb_to_yiq(image)[:, :1]


def gray_to_rgb(luma: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) → (N, 3, H, W) with R = G = B, so a VGG can read a luminance image."""
    return luma.expand(-1, 3, -1, -1).clamp(0.0, 1.0)


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    r"""Style luminance with the content's mean and standard deviation (Gatys et al. 2017).

    :math:`L_s' = \frac{\sigma_c}{\sigma_s}(L_s - \mu_s) + \mu_c`. Returns (N, 1, H_s, W_s).
    """
    l_s, l_c = luminance(style), luminance(content)
    mu_s, sigma_s = l_s.mean(), l_s.std()
    mu_c, sigma_c = l_c.mean(), l_c.std()
    return (sigma_c / sigma_s.clamp_min(1e-6) * (l_s - mu_s) + mu_c).clamp(0.0, 1.0)


def luminance_swap(luma_source: torch.Tensor, colour_source: torch.Tensor) -> torch.Tensor:
    """Y from ``luma_source`` (an RGB or a 1-channel image) with I, Q from ``colour_source``.

    Both must have the same height and width. Returns RGB clamped to [0, 1].
    """
    if luma_source.shape[-2:] != colour_source.shape[-2:]:
        raise ValueError(
            f"luminance {tuple(luma_source.shape)} and colour {tuple(colour_source.shape)} "
            "images differ in size"
        )
    y = luma_source if luma_source.shape[1] == 1 else luminance(luma_source)
    yiq = torch.cat([y, rgb_to_yiq(colour_source)[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0.0, 1.0)


def _mean_cov(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # float64 on the CPU: 3×3 statistics are cheap, and Apple's MPS has no float64.
    pixels = image.permute(1, 0, 2, 3).reshape(3, -1).cpu().double()  # (3, N·H·W)
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / centred.shape[1]


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Symmetric square root (or its inverse) of a 3×3 covariance, via its eigenbasis."""
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8).sqrt()
    values = 1.0 / values if inverse else values
    return vectors @ torch.diag(values) @ vectors.T


def match_colour(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    r"""Recolour ``style`` so that its RGB mean and covariance equal the content's.

    The linear map of Gatys et al. 2017 (§5.2): :math:`x' = A x + b` with
    :math:`A = \Sigma_c^{1/2} \Sigma_s^{-1/2}` (symmetric square roots, the "image
    analogies" variant) and :math:`b = \mu_c - A \mu_s`, applied to every pixel.
    Returns (N, 3, H_s, W_s) clamped to [0, 1].
    """
    mu_s, cov_s = _mean_cov(style)
    mu_c, cov_c = _mean_cov(content)
    A = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    b = mu_c - A @ mu_s
    pixels = style.permute(1, 0, 2, 3).reshape(3, -1).cpu().double()
    out = (A @ pixels + b).float().reshape(3, style.shape[0], *style.shape[-2:])
    return out.permute(1, 0, 2, 3).clamp(0.0, 1.0).to(style)


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image (x = round(255 x)/255)."""
    return torch.round(image.clamp(0, 1) * 255) / 255


# ITU-R BT.601 studio range, MATLAB's rgb2ycbcr for double RGB in [0, 1]:
# [Y, Cb, Cr] = (OFFSET + RGB_TO_YCBCR_255 @ [R, G, B]) / 255, so Y is in [16, 235] / 255.
RGB_TO_YCBCR_255 = torch.tensor(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=torch.float64,
)
YCBCR_OFFSET_255 = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``rgb2ycbcr`` for double images (ITU-R BT.601, studio range).

    .. math::
        Y  = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 \\\\
        Cb = (128 - 37.797 R - 74.203 G + 112.0 B) / 255 \\\\
        Cr = (128 + 112.0 R - 93.786 G - 18.214 B) / 255

    (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) YCbCr; Y in [16, 235] / 255, Cb and Cr in
    [16, 240] / 255. Not rounded (MATLAB rounds only for uint8 input).
    """
    _check_rgb(image, "image")
    matrix = RGB_TO_YCBCR_255.to(image.device, image.dtype) / 255
    offset = (YCBCR_OFFSET_255.to(image.device, image.dtype) / 255).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", matrix, image) + offset


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_ycbcr`` (the exact matrix inverse, as MATLAB's ``ycbcr2rgb``).

    (N, 3, H, W) YCbCr -> (N, 3, H, W) RGB; not clamped.
    """
    _check_rgb(image, "image")
    inverse = torch.linalg.inv(RGB_TO_YCBCR_255 / 255).to(image.device, image.dtype)
    offset = (YCBCR_OFFSET_255.to(image.device, image.dtype) / 255).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", inverse, image - offset)


def y_channel(image: torch.Tensor) -> torch.Tensor:
    """The luminance Y of ``rgb_to_ycbcr``: (N, 3, H, W) RGB -> (N, 1, H, W) in [16, 235]/255."""
    return rgb_to_ycbcr(image)[:, :1]


def _check_rgb(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3, H, W), got shape {tuple(image.shape)}")
