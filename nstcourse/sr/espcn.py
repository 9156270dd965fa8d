"""ESPCN: super-resolution in low-resolution space with a sub-pixel convolution.

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network" (CVPR 2016). Instead of upscaling first (SRCNN),
every convolution runs on the small image; the last one makes r^2 channels per output
channel, and the periodic shuffle PS rearranges them into an r-times larger image:

.. math::
    I^{SR} = PS(W_L * f^{L-1}(I^{LR}) + b_L), \\qquad
    PS(T)_{x, y, c} = T_{\\lfloor x/r \\rfloor,\\, \\lfloor y/r \\rfloor,\\,
        C r \\cdot (y \\bmod r) + C \\cdot (x \\bmod r) + c}

(the paper's channel order; PyTorch's ``nn.PixelShuffle`` uses c r^2 + r (y mod r) +
(x mod r) for output row y, column x, which is what ``pixel_shuffle`` below does).
Network: 5x5 conv 64, tanh; 3x3 conv 32, tanh; 3x3 conv to channels * r^2; PS(r).
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r), the same as ``nn.PixelShuffle(r)``.

    Input channel c*r*r + i*r + j becomes the pixel at row offset i, column offset j of
    each r x r output cell of channel c.
    """
    n, c_in, h, w = x.shape
    if c_in % (r * r):
        raise ValueError(f"pixel_shuffle: {c_in} channels is not a multiple of r*r = {r * r}")
    c = c_in // (r * r)
    x = x.reshape(n, c, r, r, h, w)  # (N, C, i, j, H, W)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (N, C, H, i, W, j)
    return x.reshape(n, c, h * r, w * r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, C, H*r, W*r) -> (N, C*r*r, H, W): the inverse of ``pixel_shuffle``."""
    n, c, hr, wr = x.shape
    if hr % r or wr % r:
        raise ValueError(f"pixel_unshuffle: a {hr}x{wr} image is not divisible by r = {r}")
    h, w = hr // r, wr // r
    x = x.reshape(n, c, h, r, w, r)  # (N, C, H, i, W, j)
    x = x.permute(0, 1, 3, 5, 2, 4)  # (N, C, i, j, H, W)
    return x.reshape(n, c * r * r, h, w)


class ESPCN(nn.Module):
    """ESPCN for upscaling factor ``scale`` (the paper's r).

    Args:
        scale: upscaling factor r (2, 3, 4, ...).
        channels: 1 for the luminance Y (the paper), 3 for RGB.
        n1, n2: filters of the two hidden layers (the paper's 64 and 32).

    Input: (N, channels, H, W), the low-resolution image in [0, 1].
    Output: (N, channels, H*scale, W*scale), roughly in [0, 1] (not clamped).
    """

    def __init__(self, *, scale: int, channels: int = 1, n1: int = 64, n2: int = 32):
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale={scale}: must be a positive integer")
        self.scale = scale
        self.conv1 = nn.Conv2d(channels, n1, 5, padding=2)
        self.conv2 = nn.Conv2d(n1, n2, 3, padding=1)
        self.conv3 = nn.Conv2d(n2, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(lr))
        h = torch.tanh(self.conv2(h))
        return self.shuffle(self.conv3(h))  # (N, C*r*r, H, W) -> (N, C, H*r, W*r)
