r"""Arbitrary style transfer with adaptive instance normalisation (Huang & Belongie 2017,
"Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization").

A fixed VGG encoder f, one AdaIN layer and a learnt decoder g stylise with *any* style
image in one forward pass:

.. math:: \operatorname{AdaIN}(x, y) = \sigma(y) \frac{x - \mu(x)}{\sigma(x)} + \mu(y),
    \qquad t = \operatorname{AdaIN}(f(c), f(s)), \qquad T(c, s) = g(t),

with μ, σ the per-sample, per-channel mean and standard deviation over H, W. The decoder
is trained with :math:`\mathcal{L} = \mathcal{L}_c + \lambda \mathcal{L}_s`,
:math:`\mathcal{L}_c = \lVert f(g(t)) - t \rVert_2^2` and
:math:`\mathcal{L}_s = \sum_i \lVert \mu(\phi_i(g(t))) - \mu(\phi_i(s)) \rVert_2^2 +
\lVert \sigma(\phi_i(g(t))) - \sigma(\phi_i(s)) \rVert_2^2` over relu1_1, relu2_1,
relu3_1, relu4_1 (means of squares here, as in the authors' code).

Test-time controls (paper §7): the content–style trade-off
:math:`g((1 - \alpha) f(c) + \alpha t)`, style interpolation
:math:`g(\sum_k w_k \operatorname{AdaIN}(f(c), f(s_k)))`, spatial control (AdaIN per
region with its own style), and colour preservation (match the style's colours to the
content's first, ``nstcourse.colour.match_colour``).

The paper encodes to relu4_1 of VGG-19; the data pack's VGG-19 stops at conv3_4, so the
course trains the known relu3_1 variant (``Decoder(layer="relu3_1")``): fewer layers, a
less abstract content, smaller brush strokes. relu4_1 works with full weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.colour import match_colour
from nstcourse.conventions import by_convention
from nstcourse.features import VGGFeatures
from nstcourse.vgg_weights import CONVENTIONS, conv_channels, convs_needed, layer_names

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # where the decoder may start
INPUT_SCALE = by_convention("adain_input_scale")  # Decoder(input_scale=) by VGG convention
STYLE_LAYERS = {  # the paper's style layers that exist up to the encoder's last layer
    layer: LAYERS[: LAYERS.index(layer) + 1] for layer in LAYERS
}


def channel_stats(
    features: torch.Tensor, *, eps: float = 1e-5, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation over H, W.

    Args:
        features: (N, C, H, W).
        eps: added to the (biased) variance before the square root.
        mask: optional (N or 1, 1, H, W) weights in [0, 1]: the statistics of that region.

    Returns:
        μ and σ, each (N, C, 1, 1).
    """
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (N, C, H, W), got {tuple(features.shape)}")
    if mask is None:
        var, mean = torch.var_mean(features, dim=(2, 3), keepdim=True, correction=0)
        return mean, (var + eps).sqrt()
    area = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    mean = (mask * features).sum(dim=(2, 3), keepdim=True) / area
    var = (mask * (features - mean) ** 2).sum(dim=(2, 3), keepdim=True) / area
    return mean, (var + eps).sqrt()


def adain(
    content_feat: torch.Tensor,
    style_feat: torch.Tensor,
    eps: float = 1e-5,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r""":math:`\sigma(y) \frac{x - \mu(x)}{\sigma(x)} + \mu(y)` per sample and channel.

    Args:
        content_feat: x, (N, C, H, W).
        style_feat: y, (N or 1, C, H_s, W_s); any spatial size.
        eps: added to the variances.
        mask: optional (N or 1, 1, H, W): normalise x by the statistics of that region only
            (spatial control; the caller multiplies the result by the mask).

    Returns:
        (N, C, H, W) with (up to eps) the channel means and standard deviations of y.
    """
    if content_feat.shape[1] != style_feat.shape[1]:
        raise ValueError(
            f"content {tuple(content_feat.shape)} and style {tuple(style_feat.shape)} "
            "features differ in channels; were they taken at the same layer?"
        )
    mu_x, sigma_x = channel_stats(content_feat, eps=eps, mask=mask)
    mu_y, sigma_y = channel_stats(style_feat, eps=eps)
    return sigma_y * (content_feat - mu_x) / sigma_x + mu_y


class Decoder(nn.Module):
    """g: the mirror image of VGG-19 from ``layer`` back to RGB (Huang & Belongie §6.1).

    Each encoder conv c_in → c_out becomes a 3×3 conv c_out → c_in with reflection padding
    and ReLU (none after the last), in reverse order; each max pool becomes ×2
    nearest-neighbour upsampling. No normalisation layers: the paper found that they
    normalise away the style. For relu4_1 this is the paper's decoder (512 → 256, up,
    3 × 256 → 256, 256 → 128, up, 128 → 128, 128 → 64, up, 64 → 64, 64 → 3).

    Args:
        layer: the encoder's last layer: "relu3_1" (what the data pack's VGG allows) or
            "relu4_1" (the paper's); "relu1_1", "relu2_1" for experiments.
        input_scale: t is multiplied by this first. Caffe-convention VGG features (0–255
            input) are ~100× larger than those of the paper's normalised VGG, and a
            freshly initialised decoder then starts with outputs in the hundreds; 1/255
            (``INPUT_SCALE["caffe"]``) brings them back to the order of one.
        encoder_convention: None, or the convention ("caffe", "torchvision") of the VGG-19
            whose convs up to ``layer`` this decoder carries as buffers
            (``encoder_convs``, filled by ``carry_encoder``): a decoder works only behind
            the encoder it was trained with, so its checkpoint holds that encoder (a few
            MB) and needs no VGG file.

    ``forward(t)``: t (N, C, h, w) → (N, 3, h·2^k, w·2^k), k pools; not squashed, so
    roughly but not strictly in [0, 1] (as the paper's).
    """

    def __init__(
        self,
        *,
        layer: str = "relu3_1",
        input_scale: float = 1.0,
        encoder_convention: str | None = None,
    ):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer={layer!r}; use one of {LAYERS}")
        if not input_scale > 0:
            raise ValueError(f"input_scale={input_scale} must be positive")
        if encoder_convention is not None and encoder_convention not in CONVENTIONS:
            raise ValueError(f"encoder_convention={encoder_convention!r}; use one of {CONVENTIONS}")
        self.layer, self.input_scale = layer, input_scale
        self.encoder_convention = encoder_convention
        self.encoder_convs = None if encoder_convention is None else _encoder_buffers(layer)
        names = layer_names("vgg19")
        channels, c_in = iter(conv_channels("vgg19")), 3
        steps: list[tuple[int, int] | None] = []  # a conv (c_in, c_out), or None: a pooling
        for name in names[: names.index(layer) + 1]:
            if name.startswith("conv"):
                c_out = next(channels)
                steps.append((c_in, c_out))
                c_in = c_out
            elif name.startswith("pool"):
                steps.append(None)
        modules: list[nn.Module] = []
        for step in reversed(steps):
            if step is None:
                modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                c_in, c_out = step
                modules += [nn.ReflectionPad2d(1), nn.Conv2d(c_out, c_in, 3), nn.ReLU()]
        self.body = nn.Sequential(*modules[:-1])  # no ReLU on the RGB output
        self.pools = steps.count(None)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.body(t * self.input_scale)

    def carry_encoder(self, encoder: VGGFeatures) -> None:
        """Copy ``encoder``'s convs up to ``layer`` (random ones included, as trained) into
        ``encoder_convs``, for the checkpoint; its convention must be ``encoder_convention``."""
        convention = encoder.weights_info.convention
        if self.encoder_convs is None or convention != self.encoder_convention:
            raise ValueError(
                f"this decoder carries a {self.encoder_convention} encoder; "
                f"the given one is {convention}"
            )
        convs = dict(zip(encoder.names, encoder.body, strict=True))
        with torch.no_grad():
            for name, holder in self._holders().items():
                conv = cast(nn.Conv2d, convs[name])
                holder.weight.copy_(conv.weight)
                holder.bias.copy_(cast(torch.Tensor, conv.bias))

    def encoder_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The carried encoder as ``VGGWeights.convs`` ({conv name: (weight, bias)}), on
        the CPU; empty if this decoder carries none."""
        return {
            name: (holder.weight.detach().cpu(), holder.bias.detach().cpu())
            for name, holder in self._holders().items()
        }

    def _holders(self) -> dict[str, _ConvBuffers]:
        """``encoder_convs`` by conv name ({} if none)."""
        holders = self.encoder_convs.items() if self.encoder_convs is not None else []
        return {name: cast(_ConvBuffers, holder) for name, holder in holders}


class _ConvBuffers(nn.Module):
    """A conv's weight and bias as buffers: saved with the module, never trained."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("weight", torch.zeros(c_out, c_in, 3, 3))
        self.register_buffer("bias", torch.zeros(c_out))


def _encoder_buffers(layer: str) -> nn.ModuleDict:
    """Empty buffers for VGG-19's convs up to ``layer`` (state keys ``conv1_1.weight``, …)."""
    names = convs_needed("vgg19", [layer])
    channels = conv_channels("vgg19")[: len(names)]
    return nn.ModuleDict(
        {
            name: _ConvBuffers(c_in, c_out)
            for name, c_in, c_out in zip(names, [3, *channels[:-1]], channels, strict=True)
        }
    )


class AdaINNet(nn.Module):
    """Encoder f (a frozen ``VGGFeatures``) + AdaIN + decoder g.

    Args:
        encoder: a ``VGGFeatures`` (VGG-19) returning relu1_1 … ``decoder.layer`` (each
            relu{k}_1 up to it).
        decoder: a ``Decoder``.

    ``forward(content, style, ...)`` stylises (see ``target`` for the arguments); ``loss``
    is the training objective.
    """

    def __init__(self, encoder: VGGFeatures, decoder: Decoder):
        super().__init__()
        needed = STYLE_LAYERS[decoder.layer]
        missing = [name for name in needed if name not in encoder.layers]
        if missing or encoder.arch != "vgg19":
            raise ValueError(
                f"the encoder must be a VGG-19 returning {list(needed)} for a "
                f"{decoder.layer} decoder; it is a {encoder.arch} returning {encoder.layers}"
            )
        self.encoder, self.decoder = encoder, decoder
        self.layer, self.style_layers = decoder.layer, needed

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{relu1_1: …, …, layer: (N, C, H / 2^k, W / 2^k)} for x (N, 3, H, W) in [0, 1]."""
        return self.encoder(x)

    def target(
        self,
        content: torch.Tensor,
        style: torch.Tensor | Sequence[torch.Tensor],
        *,
        alpha: float = 1.0,
        style_weights: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,
        preserve_colour: bool = False,
    ) -> torch.Tensor:
        r"""The decoder's input :math:`(1 - \alpha) f(c) + \alpha t`.

        Args:
            content: (N, 3, H, W) in [0, 1].
            style: (N or 1, 3, H_s, W_s) in [0, 1], or a list of S style images (1, 3, …)
                for a mix (``style_weights``) or spatial control (``mask``).
            alpha: content–style trade-off in [0, 1]; 0 gives f(c), 1 full style.
            style_weights: S weights (summing to 1): t = Σ_k w_k AdaIN(f(c), f(s_k)).
            mask: (S, H, W) or (S, 1, H, W) in [0, 1] over the content image: style k
                only where mask k is on (AdaIN with region statistics). Pixels that no
                mask covers keep the content's features.
            preserve_colour: recolour each style image to the content's colour mean and
                covariance first (over the whole content batch).

        Returns:
            (N, C, H / 2^k, W / 2^k).
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1]")
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        if not styles:
            raise ValueError("style is an empty list")
        if style_weights is not None and mask is not None:
            raise ValueError("give style_weights (a mix) or mask (regions), not both")
        if preserve_colour:
            styles = [match_colour(s, content) for s in styles]
        f_c = self.encode(content)[self.layer]
        f_s = [self.encode(s)[self.layer] for s in styles]
        if mask is not None:
            t = self._masked_target(f_c, f_s, mask)
        else:
            if style_weights is None:
                if len(f_s) > 1:
                    raise ValueError(f"{len(f_s)} style images: give style_weights or mask")
                style_weights = [1.0]
            if len(style_weights) != len(f_s):
                raise ValueError(
                    f"style_weights has {len(style_weights)} weights for {len(f_s)} styles"
                )
            t = cast(
                torch.Tensor,
                sum(w * adain(f_c, f) for w, f in zip(style_weights, f_s, strict=True)),
            )
        return alpha * t + (1.0 - alpha) * f_c

    @staticmethod
    def _masked_target(f_c, f_s, mask) -> torch.Tensor:
        if mask.dim() == 3:
            mask = mask[:, None]
        if mask.dim() != 4 or mask.shape[:2] != (len(f_s), 1):
            raise ValueError(
                f"mask must be (S, H, W) or (S, 1, H, W) for S = {len(f_s)} styles, "
                f"got {tuple(mask.shape)}"
            )
        masks = F.interpolate(mask.to(f_c), size=f_c.shape[-2:], mode="bilinear")
        t = (1.0 - masks.sum(dim=0, keepdim=True)).clamp_min(0.0) * f_c
        for m, f in zip(masks, f_s, strict=True):
            t = t + m[None] * adain(f_c, f, mask=m[None])
        return t

    def forward(
        self,
        content: torch.Tensor,
        style: torch.Tensor | Sequence[torch.Tensor],
        *,
        alpha: float = 1.0,
        style_weights: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,
        preserve_colour: bool = False,
    ) -> torch.Tensor:
        """Stylise: content (N, 3, H, W) in [0, 1] → (N, 3, H, W) in [0, 1].

        Any H, W: the content is padded by reflection to a multiple of 2^k (k pools) and
        the output cropped back. Arguments as in ``target``.
        """
        h, w = content.shape[-2:]
        m = 2**self.decoder.pools
        padded = F.pad(content, (0, -w % m, 0, -h % m), mode="reflect")
        if mask is not None:
            mask = F.pad(mask if mask.dim() == 4 else mask[:, None], (0, -w % m, 0, -h % m))
        t = self.target(
            padded,
            style,
            alpha=alpha,
            style_weights=style_weights,
            mask=mask,
            preserve_colour=preserve_colour,
        )
        return self.decoder(t)[..., :h, :w].clamp(0.0, 1.0)

    def loss(
        self, content: torch.Tensor, style: torch.Tensor, *, style_weight: float
    ) -> dict[str, torch.Tensor]:
        """The paper's objective for a batch of (content, style) pairs.

        Args:
            content: (N, 3, H, W) in [0, 1], H and W multiples of 2^k.
            style: (N or 1, 3, H_s, W_s) in [0, 1].
            style_weight: λ (the paper's 10).

        Returns:
            {"content", "style", "total"}: L_c, λ·L_s and their sum, scalar tensors.
        """
        with torch.no_grad():
            style_feats = self.encode(style)
            t = adain(self.encode(content)[self.layer], style_feats[self.layer])
        feats = self.encode(self.decoder(t))  # f(g(t))
        zero = content.new_zeros(())
        content_term = F.mse_loss(feats[self.layer], t)
        style_term = zero
        for name in self.style_layers:
            mu, sigma = channel_stats(feats[name])
            mu_s, sigma_s = channel_stats(style_feats[name])
            mu_s, sigma_s = mu_s.expand_as(mu), sigma_s.expand_as(sigma)
            style_term = style_term + F.mse_loss(mu, mu_s) + F.mse_loss(sigma, sigma_s)
        terms = {"content": content_term, "style": style_weight * style_term}
        terms["total"] = terms["content"] + terms["style"]
        return terms
