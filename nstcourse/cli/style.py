"""The feed-forward style commands of the ``nstcourse`` command line.

``nstcourse fast-stylize IN -o OUT --model NAME``
    stylise an image, or every image in a folder, in one forward pass of a trained
    network (``nstcourse.style.models``): a single-style TransformNet (Johnson et al.),
    the multi-style CIN network with ``--style`` (Dumoulin et al.) or AdaIN with any
    ``--style-image`` (Huang & Belongie).
``nstcourse train-style {johnson,cin,adain} --steps N -o OUT``
    train a network by its recipe (``nstcourse.style.recipes.train_style``); Ctrl-C keeps
    a resumable checkpoint and the same command resumes.

Outputs and exit codes as in ``cli.common``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nstcourse.budget import (
    gigabytes,
    image_save_bytes,
    memory_budget,
    meta_copy,
    needed_bytes,
    peak_bytes,
)
from nstcourse.checkpoints import checkpoint_info
from nstcourse.cli.common import (
    UsageError,
    add_device_option,
    add_training_options,
    check_device,
    check_output,
    check_writable,
    command_line,
    count,
    each_image,
    normalised,
    number,
    out_of_memory_as_failure,
    positive,
    run_command,
    run_training,
    side,
    size_advice,
    weight,
)
from nstcourse.images import SAVE_FORMATS, ImageError, load_image, resize_long_side, save_image
from nstcourse.style.adain import AdaINNet
from nstcourse.style.fast_style import MIN_SIZE, TransformNet, stylize_batch
from nstcourse.style.models import (
    MODELS,
    check_style_info,
    checkpoint_path,
    load_style_checkpoint,
    style_names,
    train_command,
)
from nstcourse.style.recipes import RECIPES, train_style

FAST_STYLIZE = "nstcourse fast-stylize"
TRAIN_STYLE = "nstcourse train-style"
# The authors' AdaIN test code scales style images to 512 px (shorter side); larger ones
# only cost memory, so we shrink the long side to this unless --style-size says otherwise.
DEFAULT_STYLE_SIZE = 512

Stylize = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) in [0, 1] → the same


@dataclass(frozen=True)
class Stylizer:
    """A loaded network ready to stylise (``run``), and ``peak_bytes(height, width)``:
    the bytes ``run`` allocates for an image of that size, counted on a ``meta`` copy of
    the network (``nstcourse.budget.peak_bytes``) so that an image too large for the
    memory budget is refused before any work."""

    run: Stylize
    peak_bytes: Callable[[int, int], int]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.run(image)


def _peak_counter(
    run_on_meta: Stylize, extra: Callable[[int, int], int] | None = None
) -> Callable[[int, int], int]:
    """``Stylizer.peak_bytes`` for ``run_on_meta``, the same stylizer on a meta network,
    plus ``extra(height, width)`` bytes for what it cannot run."""

    def peak(height: int, width: int) -> int:
        image = torch.empty(1, 3, height, width, device="meta")
        more = 0 if extra is None else extra(height, width)
        return peak_bytes(lambda: run_on_meta(image)) + more

    return peak


def _colour_bytes(height: int, width: int) -> int:
    """What AdaIN's --preserve-colour adds: ``colour.match_colour`` takes the content's
    pixels as a (3, H·W) float32 copy, its float64 copy and the centred one (60 B/px)."""
    return 60 * height * width


# ---------------------------------------------------------------- fast-stylize


def _fast_stylize(args: argparse.Namespace) -> int:
    def work() -> int:
        stylizer, style_images = _prepare(args)
        if args.input.is_dir():
            return _stylize_folder(args, stylizer, style_images)
        _stylize_one(args, stylizer, args.input, args.output)
        return 0

    return run_command(FAST_STYLIZE, args.output, work)


def _prepare(args: argparse.Namespace) -> tuple[Stylizer, list[Path]]:
    """Check every option against the model, the input and the output; read the style
    images; load the network. Returns the stylizer and the style image paths."""
    path = _model_file(args.model)
    info = checkpoint_info(path)
    kind = info.get("class")
    if kind not in ("TransformNet", "Decoder"):
        raise UsageError(
            f"--model {path} holds a {kind}, not a style network from nstcourse train-style"
        )
    check_style_info(info, path)  # its settings, before any option is checked against them
    _check_style_options(args, adain=kind == "Decoder")
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    if not args.input.is_dir():
        check_output(args.output, [args.input, *args.style_image])
    device = check_device(args.device)
    if kind == "Decoder":
        weights = normalised(args.style_weights, len(args.style_image), "--style-weights")
        styles = [_load_style_image(p, args.style_size) for p in args.style_image]
        adain_net = load_style_checkpoint(path, device=device)
        assert isinstance(adain_net, AdaINNet)  # the class was checked above
        stylizer = Stylizer(
            _adain_stylizer(adain_net, styles, weights, args.alpha, args.preserve_colour),
            # The meta copy runs without --preserve-colour: colour matching reads the data
            # (on the CPU, which a meta tensor has none of); _colour_bytes adds its memory.
            _peak_counter(
                _adain_stylizer(meta_copy(adain_net), styles, weights, args.alpha, False),
                _colour_bytes if args.preserve_colour else None,
            ),
        )
        return stylizer, list(args.style_image)
    n_styles = info["kwargs"].get("styles", 1)  # an int >= 1: check_style_info
    if n_styles == 1 and args.style:
        raise UsageError(f"--style: {args.model} has one style; --style is for the cin model")
    style = None
    if n_styles > 1:
        style = _cin_weights(args.style, _names(info, n_styles), n_styles, args.model)
    net = load_style_checkpoint(path, device=device)
    assert isinstance(net, TransformNet)  # the class was checked above
    meta_net = meta_copy(net)
    return Stylizer(
        lambda x: stylize_batch(net, x, style=style),
        _peak_counter(lambda x: stylize_batch(meta_net, x, style=style)),
    ), []


def _model_file(name: str) -> Path:
    """The checkpoint of a shipped model name, or a ``.safetensors`` path."""
    if name in MODELS:
        path = checkpoint_path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"--model {name}: {path} not found; train it with: {train_command(name, path)}"
            )
        return path
    path = Path(name)
    if path.suffix != ".safetensors":
        raise UsageError(
            f"--model {name}: unknown model; known: {', '.join(MODELS)}, or a .safetensors "
            "file from nstcourse train-style"
        )
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: no such file")
    return path


def _check_style_options(args: argparse.Namespace, *, adain: bool) -> None:
    """The style options that only one kind of network takes."""
    if adain:
        if args.style:
            raise UsageError("--style: adain takes any style image; use --style-image PATH")
        if not args.style_image:
            raise UsageError("--style-image: adain needs at least one style image")
        return
    given = {
        "--style-image": bool(args.style_image),
        "--style-weights": args.style_weights is not None,
        "--alpha": args.alpha is not None,
        "--preserve-colour": args.preserve_colour,
    }
    for option, is_given in given.items():
        if is_given:
            raise UsageError(
                f"{option} is for --model adain; {args.model} is a TransformNet with its "
                "styles built in"
            )


def _names(info: dict[str, Any], count: int) -> list[str]:
    """The style names of a CIN checkpoint, or [] if its metadata has none for each index."""
    try:
        names = style_names(info)
    except (KeyError, TypeError):
        return []
    return names if len(names) == count else []


def _cin_weights(
    choices: list[tuple[str, float | None]], names: list[str], count: int, model: str
) -> list[float]:
    """--style NAME_OR_INDEX[=WEIGHT] ... → S weights summing to 1 (a missing weight is 1)."""
    known = ", ".join(f"{i} {name}" for i, name in enumerate(names)) or f"0 to {count - 1}"
    if not choices:
        raise UsageError(
            f"--style: {model} has {count} styles; choose one or a mix, e.g. "
            f"--style {names[0] if names else 0}; known: {known}"
        )
    weights: list[float | None] = [None] * count
    for key, given in choices:
        if key.isascii() and key.isdigit():  # not '²', which isdigit() too
            index = int(key)
            if index >= count:
                raise UsageError(f"--style {key}: {model} has styles 0 to {count - 1}")
        elif key in names:
            index = names.index(key)
        else:
            raise UsageError(f"--style {key}: unknown style of {model}; known: {known}")
        if weights[index] is not None:
            raise UsageError(f"--style {key}: style {index} is listed twice")
        weights[index] = 1.0 if given is None else given
    return normalised([w or 0.0 for w in weights], count, "--style")


def _load_style_image(path: Path, long_side: int) -> torch.Tensor:
    """A style image, shrunk to ``long_side`` if larger; both sides ≥ MIN_SIZE."""
    image = load_image(path)
    shrink = max(image.shape[-2:]) > long_side
    if shrink:
        image = resize_long_side(image, long_side)
    _check_size(image, path, f"--style-size {long_side}" if shrink else None)
    return image


def _adain_stylizer(
    net: AdaINNet,
    styles: list[torch.Tensor],
    weights: list[float],
    alpha: float | None,
    preserve_colour: bool,
) -> Stylize:
    device = next(net.decoder.parameters()).device
    styles = [s.to(device) for s in styles]

    def stylize(content: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = net(
                content.to(device),
                styles[0] if len(styles) == 1 else styles,
                alpha=1.0 if alpha is None else alpha,
                style_weights=None if len(styles) == 1 else weights,
                preserve_colour=preserve_colour,
            )
        return y.to(content.device)

    return stylize


def _check_size(image: torch.Tensor, path: Path, resized_by: str | None) -> None:
    """Both sides ≥ MIN_SIZE (the TransformNet's smallest; AdaIN's VGG needs 4)."""
    height, width = image.shape[-2:]
    if min(height, width) < MIN_SIZE:
        after = f" (after {resized_by})" if resized_by else ""
        raise ImageError(
            f"{path}: {width}x{height} px{after} is too small; both sides need at least "
            f"{MIN_SIZE} px"
        )


def _stylize_one(args: argparse.Namespace, stylizer: Stylizer, src: Path, dst: Path) -> None:
    start = time.perf_counter()
    with out_of_memory_as_failure(src, "try --size 1024"):
        image = load_image(src)
        if args.size is not None:
            image = resize_long_side(image, args.size)
        _check_size(image, src, None if args.size is None else f"--size {args.size}")
        _check_memory(args, stylizer, src, image.shape[-2], image.shape[-1])
        y = stylizer(image)
        del image  # not needed while saving
        save_image(y, dst)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"wrote {dst} ({y.shape[-1]}x{y.shape[-2]}) in {seconds:.1f} s", flush=True)


def _check_memory(
    args: argparse.Namespace, stylizer: Stylizer, src: Path, height: int, width: int
) -> None:
    """A UsageError (exit 2, before any work) if stylising a ``height`` × ``width`` image
    needs more than the memory budget (``nstcourse.budget``); it suggests the largest
    ``--size`` that fits. (A feed-forward network keeps every activation at the image's
    size: 32 channels of float32 at 64 MP are 8 GB, and there is no tiling here because
    instance normalisation sees the whole image.)"""
    budget = memory_budget()

    def need(h: int, w: int) -> int:
        return needed_bytes(stylizer.peak_bytes(h, w)) + image_save_bytes(h, w)

    needs = need(height, width)
    if needs <= budget.size:
        return
    what = f"{src}: {width}x{height} px"
    if args.size is not None:
        what += f" (after --size {args.size})"
    advice = size_advice(need, height, width, budget.size, MIN_SIZE)
    raise UsageError(
        f"{what} needs about {gigabytes(needs)} with --model {args.model}, more than "
        f"{budget}; {advice}"
    )


def _stylize_folder(args: argparse.Namespace, stylizer: Stylizer, style_images: list[Path]) -> int:
    return each_image(
        FAST_STYLIZE,
        args.input,
        args.output,
        lambda src, dst: _stylize_one(args, stylizer, src, dst),
        protected=style_images,
    )


# ---------------------------------------------------------------- train-style


def _train_style(args: argparse.Namespace) -> int:
    command = _command(args)
    workdir = args.workdir or Path("runs") / args.model  # train_style's default

    def train() -> str:
        check_writable(args.output)  # not found only after the whole training
        overrides = {
            field: value
            for field, value in (
                ("styles", tuple(_style_path(p) for p in args.style) if args.style else None),
                ("crop", args.crop),
                ("batch_size", args.batch_size),
                ("style_weight", args.style_weight),
                ("max_images", args.max_images),
                ("lr", args.lr),
            )
            if value is not None
        }
        recipe = replace(RECIPES[args.model](), **overrides)
        device = check_device(args.device)
        start = time.perf_counter()
        metadata = train_style(
            args.model,
            steps=args.steps,
            out=args.output,
            recipe=recipe,
            seed=args.seed,
            workdir=workdir,
            progress=not args.quiet,
            device=device,
            command=command,
        )
        return _train_report(args.output, metadata, time.perf_counter() - start)

    return run_training(TRAIN_STYLE, args, command, train, lambda: workdir)


def _style_path(text: str) -> str:
    """A style image the user names: a file here (made absolute), else as the recipes name
    theirs, a catalog path relative to the data folder (fetched on first use)."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_file() else text


def _command(args: argparse.Namespace) -> str:
    """The command line that makes (or resumes) this run."""
    styles = [("--style", style) for style in args.style or []]
    return command_line(
        ["nstcourse", "train-style", args.model],
        [
            ("--steps", args.steps),
            ("-o", args.output),
            *styles,
            ("--workdir", args.workdir),
            ("--seed", args.seed or None),
            ("--crop", args.crop),
            ("--batch-size", args.batch_size),
            ("--style-weight", args.style_weight),
            ("--max-images", args.max_images),
            ("--lr", args.lr),
            ("--device", args.device),
        ],
    )


def _train_report(out: Path, metadata: dict, seconds: float) -> str:
    resumed = metadata["recipe"]["resumed_from_step"]
    first = f"wrote {out} in {seconds:.0f} s"
    lines = [first + (f" (resumed from step {resumed})" if resumed else "")]
    train = metadata["metrics"]["train"]
    terms = ", ".join(
        f"{key.removesuffix('_mean_last_100')} {v:.4g}"
        for key, v in train.items()
        if key.endswith("_mean_last_100")
    )
    lines.append(f"  training loss (mean of the last 100 steps): {terms}")
    speed = metadata["metrics"]["speed"]
    for key, value in speed.items():
        if key.startswith("ms_per_"):
            side = key.removeprefix("ms_per_").removesuffix("px_image")
            lines.append(f"  speed: {value:.1f} ms per {side}x{side} image on {speed['device']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- argument types


def _alpha(text: str) -> float:
    return number(text, float, 0.0, 1.0)


def _crop(text: str) -> int:
    return int(number(text, int, MIN_SIZE))


def _style_choice(text: str) -> tuple[str, float | None]:
    """'starry_night=0.7' → ('starry_night', 0.7); '3' → ('3', None)."""
    key, equals, value = (part.strip() for part in text.partition("="))
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give a style name or index before '='")
    return key, weight(value) if equals else None


# ---------------------------------------------------------------- parser


def _add_fast_stylize(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "fast-stylize",
        help="stylise an image or a folder in one pass of a trained network",
        description="Stylise IN with a trained feed-forward network: one of the course\n"
        "checkpoints (checkpoints/, or $NSTCOURSE_CHECKPOINTS_DIR) or a .safetensors file\n"
        "from train-style. IN may be a folder: then OUT is a folder and each image keeps\n"
        "its name; a bad image is reported and the others go on (exit 1 at the end).",
        epilog="examples:\n"
        f"  {FAST_STYLIZE} photo.jpg -o wave.jpg --model wave\n"
        f"  {FAST_STYLIZE} photos/ -o out/ --model cin --style starry_night=0.7 "
        "--style the_scream=0.3\n"
        f"  {FAST_STYLIZE} photo.jpg -o out.jpg --model adain --style-image painting.jpg "
        "--alpha 0.6 --preserve-colour",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="IN", help="an image file or a folder of images")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT",
        help=f"output image ({' '.join(SAVE_FORMATS)}), or folder when IN is a folder",
    )  # fmt: skip
    p.add_argument(
        "--model", required=True, metavar="NAME",
        help=f"one of {', '.join(MODELS)}, or a .safetensors file from train-style",
    )  # fmt: skip
    p.add_argument(
        "--size", type=side, default=None, metavar="PX",
        help="resize each input so its long side is PX (default: as it is)",
    )  # fmt: skip
    p.add_argument(
        "--style", type=_style_choice, action="append", default=[], metavar="NAME[=W]",
        help="cin: a style by name or index, with an optional weight; repeat it for a mix "
        "(weights are normalised to sum 1)",
    )  # fmt: skip
    p.add_argument(
        "--style-image", type=Path, action="append", default=[], metavar="PATH",
        help="adain: a style image; repeat it for a mix (--style-weights)",
    )  # fmt: skip
    p.add_argument(
        "--style-weights", type=weight, nargs="+", default=None, metavar="W",
        help="adain: one weight per --style-image, normalised to sum 1 (default equal)",
    )  # fmt: skip
    p.add_argument(
        "--style-size", type=side, default=DEFAULT_STYLE_SIZE, metavar="PX",
        help=f"adain: shrink style images to this long side (default {DEFAULT_STYLE_SIZE})",
    )  # fmt: skip
    p.add_argument(
        "--alpha", type=_alpha, default=None,
        help="adain: content-style trade-off from 0 (the photo) to 1 (full style; default)",
    )  # fmt: skip
    p.add_argument(
        "--preserve-colour", "--preserve-color", action="store_true",
        help="adain: recolour the style images to the photo's colours first",
    )  # fmt: skip
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_fast_stylize)


def _add_train_style(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train-style",
        help="train a feed-forward style network by its recipe",
        description="Train MODEL by its recipe in nstcourse.style.recipes and write OUT "
        "(safetensors, with the recipe, this command and the final losses in its metadata). "
        "Checkpoints go to --workdir; Ctrl-C keeps the last one and the same command resumes "
        "(--steps may grow).",
    )
    p.add_argument("model", metavar="MODEL", choices=list(RECIPES), help=", ".join(RECIPES))
    add_training_options(p, workdir_default="runs/<model>")
    p.add_argument(
        "--style", nargs="+", action="extend", default=None, metavar="PATH",
        help="style image(s): johnson one, cin two or more (their order is the style index), "
        "adain the paintings to train on; a file here, else a catalog path such as "
        "images/style/starry_night.jpg "
        "(default: the recipe's)",
    )  # fmt: skip
    p.add_argument(
        "--crop", type=_crop, default=None, metavar="PX",
        help="side of the square training crops (default: the recipe's)",
    )  # fmt: skip
    p.add_argument(
        "--style-weight", type=positive, default=None, metavar="W",
        help="lambda_s for content weight 1 (default: the recipe's)",
    )  # fmt: skip
    p.add_argument(
        "--max-images", type=count, default=None, metavar="K",
        help="train on the first K photos only (default: all)",
    )  # fmt: skip
    p.set_defaults(func=_train_style)


def add_style_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``fast-stylize`` and ``train-style`` on the ``nstcourse`` parser."""
    _add_fast_stylize(commands)
    _add_train_style(commands)
