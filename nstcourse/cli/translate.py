"""The translation commands of the ``nstcourse`` command line.

``nstcourse translate IN -o OUT --model horse2zebra``
    translate an image, or every image in a folder, with a CycleGAN generator: the course's
    (``horse2zebra`` is G, ``zebra2horse`` is F of the same file) or one from
    ``train-cyclegan`` (``--checkpoint FILE``, ``--reverse`` for F).
``nstcourse train-cyclegan --domain-a DIR --domain-b DIR --steps N -o OUT``
    train G: A → B and F: B → A on two folders of images
    (``nstcourse.translate.recipes.train_cyclegan``); Ctrl-C keeps a resumable checkpoint
    and the same command resumes.

Outputs and exit codes as in ``cli.common``.
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import replace
from pathlib import Path

import torch

from nstcourse.budget import (
    gigabytes,
    image_save_bytes,
    memory_budget,
    meta_copy,
    needed_bytes,
    peak_bytes,
)
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
    out_of_memory_as_failure,
    run_command,
    run_training,
    side,
    size_advice,
)
from nstcourse.images import SAVE_FORMATS, ImageError, load_image, resize_long_side, save_image
from nstcourse.training import PRECISIONS
from nstcourse.translate.cyclegan import MIN_SIZE, MULTIPLE
from nstcourse.translate.models import DIRECTIONS, checkpoint_path, load_cyclegan, translate_image
from nstcourse.translate.recipes import TEST_SPLITS, CycleGANRecipe, train_cyclegan

TRANSLATE = "nstcourse translate"
TRAIN_CYCLEGAN = "nstcourse train-cyclegan"
DEFAULT_WORKDIR = "runs/cyclegan"


# ---------------------------------------------------------------- translate


def _translate(args: argparse.Namespace) -> int:
    def work() -> int:
        folder = args.input.is_dir()
        if folder:  # OUT is checked before the model is loaded and any image computed
            check_writable(args.output, folder=True)
        else:
            check_output(args.output, [args.input])
        generator = _load_generator(args)
        if folder:
            return each_image(
                TRANSLATE, args.input, args.output,
                lambda src, dst: _translate_one(args, generator, src, dst),
            )  # fmt: skip
        _translate_one(args, generator, args.input, args.output)
        return 0

    return run_command(TRANSLATE, args.output, work)


def _load_generator(args: argparse.Namespace) -> torch.nn.Module:
    """G or F of the checkpoint the options name; errors name the option."""
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    device = check_device(args.device)
    if args.checkpoint is not None:
        if args.model is not None:
            raise UsageError("give --model or --checkpoint, not both")
        path, reverse = args.checkpoint, args.reverse
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {path}: no such file")
    else:
        name = args.model or "horse2zebra"
        if name not in DIRECTIONS:
            raise UsageError(f"--model {name}: unknown model; known: {', '.join(DIRECTIONS)}")
        if args.reverse:
            raise UsageError("--reverse goes with --checkpoint; the --model name says the way")
        path, reverse = checkpoint_path(), DIRECTIONS[name]
        if not path.is_file():
            raise FileNotFoundError(
                f"--model {name}: {path} not found; train one with `{TRAIN_CYCLEGAN}` and pass "
                "it as --checkpoint FILE"
            )
    net = load_cyclegan(path, device=device)  # refuses another class, naming it
    return net.F if reverse else net.G


def _translate_one(
    args: argparse.Namespace, generator: torch.nn.Module, src: Path, dst: Path
) -> None:
    start = time.perf_counter()
    with out_of_memory_as_failure(src, "try --size 1024"):
        image = load_image(src)
        if args.size is not None:
            image = resize_long_side(image, args.size)
        height, width = image.shape[-2:]
        if min(height, width) < MIN_SIZE:
            raise ImageError(f"{src}: {width}x{height} px is too small; both sides need at "
                             f"least {MIN_SIZE} px")  # fmt: skip
        _check_memory(args, generator, src, height, width)
        y = translate_image(generator, image)
        del image
        save_image(y, dst)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"wrote {dst} ({width}x{height}) in {seconds:.1f} s", flush=True)


def _check_memory(
    args: argparse.Namespace, generator: torch.nn.Module, src: Path, height: int, width: int
) -> None:
    """A UsageError before any work if translating needs more than the memory budget
    (``nstcourse.budget``), with the largest ``--size`` that fits. There is no tiling:
    instance normalisation sees the whole image."""
    budget = memory_budget()
    skeleton = meta_copy(generator).requires_grad_(False)

    def need(h: int, w: int) -> int:
        x = torch.empty(1, 3, h + -h % MULTIPLE, w + -w % MULTIPLE, device="meta")
        return needed_bytes(peak_bytes(lambda: skeleton(x))) + image_save_bytes(h, w)

    needs = need(height, width)
    if needs <= budget.size:
        return
    advice = size_advice(need, height, width, budget.size, MIN_SIZE)
    raise UsageError(
        f"{src}: {width}x{height} px needs about {gigabytes(needs)}, more than {budget}; {advice}"
    )


# ---------------------------------------------------------------- train-cyclegan


def _train_cyclegan(args: argparse.Namespace) -> int:
    command = _command(args)

    def workdir() -> Path:
        return args.workdir or Path(DEFAULT_WORKDIR)

    def train() -> str:
        recipe = _recipe(args)  # checked before any work: bad options exit 2
        check_writable(args.output)
        device = check_device(args.device)
        start = time.perf_counter()
        metadata = train_cyclegan(
            out=args.output, workdir=workdir(), recipe=recipe, seed=args.seed,
            progress=not args.quiet, device=device, command=command,
            validate_on=_validate_on(args, recipe), validate_every=args.validate_every,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        lines = [f"wrote {args.output} in {seconds:.0f} s"]
        for name, values in metadata["metrics"].items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, float))
            lines.append(f"  {name}: {shown}")
        return "\n".join(lines)

    return run_training(TRAIN_CYCLEGAN, args, command, train, workdir)


def _validate_on(args: argparse.Namespace, recipe: CycleGANRecipe) -> tuple[str, str] | None:
    """--validate-on, else the horse2zebra test splits when training on its train splits."""
    if args.validate_on is not None:
        return args.validate_on[0], args.validate_on[1]
    default = CycleGANRecipe()
    if (recipe.domain_a, recipe.domain_b) == (default.domain_a, default.domain_b):
        return TEST_SPLITS
    return None


def _domain(text: str) -> str:
    """A folder of the user's (made absolute) or a data folder name of the catalog."""
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    return text


def _recipe(args: argparse.Namespace) -> CycleGANRecipe:
    """The recipe with the options given; the schedule: half of --steps at the constant
    rate, then the linear decay to 0."""
    constant = args.steps // 2
    recipe = replace(CycleGANRecipe(), constant_steps=constant, decay_steps=args.steps - constant)
    overrides = {
        field: value
        for field, value in (
            ("domain_a", args.domain_a),
            ("domain_b", args.domain_b),
            ("max_images", args.max_images),
            ("crop", args.crop),
            ("ngf", args.ngf),
            ("blocks", args.blocks),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("precision", args.precision),
        )  # fmt: skip
        if value is not None
    }
    if args.crop is not None and args.crop % MULTIPLE:
        raise UsageError(f"--crop {args.crop}: use a multiple of {MULTIPLE}")
    return replace(recipe, **overrides)


def _command(args: argparse.Namespace) -> str:
    """The command line that makes (or resumes) this run."""
    line = command_line(
        ["nstcourse", "train-cyclegan"],
        [
            ("--domain-a", args.domain_a), ("--domain-b", args.domain_b),
            ("--steps", args.steps), ("-o", args.output), ("--workdir", args.workdir),
            ("--max-images", args.max_images), ("--crop", args.crop), ("--ngf", args.ngf),
            ("--blocks", args.blocks), ("--batch-size", args.batch_size), ("--lr", args.lr),
            ("--validate-every", args.validate_every if args.validate_every != 500 else None),
            ("--precision", args.precision), ("--seed", args.seed or None),
            ("--device", args.device),
        ],
    )  # fmt: skip
    if args.validate_on is not None:  # two words after one option
        line += " --validate-on " + shlex.join(args.validate_on)
    return line


# ---------------------------------------------------------------- parser


def add_translate_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``translate`` and ``train-cyclegan`` on the ``nstcourse`` parser."""
    p = commands.add_parser(
        "translate",
        help="translate an image or a folder of images with CycleGAN",
        description="Translate IN with a CycleGAN generator (the course's, from "
        "checkpoints/ or $NSTCOURSE_CHECKPOINTS_DIR, or --checkpoint). IN may be a folder: "
        "then OUT is a folder and each image keeps its name; a bad image is reported and "
        "the others go on (exit 1 at the end).",
    )
    p.add_argument("input", type=Path, metavar="IN", help="an image file or a folder of images")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT",
        help=f"output image ({' '.join(SAVE_FORMATS)}), or folder when IN is a folder",
    )  # fmt: skip
    p.add_argument(
        "--model", default=None, metavar="NAME",
        help=f"one of {', '.join(DIRECTIONS)} (default horse2zebra)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint", type=Path, default=None, metavar="FILE",
        help="a .safetensors file from train-cyclegan: its G (domain A to B), or its F with "
        "--reverse",
    )  # fmt: skip
    p.add_argument("--reverse", action="store_true", help="with --checkpoint: use F (B to A)")
    p.add_argument(
        "--size", type=side, default=None, metavar="PX",
        help="resize each image to this long side first (default: as it is)",
    )  # fmt: skip
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_translate)

    t = commands.add_parser(
        "train-cyclegan",
        help="train a CycleGAN on two folders of images",
        description="Train G: A to B and F: B to A (nstcourse.translate.recipes.CycleGANRecipe; "
        "the learning rate is constant for half of --steps, then falls linearly to 0) and "
        "write both to OUT. Checkpoints go to --workdir; Ctrl-C keeps the last one and the "
        "same command resumes.",
    )
    t.add_argument(
        "--domain-a", type=_domain, default=None, metavar="DIR",
        help="folder of domain A images (default: the course's horses, "
        "unpaired/horse2zebra/trainA)",
    )  # fmt: skip
    t.add_argument(
        "--domain-b", type=_domain, default=None, metavar="DIR",
        help="folder of domain B images (default: the course's zebras)",
    )  # fmt: skip
    add_training_options(t, workdir_default=DEFAULT_WORKDIR)
    t.add_argument("--max-images", type=count, default=None, help="per domain (default: all)")
    t.add_argument(
        "--crop", type=count, default=None,
        help=f"crop side, a multiple of 4 (default {CycleGANRecipe.crop}; paper 256)",
    )  # fmt: skip
    t.add_argument(
        "--ngf", type=count, default=None,
        help=f"generator filters (default {CycleGANRecipe.ngf}; paper 64)",
    )  # fmt: skip
    t.add_argument(
        "--blocks", type=count, default=None,
        help=f"residual blocks (default {CycleGANRecipe.blocks}; paper 9 at 256 px)",
    )  # fmt: skip
    t.add_argument(
        "--validate-on", type=_domain, nargs=2, default=None, metavar=("DIR_A", "DIR_B"),
        help="held-out images of A and B, scored every --validate-every steps and at the end "
        "(default: the course's test horses and zebras when training on its horses and zebras)",
    )  # fmt: skip
    t.add_argument("--validate-every", type=count, default=500, help="default 500")
    t.add_argument(
        "--precision", choices=(*PRECISIONS, "auto"), default=None,
        help="auto: bfloat16 where the hardware runs it natively (default: the recipe's)",
    )  # fmt: skip
    t.set_defaults(func=_train_cyclegan)
