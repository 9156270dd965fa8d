r"""Gatys speed: the PyTorch tutorial's plain recipe against nstcourse's default path.

What it measures
----------------
At each size (long side; 256 and 512 px by default), on the CPU with ``--threads`` (2)
threads, with the VGG-19 that ``VGGFeatures`` finds (the data pack's Caffe-convention
VGG-19), content "tubingen" and style "starry_night", both at that size:

* **plain**: the algorithm of the PyTorch tutorial "Neural Transfer Using PyTorch",
  written out in ``plain_recipe``: content layer conv2_2; style layers conv1_1, conv1_2,
  conv2_1, conv2_2, conv3_1 (conv outputs, before their ReLU); content loss = MSE of
  features; style loss = MSE of Gram matrices normalised by their element count C·H·W;
  loss α·content + β·style; ``torch.optim.LBFGS([img])`` with its default settings (no
  line search); the image clamped to [0, 1] in place before every evaluation; started
  from the content image; ``--steps`` (300) loss evaluations. Its final image has the
  loss L*.
* **nstcourse**: ``nstcourse.style.gatys.stylize`` with its defaults (single scale, L-BFGS with
  a strong-Wolfe line search, the loss evaluated at clamp(x, 0, 1)) for the same layers,
  α, β and number of evaluations.

One loss function judges both: a ``GatysLoss`` with those layers and weights (the same
objective; ``check_same_loss`` asserts that the plain recipe's loss equals it). Every
image the nstcourse path evaluates is kept with its clock; "time to L*" is the clock at
the first one whose loss is <= L*. For the plain recipe it is its whole run. Both clocks
include everything the path does after the images are loaded: target features and Gram
matrices and every evaluation. Not included: building the VGG and loading the images.
The paths run one after the other in one process, ``--repeats`` times in turn (plain,
nstcourse, plain, …); the table gives the median time of each.

Coarse-to-fine is not the default. With these shallow layers, at 256 px, 128→256 px
(100 + 60 evaluations, 15 s) ended at 2.2e5 and 64→128→256 px (100 + 100 + 40, 12 s)
at 2.9e5, where one scale was at 1.8e5 after 100 evaluations (17 s) and had passed
L* = 2.1e5 after 11 s: the fine texture that conv1_x measures is built at full size
anyway.

Run from the repository root (on 2 quiet cores about 3 min at 256 px and 10 min at
512 px per repeat)::

    export NSTCOURSE_DATA_DIR=../shared/data NSTCOURSE_WEIGHTS_DIR=../shared/data/weights
    python benchmarks/gatys_speed.py [--sizes 256 512] [--steps 300] [--repeats 1]

It prints a Markdown table and the machine it ran on, and writes
``gatys_speed_<size>.jpg`` to ``--out``: content | plain (L*) | nstcourse when it reached
L* | nstcourse after ``--steps`` evaluations.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nstcourse.data import load_sample
from nstcourse.features import VGGFeatures
from nstcourse.images import save_image
from nstcourse.losses import gram_matrix
from nstcourse.style.gatys import GatysLoss, stylize

# The tutorial's layers (its conv_4 and conv_1 … conv_5), all inside the data pack's VGG-19.
CONTENT_LAYERS = ("conv2_2",)
STYLE_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")
CONTENT_WEIGHT = 1.0  # α
# β: the package's default for Caffe-convention weights (DEFAULT_STYLE_WEIGHT["caffe"]).
# The tutorial's β = 1e6 with torchvision weights corresponds to ~3e2 here: Caffe features
# are ~58× larger, content MSE scales by 58², Gram MSE by 58⁴.
STYLE_WEIGHT = 1e2  # β


def plain_recipe(
    extractor: VGGFeatures, content: torch.Tensor, style: torch.Tensor, steps: int
) -> tuple[torch.Tensor, list[float]]:
    """The tutorial's algorithm; returns (image in [0, 1], loss at each evaluation)."""
    with torch.no_grad():
        content_targets = {k: extractor(content)[k] for k in CONTENT_LAYERS}
        style_feats = extractor(style)
        style_targets = {k: gram_matrix(style_feats[k]) for k in STYLE_LAYERS}
    img = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([img])  # lr 1, max_iter 20, no line search
    losses: list[float] = []

    def closure() -> torch.Tensor:
        with torch.no_grad():
            img.clamp_(0, 1)
        optimizer.zero_grad()
        feats = extractor(img)
        c = sum(F.mse_loss(feats[k], content_targets[k]) for k in CONTENT_LAYERS)
        s = sum(F.mse_loss(gram_matrix(feats[k]), style_targets[k]) for k in STYLE_LAYERS)
        loss = CONTENT_WEIGHT * c + STYLE_WEIGHT * s
        loss.backward()
        losses.append(loss.item())
        return loss

    while len(losses) < steps:
        optimizer.step(closure)
    with torch.no_grad():
        img.clamp_(0, 1)
    return img.detach(), losses


def nstcourse_path(
    extractor: VGGFeatures, content: torch.Tensor, style: torch.Tensor, steps: int
) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor]]]:
    """``stylize`` with its defaults; returns (image, [(seconds, image evaluated)])."""
    start = time.perf_counter()
    seen: list[tuple[float, torch.Tensor]] = []

    def keep(step: int, image: torch.Tensor, terms: dict) -> None:
        seen.append((time.perf_counter() - start, image.clone()))

    result = stylize(
        content, style, extractor=extractor, content_layers=CONTENT_LAYERS,
        style_layers=STYLE_LAYERS, content_weight=CONTENT_WEIGHT, style_weight=STYLE_WEIGHT,
        steps=steps, progress=False, callback=keep,
    )  # fmt: skip
    return result.image, seen


def check_same_loss(judge: GatysLoss, extractor, content, style) -> None:
    """The plain recipe's loss at one image equals the judge's (the same objective)."""
    _, losses = plain_recipe(extractor, content, style, steps=1)
    with torch.no_grad():
        judged = judge(content)["total"].item()
    if abs(losses[0] - judged) > 1e-4 * judged:
        raise AssertionError(f"plain loss {losses[0]:.6g} != GatysLoss {judged:.6g}")


def run_size(size: int, args, extractor: VGGFeatures) -> dict:
    """Both paths at one size, ``args.repeats`` times each; their times, losses, images."""
    content = load_sample(args.content, long_side=size)
    style = load_sample(args.style, long_side=size)
    judge = GatysLoss(
        extractor, content, [style], content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS,
        content_weight=CONTENT_WEIGHT, style_weight=STYLE_WEIGHT,
    )  # fmt: skip
    check_same_loss(judge, extractor, content, style)  # also warms up at this size

    def score(image: torch.Tensor) -> float:
        with torch.no_grad():
            return judge(image)["total"].item()

    plain_times, reach_times, fast_finals = [], [], []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        plain_image, plain_losses = plain_recipe(extractor, content, style, args.steps)
        plain_times.append(time.perf_counter() - start)
        target = score(plain_image)
        fast_image, seen = nstcourse_path(extractor, content, style, args.steps)
        losses = [score(image) for _, image in seen]  # untimed: the judge's evaluations
        reached = [i for i, loss in enumerate(losses) if loss <= target]
        reach_times.append(seen[reached[0]][0] if reached else float("inf"))
        reach_image = seen[reached[0]][1] if reached else fast_image
        fast_finals.append(score(fast_image))
        print(
            f"  {size} px, repeat {repeat + 1}: plain {plain_times[-1]:.1f} s to L* = "
            f"{target:.4g} (from {plain_losses[0]:.4g}); nstcourse reached it after "
            f"{reach_times[-1]:.1f} s and ended at {fast_finals[-1]:.4g} after "
            f"{len(seen)} evaluations ({seen[-1][0]:.1f} s)",
            flush=True,
        )
    side_by_side = torch.cat([content, plain_image, reach_image, fast_image], dim=-1)
    save_image(side_by_side, Path(args.out) / f"gatys_speed_{size}.jpg", quality=90)
    plain_s, reach_s = statistics.median(plain_times), statistics.median(reach_times)
    return {
        "size": f"{content.shape[-1]}×{content.shape[-2]}",
        "target": target,
        "plain_s": plain_s,
        "reach_s": reach_s,
        "ratio": plain_s / reach_s,
        "final": statistics.median(fast_finals),
    }


def report(rows: list[dict], args) -> str:
    lines = [
        f"Gatys speed, {args.steps} evaluations, {args.threads} threads, "
        f"median of {args.repeats}; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; load average before/after: {args.load_before} / "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}",
        "",
        "| size | plain recipe: time to its final loss L* | nstcourse: time to L* | "
        f"speed-up | L* | nstcourse after {args.steps} evaluations |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['plain_s']:.1f} s | {r['reach_s']:.1f} s | "
            f"**{r['ratio']:.1f}×** | {r['target']:.3g} | {r['final']:.3g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--content", default="tubingen")
    parser.add_argument("--style", default="starry_night")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    extractor = VGGFeatures(layers=CONTENT_LAYERS + STYLE_LAYERS)
    args.load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = [run_size(size, args, extractor) for size in args.sizes]
    print(report(rows, args))


if __name__ == "__main__":
    main()
