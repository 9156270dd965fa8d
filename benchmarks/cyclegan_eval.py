r"""CycleGAN on horse2zebra, measured offline, beside baselines on the same test images.

Every row translates the 120 test horses (and, where it can, the 140 test zebras back) at
``--size`` px and is scored by ``nstcourse.translate.recipes.TranslationScore`` (a linear
probe on VGG-19 channel statistics, fit on the 500 + 500 training images) and by the
VGG-KID (``nstcourse.translate.metrics.kid``) against the training zebras (horses for F).
The blind spot of each measure is in ``nstcourse/translate/metrics.py``.

Rows:
- ``real test horses`` / ``real test zebras``: the probe's floor and ceiling (no model);
- ``identity``: G(x) = x, what doing nothing scores;
- ``colour statistics``: each channel of x shifted and scaled to the mean and standard
  deviation of all training zebras' pixels (horses' for F): colour without texture;
- ``AdaIN``: the course's AdaIN (``nstcourse.style``) with the first training zebra
  (horse) photo as the style, α = 1: texture transfer without a notion of "zebra";
- ``CycleGAN``: ``--checkpoint`` (default ``checkpoints/cyclegan_horse2zebra.safetensors``).

Run from the repository root::

    export NSTCOURSE_DATA_DIR=../shared/data NSTCOURSE_WEIGHTS_DIR=../shared/data/weights
    python benchmarks/cyclegan_eval.py [--checkpoint FILE] [--size 128] [--max-images N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from nstcourse.features import VGGFeatures
from nstcourse.style.models import load_style_model
from nstcourse.translate.data import load_domain, to_float
from nstcourse.translate.metrics import DESCRIPTOR_LAYERS, kid
from nstcourse.translate.models import checkpoint_path, load_cyclegan
from nstcourse.translate.recipes import (
    HORSES,
    TEST_SPLITS,
    ZEBRAS,
    GeneratorPair,
    TranslationScore,
    Translator,
)


def colour_statistics(target: torch.Tensor) -> Translator:
    """x ↦ each RGB channel of x moved to the mean and std of ``target``'s pixels."""
    flat = to_float(target).transpose(0, 1).flatten(1)  # (3, N·H·W)
    mean, std = flat.mean(1).view(1, 3, 1, 1), flat.std(1).view(1, 3, 1, 1)

    def translate(x: torch.Tensor) -> torch.Tensor:
        mu, sigma = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True).clamp_min(1e-5)
        return ((x - mu) / sigma * std + mean).clamp(0, 1)

    return translate


def adain_with(style: torch.Tensor, adain: torch.nn.Module) -> Translator:
    """x ↦ AdaIN(x, style) with the course's decoder, α = 1."""
    return lambda x: adain(x, style=style.expand(len(x), -1, -1, -1)).clamp(0, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=checkpoint_path())
    parser.add_argument("--size", type=int, default=128, help="test images' side (default 128)")
    parser.add_argument("--max-images", type=int, default=None, help="per split (default all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    start = time.perf_counter()

    train, test = (
        [load_domain(f, short_side=args.size, max_images=args.max_images) for f in folders]
        for folders in ((HORSES, ZEBRAS), TEST_SPLITS)
    )
    extractor = VGGFeatures(DESCRIPTOR_LAYERS, arch="vgg19", device=device)
    score = TranslationScore(extractor, (train[0], train[1]), (test[0], test[1]), device=device)

    adain = load_style_model("adain", device=device)
    rows: dict[str, GeneratorPair] = {
        "identity": SimpleNamespace(G=lambda x: x, F=lambda y: y),
        "colour statistics": SimpleNamespace(
            G=colour_statistics(train[1]), F=colour_statistics(train[0])
        ),
        "AdaIN": SimpleNamespace(
            G=adain_with(to_float(train[1][:1]), adain), F=adain_with(to_float(train[0][:1]), adain)
        ),
    }
    if args.checkpoint.is_file():
        rows["CycleGAN"] = load_cyclegan(args.checkpoint, device=device)
    else:
        print(f"(no CycleGAN row: {args.checkpoint} not found)")

    print(f"test images at {args.size} px; probe fit on {len(train[0])} + {len(train[1])} "
          "training images")  # fmt: skip
    print(
        f"{'':20s}{'zebra share':>12s}{'horse share':>12s}{'VGG-KID G':>11s}{'VGG-KID F':>11s}"
        f"{'cycle L1 A':>11s}{'cycle L1 B':>11s}{'spread G':>10s}"
    )
    ref = score.reference
    for name, share in (("real test horses", ref["b_share_of_real_a"]),
                        ("real test zebras", ref["b_share_of_real_b"])):  # fmt: skip
        print(f"{name:20s}{share:12.2f}{1 - share:12.2f}")
    for name, net in rows.items():
        result = score(net)
        g_a, f_b = score.translate(net.G, score.test_a), score.translate(net.F, score.test_b)
        kid_g, _ = kid(score.features(g_a), score.train_features[1])
        kid_f, _ = kid(score.features(f_b), score.train_features[0])
        print(
            f"{name:20s}{result['b_share_of_G']:12.2f}{result['a_share_of_F']:12.2f}"
            f"{kid_g:11.3f}{kid_f:11.3f}{result['cycle_l1_a']:11.4f}{result['cycle_l1_b']:11.4f}"
            f"{result['spread_ratio_G']:10.2f}"
        )
    print(f"({time.perf_counter() - start:.0f} s on {args.threads} threads)")


if __name__ == "__main__":
    main()
