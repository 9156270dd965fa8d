"""SRCNN: the first convolutional network for single-image super-resolution.

Dong, Loy, He & Tang, "Image Super-Resolution Using Deep Convolutional Networks"
(ECCV 2014; TPAMI 2016). The low-resolution image is first upscaled to the target size
with bicubic interpolation (Y); three convolutions then map it to the estimate F(Y):

.. math::
    F_1(Y) = \\max(0, W_1 * Y + B_1)            \\quad \\text{patch extraction, } n_1 f_1^2
    F_2(Y) = \\max(0, W_2 * F_1(Y) + B_2)       \\quad \\text{non-linear mapping, } n_2 n_1 f_2^2
    F(Y) = W_3 * F_2(Y) + B_3                    \\quad \\text{reconstruction, } c\\, n_2 f_3^2

trained with the MSE between F(Y) and the high-resolution image. The paper's settings
are named f1-f2-f3: 9-1-5 (the 2014 base model) and 9-5-5 (better, TPAMI 2016).

Unlike the paper (which trains on valid convolutions and a smaller target), every
convolution here is zero-padded ("same"), so the output has the input's size.
"""

from __future__ import annotations

import torch
from torch import nn


class SRCNN(nn.Module):
    """SRCNN f1-f2-f3 with n1 and n2 filters.

    Args:
        f1, f2, f3: kernel sizes (odd). 9-5-5 is the TPAMI paper's best; f2=1 gives 9-1-5.
        n1, n2: filters of the first two layers (the paper's 64 and 32).
        channels: 1 for the luminance Y (the paper), 3 for RGB.

    Input: (N, channels, H, W), the bicubic-upscaled image in [0, 1].
    Output: (N, channels, H, W), roughly in [0, 1] (not clamped: clamp before saving or
    measuring).
    """

    def __init__(
        self,
        *,
        f1: int = 9,
        f2: int = 5,
        f3: int = 5,
        n1: int = 64,
        n2: int = 32,
        channels: int = 1,
    ):
        super().__init__()
        for name, size in (("f1", f1), ("f2", f2), ("f3", f3)):
            if size < 1 or size % 2 == 0:
                raise ValueError(f"{name}={size}: kernel sizes must be odd for 'same' padding")
        self.conv1 = nn.Conv2d(channels, n1, f1, padding=f1 // 2)  # patch extraction
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)  # non-linear mapping
        self.conv3 = nn.Conv2d(n2, channels, f3, padding=f3 // 2)  # reconstruction

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(y))
        h = torch.relu(self.conv2(h))
        return self.conv3(h)


def paper_param_groups(model: SRCNN, lr: float = 1e-4) -> list[dict]:
    """The paper's learning rates: ``lr`` for the first two layers, ``lr / 10`` for the last.

    Dong et al. found the smaller rate for the reconstruction layer "important for the
    network to converge". Pass the result to an optimizer: ``torch.optim.Adam(groups)``.
    """
    first = [*model.conv1.parameters(), *model.conv2.parameters()]
    return [{"params": first, "lr": lr}, {"params": list(model.conv3.parameters()), "lr": lr / 10}]
