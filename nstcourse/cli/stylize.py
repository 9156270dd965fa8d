"""``nstcourse stylize CONTENT STYLE [STYLE ...] -o OUT [options]``: Gatys style transfer
of one image by optimisation (``nstcourse.style.gatys.stylize``), with the colour, space
and scale controls of Gatys et al. 2017.

Every argument is checked and every file read before the optimisation starts; OUT is
written atomically: after a failure or Ctrl-C there is no file (and no temporary file) at
OUT, and an OUT that existed before is unchanged.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from nstcourse.cli.common import (
    MAX_SIDE,
    add_device_option,
    check_device,
    check_output,
    count,
    items,
    normalised,
    number,
    positive,
    run_command,
    side,
    weight,
)
from nstcourse.features import VGGFeatures
from nstcourse.images import SAVE_FORMATS, load_image, resize_long_side, save_image
from nstcourse.style.gatys import (
    CONTENT_LAYERS,
    DEFAULT_LR,
    DEFAULT_STYLE_WEIGHT,
    STYLE_LAYERS,
    StylizeResult,
    extractor_device,
    stylize,
)
from nstcourse.vgg_weights import WeightsError, layer_names, load_vgg_weights, min_input_side

STYLIZE = "nstcourse stylize"
DEFAULT_SIZE = 512  # the papers' and most tutorials' output size
DEFAULT_FINE_LAYERS = "relu1_1,relu2_1"  # stylize's default: the finest strokes

STYLIZE_EPILOG = f"""\
layers:
  The defaults are the papers' layers, content {",".join(CONTENT_LAYERS)} and style
  {",".join(STYLE_LAYERS)}; they need the full VGG-19 (downloaded on
  first use). With a VGG file that stops at conv3_4, such as the course data pack's,
  pass shallow layers: --content-layers relu3_2 --style-layers relu1_1,relu2_1,relu3_1
  A layer list may weight its layers: --style-layers relu1_1:2,relu2_1,relu3_1:0.5

sizes:
  --size is the output's long side. With --scales (coarse-to-fine), --size defaults to
  the last scale; if both are given, the last scale must equal --size.

examples:
  {STYLIZE} photo.jpg starry_night.jpg -o out.jpg
  {STYLIZE} photo.jpg starry_night.jpg -o out.jpg --scales 128,256,512 --steps 200,100,50
  {STYLIZE} photo.jpg painting.jpg -o out.jpg --preserve-colour luminance
  {STYLIZE} photo.jpg a.jpg b.jpg -o out.png --mask left.png right.png

exit codes: 0 written; 1 the optimisation failed (the loss became NaN, out of memory);
  2 bad input (found before optimising); 130 interrupted (Ctrl-C); 143 terminated
  (SIGTERM). On failure nothing is written.
"""


def _stylize(args: argparse.Namespace) -> int:
    def work() -> None:
        start = time.perf_counter()
        options = _stylize_options(args)
        if not args.quiet:
            print(_describe(args.content, args.styles, options), flush=True)
        result = stylize(**options, seed=args.seed, progress=not args.quiet)
        save_image(result.image, args.output, quality=args.quality)
        print(_report(args.output, result, time.perf_counter() - start))

    return run_command(STYLIZE, args.output, work, failed="the optimisation failed")


def _stylize_options(args: argparse.Namespace) -> dict:
    """Check every argument, read every file, load the VGG: ``stylize``'s keyword
    arguments. Errors (ValueError, OSError, WeightsError) name the argument or file."""
    content_layers = args.content_layers or dict.fromkeys(CONTENT_LAYERS, 1.0)
    style_layers = args.style_layers or dict.fromkeys(STYLE_LAYERS, 1.0)
    _check_layers(content_layers, args.arch, "--content-layers")
    _check_layers(style_layers, args.arch, "--style-layers")
    fine_layers = _check_controls(args, style_layers)
    size, scales, steps = _plan_scales(args.size, args.scales, args.steps)
    style_side = _style_side(args.style_scale, size)
    inputs = [args.content, *args.styles, *(args.mask or []), args.fine_style]
    check_output(args.output, [path for path in inputs if path is not None])
    device = check_device(args.device)

    original = load_image(args.content)
    content = resize_long_side(original, size)
    styles = [_load_style(path, style_side) for path in args.styles]
    fine = _load_style(args.fine_style, style_side) if args.fine_style else None
    masks = [_load_mask(p, original.shape[-2:], content.shape[-2:]) for p in args.mask or []]
    min_side = min_input_side(args.arch, [*content_layers, *style_layers])
    size_option = "--scales" if args.scales else "--size"
    _check_min_side(content, args.content, scales[0], min_side, size_option)
    for path, style in zip([*args.styles, args.fine_style], [*styles, fine], strict=True):
        if style is not None:
            style_side = _style_side(args.style_scale, scales[0])
            _check_min_side(style, path, style_side, min_side, "--style-scale")

    extractor = _build_extractor(
        [*content_layers, *style_layers], args.arch, args.weights, args.convention, device
    )
    style_weight = args.style_weight
    if style_weight is None:
        style_weight = DEFAULT_STYLE_WEIGHT[extractor.weights_info.convention]
    blend = normalised(args.style_blend, len(styles), "--style-blend") if args.style_blend else None
    return dict(
        content=content,
        styles=styles,
        extractor=extractor,
        content_layers=content_layers,
        style_layers=style_layers,
        content_weight=args.content_weight,
        style_weight=style_weight,
        tv_weight=args.tv_weight,
        style_blend=blend,
        optimizer=args.optimizer,
        lr=args.lr,
        init=args.init,
        steps=steps,
        scales=scales,
        style_scale=args.style_scale,
        colour=None if args.colour == "none" else args.colour,
        masks=masks or None,
        fine_style=fine,
        fine_layers=fine_layers,
    )


def _check_layers(layers: dict[str, float], arch: str, option: str) -> None:
    known = layer_names(arch)
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(
            f"{option}: unknown {arch} layer(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )


def _check_controls(args: argparse.Namespace, style_layers: dict[str, float]) -> list[str]:
    """Masks, style blend and fine style against the style images; returns fine layers."""
    n_styles = len(args.styles)
    if args.mask is not None and len(args.mask) != n_styles:
        raise ValueError(f"--mask: got {len(args.mask)} masks for {n_styles} style images")
    if args.mask is not None and args.fine_style is not None:
        raise ValueError("use --mask or --fine-style, not both")
    if args.style_blend is not None:
        if args.mask is not None:
            raise ValueError("--style-blend has no effect with --mask: each style has a region")
        if len(args.style_blend) != n_styles:
            raise ValueError(
                f"--style-blend: got {len(args.style_blend)} weights for {n_styles} style images"
            )
    if args.fine_layers is not None and args.fine_style is None:
        raise ValueError("--fine-layers needs --fine-style")
    fine_layers = args.fine_layers or _layer_names(DEFAULT_FINE_LAYERS)
    outside = [name for name in fine_layers if name not in style_layers]
    if args.fine_style is not None and outside:
        option = "--fine-layers" if args.fine_layers else f"--fine-layers {DEFAULT_FINE_LAYERS}"
        raise ValueError(f"{option}: {', '.join(outside)} not in --style-layers")
    return fine_layers


def _plan_scales(
    size: int | None, scales: list[int] | None, steps: list[int]
) -> tuple[int, list[int], list[int]]:
    """(output long side, scales, steps per scale), checked against each other."""
    if scales is None:
        size = DEFAULT_SIZE if size is None else size
        scales = [size]
    elif scales != sorted(set(scales)):
        raise ValueError(f"--scales must increase, got {_format_ints(scales)}")
    elif size is None:
        size = scales[-1]
    elif scales[-1] != size:
        raise ValueError(
            f"--scales must end at --size {size} (the output's long side), "
            f"got {_format_ints(scales)}"
        )
    if len(steps) == 1:
        steps = steps * len(scales)
    elif len(steps) != len(scales):
        raise ValueError(f"--steps: got {len(steps)} step counts for {len(scales)} scales")
    return size, scales, steps


def _style_side(style_scale: float, side: int) -> int:
    """The style images' long side at an output long side (as ``stylize`` computes it)."""
    style_side = max(1, round(style_scale * side))
    if style_side > MAX_SIDE:
        raise ValueError(
            f"--style-scale {style_scale:g}: style images of {style_side} px exceed {MAX_SIDE} px"
        )
    return style_side


def _load_style(path: Path, long_side: int) -> torch.Tensor:
    """A style image, shrunk to the largest size ``stylize`` will ask for (saves memory)."""
    image = load_image(path)
    return resize_long_side(image, long_side) if max(image.shape[-2:]) > long_side else image


def _load_mask(path: Path, content_size: Sequence[int], out_size: Sequence[int]) -> torch.Tensor:
    """A grayscale mask (white = this style) drawn over the content image, at any
    resolution of the content's aspect ratio; returns (H, W) in [0, 1] at ``out_size``."""
    # Transparent pixels count as black: outside the region.
    mask = load_image(path, background=(0.0, 0.0, 0.0)).mean(dim=1, keepdim=True)
    (mh, mw), (ch, cw) = mask.shape[-2:], content_size
    if abs(mh * cw - mw * ch) > max(ch, cw):  # more than a pixel off the content's shape
        raise ValueError(
            f"--mask {path}: {mw}x{mh} px does not have the content image's aspect ratio "
            f"({cw}x{ch} px); draw the mask over the content image"
        )
    if mask.max() == 0:
        raise ValueError(f"--mask {path} is black everywhere: its style would not appear")
    mask = F.interpolate(mask, size=tuple(out_size), mode="bilinear", antialias=True)
    return mask[0, 0].clamp(0.0, 1.0)


def _check_min_side(
    image: torch.Tensor, path: Path, long_side: int, min_side: int, option: str
) -> None:
    height, width = image.shape[-2:]
    scale = long_side / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    if min(h, w) < min_side:
        raise ValueError(
            f"{option}: {path} would be {w}x{h} px, too small for the chosen layers: "
            f"each pooling halves it, so both sides need at least {min_side} px"
        )


def _build_extractor(
    layers: Sequence[str],
    arch: str,
    weights: Path | None,
    convention: str | None,
    device: torch.device | None,
) -> VGGFeatures:
    try:
        vgg_weights = load_vgg_weights(arch, weights, convention=convention)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--weights: {err}") from None
    names = layer_names(arch)
    wanted = sorted(set(layers), key=names.index)
    try:
        return VGGFeatures(wanted, arch=arch, weights=vgg_weights, device=device)
    except WeightsError as err:
        raise WeightsError(f"{err} (options --content-layers, --style-layers)") from None


def _describe(content: Path, styles: Sequence[Path], options: dict) -> str:
    """Two lines saying what ``stylize`` is about to do."""
    image, lr = options["content"], options["lr"] or DEFAULT_LR[options["optimizer"]]
    return (
        f"{content} ({image.shape[-1]}x{image.shape[-2]}) in the style of "
        f"{', '.join(map(str, styles))} on {extractor_device(options['extractor'])}\n"
        f"content {_format_layers(options['content_layers'])}, "
        f"style {_format_layers(options['style_layers'])}; "
        f"alpha {options['content_weight']:g}, beta {options['style_weight']:g}, "
        f"tv {options['tv_weight']:g}; {options['optimizer']} lr {lr:g}, "
        f"init {options['init']}, scales {_format_ints(options['scales'])}, "
        f"steps {_format_ints(options['steps'])}"
    )


def _report(out: Path, result: StylizeResult, seconds: float) -> str:
    height, width = result.image.shape[-2:]
    last = ", ".join(f"{k} {result.history[k][-1]:.4g}" for k in ("content", "style", "tv"))
    total = result.history["total"][-1]
    return f"wrote {out} ({width}x{height}) in {seconds:.1f} s; last loss {total:.4g} ({last})"


def _format_ints(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


def _format_layers(layers: dict[str, float]) -> str:
    return ",".join(name if w == 1 else f"{name}:{w:g}" for name, w in layers.items())


# ---------------------------------------------------------------- argument types


def _sides(text: str) -> list[int]:
    return [side(item) for item in items(text)]


def _counts(text: str) -> list[int]:
    return [count(item) for item in items(text)]


def _weights(text: str) -> list[float]:
    weights = [weight(item) for item in items(text)]
    if not sum(weights) > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the weights must not all be 0")
    return weights


def _quality(text: str) -> int:
    return int(number(text, int, 1, 100))


def _layer_weights(text: str) -> dict[str, float]:
    """'relu1_1:2,relu2_1' → {'relu1_1': 2.0, 'relu2_1': 1.0}."""
    layers: dict[str, float] = {}
    for item in items(text):
        name, colon, value = (part.strip() for part in item.partition(":"))
        if name in layers:
            raise argparse.ArgumentTypeError(f"{name} is listed twice in {text!r}")
        layers[name] = weight(value) if colon else 1.0
    return layers


def _layer_names(text: str) -> list[str]:
    """'relu1_1,relu2_1' → ['relu1_1', 'relu2_1'] (no weights)."""
    names = items(text)
    if any(":" in name for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give each layer name once, without weights")
    return names


def add_stylize_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "stylize",
        help="style transfer of one image by optimisation (Gatys et al.)",
        description="Paint CONTENT in the style of STYLE by optimising its pixels (Gatys,\n"
        "Ecker & Bethge 2016), with the colour, space and scale controls of Gatys et al.\n"
        "2017. Every input is checked before optimising; OUT is written only when done.",
        epilog=STYLIZE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("content", type=Path, metavar="CONTENT", help="the photo to repaint")
    p.add_argument("styles", type=Path, nargs="+", metavar="STYLE", help="style image(s)")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT",
        help=f"output image ({' '.join(SAVE_FORMATS)}); missing folders are created",
    )  # fmt: skip
    p.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality (default 95)")

    size = p.add_argument_group("size and steps")
    size.add_argument(
        "--size", type=side, default=None, metavar="PX",
        help=f"long side of the output (default: the last --scales, else {DEFAULT_SIZE})",
    )  # fmt: skip
    size.add_argument(
        "--scales", type=_sides, default=None, metavar="PX,PX,...",
        help="coarse-to-fine long sides, increasing, e.g. 128,256,512",
    )  # fmt: skip
    size.add_argument(
        "--steps", type=_counts, default=[300], metavar="N[,N...]",
        help="loss evaluations, one for all scales or one per scale (default 300)",
    )  # fmt: skip
    size.add_argument(
        "--style-scale", type=positive, default=1.0, metavar="S",
        help="style images' long side = S x the output's; larger S, larger strokes (default 1)",
    )  # fmt: skip

    loss = p.add_argument_group("loss")
    loss.add_argument(
        "--content-layers", type=_layer_weights, default=None, metavar="L[:W],...",
        help=f"content layers (default {','.join(CONTENT_LAYERS)})",
    )  # fmt: skip
    loss.add_argument(
        "--style-layers", type=_layer_weights, default=None, metavar="L[:W],...",
        help=f"style layers (default {','.join(STYLE_LAYERS)})",
    )  # fmt: skip
    loss.add_argument(
        "--content-weight", type=weight, default=1.0, metavar="ALPHA", help="alpha (default 1)"
    )
    loss.add_argument(
        "--style-weight", type=weight, default=None, metavar="BETA",
        help="beta (default: 100 for Caffe VGG weights, 1e6 for torchvision's)",
    )  # fmt: skip
    loss.add_argument(
        "--tv-weight", type=weight, default=0.0, metavar="GAMMA",
        help="total variation weight gamma (default 0)",
    )  # fmt: skip
    loss.add_argument(
        "--style-blend", type=_weights, default=None, metavar="W,W,...",
        help="one weight per style image, normalised to sum 1 (default equal)",
    )  # fmt: skip

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--init", choices=("content", "noise", "style"), default="content",
                     help="start image (default content)")  # fmt: skip
    opt.add_argument(
        "--optimizer", "--optimiser", choices=("lbfgs", "adam"), default="lbfgs", metavar="NAME",
        help="lbfgs (default, as the paper) or adam",
    )  # fmt: skip
    opt.add_argument(
        "--lr", type=positive, default=None,
        help=f"step size (default {DEFAULT_LR['lbfgs']:g} for lbfgs, "
        f"{DEFAULT_LR['adam']:g} for adam)",
    )  # fmt: skip
    opt.add_argument("--seed", type=int, default=0, help="seed of the noise init (default 0)")
    opt.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    control = p.add_argument_group("control (Gatys et al. 2017)")
    control.add_argument(
        "--preserve-colour", "--colour", dest="colour", metavar="MODE",
        choices=("none", "luminance", "histogram", "swap"), default="none",
        help="keep the content's colours: none (default), luminance (transfer on the "
        "luminance only), histogram (style recoloured to the content's colour statistics) "
        "or swap (the result's chrominance replaced by the content's)",
    )  # fmt: skip
    control.add_argument(
        "--mask", type=Path, nargs="+", default=None, metavar="MASK",
        help="one grayscale image per style, drawn over the content (its aspect ratio, any "
        "resolution): white = that style. Put it after CONTENT STYLE",
    )  # fmt: skip
    control.add_argument(
        "--fine-style", type=Path, default=None, metavar="IMG",
        help="take the fine-scale style (--fine-layers) from this image",
    )  # fmt: skip
    control.add_argument(
        "--fine-layers", type=_layer_names, default=None, metavar="L,...",
        help=f"style layers --fine-style sets (default {DEFAULT_FINE_LAYERS})",
    )  # fmt: skip

    net = p.add_argument_group("network")
    net.add_argument("--arch", choices=("vgg19", "vgg16"), default="vgg19",
                     help="default vgg19")  # fmt: skip
    net.add_argument(
        "--weights", type=Path, default=None, metavar="PATH",
        help="VGG weights file (default: $NSTCOURSE_WEIGHTS_DIR, the torch hub cache, "
        "or download)",
    )  # fmt: skip
    net.add_argument(
        "--convention", choices=("torchvision", "caffe"), default=None,
        help="input convention of a --weights file the course does not know",
    )  # fmt: skip
    add_device_option(net)
    p.set_defaults(func=_stylize)
