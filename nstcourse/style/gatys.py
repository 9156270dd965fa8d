r"""Style transfer by optimisation (Gatys, Ecker & Bethge 2016) and its controls
(Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017).

The image :math:`\vec x` itself is optimised so that its VGG features match the content
image's and its Gram matrices match the style image's:

.. math::
    \mathcal{L}(\vec x) = \alpha \sum_{l \in C} w_l\, \mathcal{L}^l_{content}
        + \beta \sum_{l \in S} w_l\, E_l + \gamma\, \mathcal{L}_{TV}

with :math:`\mathcal{L}^l_{content}` the mean squared error of feature maps and
:math:`E_l` the mean squared error of Gram matrices normalised by C·H·W (see
``nstcourse.losses``). Layer names are ours: in Caffe, which the papers used, ReLUs work
in place, so the papers' "conv4_2" is the rectified output, our ``relu4_2``.

Images are (1, 3, H, W) RGB in [0, 1]. One optimiser step is one evaluation of the loss
and its gradient, for L-BFGS and Adam alike, so step counts compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from nstcourse.colour import gray_to_rgb, luminance, luminance_swap, match_colour, match_luminance
from nstcourse.conventions import by_convention
from nstcourse.features import VGGFeatures
from nstcourse.images import resize_long_side
from nstcourse.losses import (
    Layers,
    content_loss,
    gram_matrix,
    guided_gram_matrix,
    layer_weights,
    tv_loss,
)

# The papers' layers (Gatys et al. 2016, Fig. 2 and §3); they need the full VGG-19.
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# The variant the data pack's VGG-19 (conv1_1 … conv3_4 only) allows (README, "Data and
# weights").
SHALLOW_CONTENT_LAYERS = ("relu3_2",)
SHALLOW_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")

COLOUR_MODES = (None, "luminance", "histogram", "swap")
INITS = ("content", "noise", "style")
OPTIMIZERS = ("lbfgs", "adam")
# Step sizes that work in pixel space ([0, 1]): L-BFGS scales its own steps; Adam moves
# each pixel by about lr per step.
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}

# β for α = 1 by weights convention, from the per-convention table (its sources and
# derivations are in nstcourse.conventions).
DEFAULT_STYLE_WEIGHT = by_convention("gatys_style_weight")
# A TV weight γ (α = 1) that visibly smooths, by weights convention. ``stylize`` defaults to
# γ = 0; a non-zero γ has to follow the convention, as TV does not scale with the features.
TV_WEIGHT = by_convention("gatys_tv_weight")

Callback = Callable[[int, torch.Tensor, dict[str, float]], None]


def _resize_mask(mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(H, W) or (1, 1, H, W) mask in [0, 1] → (1, 1, *size), averaged over each cell."""
    mask = mask.reshape(1, 1, *mask.shape[-2:]).float()
    return F.interpolate(mask, size=size, mode="area") if mask.shape[-2:] != size else mask


class GatysLoss(nn.Module):
    r"""The objective :math:`\mathcal{L}(\vec x)` above, with its targets precomputed.

    Args:
        extractor: a ``VGGFeatures`` that returns every layer named here.
        content: (1, 3, H, W) content image, or None for texture synthesis.
        styles: style images (1, 3, H_s, W_s), any sizes; may be empty for reconstruction.
        content_layers, style_layers: names, or {name: weight w_l}.
        content_weight, style_weight, tv_weight: α, β, γ.
        style_blend: one weight per style image; the targets are the blended Gram matrices
            :math:`A_l = \sum_s b_s A^s_l` (default: equal weights summing to 1).
        masks: spatial control: one mask per style image, (H, W) in [0, 1] over the output;
            style s is matched only where its mask is on, with guided Gram matrices.
        fine_style, fine_layers: scale control: the Gram targets of ``fine_layers`` come
            from ``fine_style`` instead (fine strokes of one image, coarse forms of another).

    ``forward(x)`` takes (1, 3, H, W) and returns {"content", "style", "tv", "total"}:
    each term already weighted, scalar tensors.
    """

    def __init__(
        self,
        extractor: VGGFeatures,
        content: torch.Tensor | None,
        styles: Sequence[torch.Tensor],
        *,
        content_layers: Layers,
        style_layers: Layers,
        content_weight: float,
        style_weight: float,
        tv_weight: float = 0.0,
        style_blend: Sequence[float] | None = None,
        masks: Sequence[torch.Tensor] | None = None,
        fine_style: torch.Tensor | None = None,
        fine_layers: Sequence[str] = (),
    ):
        super().__init__()
        self.extractor = extractor
        self.content_w = layer_weights(content_layers) if content is not None else {}
        self.style_w = layer_weights(style_layers) if styles else {}
        missing = sorted((set(self.content_w) | set(self.style_w)) - set(extractor.layers))
        if missing:
            raise ValueError(f"the extractor does not return layer(s) {missing}")
        self.alpha, self.beta, self.gamma = content_weight, style_weight, tv_weight
        self.masks = None
        with torch.no_grad():
            self.content_targets = (
                {k: v.detach() for k, v in extractor(content).items() if k in self.content_w}
                if content is not None
                else {}
            )
            self.style_targets = self._style_targets(styles, style_blend, fine_style, fine_layers)
        if masks is not None:
            if len(masks) != len(styles):
                raise ValueError(f"got {len(masks)} masks for {len(styles)} style images")
            self.masks = [mask.to(extractor_device(extractor)) for mask in masks]

    def _style_targets(self, styles, blend, fine_style, fine_layers):
        """{layer: (S, C, C)} Gram matrices, one per style image (blended unless masked)."""
        if not styles:
            return {}
        if blend is None:
            blend = [1.0 / len(styles)] * len(styles)
        if len(blend) != len(styles):
            raise ValueError(f"style_blend has {len(blend)} weights for {len(styles)} styles")
        grams = [
            {k: gram_matrix(v) for k, v in self.extractor(s).items() if k in self.style_w}
            for s in styles
        ]
        targets = {k: torch.cat([g[k] for g in grams]) for k in self.style_w}
        self.blend = torch.tensor(blend, dtype=torch.float32).reshape(-1, 1, 1)
        if fine_style is not None:
            unknown = sorted(set(fine_layers) - set(self.style_w))
            if unknown:
                raise ValueError(f"fine_layers {unknown} are not among the style layers")
            fine = self.extractor(fine_style)
            for k in fine_layers:
                targets[k] = gram_matrix(fine[k]).expand_as(targets[k]).clone()
        return targets

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.extractor(x)
        zero = x.new_zeros(())
        content = sum(
            (
                w * content_loss(feats[k], self.content_targets[k])
                for k, w in self.content_w.items()
            ),
            zero,
        )
        style = sum((w * self._layer_style(feats[k], k) for k, w in self.style_w.items()), zero)
        terms = {
            "content": self.alpha * content,
            "style": self.beta * style,
            "tv": self.gamma * tv_loss(x) if self.gamma else zero,
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    def _layer_style(self, feats: torch.Tensor, layer: str) -> torch.Tensor:
        targets = self.style_targets[layer]  # (S, C, C)
        if self.masks is None:
            blended = (self.blend.to(targets) * targets).sum(dim=0, keepdim=True)
            return F.mse_loss(gram_matrix(feats), blended)
        losses = [
            F.mse_loss(guided_gram_matrix(feats, _resize_mask(m, feats.shape[-2:])), t[None])
            for m, t in zip(self.masks, targets, strict=True)
        ]
        return cast(torch.Tensor, sum(losses))


def extractor_device(extractor: nn.Module) -> torch.device:
    """The device an extractor's parameters live on."""
    return next(extractor.parameters()).device


@dataclass
class StylizeResult:
    """What ``stylize`` returns.

    image: (1, 3, H, W) in [0, 1]. history: per step, {"content", "style", "tv",
    "total", "scale", "seconds"} (weighted losses, long side, seconds since the start).
    """

    image: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


class _ClampPixels(torch.autograd.Function):
    """clamp(x, 0, 1) forward; backward passes the gradient except where it pushes outward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # A descent step moves x along -grad: block it only where that leaves [0, 1] further.
        outward = ((x < 0) & (grad > 0)) | ((x > 1) & (grad < 0))
        return grad.masked_fill(outward, 0.0)


def clamp_pixels(x: torch.Tensor) -> torch.Tensor:
    """clamp(x, 0, 1) with a gradient that lets pixels come back into range.

    ``torch.clamp`` has zero gradient at and beyond the bounds, so a saturated pixel of
    the initial image (photos have many) could never move, and one that overshoots
    could never return. Here the gradient of the clamped value passes through on
    [0, 1], and outside it wherever a descent step (along −grad) would move the pixel
    back towards [0, 1].
    """
    return _ClampPixels.apply(x)


def optimise_image(
    x0: torch.Tensor,
    objective: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    *,
    steps: int,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    on_step: Callable[[int, torch.Tensor, dict[str, float]], None] | None = None,
) -> torch.Tensor:
    """Minimise ``objective(x)["total"]`` over the pixels of x, from ``x0``.

    L-BFGS (Liu & Nocedal 1989; history 100) with a strong-Wolfe line search, or Adam.
    ``steps`` counts evaluations of the objective and its gradient, so the two compare
    at equal cost (L-BFGS may overrun by a few evaluations to finish its line search).
    Why a line search: L-BFGS's first step is tiny on a loss this large, its first
    curvature estimate is then all rounding error, and without a line search the next
    step jumps far outside [0, 1]. The objective is evaluated at clamp(x, 0, 1), so the
    loss the optimiser minimises is the loss of the image it returns: scoring x itself
    lets it lower the loss with pixels outside [0, 1] that the returned image cannot
    keep (docs/experiments.md). ``on_step(step, image, terms)`` is called after each
    evaluation with the clamped image it was evaluated at.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; use one of {OPTIMIZERS}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    x = x0.detach().clone().requires_grad_(True)
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        opt.zero_grad()
        image = clamp_pixels(x)
        terms = objective(image)
        if not torch.isfinite(terms["total"]):
            raise FloatingPointError(
                f"the loss became {terms['total'].item()} after {evaluations} steps; lower lr"
            )
        terms["total"].backward()
        if on_step is not None:
            on_step(evaluations, image.detach(), {k: v.item() for k, v in terms.items()})
        evaluations += 1
        return terms["total"]

    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [x], lr=lr, max_iter=steps, max_eval=steps, history_size=100,
            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe",
        )  # fmt: skip
        if steps > 0:
            opt.step(closure)  # type: ignore[arg-type]  # LBFGS takes the loss tensor too
    else:
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.step(closure)
    return x.detach().clamp(0.0, 1.0)


def _initial_image(init, content, styles, generator) -> torch.Tensor:
    if isinstance(init, torch.Tensor):
        if init.dim() != 4 or init.shape[:2] != (1, 3):
            raise ValueError(f"init image must be (1, 3, H, W), got {tuple(init.shape)}")
        return F.interpolate(init.to(content), size=content.shape[-2:], mode="bicubic").clamp(0, 1)
    if init == "content":
        return content.clone()
    if init == "noise":
        return torch.rand(content.shape, generator=generator).to(content)
    if init == "style":
        return F.interpolate(styles[0], size=content.shape[-2:], mode="bicubic").clamp(0, 1)
    raise ValueError(f"init={init!r}; use one of {INITS} or an image tensor")


def stylize(
    content: torch.Tensor,
    styles: torch.Tensor | Sequence[torch.Tensor],
    *,
    extractor: VGGFeatures | None = None,
    content_layers: Layers = CONTENT_LAYERS,
    style_layers: Layers = STYLE_LAYERS,
    content_weight: float = 1.0,
    style_weight: float | None = None,
    tv_weight: float = 0.0,
    style_blend: Sequence[float] | None = None,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init: str | torch.Tensor = "content",
    steps: int | Sequence[int] = 300,
    scales: Sequence[int] | None = None,
    style_scale: float = 1.0,
    colour: str | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    fine_style: torch.Tensor | None = None,
    fine_layers: Sequence[str] = ("relu1_1", "relu2_1"),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> StylizeResult:
    r"""Neural style transfer by optimisation (Gatys et al. 2016), with the 2017 controls.

    Args:
        content: (1, 3, H, W) in [0, 1]. The output has this size unless ``scales`` says
            otherwise.
        styles: one style image (1, 3, H_s, W_s) or a list of them.
        extractor: a ``VGGFeatures`` returning all the layers below; None builds a VGG-19.
        content_layers, style_layers: names, or {name: w_l}. Defaults: the papers' relu4_2
            and relu1_1 … relu5_1 (see ``SHALLOW_*`` for the data pack's partial VGG-19).
        content_weight, style_weight, tv_weight: α, β, γ. Only the ratio α/β matters to
            the result (up to γ); with a content init, smaller α/β means more style.
            ``style_weight=None`` takes ``DEFAULT_STYLE_WEIGHT`` for the extractor's
            weights convention: features of Caffe weights are ~58× larger (0–255 input,
            no std), so their Gram losses grow ~58² ≈ 3·10³× more than the content loss
            (``nstcourse.conventions``). γ does not scale with the features at all: a
            non-zero γ must follow the convention too (``TV_WEIGHT``).
        style_blend: weights of the style images' Gram matrices (default equal).
        optimizer, lr: "lbfgs" (default, as the paper) or "adam"; lr None picks a default.
        init: "content", "noise" (uniform, seeded) or "style", or a (1, 3, H, W) image.
        steps: loss evaluations, one number per scale (or one for all scales).
        scales: coarse-to-fine: long sides in pixels, increasing, e.g. (128, 256, 512);
            each stage starts from the previous result upsampled. None: the content size.
        style_scale: the style images are resized to ``style_scale`` × the current long side,
            so a larger value gives larger brush strokes.
        colour: keep the content's colours (Gatys et al. 2017, §5): "luminance"
            (luminance-only transfer with matched style luminance), "histogram" (style
            recoloured to the content's colour statistics), "swap" (the result's
            chrominance replaced by the content's afterwards), or None.
        masks: spatial control: one (H, W) mask in [0, 1] per style image over the content;
            style s goes where mask s is on (guided Gram matrices, 2017, spatial control).
        fine_style, fine_layers: scale control (2017): the Gram targets of
            ``fine_layers`` come from ``fine_style``, the others from ``styles``.
        seed: for the noise init.
        device: None picks CUDA, MPS or CPU (ignored when an extractor is given).
        progress: show a progress bar. callback: ``callback(step, image, terms)`` after
            every step, with the image the losses were evaluated at (for live previews).

    Returns:
        ``StylizeResult(image, history, seconds)``; image (1, 3, H, W) in [0, 1].
    """
    styles = [styles] if isinstance(styles, torch.Tensor) else list(styles)
    if not styles:
        raise ValueError("give at least one style image")
    for name, image in [("content", content), *((f"style {i}", s) for i, s in enumerate(styles))]:
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"{name} image must be (1, 3, H, W), got {tuple(image.shape)}")
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour={colour!r}; use one of {COLOUR_MODES}")
    if masks is not None and fine_style is not None:
        raise ValueError("use masks or fine_style, not both")
    content_w, style_w = layer_weights(content_layers), layer_weights(style_layers)
    if extractor is None:
        extractor = VGGFeatures(sorted({*content_w, *style_w}), device=device)
    dev = extractor_device(extractor)
    if style_weight is None:
        style_weight = DEFAULT_STYLE_WEIGHT[extractor.weights_info.convention]
    full_side = max(content.shape[-2:])
    scales = list(scales) if scales else [full_side]
    if scales != sorted(scales) or scales[0] < 1:
        raise ValueError(f"scales must be increasing positive long sides, got {scales}")
    steps_per_scale = [steps] * len(scales) if isinstance(steps, int) else list(steps)
    if len(steps_per_scale) != len(scales):
        raise ValueError(f"got {len(steps_per_scale)} step counts for {len(scales)} scales")
    if min(steps_per_scale) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not style_scale > 0:
        raise ValueError(f"style_scale must be > 0, got {style_scale}")
    if masks is not None:
        masks = [m.reshape(1, 1, *m.shape[-2:]) for m in masks]
        for i, m in enumerate(masks):
            if m.shape[-2:] != content.shape[-2:]:
                raise ValueError(
                    f"mask {i} is {tuple(m.shape[-2:])} but the content image is "
                    f"{tuple(content.shape[-2:])}; masks must match the content's size"
                )

    content, styles = content.to(dev), [s.to(dev) for s in styles]
    fine = fine_style.to(dev) if fine_style is not None else None
    if colour == "histogram":
        styles = [match_colour(s, content) for s in styles]
        fine = match_colour(fine, content) if fine is not None else None
    elif colour == "luminance":
        styles = [gray_to_rgb(match_luminance(s, content)) for s in styles]
        fine = gray_to_rgb(match_luminance(fine, content)) if fine is not None else None
        content_in = gray_to_rgb(luminance(content))
    content_in = content_in if colour == "luminance" else content

    generator = torch.Generator().manual_seed(seed)
    record = _Recorder(sum(steps_per_scale), progress, callback)
    x = None
    with record:
        for side, n_steps in zip(scales, steps_per_scale, strict=True):
            c = resize_long_side(content_in, side)
            style_side = max(1, round(style_scale * side))
            objective = GatysLoss(
                extractor,
                c,
                [resize_long_side(s, style_side) for s in styles],
                content_layers=content_w,
                style_layers=style_w,
                content_weight=content_weight,
                style_weight=style_weight,
                tv_weight=tv_weight,
                style_blend=style_blend,
                masks=[_resize_mask(m, c.shape[-2:]) for m in masks] if masks else None,
                fine_style=resize_long_side(fine, style_side) if fine is not None else None,
                fine_layers=fine_layers,
            )
            if x is None:
                x = _initial_image(init, c, styles, generator)
            else:  # coarse-to-fine: continue from the previous result, upsampled
                x = F.interpolate(x, size=c.shape[-2:], mode="bicubic").clamp(0.0, 1.0)
            record.side = side
            x = optimise_image(
                x, objective, steps=n_steps, optimizer=optimizer, lr=lr, on_step=record
            )
    assert x is not None  # scales is never empty (checked above)
    if colour in ("luminance", "swap"):
        x = luminance_swap(x, resize_long_side(content, max(x.shape[-2:])))
    return record.finish(x)


class _Recorder:
    """``on_step`` for ``optimise_image``: loss history, progress bar and user callback.

    A context manager that closes the progress bar on the way out, also on an error or
    Ctrl-C, so that the bar ends its line before any message that follows.
    """

    def __init__(self, total: int, progress: bool, callback: Callback | None):
        self.history: dict[str, list[float]] = {
            k: [] for k in ("content", "style", "tv", "total", "scale", "seconds")
        }
        self.bar = tqdm(total=total, disable=not progress, desc="optimising")
        self.callback, self.side, self.done = callback, 0, 0
        self.start = time.perf_counter()

    def __call__(self, step: int, image: torch.Tensor, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            self.history[k].append(v)
        self.history["scale"].append(self.side)
        self.history["seconds"].append(time.perf_counter() - self.start)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{terms['total']:.4g}", size=self.side, refresh=False)
        if self.callback is not None:
            self.callback(self.done, image, terms)
        self.done += 1

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def finish(self, image: torch.Tensor) -> StylizeResult:
        self.bar.close()
        return StylizeResult(image, self.history, time.perf_counter() - self.start)


def _from_noise(
    objective: GatysLoss, shape, steps, optimizer, seed, progress, callback
) -> StylizeResult:
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=generator).to(extractor_device(objective.extractor))
    record = _Recorder(steps, progress, callback)
    record.side = max(shape[-2:])
    with record:
        x = optimise_image(x0, objective, steps=steps, optimizer=optimizer, on_step=record)
    return record.finish(x)


def reconstruct_content(
    image: torch.Tensor,
    layer: str,
    *,
    extractor: VGGFeatures | None = None,
    steps: int = 300,
    optimizer: str = "lbfgs",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> StylizeResult:
    """An image whose ``layer`` features match ``image``'s, optimised from noise
    (Gatys et al. 2016, Fig. 1, content reconstructions). (1, 3, H, W) in [0, 1]."""
    extractor = extractor or VGGFeatures([layer], device=device)
    image = image.to(extractor_device(extractor))
    objective = GatysLoss(
        extractor, image, [], content_layers=[layer], style_layers=[],
        content_weight=1.0, style_weight=0.0,
    )  # fmt: skip
    return _from_noise(objective, image.shape, steps, optimizer, seed, progress, callback)


def synthesize_texture(
    style: torch.Tensor,
    layers: Layers,
    *,
    size: tuple[int, int] | None = None,
    extractor: VGGFeatures | None = None,
    steps: int = 300,
    optimizer: str = "lbfgs",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> StylizeResult:
    """Texture synthesis (Gatys, Ecker & Bethge 2015): from noise, match the Gram
    matrices of ``layers`` of ``style`` (1, 3, H_s, W_s). Output (1, 3, *size) in [0, 1]
    (default: the style's size)."""
    weights = layer_weights(layers)
    extractor = extractor or VGGFeatures(list(weights), device=device)
    style = style.to(extractor_device(extractor))
    objective = GatysLoss(
        extractor, None, [style], content_layers=[], style_layers=weights,
        content_weight=0.0, style_weight=1.0,
    )  # fmt: skip
    shape = (1, 3, *(size or style.shape[-2:]))
    return _from_noise(objective, shape, steps, optimizer, seed, progress, callback)
