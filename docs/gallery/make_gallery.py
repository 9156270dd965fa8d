"""Remake the README's gallery with ``nstcourse stylize``.

Every picture is one command, printed before it runs: 512 px, the data pack's VGG-19
(Caffe convention) with layers up to conv3_x (content relu3_2; style relu1_1, relu2_1,
relu3_1: README, "Data and weights"), coarse-to-fine. Needs ``NSTCOURSE_DATA_DIR`` and
``NSTCOURSE_WEIGHTS_DIR`` (see the README). About two minutes per picture on 2 CPU cores.

    python docs/gallery/make_gallery.py [--only NAME ...]

The two-region mask (sky = white) is made here from the photo itself: pixels brighter
than 0.3 in luminance and bluer than red by 0.1, smoothed, so that it needs no hand drawing.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import torch.nn.functional as F

from nstcourse.colour import luminance
from nstcourse.data import image_path
from nstcourse.images import load_image, save_image

HERE = Path(__file__).resolve().parent
SHALLOW = [
    "--content-layers", "relu3_2", "--style-layers", "relu1_1,relu2_1,relu3_1",
    "--scales", "128,256,512", "--steps", "200,100,60", "--quiet",
]  # fmt: skip


def sky_mask(photo: Path, out: Path) -> Path:
    """White where the photo is sky: not dark and clearly blue, smoothed."""
    image = load_image(photo)
    y = luminance(image)
    blueness = image[:, 2:3] - image[:, :1]
    sky = ((y > 0.3) & (blueness > 0.1)).float()
    sky = F.avg_pool2d(sky, 15, stride=1, padding=7)  # smooth the edge over ~15 px
    save_image((sky > 0.5).float().expand(-1, 3, -1, -1), out)
    return out


def pictures() -> dict[str, list[str]]:
    """{output name: stylize arguments}."""
    p = {n: str(image_path(n)) for n in ("tubingen", "chicago", "stata")}
    s = {n: str(image_path(n)) for n in ("starry_night", "the_scream", "mosaic", "candy", "wave")}
    mask = HERE / "tubingen_sky_mask.png"
    if not mask.exists():
        sky_mask(Path(p["tubingen"]), mask)
    inverse = HERE / "tubingen_town_mask.png"
    if not inverse.exists():
        save_image(1 - load_image(mask), inverse)
    return {
        "tubingen_starry_night.jpg": [p["tubingen"], s["starry_night"]],
        "chicago_wave.jpg": [p["chicago"], s["wave"]],
        "stata_candy.jpg": [p["stata"], s["candy"]],
        "tubingen_the_scream.jpg": [p["tubingen"], s["the_scream"]],
        "tubingen_the_scream_luminance.jpg": [
            p["tubingen"], s["the_scream"], "--preserve-colour", "luminance",
            # a grey style has weaker Gram matrices than a coloured one: β × 10
            "--style-weight", "1000",
        ],
        "tubingen_two_regions.jpg": [
            p["tubingen"], s["starry_night"], s["mosaic"], "--mask", str(mask), str(inverse),
        ],
        "tubingen_coarse_scream_fine_mosaic.jpg": [
            p["tubingen"], s["the_scream"], "--fine-style", s["mosaic"],
            # two styles' Gram matrices cannot all be met at once: β / 10 keeps the photo
            "--style-weight", "10",
        ],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="output names to remake")
    args = parser.parse_args()
    for name, arguments in pictures().items():
        if args.only and name not in args.only:
            continue
        command = ["nstcourse", "stylize", *arguments, "-o", str(HERE / name), *SHALLOW]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
