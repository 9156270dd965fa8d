r"""Fast style transfer: a feed-forward transform network trained with a perceptual loss
(Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution").

Instead of optimising each image (Gatys et al.), train a network :math:`f_W` once per
style to minimise, over many photos x,

.. math:: \mathcal{L}(x) = \lambda_c \sum_{j \in C} \ell^{\phi,j}_{feat}(\hat y, x)
    + \lambda_s \sum_{j \in S} \ell^{\phi,j}_{style}(\hat y, y_s) + \lambda_{TV}
    \ell_{TV}(\hat y), \qquad \hat y = f_W(x),

where :math:`\ell_{feat}` is the squared distance of VGG features φ_j (the content is x
itself), :math:`\ell_{style}` the squared Frobenius distance of their Gram matrices to
the style image's, and :math:`\ell_{TV}` total variation. Then one forward pass
stylises a photo (~1000× faster than optimising it).

Code ↔ paper: ``TransformNet`` = :math:`f_W`, ``PerceptualLoss`` = the loss network
terms with λ_c, λ_s, λ_TV = ``content_weight``, ``style_weight``, ``tv_weight``.

The same ``TransformNet`` with ``styles > 1`` is Dumoulin et al.'s multi-style network
(``nstcourse.style.cin``): every norm layer is a ``ConditionalInstanceNorm2d`` and
``forward(x, style)`` takes style weights.

Inference: ``stylize_batch`` runs the net as trained (float32, the same numbers as a plain
call); ``prepare_for_inference`` is the fast path (no autograd, bfloat16 where the
hardware has it, optionally ``torch.compile``), measured in benchmarks/fast_style_speed.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.features import VGGFeatures
from nstcourse.losses import content_loss, gram_matrix, layer_weights, style_loss, tv_loss
from nstcourse.style.cin import ConditionalInstanceNorm2d, cin_layers, style_weights

NORMS = ("instance", "batch")
UPSAMPLES = ("nearest", "transpose")
MIN_SIZE = 8  # the residual blocks work at 1/4 size and need 2 px for reflection padding
PAPER_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # VGG-16, the paper's
PAPER_CONTENT_LAYERS = ("relu2_2",)  # VGG-16, the paper's for style transfer (§4.1)


class _Norm(nn.Module):
    """One norm layer: instance (Ulyanov et al. 2016), batch (the paper's) or conditional."""

    def __init__(self, kind: str, channels: int, styles: int):
        super().__init__()
        self.norm: nn.Module
        if styles > 1:
            self.norm = ConditionalInstanceNorm2d(channels, styles)
        elif kind == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=True)
        else:
            self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.norm, ConditionalInstanceNorm2d):
            return self.norm(x, weights)
        return self.norm(x)


class ConvLayer(nn.Module):
    """Reflection padding, k×k conv, norm, optional ReLU: (N, C_in, H, W) → (N, C_out, H/s, W/s)."""

    def __init__(
        self, c_in: int, c_out: int, *, kernel: int, stride: int, norm: str, styles: int, relu=True
    ):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride)
        self.norm = _Norm(norm, c_out, styles)
        self.relu = relu

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.conv(self.pad(x)), weights)
        return F.relu(x) if self.relu else x


class UpsampleLayer(nn.Module):
    """×2 upsampling, then norm and ReLU: (N, C_in, H, W) → (N, C_out, 2H, 2W).

    "nearest": nearest-neighbour ×2 then a 3×3 conv. "transpose": a 3×3 stride-2
    transposed conv (the paper's "fractionally strided" conv). Odena et al. 2016
    ("Deconvolution and Checkerboard Artifacts") show that the transposed conv's uneven
    overlap paints checkerboard patterns, which resize-then-convolve avoids.
    """

    def __init__(self, c_in: int, c_out: int, *, mode: str, norm: str, styles: int):
        super().__init__()
        if mode == "nearest":
            self.up: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(c_in, c_out, 3),
            )
        else:
            self.up = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
        self.norm = _Norm(norm, c_out, styles)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.norm(self.up(x), weights))


class ResidualBlock(nn.Module):
    """x + (conv, norm, ReLU, conv, norm)(x), 3×3 convs, shape-preserving (Johnson et al.,
    supplementary: the design of Gross & Wilber, with no ReLU after the addition)."""

    def __init__(self, channels: int, *, norm: str, styles: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel=3, stride=1, norm=norm, styles=styles)
        self.conv2 = ConvLayer(
            channels, channels, kernel=3, stride=1, norm=norm, styles=styles, relu=False
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.conv2(self.conv1(x, weights), weights)


class TransformNet(nn.Module):
    r"""Johnson et al.'s image transform network f_W (supplementary material, Table 1).

    9×9 conv (width) → 3×3/2 conv (2·width) → 3×3/2 conv (4·width) → ``res_blocks``
    residual blocks → two ×2 upsamplings (2·width, width) → 9×9 conv to 3 channels.

    Against the paper: reflection padding instead of zero padding (fewer border
    artefacts); instance norm (Ulyanov et al. 2016) instead of batch norm, which gives
    clearly better stylisations; "nearest" upsampling instead of transposed convs (no
    checkerboard); the output :math:`(\tanh(x) + 1) / 2` maps to [0, 1] where the
    paper's scaled tanh maps to [0, 255].

    Output range r: :math:`y = 1/2 + (r/2) \tanh(x)` spans [(1 − r)/2, (1 + r)/2]. With
    r = 1 (the paper's) pure white or black needs tanh to saturate, where its gradient
    vanishes; with r > 1 (lengstrom's fast-style-transfer uses 150·tanh + 255/2, i.e.
    r = 300/255) white is reached at a finite x. Values outside [0, 1] are kept in
    training (the loss sees them) and clamped in eval mode.

    Args:
        width: channels of the first layer (the paper's 32).
        res_blocks: the paper's 5.
        norm: "instance" or "batch" (the paper's); ignored (conditional) when styles > 1.
        upsample: "nearest" (resize-convolution) or "transpose" (the paper's).
        styles: S; with S > 1 every norm is a ``ConditionalInstanceNorm2d`` (Dumoulin et al.).
        output_range: r above, ≥ 1.

    ``forward(x, style=None)``: x (N, 3, H, W) in [0, 1], any H, W ≥ 8 (padded by
    reflection to multiples of 4 and cropped back); style: None for S = 1, else an index,
    S weights, or (N, S) weights (see ``nstcourse.style.cin.style_weights``). Returns
    (N, 3, H, W) in [0, 1] (with r > 1 in training mode: in [(1 − r)/2, (1 + r)/2]).
    """

    def __init__(
        self,
        *,
        width: int = 32,
        res_blocks: int = 5,
        norm: str = "instance",
        upsample: str = "nearest",
        styles: int = 1,
        output_range: float = 1.0,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; use one of {NORMS}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample={upsample!r}; use one of {UPSAMPLES}")
        if width < 1 or res_blocks < 0 or styles < 1:
            raise ValueError(
                f"width={width}, res_blocks={res_blocks}, styles={styles}: width and styles "
                "must be positive, res_blocks at least 0"
            )
        if not output_range >= 1:
            raise ValueError(f"output_range={output_range}: use 1 (the paper's) or more")
        self.output_range = output_range
        w, kw = width, dict[str, Any](norm=norm, styles=styles)
        self.conv1 = ConvLayer(3, w, kernel=9, stride=1, **kw)
        self.conv2 = ConvLayer(w, 2 * w, kernel=3, stride=2, **kw)
        self.conv3 = ConvLayer(2 * w, 4 * w, kernel=3, stride=2, **kw)
        self.res = nn.ModuleList(ResidualBlock(4 * w, **kw) for _ in range(res_blocks))
        self.up1 = UpsampleLayer(4 * w, 2 * w, mode=upsample, **kw)
        self.up2 = UpsampleLayer(2 * w, w, mode=upsample, **kw)
        self.pad_out = nn.ReflectionPad2d(4)
        self.conv_out = nn.Conv2d(w, 3, 9)  # no norm, no ReLU: tanh follows

    @property
    def styles(self) -> int:
        """S, the number of styles (grows with ``nstcourse.style.cin.new_style_parameters``)."""
        layers = cin_layers(self)
        return layers[0].num_styles if layers else 1

    def forward(
        self, x: torch.Tensor, style: int | Sequence[float] | torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"a {h}x{w} image is too small: both sides need {MIN_SIZE} px")
        weights = self._weights(style, x)
        # Two stride-2 convs then two ×2 ups: pad to multiples of 4 so the output is H×W.
        x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
        y = self.conv3(self.conv2(self.conv1(x, weights), weights), weights)  # (N, 4w, H/4, W/4)
        for block in self.res:
            y = block(y, weights)
        y = self.up2(self.up1(y, weights), weights)  # (N, width, H, W)
        y = self.conv_out(self.pad_out(y))[..., :h, :w]
        y = 0.5 + self.output_range / 2 * torch.tanh(y)
        return y if self.training or self.output_range == 1 else y.clamp(0, 1)

    def _weights(self, style, x: torch.Tensor) -> torch.Tensor | None:
        styles = self.styles
        if styles == 1:
            if style is not None and not (isinstance(style, int) and style == 0):
                raise ValueError("this TransformNet has one style: call it with style=None")
            return None
        if style is None:
            raise ValueError(
                f"this TransformNet has {styles} styles: pass style= an index, "
                f"{styles} weights or (N, {styles}) weights"
            )
        return style_weights(style, num_styles=styles, batch_size=x.shape[0]).to(x.device)


class PerceptualLoss(nn.Module):
    r"""Johnson et al.'s loss: feature (content) + style (Gram) + total-variation terms.

    .. math:: \mathcal{L} = \lambda_c \sum_{j} \operatorname{mse}(\phi_j(\hat y),
        \phi_j(x)) + \lambda_s \sum_{j} w_j \operatorname{mse}(G(\phi_j(\hat y)), G_j^s)
        + \lambda_{TV} \operatorname{TV}(\hat y)

    (means instead of the paper's normalised sums; see ``nstcourse.losses``).

    The paper uses VGG-16 with content relu2_2 and style relu1_2, relu2_2, relu3_3,
    relu4_3 (§4.1). Our defaults are relu2_2 and relu1_2,
    relu2_2, relu3_3 of VGG-19: the data pack's VGG-19 stops at conv3_4 and there is no
    VGG-16 (README, "Data and weights").

    Args:
        extractor: a ``VGGFeatures`` returning every layer named here.
        styles: style images (1, 3, H_s, W_s), one per style (any sizes). Their Gram
            matrices are computed once here: targets[layer] is (S, C, C).
        content_layers: names, or {name: weight}.
        style_layers: names, or {name: weight w_j}.
        content_weight, style_weight, tv_weight: λ_c, λ_s, λ_TV.

    ``forward(y_hat, x, *, style=None)``: y_hat the network output and x its input, both
    (N, 3, H, W) in [0, 1]; style: None (S must be 1), (N,) style indices (each sample's
    own target), or (N, S) weights (a mix of the targets' Gram matrices). Returns
    {"content", "style", "tv", "total"}, each weighted, scalar tensors.
    """

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        styles: Sequence[torch.Tensor],
        content_layers: Sequence[str] | Mapping[str, float] = ("relu2_2",),
        style_layers: Sequence[str] | Mapping[str, float] = ("relu1_2", "relu2_2", "relu3_3"),
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ):
        super().__init__()
        self.extractor = extractor
        self.content_w = layer_weights(content_layers)
        self.style_w = layer_weights(style_layers)
        missing = sorted((set(self.content_w) | set(self.style_w)) - set(extractor.layers))
        if missing:
            raise ValueError(f"the extractor does not return layer(s) {missing}")
        if len(styles) == 0:
            raise ValueError("styles is empty: give at least one style image")
        self.content_weight, self.style_weight, self.tv_weight = (
            content_weight,
            style_weight,
            tv_weight,
        )
        device = next(extractor.parameters()).device
        with torch.no_grad():
            grams = []
            for number, image in enumerate(styles):
                if image.dim() != 4 or image.shape[:2] != (1, 3):
                    raise ValueError(
                        f"styles[{number}] must be (1, 3, H, W), got {tuple(image.shape)}"
                    )
                feats = extractor(image.to(device))
                grams.append({k: gram_matrix(feats[k]) for k in self.style_w})
        for k in self.style_w:  # buffers: they follow .to(device)
            self.register_buffer(f"target_{k}", torch.cat([g[k] for g in grams]))  # (S, C, C)

    @property
    def num_styles(self) -> int:
        return getattr(self, f"target_{next(iter(self.style_w))}").shape[0]

    def style_targets(self, layer: str, style, n: int) -> torch.Tensor:
        """The (N, C, C) Gram targets of ``layer`` for a batch of n with ``style``."""
        targets = getattr(self, f"target_{layer}")  # (S, C, C)
        if style is None:
            if targets.shape[0] != 1:
                raise ValueError(f"{targets.shape[0]} styles: pass style= indices or weights")
            return targets.expand(n, -1, -1)
        style = torch.as_tensor(style, device=targets.device)
        if style.dim() == 1 and not style.is_floating_point():
            return targets[style]  # (N, C, C): each sample's own style
        weights = style_weights(style, num_styles=targets.shape[0], batch_size=n)
        return torch.einsum("ns,scd->ncd", weights.to(targets), targets)

    def forward(self, y_hat: torch.Tensor, x: torch.Tensor, *, style=None) -> dict:
        if y_hat.shape != x.shape:
            raise ValueError(f"y_hat {tuple(y_hat.shape)} and x {tuple(x.shape)} differ")
        feats = self.extractor(y_hat)
        with torch.no_grad():
            content_feats = self.extractor(x)
        zero = y_hat.new_zeros(())
        content = sum(
            (w * content_loss(feats[k], content_feats[k]) for k, w in self.content_w.items()),
            zero,
        )
        style_term = sum(
            (
                w * style_loss(feats[k], self.style_targets(k, style, len(y_hat)))
                for k, w in self.style_w.items()
            ),
            zero,
        )
        terms = {
            "content": self.content_weight * content,
            "style": self.style_weight * style_term,
            "tv": self.tv_weight * tv_loss(y_hat) if self.tv_weight else zero,
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms


def stylize_batch(
    net: TransformNet,
    images: torch.Tensor,
    *,
    style: int | Sequence[float] | torch.Tensor | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Stylise (N, 3, H, W) images in [0, 1] with a trained net; no gradients.

    Runs in eval mode under ``torch.inference_mode`` on the net's device;
    ``channels_last`` converts the net (in place) and the images to the NHWC memory layout
    (often faster on GPUs with tensor cores and on recent CPUs). Returns (N, 3, H, W) in
    [0, 1] on the images' device.
    """
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    x = images.to(device)
    if channels_last:  # outside inference_mode: the weights must stay trainable tensors
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            y = net(x, style)
    finally:
        net.train(was_training)
    return y.contiguous().to(images.device)
