r"""Fast style transfer: plain eager against the inference path, against Gatys, and ours
beside lengstrom's reference nets.

What it measures
----------------
On the CPU with ``--threads`` (2) threads, batch 1, every time the median of ``--repeats``
calls after one warm-up call, the modes taking turns (eager, fast, eager, …) so that
both see the same load:

1. **Images per second** of the shipped wave ``TransformNet`` (``load_style_model``) on
   S×S images (tubingen resized), S in ``--sizes`` (256, 512, 1024):

   * **eager**: the module called normally: autograd on (the weights require grad),
     NCHW, float32;
   * **fast, float32**: ``fast_style.prepare_for_inference(net, dtype=torch.float32)``:
     the same numbers as eager (no autograd, eval, frozen copy);
   * **fast**: ``prepare_for_inference(net)`` with its defaults, the project's inference
     path: bfloat16 where the CPU has it in hardware (AVX512-BF16/AMX), else float32;
   * with ``--compile``, also **fast + compile** (``compile=True``); its first call at
     each size compiles, and that time is printed.

2. **Against Gatys** at ``--gatys-size`` (512) px: ``nstcourse.style.gatys.stylize`` with its
   defaults (the papers' layers relu4_2 / relu1_1 … relu5_1 of VGG-19, L-BFGS, 300
   evaluations) on tubingen with the wave painting, both at that long side. Layers the
   VGG weights file lacks (the data pack's stops at conv3_4) are random: the same cost.
   By default only ``--gatys-evals`` (6) evaluations are run (L-BFGS's line search may
   add one or two) and the 300 are **extrapolated** from stylize's own clock: first
   evaluation (with the setup) + 299 × the mean time of the later ones; ``--full-gatys``
   runs all 300. Seconds per image of
   each mode of (1) on the same photo give the speed-up.

3. **Ours beside theirs** for wave, scream, udnie and wreck: our shipped net and
   lengstrom's (``style.reference.load_engstrom``, same training painting) on
   tubingen and chicago at ``--compare-size`` (512) px long side: ms per image for each,
   both on the fast path; and the loss terms of each float32 output under one
   ``PerceptualLoss`` built as our checkpoint's recipe says (VGG-19 of the data pack;
   style relu1_2, relu2_2, relu3_3, Gram targets from the painting at the recipe's
   ``style_size``; content relu2_2), unweighted (λ = 1), beside the photo's own. Lower
   style loss: closer to the painting's Gram matrices; lower content loss: closer to the
   photo's features. lengstrom's nets were trained against other targets (VGG-19 relu1_1
   … relu5_1, the painting at full size), so this loss is ours, not theirs, to optimise.
   ``results/fast_style_<style>.jpg``: one row per photo, photo | ours | lengstrom's.
   Beside the losses, the white-blob share of each output (``metrics.blob_share``: the
   share of the image covered by near-white regions of at least 0.2 % of it where the
   photo is not near-white).

4. **Blobs and holes** of every shipped feed-forward net (the four Johnson nets, CIN in
   each of its styles, AdaIN with the four Johnson paintings as styles) and lengstrom's
   four nets, on the ``--blob-photos`` first content photos of the catalog (all 13 by
   default: none of them is a training photo) at ``--compare-size`` px: the mean and
   largest white-blob share, the mean share of dark holes (near-black where the photo is
   not) and of clipped blobs (``kind="clipped"``: two or more colour channels at an end
   of their range where the photo's are not, whatever the colour; white and black
   included), in percent.

Run from the repository root (on 2 quiet cores a few minutes; most of it is Gatys and
1024 px eager)::

    export NSTCOURSE_DATA_DIR=../shared/data NSTCOURSE_WEIGHTS_DIR=../shared/data/weights
    python benchmarks/fast_style_speed.py [--sizes 256 512 1024] [--repeats 5]
        [--compile] [--full-gatys] [--parts speed gatys compare blobs]

``--quick`` shrinks everything (tiny sizes, one repeat, two Gatys evaluations) so that a
test can run it in seconds; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from nstcourse.checkpoints import checkpoint_info
from nstcourse.data import list_samples, load_sample, load_style_images
from nstcourse.features import RandomLayersWarning, VGGFeatures
from nstcourse.images import save_image
from nstcourse.inference import prepare_for_inference
from nstcourse.metrics import BLOB_KINDS, blob_share
from nstcourse.style.fast_style import PerceptualLoss
from nstcourse.style.gatys import CONTENT_LAYERS, STYLE_LAYERS, stylize
from nstcourse.style.models import (
    JOHNSON_STYLES,
    checkpoint_path,
    load_style_model,
    style_names,
)
from nstcourse.style.reference import ENGSTROM_WEIGHTS, load_engstrom

GATYS_STEPS = 300  # stylize's default number of evaluations
PHOTOS = ("tubingen", "chicago")
PARTS = ("speed", "gatys", "compare", "blobs")
QUICK = dict(
    sizes=[32, 48], repeats=1, gatys_size=48, gatys_evals=2, compare_size=48, blob_photos=2
)

Call = Callable[[torch.Tensor], torch.Tensor]


def median_seconds(calls: dict[str, Call], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function on x, after one warm-up call each; the
    functions take turns so that they share the machine's load."""
    for call in calls.values():
        call(x)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def modes(net: torch.nn.Module, compile: bool) -> dict[str, Call]:
    """The ways of running ``net`` that part 1 compares, by name."""
    calls: dict[str, Call] = {
        "eager": net,  # autograd on: the weights require grad
        "fast, float32": prepare_for_inference(net, dtype=torch.float32),
        "fast": prepare_for_inference(net),
    }
    if compile:
        calls["fast + compile"] = prepare_for_inference(net, compile=True)
    return calls


def speed_table(net, photo: torch.Tensor, args) -> tuple[list[str], dict[str, Call]]:
    """Part 1: images/s of each mode at each size, as Markdown rows."""
    calls = modes(net, args.compile)
    first_calls = []
    rows = []
    for size in args.sizes:
        x = F.interpolate(photo, size=(size, size), mode="bilinear", antialias=True)
        if args.compile:  # the first call at a new size compiles: time it apart
            start = time.perf_counter()
            calls["fast + compile"](x)
            first_calls.append(f"{size} px {time.perf_counter() - start:.0f} s")
        seconds = median_seconds(calls, x, args.repeats)
        cells = [f"{1 / s:.2f}" for s in seconds.values()]
        cells += [f"**{seconds['eager'] / s:.2f}×**" for s in list(seconds.values())[1:]]
        rows.append(f"| {size}×{size} | " + " | ".join(cells) + " |")
        print(f"  {size} px: " + ", ".join(f"{k} {1 / s:.2f} img/s" for k, s in seconds.items()))
    names = list(calls)  # "eager" first
    columns = [f"{name} (img/s)" for name in names] + [f"{name} / eager" for name in names[1:]]
    header = ["| size | " + " | ".join(columns) + " |", "|---" * (1 + len(columns)) + "|"]
    if first_calls:
        rows.append(f"\nfast + compile, first call (compilation) at: {', '.join(first_calls)}")
    return header + rows, calls


def gatys_seconds(content: torch.Tensor, style: torch.Tensor, args) -> tuple[float, str]:
    """Part 2: seconds for one ``stylize`` with its defaults, measured or extrapolated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomLayersWarning)  # stated in the output instead
        vgg = VGGFeatures(sorted({*CONTENT_LAYERS, *STYLE_LAYERS}), missing="random", device="cpu")
    steps = GATYS_STEPS if args.full_gatys else args.gatys_evals
    result = stylize(content, style, extractor=vgg, steps=steps, progress=False)
    clock = result.history["seconds"]  # since stylize began, after each evaluation
    random = f"; random VGG layers (same cost): {', '.join(vgg.random_layers)}"
    if args.full_gatys or len(clock) < 2:
        return result.seconds, f"measured, {len(clock)} evaluations{random}"
    per_evaluation = (clock[-1] - clock[0]) / (len(clock) - 1)
    estimate = clock[0] + (GATYS_STEPS - 1) * per_evaluation
    return estimate, (
        f"**extrapolated** from {len(clock)} evaluations: first {clock[0]:.1f} s (with setup) "
        f"+ {GATYS_STEPS - 1} × {per_evaluation:.2f} s{random}"
    )


def gatys_table(calls: dict[str, Call], args) -> list[str]:
    """Part 2 as Markdown rows: Gatys' seconds per image against each mode's."""
    content = load_sample("tubingen", long_side=args.gatys_size)
    style = load_sample("engstrom_training/wave", long_side=args.gatys_size)
    gatys_s, how = gatys_seconds(content, style, args)
    seconds = median_seconds(calls, content, args.repeats)
    h, w = content.shape[-2:]
    lines = [
        f"Gatys at {w}×{h}: {how}.",
        "",
        "| method | seconds per image | speed-up over Gatys |",
        "|---|---|---|",
        f"| Gatys, `stylize` defaults ({GATYS_STEPS} evaluations) | {gatys_s:.1f} | 1× |",
    ]
    for name, s in seconds.items():
        lines.append(f"| TransformNet, {name} | {s:.3f} | **{gatys_s / s:.0f}×** |")
    return lines


def style_loss_for(style: str, vgg: VGGFeatures) -> PerceptualLoss:
    """The loss our checkpoint for ``style`` was trained with, every term at weight 1."""
    recipe = checkpoint_info(checkpoint_path(style))["recipe"]
    painting = JOHNSON_STYLES[style]
    if ENGSTROM_WEIGHTS[style].style_image != painting:
        raise AssertionError(f"{style}: ours and lengstrom's were trained on different files")
    return PerceptualLoss(
        vgg,
        styles=load_style_images([painting], long_side=recipe["style_size"]),
        content_layers=recipe["content_layers"],
        style_layers=recipe["style_layers"],
        content_weight=1.0,
        style_weight=1.0,
        tv_weight=0.0,
    )


def compare_table(args) -> list[str]:
    """Part 3: ours beside lengstrom's, ms per image and loss terms; writes the JPEGs."""
    vgg = VGGFeatures(["relu1_2", "relu2_2", "relu3_3"], arch="vgg19", device="cpu")
    photos = {name: load_sample(name, long_side=args.compare_size) for name in PHOTOS}
    lines = [
        "| style | photo | ms ours | ms lengstrom | style loss: photo | ours | lengstrom "
        "| content loss: ours | lengstrom | white blobs % ours | lengstrom |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for style in JOHNSON_STYLES:
        nets = {
            "ours": load_style_model(style, device="cpu"),
            "theirs": load_engstrom(style, "cpu"),
        }
        fast = {name: prepare_for_inference(net) for name, net in nets.items()}
        exact = {
            name: prepare_for_inference(net, dtype=torch.float32) for name, net in nets.items()
        }
        loss = style_loss_for(style, vgg)
        rows = []
        for photo_name, photo in photos.items():
            seconds = median_seconds(fast, photo, args.repeats)
            out = {name: call(photo) for name, call in exact.items()}
            with torch.no_grad():
                terms = {name: loss(y, photo) for name, y in out.items()}
                photo_style = loss(photo, photo)["style"].item()
            lines.append(
                f"| {style} | {photo_name} | {1000 * seconds['ours']:.0f} | "
                f"{1000 * seconds['theirs']:.0f} | {photo_style:.4g} | "
                f"{terms['ours']['style'].item():.4g} | {terms['theirs']['style'].item():.4g} | "
                f"{terms['ours']['content'].item():.4g} | {terms['theirs']['content'].item():.4g} "
                f"| {100 * blob_share(out['ours'], photo):.2f} | "
                f"{100 * blob_share(out['theirs'], photo):.2f} |"
            )
            print("  " + lines[-1], flush=True)
            rows.append(torch.cat([photo, out["ours"], out["theirs"]], dim=-1))
        width = max(row.shape[-1] for row in rows)
        grid = torch.cat([F.pad(row, (0, width - row.shape[-1]), value=1.0) for row in rows], -2)
        save_image(grid, Path(args.out) / f"fast_style_{style}.jpg", quality=90)
    return lines


def shipped_and_reference_nets(size: int) -> dict[tuple[str, str], Call]:
    """{(net, style): photo → stylised photo} for part 4, float32, without autograd."""
    nets: dict[tuple[str, str], Call] = {}
    for style in JOHNSON_STYLES:
        nets["ours", style] = load_style_model(style, device="cpu")
        nets["lengstrom", style] = load_engstrom(style, "cpu")
    cin = load_style_model("cin", device="cpu")
    for index, name in enumerate(style_names(checkpoint_info(checkpoint_path("cin")))):
        nets["cin", name] = lambda x, index=index: cin(x, style=index)
    adain = load_style_model("adain", device="cpu")
    for style, painting in JOHNSON_STYLES.items():
        image = load_style_images([painting], long_side=size)[0]
        nets["adain", style] = lambda x, image=image: adain(x, image)
    return nets


def blob_table(args) -> list[str]:
    """Part 4: white blobs, dark holes and clipped blobs of every net on the content photos."""
    names = list_samples("content")[: args.blob_photos]
    photos = [load_sample(name, long_side=args.compare_size) for name in names]
    lines = [
        f"{len(photos)} photos ({', '.join(names)}) at {args.compare_size} px",
        "| net | style | white blobs: mean % | largest % | dark holes: mean % "
        "| clipped blobs: mean % | largest % |",
        "|---|---|---|---|---|---|---|",
    ]
    for (net, style), call in shipped_and_reference_nets(args.compare_size).items():
        with torch.inference_mode():
            outputs = [call(photo).clamp(0, 1) for photo in photos]
        white, dark, clipped = (
            [blob_share(y, x, kind=kind) for y, x in zip(outputs, photos, strict=True)]
            for kind in BLOB_KINDS
        )
        lines.append(
            f"| {net} | {style} | {100 * statistics.mean(white):.2f} | {100 * max(white):.2f} "
            f"| {100 * statistics.mean(dark):.2f} | {100 * statistics.mean(clipped):.2f} "
            f"| {100 * max(clipped):.2f} |"
        )
        print("  " + lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time compile=True")
    parser.add_argument("--gatys-size", type=int, default=512)
    parser.add_argument("--gatys-evals", type=int, default=6)
    parser.add_argument("--full-gatys", action="store_true", help="run all 300 evaluations")
    parser.add_argument("--compare-size", type=int, default=512)
    parser.add_argument("--blob-photos", type=int, default=None, help="default: all 13")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="default: all four"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a test")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())

    net = load_style_model("wave", device="cpu")
    fast = prepare_for_inference(net)
    print(f"inference path here: {fast}", flush=True)
    speed, calls = [], {}
    if {"speed", "gatys"} & set(args.parts):
        speed, calls = speed_table(net, load_sample("tubingen"), args)
    gatys = gatys_table(calls, args) if "gatys" in args.parts else []
    compare = compare_table(args) if "compare" in args.parts else []
    blobs = blob_table(args) if "blobs" in args.parts else []

    print(
        f"\nFast style speed, {args.threads} threads, batch 1, median of {args.repeats}"
        f"{' (--quick: numbers mean nothing)' if args.quick else ''}; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}; "
        f"fast = {fast.dtype}, channels_last={fast.channels_last}; load average "
        f"before/after: {load_before} / {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    if "speed" in args.parts:
        print("\n".join(speed), end="\n\n")
    if gatys:
        print("\n".join(gatys), end="\n\n")
    if compare:
        print(f"Ours beside lengstrom's at {args.compare_size} px (ms: fast path; losses: "
              "float32):")  # fmt: skip
        print("\n".join(compare), end="\n\n")
    if blobs:
        print("Blobs and holes of every net (float32):")
        print("\n".join(blobs))


if __name__ == "__main__":
    main()
