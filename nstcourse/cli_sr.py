"""The super-resolution commands of the ``nstcourse`` command line.

``nstcourse upscale IN -o OUT --model espcn --scale 3``
    upscale an image, or every image in a folder, with a course checkpoint
    (``nstcourse.superres``).
``nstcourse train-sr MODEL --scale S --steps N -o OUT``
    train a checkpoint by its recipe (``nstcourse.sr_recipes.train_sr``); Ctrl-C keeps a
    resumable checkpoint and the same command resumes.

Both write their outputs atomically: after a failure or Ctrl-C there is no partial file.
Exit codes: 0 done; 1 some images in a folder failed, or training failed (NaN loss);
2 bad input (found before any work); 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from nstcourse.cli_args import items, number, positive
from nstcourse.images import SAVE_FORMATS, ImageError, load_image, save_image
from nstcourse.sr_recipes import RECIPES, default_workdir, resolve_scales, train_sr
from nstcourse.superres import (
    MODELS,
    checkpoint_info,
    checkpoint_scales,
    load_pretrained,
    load_sr_checkpoint,
    model_spec,
    super_resolve,
)
from nstcourse.training import PRECISIONS
from nstcourse.weights import WeightsError

UPSCALE = "nstcourse upscale"
TRAIN_SR = "nstcourse train-sr"


class UsageError(ValueError):
    """Bad input found before any work: exit 2."""


# ---------------------------------------------------------------- upscale


def _upscale(args: argparse.Namespace) -> int:
    try:
        model, scale = _load_upscaler(args)
        if args.input.is_dir():
            return _upscale_folder(args, model, scale)
        _check_output_file(args.output, args.input)
        _upscale_one(args, model, scale, args.input, args.output)
    except KeyboardInterrupt:
        print(f"{UPSCALE}: interrupted; nothing written to {args.output}", file=sys.stderr)
        return 130
    except (OSError, ValueError, WeightsError) as err:
        print(f"{UPSCALE}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _load_upscaler(args: argparse.Namespace) -> tuple[torch.nn.Module, int]:
    """Check the model, scale, input and device; load the model. Errors name the option."""
    if args.model not in MODELS:
        raise UsageError(f"--model {args.model}: unknown model; known: {', '.join(MODELS)}")
    spec = model_spec(args.model)
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    device = _device(args.device)
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file")
        scales = checkpoint_scales(checkpoint_info(args.checkpoint))
        scale = args.scale
        if scale is None:
            if len(scales) != 1:
                listed = ", ".join(map(str, scales)) or "2, 3, 4, …"
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
    lr = load_image(src)
    smallest = model_spec(args.model).min_lr_side(scale)
    height, width = lr.shape[-2:]
    if min(height, width) < smallest:
        raise ImageError(
            f"{src}: {width}x{height} px is too small for {args.model} x{scale}; "
            f"both sides need at least {smallest} px"
        )
    sr = super_resolve(model, lr, name=args.model, scale=scale, tile=args.tile)
    save_image(sr, dst)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"wrote {dst} ({sr.shape[-1]}x{sr.shape[-2]}) in {seconds:.1f} s", flush=True)


def _upscale_folder(args: argparse.Namespace, model: torch.nn.Module, scale: int) -> int:
    return each_image(
        UPSCALE,
        args.input,
        args.output,
        lambda src, dst: _upscale_one(args, model, scale, src, dst),
    )


def each_image(
    command: str,
    folder: Path,
    out: Path,
    run: Callable[[Path, Path], None],
    *,
    protected: Sequence[Path] = (),
) -> int:
    """``run(image, out / image.name)`` for every image in ``folder``; a bad image is
    reported and the rest go on. Returns the exit code: 0, 1 (some failed) or 130.

    Raises UsageError before any work if OUT is a file or the input folder, the folder has
    no images, or an output would replace one of the ``protected`` files.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: IN is a folder, so OUT must be a folder too")
    if out.resolve() == folder.resolve():
        raise UsageError(f"-o {out} is the input folder; outputs would replace the inputs")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in files if p.is_file() and p.suffix.lower() in SAVE_FORMATS]
    if not images:
        raise UsageError(f"{folder}: no images ({' '.join(SAVE_FORMATS)}) in this folder")
    keep = {p.resolve() for p in protected}
    for path in images:
        if (out / path.name).resolve() in keep:
            raise UsageError(f"-o {out}: {out / path.name} would replace {path.name}, an input")
    for path in files:
        if path not in images:
            print(f"{command}: skipping {path}: not an image file", file=sys.stderr)
    failed = []
    for path in images:
        try:
            run(path, out / path.name)
        except KeyboardInterrupt:
            print(f"{command}: interrupted; {out / path.name} not written", file=sys.stderr)
            return 130
        except (OSError, ValueError) as err:
            print(f"{command}: error: {err}", file=sys.stderr)
            failed.append(path.name)
    if failed:
        print(
            f"{command}: {len(failed)} of {len(images)} images failed: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _check_output_file(out: Path, src: Path) -> None:
    if out.suffix.lower() not in SAVE_FORMATS:
        raise UsageError(f"-o {out}: unknown image suffix; use one of {' '.join(SAVE_FORMATS)}")
    if out.is_dir():
        raise UsageError(f"-o {out} is a folder; give a file name (or a folder as IN)")
    if out.exists() and out.resolve() == src.resolve():
        raise UsageError(f"-o {out} is the input image; choose another name")


def _device(name: str | None) -> torch.device | None:
    from nstcourse.cli import _check_device  # here: cli imports this module

    return _check_device(name)


# ---------------------------------------------------------------- train-sr


def _train_sr(args: argparse.Namespace) -> int:
    def train() -> str:
        scales = resolve_scales(args.model, args.scale)
        if args.output.suffix != ".safetensors":
            raise UsageError(f"-o {args.output}: the checkpoint must be a .safetensors file")
        device = _device(args.device)
        start = time.perf_counter()
        metadata = train_sr(
            args.model,
            scale=list(scales) if len(scales) > 1 else scales[0],
            steps=args.steps,
            out=args.output,
            seed=args.seed,
            workdir=args.workdir or default_workdir(args.model, scales),
            batch_size=args.batch_size,
            lr=args.lr,
            lr_decay_every=args.lr_decay_every,
            precision=args.precision,
            progress=not args.quiet,
            device=device,
        )
        return _train_report(args.output, metadata, time.perf_counter() - start)

    def workdir() -> object:  # only asked after an interrupt, when the scales are known
        return args.workdir or default_workdir(args.model, resolve_scales(args.model, args.scale))

    return run_training(TRAIN_SR, args, _command(args), train, workdir)


def run_training(
    prog: str,
    args: argparse.Namespace,
    command: str,
    train: Callable[[], str],
    workdir: Callable[[], object],
) -> int:
    """Run ``train()`` (which returns its report) for a training command and turn what
    goes wrong into an exit code: 130 interrupted (the checkpoint in ``workdir()`` is kept
    and ``command`` resumes), 1 the loss went NaN, 2 bad input; else print the report
    unless ``args.quiet`` and return 0."""
    try:
        report = train()
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; {args.output} not written. The last checkpoint in "
            f"{workdir()} is kept; resume with the same command:\n  {command}",
            file=sys.stderr,
        )
        return 130
    except FloatingPointError as err:
        print(f"{prog}: error: training failed: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, WeightsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that makes (or resumes) this run."""
    parts = ["nstcourse", "train-sr", args.model]
    if args.scale is not None:
        parts += ["--scale", ",".join(map(str, args.scale))]
    parts += ["--steps", str(args.steps), "-o", str(args.output)]
    for option, value in (
        ("--workdir", args.workdir),
        ("--batch-size", args.batch_size),
        ("--lr", args.lr),
        ("--lr-decay-every", args.lr_decay_every),
        ("--precision", args.precision),
        ("--seed", args.seed or None),
        ("--device", args.device),
    ):
        if value is not None:
            parts += [option, str(value)]
    return shlex.join(parts)


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
    return number(text, int, 2)


def _scales(text: str) -> list[int]:
    return [_scale(item) for item in items(text)]


def _count(text: str) -> int:
    return number(text, int, 1)


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
        "--tile", type=_count, default=None, metavar="PX",
        help="run the network on tiles of at most PX x PX input pixels (less memory)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best)")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_upscale)


def _add_train_sr(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train-sr",
        help="train a super-resolution checkpoint by its recipe",
        description="Train MODEL by its recipe in nstcourse.sr_recipes and write OUT "
        "(safetensors, with the recipe and Set5 PSNR/SSIM in its metadata). Checkpoints go "
        "to --workdir; Ctrl-C keeps the last one and the same command resumes.",
    )
    p.add_argument("model", metavar="MODEL", choices=list(RECIPES), help=", ".join(RECIPES))
    p.add_argument(
        "--scale", type=_scales, default=None, metavar="S[,S...]",
        help="upscaling factor; several (vdsr) are mixed in each batch (default: the recipe's)",
    )  # fmt: skip
    p.add_argument("--steps", type=_count, required=True, metavar="N", help="total updates")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="the .safetensors file"
    )
    p.add_argument(
        "--workdir", type=Path, default=None,
        help="checkpoint folder (default runs/<model>_x<scale>); resumed if present",
    )  # fmt: skip
    p.add_argument("--batch-size", type=_count, default=None, help="default: the recipe's")
    p.add_argument(
        "--lr", type=positive, default=None, help="learning rate (default: the recipe's)"
    )
    p.add_argument(
        "--lr-decay-every", type=int, default=None, metavar="N",
        help="cut the learning rate by the recipe's factor every N steps; 0: never "
        "(default: the recipe's)",
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=(*PRECISIONS, "auto"), default=None,
        help="bfloat16: mixed precision, 2.2-3.3x faster on an AMX CPU; auto: "
        "bfloat16 there, else float32 (default: the recipe's, float32)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_train_sr)


def add_sr_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``upscale`` and ``train-sr`` on the ``nstcourse`` parser."""
    _add_upscale(commands)
    _add_train_sr(commands)
