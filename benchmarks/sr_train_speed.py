"""Super-resolution training: float32 against mixed precision (bfloat16).

What it measures
----------------
1. **Training steps per second** of SRCNN ×3, ESPCN ×3, VDSR (×2/×3/×4 mixed) and SRResNet
   ×4, each built by its recipe exactly as ``train_sr`` builds it (``sr.recipes.BUILDERS``:
   the patches, loss, optimiser and batch size) and run by ``training.train`` (patch
   cutting included), once with ``precision="float32"`` and once with ``"bfloat16"``
   (convolutions under ``torch.autocast``). The two take turns, block by block, so that
   both see the same load: one warm-up block, then the median of ``--repeats`` blocks of
   ``--steps`` steps each. Training images: the first ``--images`` of each recipe folder
   (cutting a patch costs the same whatever the number of images).
2. **What bfloat16 costs in quality** (``--psnr-steps`` N, 0 skips): SRCNN ×3 and ESPCN ×3
   trained for N steps by ``train_sr`` from the same seed in each precision; Set5 PSNR-Y
   (papers' protocol) of each, and bicubic's.

bfloat16 pays off only where the hardware runs it (``runmode.native_bf16``: AMX or
AVX512-BF16 CPUs, Ampere and later GPUs); elsewhere it is emulated and slower, which is
why ``train-sr --precision auto`` falls back to float32 there. The header says which.

Run from the repository root on quiet cores (about 5 minutes with the defaults)::

    export NSTCOURSE_DATA_DIR=../shared/data
    python benchmarks/sr_train_speed.py [--threads 2] [--repeats 3] [--psnr-steps 3000]

``--quick`` shrinks everything so that a test runs it in seconds; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from nstcourse.data import load_training_images
from nstcourse.runmode import native_bf16
from nstcourse.sr.recipes import BUILDERS, RECIPES, train_sr
from nstcourse.training import PRECISIONS, sample_batches, train

SPEED_MODELS = {"srcnn": (3,), "espcn": (3,), "vdsr": (2, 3, 4), "srresnet": (4,)}


def steps_per_second(name: str, *, steps: int, repeats: int, images: int) -> dict[str, float]:
    """Median steps/s of ``name``'s recipe in each precision, the two taking turns."""
    recipe = replace(RECIPES[name](), scales=SPEED_MODELS[name])
    train_images = load_training_images(recipe.data, max_images=images)
    runs = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        run = BUILDERS[name](replace(recipe, precision=precision), train_images, 0, "cpu")
        batches = sample_batches(run.dataset, batch_size=recipe.batch_size, seed=0)
        runs[precision] = (run, batches)
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for block in range(repeats + 1):  # block 0 warms up
        for precision, (run, batches) in runs.items():
            start = time.perf_counter()
            train(
                run.net, run.step, batches, steps=steps, optimizer=run.optimizer,
                progress=False, device="cpu",
            )  # fmt: skip
            if block:
                times[precision].append(time.perf_counter() - start)
    return {precision: steps / statistics.median(t) for precision, t in times.items()}


def psnr_after(name: str, precision: str, *, steps: int, max_images: int | None) -> dict:
    """Set5 ×3 metrics of ``name`` trained ``steps`` steps from seed 0 in ``precision``."""
    recipe = replace(RECIPES[name](), scales=(3,), max_images=max_images, precision=precision)
    with tempfile.TemporaryDirectory() as folder:
        metadata = train_sr(
            name, steps=steps, out=Path(folder) / "m.safetensors",
            workdir=Path(folder) / "run", recipe=recipe, progress=False, device="cpu",
        )  # fmt: skip
    return metadata["metrics"]["Set5"]["x3"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per precision")
    parser.add_argument("--images", type=int, default=20, help="training images per folder")
    parser.add_argument("--psnr-steps", type=int, default=3000, help="0 skips part 2")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for the test")
    args = parser.parse_args(argv)
    max_images = None
    if args.quick:
        args.steps, args.repeats, args.images, args.psnr_steps, max_images = 1, 1, 2, 2, 2
    torch.set_num_threads(args.threads)

    print(
        f"# {platform.machine()} CPU, {args.threads} threads, torch {torch.__version__}; "
        f"native bfloat16: {native_bf16('cpu')}\n"
    )
    print(f"Training steps per second (median of {args.repeats} blocks of {args.steps} steps)\n")
    print("| model | batch | float32 steps/s | bfloat16 steps/s | bfloat16 / float32 |")
    print("|---|---|---|---|---|")
    for name in SPEED_MODELS:
        rates = steps_per_second(name, steps=args.steps, repeats=args.repeats, images=args.images)
        ratio = rates["bfloat16"] / rates["float32"]
        print(
            f"| {name} | {RECIPES[name]().batch_size} | {rates['float32']:.2f} | "
            f"{rates['bfloat16']:.2f} | **{ratio:.2f}×** |",
            flush=True,
        )
    if args.psnr_steps > 0:
        print(f"\nSet5 ×3 PSNR-Y after {args.psnr_steps} steps from seed 0 (recipe defaults)\n")
        print("| model | float32 dB | bfloat16 dB | bicubic dB |")
        print("|---|---|---|---|")
        for name in ("srcnn", "espcn"):
            m = {
                p: psnr_after(name, p, steps=args.psnr_steps, max_images=max_images)
                for p in PRECISIONS
            }
            print(
                f"| {name} | {m['float32']['psnr_y']:.2f} | {m['bfloat16']['psnr_y']:.2f} | "
                f"{m['float32']['bicubic_psnr_y']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
