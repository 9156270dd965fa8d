"""SRResNet and SRGAN: photo-realistic x4 super-resolution with an adversarial loss.

Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network" (CVPR 2017). Paper to code: G = ``SRResNet`` (the generator),
D = ``Discriminator``, l_X = ``VGGContentLoss`` (or MSE), l_Gen = the adversarial term in
``SRGANStep``. The generator is trained for the perceptual loss

.. math::
    l^{SR} = l^{SR}_X + 10^{-3}\\, l^{SR}_{Gen}, \\qquad
    l^{SR}_{Gen} = \\sum_n -\\log D(G(I^{LR}_n))

and D for the usual GAN objective, max log D(I^HR) + log(1 - D(G(I^LR))). Here D
returns a logit and both use ``binary_cross_entropy_with_logits`` (the same
quantities, computed stably).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.conventions import weights_for
from nstcourse.features import VGGFeatures
from nstcourse.training import autocast, optimizer_step

OUTPUTS = ("clamp", "tanh")
TRUNK_TAILS = ("bn", "prelu")


class ResidualBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the input (He et al. 2016 as used by SRGAN)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv3x3 to 4 * width, PixelShuffle(2), PReLU: (N, w, H, W) -> (N, w, 2H, 2W)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, 4 * width, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.shuffle(self.conv(x)))


class SRResNet(nn.Module):
    """The SRGAN generator G (called SRResNet when trained with MSE alone).

    9x9 conv + PReLU; ``blocks`` residual blocks; 3x3 conv + BN plus a long skip from
    before the blocks; log2(scale) upsampling blocks; 9x9 conv to ``channels``.

    Args:
        scale: upscaling factor, a power of two (the paper: 4).
        blocks: residual blocks B (the paper: 16).
        width: feature channels (64).
        channels: image channels (3, RGB).
        output: how the last conv's output x is put in [0, 1]. "clamp": clamp(x, 0, 1) in
            the forward pass but with the gradient of the identity (a straight-through
            clamp, so pixels outside the range still learn); "tanh": (tanh(x) + 1) / 2.
        trunk_tail: what follows the 3x3 conv after the residual blocks: "bn" (the paper)
            or "prelu" (an early leftthomas/SRGAN variant, needed only to load its
            reference checkpoint; see ``nstcourse.sr.reference``).

    Input: (N, channels, H, W) low-resolution image in [0, 1].
    Output: (N, channels, H*scale, W*scale) in [0, 1].
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        blocks: int = 16,
        width: int = 64,
        channels: int = 3,
        output: str = "clamp",
        trunk_tail: str = "bn",
    ):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale={scale}: SRResNet upsamples by 2 per block, use 2, 4, 8 ...")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r}; use one of {OUTPUTS}")
        if trunk_tail not in TRUNK_TAILS:
            raise ValueError(f"trunk_tail={trunk_tail!r}; use one of {TRUNK_TAILS}")
        self.scale, self.output = scale, output
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        tail_norm = nn.BatchNorm2d(width) if trunk_tail == "bn" else nn.PReLU()
        self.trunk_tail = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), tail_norm)
        steps = int(math.log2(scale))
        self.upsample = nn.Sequential(*(UpsampleBlock(width) for _ in range(steps)))
        self.tail = nn.Conv2d(width, channels, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)  # (N, width, H, W)
        h = h + self.trunk_tail(self.blocks(h))  # long skip
        x = self.tail(self.upsample(h))  # (N, channels, H*scale, W*scale)
        if self.output == "tanh":
            return (torch.tanh(x) + 1) / 2
        return x + (x.clamp(0, 1) - x).detach()  # value of clamp, gradient of identity


class Discriminator(nn.Module):
    """The SRGAN discriminator D: is this high-resolution image real? Returns a logit.

    Eight 3x3 convs with width x (1, 1, 2, 2, 4, 4, 8, 8) filters and strides
    (1, 2, 1, 2, 1, 2, 1, 2), LeakyReLU(0.2), BN on all but the first; then
    Dense(1024), LeakyReLU(0.2), Dense(1).

    The paper's first dense layer takes the flattened 512 x 6 x 6 map of a 96x96 crop, so
    it fixes the input size. Here an ``AdaptiveAvgPool2d(pooled_size)`` comes first: with
    the default 6 it does nothing on 96x96 crops (exactly the paper) and lets any other
    size in; ``pooled_size=1`` is global average pooling (far fewer parameters).

    Input: (N, channels, H, W) in [0, 1], H and W >= 16 advised.
    Output: (N,) logits; sigmoid(logit) = D(x), the probability that x is real.
    """

    def __init__(self, *, channels: int = 3, width: int = 64, pooled_size: int = 6):
        super().__init__()
        widths = [width * k for k in (1, 1, 2, 2, 4, 4, 8, 8)]
        layers: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(widths):
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * pooled_size * pooled_size, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x))).squeeze(1)


class VGGContentLoss(nn.Module):
    """The paper's VGG loss l_{VGG/i,j}: MSE between VGG feature maps of SR and HR.

    .. math::
        l_{VGG/i,j} = \\frac{1}{W_{i,j} H_{i,j}} \\sum_{x,y}
            (s\\,\\phi_{i,j}(I^{HR})_{x,y} - s\\,\\phi_{i,j}(G(I^{LR}))_{x,y})^2

    phi_{i,j} is the map after the j-th conv (after its ReLU) before the i-th max-pool:
    VGG2,2 = "relu2_2", VGG5,4 = "relu5_4". The paper "rescaled the VGG feature maps by
    a factor of 1/12.75", which it notes equals multiplying the loss by about 0.006; so
    ``rescale`` s multiplies the *features* and the loss scales by s**2 (1/12.75**2 =
    0.00615). Here the mean also runs over channels (the same up to a constant factor).
    Caffe-convention features are ~58× larger than torchvision's, so the right s depends
    on the extractor's weights; ``nstcourse.conventions`` says which s each convention gets
    and why.

    Args:
        extractor: a ``VGGFeatures`` that returns ``layer``.
        layer: VGG layer name, e.g. "relu2_2" (VGG2,2) or "relu5_4" (VGG5,4).
        rescale: s, the factor on the feature maps; None: the per-convention table's
            ``srgan_vgg_rescale`` for the extractor's weights (the paper's 1/12.75).

    Call: ``loss(sr, hr)`` with (N, 3, H, W) RGB images in [0, 1]; returns a scalar.
    """

    def __init__(
        self, extractor: VGGFeatures, layer: str = "relu2_2", rescale: float | None = None
    ):
        super().__init__()
        if layer not in extractor.layers:
            raise ValueError(f"layer={layer!r} is not returned by the extractor {extractor.layers}")
        if rescale is None:
            rescale = weights_for(extractor.weights_info.convention).srgan_vgg_rescale
        self.extractor, self.layer, self.rescale = extractor, layer, rescale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        phi_sr = self.extractor(sr)[self.layer]
        with torch.no_grad():
            phi_hr = self.extractor(hr)[self.layer]
        return F.mse_loss(self.rescale * phi_sr, self.rescale * phi_hr)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(I^HR) - log(1 - D(G(I^LR))), averaged: BCE with real -> 1 and fake -> 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """l_Gen = -log D(G(I^LR)), averaged: BCE with target 1 (the non-saturating loss)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class SRGANStep:
    """One SRGAN update: first D on a real and a fake batch, then G.

    Args:
        G, D: generator and discriminator.
        content_loss: ``(sr, hr) -> scalar``, e.g. ``VGGContentLoss`` or ``F.mse_loss``.
        opt_G, opt_D: their optimizers (the paper: Adam, beta1 = 0.9, lr 1e-4 then 1e-5).
        adversarial_weight: the 1e-3 in l_X + 1e-3 l_Gen.
        precision: "float32" or "bfloat16": the forward passes under
            ``training.autocast`` (losses, weights and optimizer state stay float32).

    Call: ``step((lr_image, hr))`` with lr_image (N, C, h, w) and hr (N, C, h*s, w*s) in
    [0, 1]; returns floats {"loss": generator loss, "content", "adversarial",
    "discriminator", "d_real", "d_fake"} (d_* = mean D output, a probability). Both updates
    go through ``training.optimizer_step``: a non-finite loss raises FloatingPointError
    before the optimizer step it would have poisoned.

    For ``nstcourse.training.train``: pass ``models`` as the model, ``optimizers`` as the
    optimizer and this object as the step.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        content_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        opt_G: torch.optim.Optimizer,
        opt_D: torch.optim.Optimizer,
        adversarial_weight: float = 1e-3,
        precision: str = "float32",
    ):
        autocast(torch.device("cpu"), precision)  # checks the name
        self.G, self.D, self.content_loss = G, D, content_loss
        self.opt_G, self.opt_D = opt_G, opt_D
        self.adversarial_weight, self.precision = adversarial_weight, precision
        self.models = nn.ModuleDict({"G": G, "D": D})
        self.optimizers = {"G": opt_G, "D": opt_D}

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        lr_image, hr = batch
        with autocast(hr.device, self.precision):
            sr = self.G(lr_image)
            # D: real -> 1, fake -> 0. The fake is detached: this step must not change G.
            real_logits, fake_logits = self.D(hr), self.D(sr.detach())
            loss_D = discriminator_loss(real_logits.float(), fake_logits.float())
        optimizer_step(self.opt_D, loss_D, name="discriminator loss")

        # G: content + 1e-3 * adversarial, through the updated D (frozen for this pass).
        self.D.requires_grad_(False)
        try:
            with autocast(hr.device, self.precision):
                content = self.content_loss(sr.float(), hr)
                adversarial = adversarial_loss(self.D(sr).float())
                loss_G = content + self.adversarial_weight * adversarial
            optimizer_step(self.opt_G, loss_G, name="generator loss")
        finally:
            self.D.requires_grad_(True)

        return {
            "loss": loss_G.item(),
            "content": content.item(),
            "adversarial": adversarial.item(),
            "discriminator": loss_D.item(),
            "d_real": torch.sigmoid(real_logits.float()).mean().item(),
            "d_fake": torch.sigmoid(fake_logits.float()).mean().item(),
        }
