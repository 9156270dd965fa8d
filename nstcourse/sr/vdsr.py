"""VDSR: a very deep network that learns only the residual.

Kim, Lee & Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks" (CVPR 2016). The input x is the bicubic-upscaled image; d = 20 layers of 3x3
convolutions with 64 filters and ReLU predict the residual r = y - x, and the output is

.. math::
    \\hat y = x + f(x), \\qquad \\mathcal{L} = \\tfrac12 \\lVert y - x - f(x) \\rVert^2

Because the input is upscaled first, one network serves every scale (the paper trains
on x2, x3 and x4 mixed). Training used a high learning rate (0.1) made stable by
adjustable gradient clipping to [-theta/gamma, theta/gamma] (gamma = the current
learning rate): see ``nstcourse.training.AdjustableGradClip``. Weights: He et al.
initialisation; convolutions have no bias (as in the widely used PyTorch port).
"""

from __future__ import annotations

import torch
from torch import nn


class VDSR(nn.Module):
    """VDSR with ``depth`` conv layers of ``width`` filters.

    Args:
        depth: number of conv layers, first and last included (the paper's d = 20).
        width: filters per hidden layer (64).
        channels: 1 for the luminance Y (the paper), 3 for RGB.

    Input: (N, channels, H, W), the bicubic-upscaled image in [0, 1].
    Output: (N, channels, H, W) = input + predicted residual (not clamped).
    """

    def __init__(self, *, depth: int = 20, width: int = 64, channels: int = 1):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth={depth}: VDSR needs at least an input and an output layer")
        self.input = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        hidden = []
        for _ in range(depth - 2):
            hidden += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*hidden)  # conv layers at body.0, body.2, ...
        self.output = nn.Conv2d(width, channels, 3, padding=1, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He et al. 2015: N(0, 2 / n), n = 3 * 3 * input channels.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.output(self.body(torch.relu(self.input(x))))
        return x + residual
