r"""Super-resolution table: the course's checkpoints beside bicubic, the papers and references.

Every shipped checkpoint in ``checkpoints/`` (``nstcourse.sr.models.load_pretrained``) at
each of its scales, and the data pack's third-party reference checkpoints loaded into our
architectures (``nstcourse.sr.reference``), are scored on Set5, Set14 and BSD100 by
``nstcourse.sr.models.evaluate``: the papers' protocol (modcrop; MATLAB-bicubic
degradation, 8-bit; PSNR and SSIM on MATLAB's Y with 8-bit rounding; an s-pixel border
shave). The paper's number for the same model, scale and set is printed beside ours.
Time per image: median of 3 runs of ``super_resolve`` on Set5 "baby" (512×512 output),
on the CPU with ``--threads`` threads, and its ratio to bicubic upscaling of the same
image in the same run.

Paper numbers (PSNR-Y dB, Set5 / Set14 / BSD100): bicubic, SRCNN and VDSR from the
benchmark table of Kim et al. 2016 (VDSR; Set5/Set14/B100/Urban100 at ×2/×3/×4); ESPCN
×3 from Shi et al. 2016 (trained on ImageNet; the paper reports BSD300, not BSD100);
SRResNet and SRGAN ×4 from Ledig et al. 2017's benchmark table (SRGAN-VGG54); Johnson et
al. 2016's feature-loss network ("perceptual") ×4 on Set5 from its results table (27.09 dB,
where its SRCNN had 30.48). Quoted as commonly cited; table numbers not checked against
the PDFs here.

A second table scores what a perceptual loss sees, for every model at ×4 and ×8: the
relu2_2 feature distance to the HR image (``sr.perceptual.feature_distance``, the loss the
"perceptual" network is trained on; in the units of the VGG weights found, printed) and
the sharpness (``metrics.mean_gradient`` of the output over the HR image's; 1 = edges as
steep as the truth), means over each set, with a verdict line per set: is the perceptual
network's feature distance lower than bicubic's and SRResNet's?

Run from the repository root (23 to 60 minutes on 2 CPU cores with all three sets, most
of it VDSR; ``--models`` scores only some)::

    export NSTCOURSE_DATA_DIR=../shared/data NSTCOURSE_WEIGHTS_DIR=../shared/data/weights
    python benchmarks/sr_table.py [--sets Set5 Set14 BSD100] [--threads 2]
        [--models srresnet srgan perceptual]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from nstcourse.checkpoints import checkpoint_info
from nstcourse.features import VGGFeatures
from nstcourse.sr.data import bicubic_upscale, degrade, load_sr_set, modcrop
from nstcourse.sr.models import (
    FEATURE_LAYER,
    MODELS,
    checkpoint_path,
    checkpoint_scales,
    evaluate,
    load_pretrained,
    super_resolve,
)
from nstcourse.sr.reference import load_reference, reference_path

# (model, scale) -> {set: PSNR-Y}; sources in the module docstring.
PAPER = {
    ("bicubic", 2): {"Set5": 33.66, "Set14": 30.24, "BSD100": 29.56},
    ("bicubic", 3): {"Set5": 30.39, "Set14": 27.55, "BSD100": 27.21},
    ("bicubic", 4): {"Set5": 28.42, "Set14": 26.00, "BSD100": 25.96},
    ("srcnn", 3): {"Set5": 32.75, "Set14": 29.28, "BSD100": 28.41},
    ("espcn", 3): {"Set5": 33.00, "Set14": 29.42},
    ("vdsr", 2): {"Set5": 37.53, "Set14": 33.03, "BSD100": 31.90},
    ("vdsr", 3): {"Set5": 33.66, "Set14": 29.77, "BSD100": 28.82},
    ("vdsr", 4): {"Set5": 31.35, "Set14": 28.01, "BSD100": 27.29},
    ("srresnet", 4): {"Set5": 32.05, "Set14": 28.49, "BSD100": 27.58},
    ("srgan", 4): {"Set5": 29.40, "Set14": 26.02, "BSD100": 25.16},
    ("perceptual", 4): {"Set5": 27.09},
}
PERCEPTUAL_SCALES = (4, 8)  # the second table's scales
# Data-pack reference -> (how our package feeds it, its scales).
REFERENCE_USE = {
    "srcnn_x3_fuyongXu": ("srcnn", (3,)),
    "espcn_x3_yjn870": ("espcn", (3,)),
    "vdsr_twtygqyy": ("vdsr", (2, 3, 4)),
    "srgan_x4_leftthomas": ("srgan", (4,)),
}


def median_seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def models_to_score(
    names: Sequence[str] = tuple(MODELS),
) -> list[tuple[str, str, nn.Module, tuple[int, ...]]]:
    """(label, package name, model, scales) for every shipped checkpoint of ``names`` and
    every reference checkpoint fed as one of them."""
    found = []
    for name in names:
        for scale in MODELS[name].scales:
            path = checkpoint_path(name, scale)
            if not path.is_file():
                print(f"  (no {path.name}: skipped)")
                continue
            scales = checkpoint_scales(checkpoint_info(path))
            label = f"{name} (ours)"
            if any(label == f[0] and scales == f[3] for f in found):
                continue  # one multi-scale file (vdsr) serves several scales
            found.append((label, name, load_pretrained(name, scale, device="cpu"), scales))
    for ref, (name, scales) in REFERENCE_USE.items():
        if name in names and reference_path(ref).is_file():
            found.append((f"{ref} (reference)", name, load_reference(ref), scales))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS),
        help="score only these (and the references fed as them); default: all",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = {name: load_sr_set(name) for name in args.sets}
    baby = dict(sets.get("Set5") or load_sr_set("Set5"))["baby"]
    vgg = VGGFeatures([FEATURE_LAYER], arch="vgg19", device="cpu")

    header = "| model | scale | " + " | ".join(f"{s} PSNR / SSIM (paper)" for s in sets)
    lines = [header + " | ms per image (× bicubic) |", "|---" * (len(sets) + 3) + "|"]
    bicubic_rows: dict[int, list[str]] = {}
    perceptual: dict[tuple[str, int], dict[str, dict]] = {}  # (label, scale) -> set -> result
    for label, name, model, scales in models_to_score(args.models):
        for scale in scales:
            cells = []
            for set_name, images in sets.items():
                features = vgg if scale in PERCEPTUAL_SCALES else None
                result = evaluate(model, name, scale, images, features=features)
                if features is not None:
                    perceptual.setdefault((label, scale), {})[set_name] = result
                paper = PAPER.get((name, scale), {}).get(set_name)
                cells.append(
                    f"{result['psnr_y']:.2f} / {result['ssim_y']:.4f}"
                    + (f" ({paper:.2f})" if paper else "")
                )
                if scale not in bicubic_rows or len(bicubic_rows[scale]) < len(sets):
                    paper = PAPER.get(("bicubic", scale), {}).get(set_name)
                    bicubic_rows.setdefault(scale, []).append(
                        f"{result['bicubic_psnr_y']:.2f} / {result['bicubic_ssim_y']:.4f}"
                        + (f" ({paper:.2f})" if paper else "")
                    )
            lr = degrade(modcrop(baby, scale), scale)
            model_s = median_seconds(partial(super_resolve, model, lr, name=name, scale=scale))
            bicubic_s = median_seconds(partial(bicubic_upscale, lr, scale))
            lines.append(
                f"| {label} | ×{scale} | " + " | ".join(cells)
                + f" | {1000 * model_s:.0f} ({model_s / bicubic_s:.0f}×) |"
            )  # fmt: skip
            print(lines[-1], flush=True)
    for scale, cells in sorted(bicubic_rows.items()):
        lines.append(f"| bicubic | ×{scale} | " + " | ".join(cells) + " | — |")
    print(f"\nSR table: PSNR-Y dB / SSIM-Y, papers' protocol; {args.threads} CPU threads\n")
    print("\n".join(lines))
    convention = vgg.weights_info.convention
    print(
        f"\nWhat a perceptual loss sees: {FEATURE_LAYER} feature distance (VGG-19, "
        f"{convention} convention; lower is closer) / sharpness (1 = as steep as HR)\n"
    )
    print("\n".join(perceptual_table(perceptual, list(sets))))


def perceptual_table(results: dict[tuple[str, int], dict[str, dict]], sets: list[str]) -> list[str]:
    """The second table (feature distance / sharpness per set) and its verdict lines."""
    header = "| model | scale | " + " | ".join(f"{s} feature distance / sharpness" for s in sets)
    lines = [header + " |", "|---" * (len(sets) + 2) + "|"]
    bicubic: dict[int, dict[str, dict]] = {}
    for (label, scale), by_set in results.items():
        cells = [f"{r['feature_distance']:.0f} / {r['sharpness']:.2f}" for r in by_set.values()]
        lines.append(f"| {label} | ×{scale} | " + " | ".join(cells) + " |")
        bicubic.setdefault(scale, by_set)
    for scale, by_set in sorted(bicubic.items()):
        cells = [
            f"{r['bicubic_feature_distance']:.0f} / {r['bicubic_sharpness']:.2f}"
            for r in by_set.values()
        ]
        lines.append(f"| bicubic | ×{scale} | " + " | ".join(cells) + " |")
    ours, mse = results.get(("perceptual (ours)", 4)), results.get(("srresnet (ours)", 4))
    if ours is not None:
        lines.append("")
        for set_name in sets:
            mine = ours[set_name]["feature_distance"]
            rivals = {"bicubic": ours[set_name]["bicubic_feature_distance"]}
            if mse is not None:
                rivals["SRResNet"] = mse[set_name]["feature_distance"]
            verdicts = ", ".join(
                f"{'lower' if mine < theirs else 'NOT lower'} than {rival}'s ({theirs:.0f})"
                for rival, theirs in rivals.items()
            )
            lines.append(f"{set_name} ×4: the perceptual net's distance {mine:.0f} is {verdicts}")
    return lines


if __name__ == "__main__":
    main()
