"""The super-resolution commands of the ``nstcourse`` command line.

``nstcourse upscale IN -o OUT --model espcn --scale 3``
    upscale an image, or every image in a folder, with a course checkpoint
    (``nstcourse.sr.models``).
``nstcourse train-sr MODEL --scale S --steps N -o OUT``
    train a checkpoint by its recipe (``nstcourse.sr.recipes.train_sr``); Ctrl-C keeps a
    resumable checkpoint and the same command resumes.

Outputs and exit codes as in ``cli.common``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nstcourse.budget import Budget, gigabytes, image_save_bytes, memory_budget, needed_bytes
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
    items,
    number,
    out_of_memory_as_failure,
    run_command,
    run_training,
)
from nstcourse.images import SAVE_FORMATS, ImageError, load_image, save_image
from nstcourse.sr.models import (
    MODELS,
    check_sr_class,
    checkpoint_scales,
    load_pretrained,
    load_sr_checkpoint,
    model_spec,
    super_resolve,
    super_resolve_bytes,
)
from nstcourse.sr.recipes import RECIPES, checked_recipe, default_workdir, train_sr
from nstcourse.training import PRECISIONS

UPSCALE = "nstcourse upscale"
TRAIN_SR = "nstcourse train-sr"


# ---------------------------------------------------------------- upscale


def _upscale(args: argparse.Namespace) -> int:
    def work() -> int:
        folder = args.input.is_dir()
        if folder:  # OUT is checked before the model is loaded and any image computed
            check_writable(args.output, folder=True)
        else:
            check_output(args.output, [args.input])
        model, scale = _load_upscaler(args)
        if folder:
            return _upscale_folder(args, model, scale)
        _upscale_one(args, model, scale, args.input, args.output)
        return 0

    return run_command(UPSCALE, args.output, work)


def _load_upscaler(args: argparse.Namespace) -> tuple[torch.nn.Module, int]:
    """Check the model, scale, input and device; load the model. Errors name the option."""
    if args.model not in MODELS:
        raise UsageError(f"--model {args.model}: unknown model; known: {', '.join(MODELS)}")
    spec = model_spec(args.model)
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    device = check_device(args.device)
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file")
        info = checkpoint_info(args.checkpoint)
        check_sr_class(info, args.checkpoint, args.model)  # before the scale: it may be none
        scales = checkpoint_scales(info)
        scale = args.scale
        if scale is None:
            if not scales:
                raise UsageError(
                    f"--scale: {args.checkpoint} does not record its scale; give the one it "
                    "was trained for"
                )
            if len(scales) != 1:
                listed = ", ".join(map(str, scales))
                raise UsageError(
                    f"--scale: {args.checkpoint} serves several scales; give one of {listed}"
                )
            scale = scales[0]
        model = load_sr_checkpoint(args.checkpoint, name=args.model, scale=scale, device=device)
        return model, scale
    scale = args.scale
    if scale is None:
        if len(spec.scales) != 1:
            listed = ", ".join(map(str, spec.scales))
            raise UsageError(f"--scale: {args.model} needs a scale; the course ships {listed}")
        scale = spec.scales[0]
    if scale not in spec.scales:
        listed = ", ".join(map(str, spec.scales))
        raise UsageError(
            f"--scale {scale}: {args.model} has no x{scale} checkpoint; the course ships "
            f"scale {listed} (or pass --checkpoint FILE)"
        )
    return load_pretrained(args.model, scale, device=device), scale


def _upscale_one(
    args: argparse.Namespace, model: torch.nn.Module, scale: int, src: Path, dst: Path
) -> None:
    start = time.perf_counter()
    advice = "try --tile 256, or a smaller image"
    with out_of_memory_as_failure(src, advice):
        lr = load_image(src)
        smallest = model_spec(args.model).min_lr_side(scale)
        height, width = lr.shape[-2:]
        if min(height, width) < smallest:
            raise ImageError(
                f"{src}: {width}x{height} px is too small for {args.model} x{scale}; "
                f"both sides need at least {smallest} px"
            )
        tile = _tile_within_budget(args, model, scale, src, (height, width))
        sr = super_resolve(model, lr, name=args.model, scale=scale, tile=tile)
        del lr  # not needed while saving
        save_image(sr, dst)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"wrote {dst} ({sr.shape[-1]}x{sr.shape[-2]}) in {seconds:.1f} s", flush=True)


# Tile sizes tried, largest first, when the whole image does not fit the memory budget:
# a larger tile repeats less of the receptive-field margin; below 64 px the margin (up to
# 43 px for srresnet) is most of the work.
AUTO_TILES = (1024, 512, 256, 128, 64)


def _tile_within_budget(
    args: argparse.Namespace,
    model: torch.nn.Module,
    scale: int,
    src: Path,
    size: tuple[int, int],
) -> int | None:
    """The tile to upscale ``src`` with, within the memory budget (``nstcourse.budget``).

    ``--tile PX`` is used when it fits. Without it the whole image is run when it fits,
    else the largest of AUTO_TILES that fits, with a note: tiling gives the same image (to
    float rounding) and only repeats the margins, so it is better than a refusal that
    makes the user pick a number. A UsageError (exit 2, before any work) when nothing
    fits: it says how much is needed and what to do.
    """
    height, width = size
    budget = memory_budget()

    def need(tile: int | None) -> int:
        peak = super_resolve_bytes(model, height, width, name=args.model, scale=scale, tile=tile)
        return needed_bytes(peak) + image_save_bytes(scale * height, scale * width)

    what = f"{src}: {width}x{height} px x{scale}"
    if args.tile is not None:
        needs = need(args.tile)
        if needs <= budget.size:
            return int(args.tile)
        smaller = next((t for t in AUTO_TILES if t < args.tile and need(t) <= budget.size), None)
        if smaller is not None:
            raise UsageError(
                f"{what} with --tile {args.tile} needs about {gigabytes(needs)}, more than "
                f"{budget}; use --tile {smaller}"
            )
        raise _too_large(what, need(AUTO_TILES[-1]), scale * height * scale * width, budget)
    whole = need(None)
    if whole <= budget.size:
        return None
    for tile in AUTO_TILES:
        if need(tile) <= budget.size:
            if not args.quiet:
                print(
                    f"{what} needs about {gigabytes(whole)} at once, more than {budget}; "
                    f"running in tiles of {tile} px (the same result)",
                    flush=True,
                )
            return tile
    raise _too_large(what, need(AUTO_TILES[-1]), scale * height * scale * width, budget)


def _too_large(what: str, least: int, out_pixels: int, budget: Budget) -> UsageError:
    """The error for an image too large for the budget even in the smallest tiles."""
    return UsageError(
        f"{what} needs about {gigabytes(least)} even in tiles of {AUTO_TILES[-1]} px (the "
        f"output image alone is {gigabytes(12 * out_pixels)} as floats), more than {budget}; "
        "upscale a smaller image or crop it into parts"
    )


def _upscale_folder(args: argparse.Namespace, model: torch.nn.Module, scale: int) -> int:
    return each_image(
        UPSCALE,
        args.input,
        args.output,
        lambda src, dst: _upscale_one(args, model, scale, src, dst),
    )


# ---------------------------------------------------------------- train-sr


def _train_sr(args: argparse.Namespace) -> int:
    command = _command(args)

    def workdir() -> Path:
        return args.workdir or default_workdir(args.model, _recipe(args).scales)

    def train() -> str:
        recipe = _recipe(args)  # checked before any work: bad options exit 2
        check_writable(args.output)  # not found only after the whole training
        device = check_device(args.device)
        start = time.perf_counter()
        metadata = train_sr(
            args.model,
            steps=args.steps,
            out=args.output,
            recipe=recipe,
            seed=args.seed,
            workdir=workdir(),
            progress=not args.quiet,
            device=device,
            command=command,
        )
        return _train_report(args.output, metadata, time.perf_counter() - start)

    return run_training(TRAIN_SR, args, command, train, workdir)


def _recipe(args: argparse.Namespace) -> Any:
    """The model's recipe with the options given on the command line."""
    overrides = {
        field: value
        for field, value in (
            ("scales", tuple(args.scale) if args.scale else None),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("precision", args.precision),
        )
        if value is not None
    }
    if args.lr_decay_every is not None:
        if args.lr_decay_every < 0:
            raise UsageError(f"--lr-decay-every {args.lr_decay_every}: use N >= 0 (0: never)")
        overrides["lr_decay_every"] = args.lr_decay_every or None
    return checked_recipe(args.model, replace(RECIPES[args.model](), **overrides))


def _command(args: argparse.Namespace) -> str:
    """The command line that makes (or resumes) this run."""
    return command_line(
        ["nstcourse", "train-sr", args.model],
        [
            ("--scale", ",".join(map(str, args.scale)) if args.scale else None),
            ("--steps", args.steps),
            ("-o", args.output),
            ("--workdir", args.workdir),
            ("--batch-size", args.batch_size),
            ("--lr", args.lr),
            ("--lr-decay-every", args.lr_decay_every),
            ("--precision", args.precision),
            ("--seed", args.seed or None),
            ("--device", args.device),
        ],
    )


def _train_report(out: Path, metadata: dict, seconds: float) -> str:
    lines = [f"wrote {out} in {seconds:.0f} s"]
    for set_name, by_scale in metadata["metrics"].items():
        if set_name == "train":
            continue
        for scale, m in by_scale.items():
            lines.append(
                f"  {set_name} {scale}: PSNR-Y {m['psnr_y']:.2f} dB (bicubic "
                f"{m['bicubic_psnr_y']:.2f}), SSIM-Y {m['ssim_y']:.4f} "
                f"(bicubic {m['bicubic_ssim_y']:.4f})"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------- argument types


def _scale(text: str) -> int:
    return int(number(text, int, 2))


def _scales(text: str) -> list[int]:
    return [_scale(item) for item in items(text)]


# ---------------------------------------------------------------- parser


def _add_upscale(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "upscale",
        help="super-resolve an image or a folder of images",
        description="Upscale IN with a course SR checkpoint (checkpoints/, or "
        "$NSTCOURSE_CHECKPOINTS_DIR, or --checkpoint). IN may be a folder: then OUT is a "
        "folder and each image keeps its name; a bad image is reported and the others go on "
        "(exit 1 at the end).",
    )
    p.add_argument("input", type=Path, metavar="IN", help="an image file or a folder of images")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT",
        help=f"output image ({' '.join(SAVE_FORMATS)}), or folder when IN is a folder",
    )  # fmt: skip
    p.add_argument(
        "--model", default="espcn", metavar="NAME",
        help=f"one of {', '.join(MODELS)} (default espcn)",
    )  # fmt: skip
    p.add_argument(
        "--scale", type=_scale, default=None,
        help="upscaling factor (default: the model's only shipped scale)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint", type=Path, default=None, metavar="FILE",
        help="a .safetensors file from train-sr instead of the course checkpoint",
    )  # fmt: skip
    p.add_argument(
        "--tile", type=count, default=None, metavar="PX",
        help="compute the output in tiles of at most PX x PX input pixels (less memory, "
        "the same result; default: the whole image, or tiles when it would not fit the "
        "memory budget: half the memory, or $NSTCOURSE_MEMORY_BUDGET, e.g. 6G)",
    )  # fmt: skip
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_upscale)


def _add_train_sr(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train-sr",
        help="train a super-resolution checkpoint by its recipe",
        description="Train MODEL by its recipe in nstcourse.sr.recipes and write OUT "
        "(safetensors, with the recipe and Set5 PSNR/SSIM in its metadata). Checkpoints go "
        "to --workdir; Ctrl-C keeps the last one and the same command resumes.",
    )
    p.add_argument("model", metavar="MODEL", choices=list(RECIPES), help=", ".join(RECIPES))
    p.add_argument(
        "--scale", type=_scales, default=None, metavar="S[,S...]",
        help="upscaling factor; several (vdsr) are mixed in each batch (default: the recipe's)",
    )  # fmt: skip
    add_training_options(p, workdir_default="runs/<model>_x<scale>")
    p.add_argument(
        "--lr-decay-every", type=int, default=None, metavar="N",
        help="cut the learning rate by the recipe's factor every N steps; 0: never "
        "(default: the recipe's)",
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=(*PRECISIONS, "auto"), default=None,
        help="bfloat16: mixed precision (benchmarks/README.md measures the gain); auto: "
        "bfloat16 where the hardware runs it natively, else float32 (default: the recipe's)",
    )  # fmt: skip
    p.set_defaults(func=_train_sr)


def add_sr_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``upscale`` and ``train-sr`` on the ``nstcourse`` parser."""
    _add_upscale(commands)
    _add_train_sr(commands)
