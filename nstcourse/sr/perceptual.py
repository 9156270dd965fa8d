r"""Johnson et al.'s super-resolution network, trained with a perceptual loss only.

Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution" (ECCV 2016), the super-resolution half. Paper to code: the image
transformation network f_W = ``PerceptualSRNet``; the feature reconstruction loss
ℓ_feat at VGG ``relu2_2`` plus total variation = ``PerceptualSRLoss``:

.. math::
    \ell^{\phi,j}_{feat}(\hat y, y) = \frac{1}{C_j H_j W_j}
        \lVert \phi_j(\hat y) - \phi_j(y) \rVert_2^2, \qquad
    \mathcal{L} = \ell^{\phi,\,relu2\_2}_{feat}(f_W(x), y) + \lambda_{TV}\, \ell_{TV}(f_W(x))

with no pixel loss at all: the network is never told the pixel values of y, only what
VGG's second block sees of them. It is the content loss of notebook 01 and of the fast
style nets (notebook 04), here used with a ground truth.

Where the course differs from the paper, and why:

- VGG-19 ``relu2_2`` instead of VGG-16 ``relu2_2`` (the course has one VGG, VGG-19; the
  two nets' first two blocks have the same shape, conv 64-64, pool, conv 128-128);
- the features are multiplied by s (``VGGContentLoss``'s rescale, 1/12.75 as SRGAN's), so
  the loss is s² ℓ_feat: only the ratio to λ_TV changes, and Adam does not see the scale;
- ×2 upsampling by nearest-neighbour resize then a 3×3 convolution by default
  (``upsample="nearest"``), where the paper has convolutions with stride 1/2
  (``upsample="transpose"``): those leave the checkerboard that notebook 11 shows, and a
  feature loss does not penalise it (Odena et al., "Deconvolution and Checkerboard
  Artifacts", Distill 2016, show it on this very task);
- no post-processing: the paper matched the output's histogram to the LR input's;
- the course's checkpoints add the input's bicubic upscaling to the output
  (``residual=True``): the paper's network has to learn to reproduce the input's colours
  from scratch through the tanh, and in the steps a CPU affords it had not (colour casts,
  Set5 PSNR-Y 4 dB below bicubic's after 1,100 steps; docs/experiments.md compares the two
  at equal steps), which is what the paper's histogram matching hides.
  ``residual=False`` builds the paper's.

The architecture (4 residual blocks, batch norm, 9×9 first and last convolutions, scaled
tanh) is the paper's supplementary Table 2; the training recipe is
``recipes.PerceptualSRRecipe``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.features import VGGFeatures
from nstcourse.losses import tv_loss
from nstcourse.sr.srgan import VGGContentLoss

UPSAMPLING = ("nearest", "transpose")


class ResidualBlock(nn.Module):
    """conv3×3 - BN - ReLU - conv3×3 - BN, plus the input (Johnson et al.'s block)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def upsample_block(width: int, upsample: str) -> nn.Sequential:
    """×2 in each spatial dimension, then BN and ReLU: (N, w, H, W) → (N, w, 2H, 2W).

    "transpose": a 3×3 convolution with stride 1/2 (``ConvTranspose2d``, stride 2), the
    paper's. "nearest": nearest-neighbour ×2, then a 3×3 convolution.
    """
    if upsample == "transpose":
        up: list[nn.Module] = [
            nn.ConvTranspose2d(width, width, 3, stride=2, padding=1, output_padding=1)
        ]
    elif upsample == "nearest":
        up = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1)]
    else:
        raise ValueError(f"upsample={upsample!r}; use one of {UPSAMPLING}")
    return nn.Sequential(*up, nn.BatchNorm2d(width), nn.ReLU(inplace=True))


class PerceptualSRNet(nn.Module):
    """The ×4 / ×8 super-resolution network of Johnson et al. (2016).

    9×9 conv to ``width`` - BN - ReLU; ``blocks`` residual blocks, all at the LR size;
    log2(scale) ×2 upsampling blocks (``upsample_block``); 9×9 conv to 3 channels, r.
    The paper's output is a scaled tanh, (tanh(r) + 1) / 2 ∈ [0, 1]. With ``residual``
    the network instead predicts the difference to bicubic upscaling, as VDSR does
    (notebook 07): y = clamp(bicubic(x) + r, 0, 1), the clamp with the gradient of the
    identity (as ``srgan.SRResNet``'s), so that pixels outside the range still learn.

    Args:
        scale: upscaling factor, a power of two (the paper: 4 and 8).
        blocks: residual blocks (the paper's ×4 and ×8 networks: 4).
        width: feature channels (64).
        upsample: "nearest" (resize-convolution, the default) or "transpose" (the
            paper's stride-1/2 convolutions); see the module docstring.
        residual: add the input's bicubic upscaling (torch's, ``F.interpolate``) to the
            output; False is the paper's network.

    Input: (N, 3, H, W) RGB low-resolution image in [0, 1].
    Output: (N, 3, H·scale, W·scale) in [0, 1].
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        blocks: int = 4,
        width: int = 64,
        upsample: str = "nearest",
        residual: bool = False,
    ):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale={scale}: the network doubles the size per block; use 2, 4, 8")
        self.scale, self.residual = scale, residual
        self.head = nn.Sequential(
            nn.Conv2d(3, width, 9, padding=4), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        steps = int(math.log2(scale))
        self.upsample = nn.Sequential(*(upsample_block(width, upsample) for _ in range(steps)))
        self.tail = nn.Conv2d(width, 3, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.head(lr))  # (N, width, H, W)
        r = self.tail(self.upsample(h))  # (N, 3, H·scale, W·scale)
        if not self.residual:
            return (torch.tanh(r) + 1) / 2
        y = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False) + r
        return y + (y.clamp(0, 1) - y).detach()  # value of clamp, gradient of identity


class PerceptualSRLoss(nn.Module):
    """ℓ_feat at ``layer`` (``VGGContentLoss``: the MSE of s·φ_j) plus λ_TV · ``tv_loss``.

    Args:
        extractor: a ``VGGFeatures`` that returns ``layer``.
        layer: the VGG layer (the paper: relu2_2).
        tv_weight: λ_TV (0: none).
        rescale: s on the feature maps; None: the per-convention SRGAN value (1/12.75).

    Call: ``loss(sr, hr)`` with (N, 3, H, W) RGB in [0, 1]; returns
    ``{"total", "feature", "tv"}`` (scalars; "total" is minimised).
    """

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        layer: str = "relu2_2",
        tv_weight: float = 0.0,
        rescale: float | None = None,
    ):
        super().__init__()
        self.feature = VGGContentLoss(extractor, layer=layer, rescale=rescale)
        self.tv_weight = tv_weight

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = self.feature(sr, hr)
        tv = tv_loss(sr)
        return {"total": feature + self.tv_weight * tv, "feature": feature, "tv": tv}


def feature_distance(
    sr: torch.Tensor, hr: torch.Tensor, extractor: VGGFeatures, *, layer: str, shave: int = 0
) -> float:
    """ℓ_feat(sr, hr) = mean over (C, H, W) of (φ(sr) − φ(hr))² at ``layer``, unscaled.

    The distance the perceptual network is trained to make small, as a score: lower is
    closer in what VGG sees. ``shave`` pixels are cut from each border first (as PSNR's).
    The value is in the extractor's units: Caffe-convention VGG features are about 58×
    larger than torchvision's, so compare numbers only under the same weights.

    Args:
        sr, hr: (1, 3, H, W) RGB in [0, 1], the same size.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"feature_distance: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ")
    if shave:
        sr, hr = sr[..., shave:-shave, shave:-shave], hr[..., shave:-shave, shave:-shave]
    with torch.inference_mode():
        return (extractor(sr)[layer] - extractor(hr)[layer]).pow(2).mean().item()
