r"""Why do the shipped feed-forward style nets paint blobs? One factor at a time.

The numbers are shares of ``metrics.blob_share`` (regions of at least 0.2 % of the image
that are near-white, near-black or clipped in two colour channels where the photo is not),
the mean over the catalog's 13 content photos (none is a training photo), in percent;
beside the mean, the largest share on one photo.

Part ``size``: the shipped nets at several inference sizes. The Johnson and CIN nets
were trained on 128-px crops of photos scaled to a 160-px short side and are used at
512 px. If the blobs grow with the inference size, the train/test size mismatch is a
cause (instance norm sees statistics of a larger, flatter area than in training); if
they are there at the training size, it is not the only one.

Part ``train``: short runs for one net (``--style``: a Johnson style, default udnie, the
net with the most white blobs, or ``cin``), each from a base recipe with one change: the
crop size, λ_s, a TV weight, the learning rate (halved or quartered), the output range
(``wide_tanh``: white without a saturated tanh, ``TransformNet``), or more steps
(resumed from the base run, so the same trajectory continued). The Johnson base is the
recipe the course shipped before the blobs were found (``JohnsonRecipe`` with Adam at
1e-3, ``BEFORE_FIX``); its ``lr_half`` is today's ``JohnsonRecipe``, the fix these runs
found. The CIN base is ``CINRecipe`` as it was after that fix (Adam 5e-4, ``CIN_BASE``),
all 10 styles. Each run is scored at 512 px by the white, dark and clipped blob shares and
by the content and style losses of the base recipe (weight 1 each) on the same photos, in
every style the net has. ``shipped`` scores the shipped net without training, and ``--nets`` other
checkpoint files of the same net (an earlier shipped one: ``git show
<commit>:checkpoints/cin.safetensors > cin_before.safetensors``); these must be the base
recipe but for the learning rate and the steps. Runs go to
``runs/blob_causes/<style>/<name>`` and resume.

Run from the repository root::

    export NSTCOURSE_DATA_DIR=../shared/data NSTCOURSE_WEIGHTS_DIR=../shared/data/weights
    python benchmarks/blob_causes.py --parts size
    OMP_NUM_THREADS=1 python benchmarks/blob_causes.py --parts train --threads 1 \
        [--runs base crop256 style_half tv lr_half lr_quarter wide_tanh steps_x3] [--steps 500]
    OMP_NUM_THREADS=1 python benchmarks/blob_causes.py --parts train --threads 1 \
        --style cin --steps 1200 --runs lr_half lr_quarter [--nets cin_before.safetensors]

(``steps_x3`` resumes the base run's work folder, so run it after ``base``.)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from nstcourse.checkpoints import checkpoint_info
from nstcourse.conventions import weights_for
from nstcourse.data import list_samples, load_sample, load_style_images
from nstcourse.features import VGGFeatures
from nstcourse.metrics import BLOB_KINDS, blob_share
from nstcourse.recipes import jsonable, with_defaults
from nstcourse.style.fast_style import PerceptualLoss
from nstcourse.style.models import (
    JOHNSON_STYLES,
    checkpoint_path,
    load_style_checkpoint,
    load_style_model,
    style_names,
)
from nstcourse.style.recipes import CINRecipe, JohnsonRecipe, train_style

PARTS = ("size", "train")
TRAINED = ("base", "crop256", "style_half", "tv", "lr_half", "lr_quarter", "wide_tanh", "steps_x3")
RUNS = ("shipped", *TRAINED)
SIZES = (128, 256, 512)  # the training crop, twice it, the size the nets are used at
EVAL_SIDE = 512
BEFORE_FIX = replace(JohnsonRecipe(), lr=1e-3)  # the shipped nets' recipe until issue 21
CIN_BASE = replace(CINRecipe(), lr=5e-4)  # the CIN recipe when its runs here were made


def changed(recipe: JohnsonRecipe, run: str, steps: int) -> tuple[JohnsonRecipe, int]:
    """The recipe and the step count of run ``run``: the base with one change."""
    if run == "base":
        return recipe, steps
    if run == "crop256":  # 256-px crops of photos scaled to a 320-px short side
        return replace(recipe, crop=256, short_side=320), steps
    if run == "style_half":
        assert recipe.style_weight is not None, "the base recipe names its λ_s"
        return replace(recipe, style_weight=recipe.style_weight / 2), steps
    if run == "tv":  # ~5 % of the loss: the shipped udnie ended at content ~8e4 + style
        # ~4e4 (Caffe-convention VGG), and the TV of a photo (tv_loss) is ~0.1
        return replace(recipe, tv_weight=5e4), steps
    if run == "lr_half":
        return replace(recipe, lr=recipe.lr / 2), steps
    if run == "lr_quarter":
        return replace(recipe, lr=recipe.lr / 4), steps
    if run == "wide_tanh":  # white without saturating tanh: lengstrom's 150·tanh + 255/2
        return replace(recipe, output_range=300 / 255), steps
    if run == "steps_x3":  # the base run continued (same recipe and seed: it resumes)
        return recipe, 3 * steps
    raise ValueError(f"unknown run {run!r}; known: {', '.join(TRAINED)}")


def same_recipe(stored: dict, base: JohnsonRecipe) -> None:
    """Check that a net's stored recipe is ``base`` but for the learning rate and the steps
    (a ValueError naming the first field that differs)."""
    theirs = with_defaults(stored, base)
    for name, ours in jsonable(dataclasses.asdict(base)).items():
        if name not in ("lr", "steps") and theirs[name] != ours:
            raise ValueError(f"the net's {name} is {theirs[name]!r}, the base's {ours!r}")


def mean_and_max(shares: list[float]) -> str:
    return f"{100 * statistics.mean(shares):.2f} | {100 * max(shares):.2f}"


def size_table(photos: dict[str, torch.Tensor]) -> list[str]:
    """Part ``size``: blob share of every shipped Johnson net and CIN style by input size."""
    nets = {style: load_style_model(style, device="cpu") for style in JOHNSON_STYLES}
    cin = load_style_model("cin", device="cpu")
    for index, name in enumerate(style_names(checkpoint_info(checkpoint_path("cin")))):
        nets[f"cin: {name}"] = lambda x, index=index: cin(x, style=index)
    header = " | ".join(f"{s} px: mean % | max %" for s in SIZES)
    lines = [f"| net | {header} |", "|---" * (1 + 2 * len(SIZES)) + "|"]
    for name, net in nets.items():
        cells = []
        for side in SIZES:
            shares = []
            for photo in photos.values():
                x = torch.nn.functional.interpolate(
                    photo, scale_factor=side / max(photo.shape[-2:]), mode="area"
                )
                with torch.inference_mode():
                    shares.append(blob_share(net(x).clamp(0, 1), x))
            cells.append(mean_and_max(shares))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print("  " + lines[-1], flush=True)
    return lines


def base_recipe(style: str, max_images: int | None, style_weight: float) -> JohnsonRecipe:
    """The recipe part ``train`` changes: ``BEFORE_FIX`` for a Johnson style (its λ_s named),
    ``CIN_BASE`` for "cin"."""
    if style == "cin":
        return replace(CIN_BASE, max_images=max_images)
    painting = JOHNSON_STYLES[style]
    return replace(BEFORE_FIX, styles=(painting,), max_images=max_images, style_weight=style_weight)


def train_table(args, photos: dict[str, torch.Tensor]) -> list[str]:
    """Part ``train``: one short run per change, scored on the photos at 512 px."""
    layers = BEFORE_FIX.content_layers + BEFORE_FIX.style_layers  # CINRecipe's too
    vgg = VGGFeatures(list(dict.fromkeys(layers)), device="cpu")
    style_weight = weights_for(vgg.weights_info.convention).feed_forward_style_weight
    base = base_recipe(args.style, args.max_images, style_weight)
    named = replace(base, style_weight=style_weight)  # as a checkpoint stores it
    loss = PerceptualLoss(
        vgg,
        styles=load_style_images(list(base.styles), long_side=base.style_size),
        content_layers=base.content_layers,
        style_layers=base.style_layers,
        content_weight=1.0,
        style_weight=1.0,
        tv_weight=0.0,
    )
    styles = range(len(base.styles)) if args.style == "cin" else [None]
    lines = [
        f"| run ({args.style}) | lr | steps | white blobs: mean % | max % | dark holes: mean % "
        "| clipped blobs: mean % | max % | content loss | style loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nets = []  # (name, file)
    for file in args.nets:  # e.g. an earlier shipped net, from git
        same_recipe(checkpoint_info(file)["recipe"], named)
        nets.append((Path(file).stem, Path(file)))
    for run in args.runs:
        if run == "shipped":  # as the course trained it: no need to rerun it
            out = checkpoint_path(args.style)
            same_recipe(checkpoint_info(out)["recipe"], named)
        else:
            recipe, steps = changed(base, run, args.steps)
            workdir = Path("runs/blob_causes", args.style, "base" if run == "steps_x3" else run)
            out = workdir.parent / f"{run}.safetensors"
            train_style(
                "cin" if args.style == "cin" else "johnson",
                steps=steps,
                out=out,
                recipe=recipe,
                workdir=workdir,
            )
        nets.append((run, out))
    for run, out in nets:
        recipe = checkpoint_info(out)["recipe"]
        net = load_style_checkpoint(out, device="cpu")
        shares: dict[str, list[float]] = {kind: [] for kind in BLOB_KINDS}
        content, style = [], []
        for photo in photos.values():
            for index in styles:
                with torch.inference_mode():
                    y = (net(photo) if index is None else net(photo, style=index)).clamp(0, 1)
                    terms = loss(y, photo, style=None if index is None else [index])
                for kind in BLOB_KINDS:
                    shares[kind].append(blob_share(y, photo, kind=kind))
                content.append(terms["content"].item())
                style.append(terms["style"].item())
        lines.append(
            f"| {run} | {recipe['lr']:g} | {recipe['steps']} | {mean_and_max(shares['white'])} | "
            f"{100 * statistics.mean(shares['dark']):.2f} | {mean_and_max(shares['clipped'])} | "
            f"{statistics.mean(content):.4g} | {statistics.mean(style):.4g} |"
        )
        print("  " + lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=["size"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=None, help="default: all 13")
    parser.add_argument("--style", choices=[*JOHNSON_STYLES, "cin"], default="udnie")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--steps", type=int, default=500, help="the base run's steps")
    parser.add_argument("--max-images", type=int, default=None, help="training photos")
    parser.add_argument(
        "--nets", nargs="*", default=[], help="also score these checkpoint files of the net"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list_samples("content")[: args.photos]
    photos = {name: load_sample(name, long_side=EVAL_SIDE) for name in names}
    print(f"{len(photos)} content photos: {', '.join(names)}")
    if "size" in args.parts:
        print("\nWhite blobs by inference size (long side)\n")
        print("\n".join(size_table(photos)))
    if "train" in args.parts:
        print(f"\nShort runs, one change each, scored at {EVAL_SIDE} px\n")
        print("\n".join(train_table(args, photos)))


if __name__ == "__main__":
    main()
