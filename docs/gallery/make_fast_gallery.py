"""Remake the README's feed-forward gallery with ``nstcourse fast-stylize``.

Every picture is one command, printed before it runs, with a shipped checkpoint from
``checkpoints/``: the four single-style Johnson networks, the 10-style CIN network (one
style and a mix) and the AdaIN decoder with paintings it was not trained on (Seurat,
Mondrian). Photos are scaled to 512 px on the long side. Needs ``NSTCOURSE_DATA_DIR``
and, for AdaIN, ``NSTCOURSE_WEIGHTS_DIR`` (see the README). A few seconds per picture on
2 CPU cores.

    python docs/gallery/make_fast_gallery.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from nstcourse.data import image_path

HERE = Path(__file__).resolve().parent


def pictures() -> dict[str, list[str]]:
    """{output name: fast-stylize arguments after the input photo}."""
    p = {n: str(image_path(n)) for n in ("tubingen", "chicago", "stata")}
    seurat, mondrian = (str(image_path(n)) for n in ("seurat_sunday_afternoon", "mondrian"))
    return {
        "fast_tubingen_wave.jpg": [p["tubingen"], "--model", "wave"],
        "fast_chicago_scream.jpg": [p["chicago"], "--model", "scream"],
        "fast_stata_udnie.jpg": [p["stata"], "--model", "udnie"],
        "fast_tubingen_wreck.jpg": [p["tubingen"], "--model", "wreck"],
        "cin_chicago_composition_vii.jpg": [
            p["chicago"], "--model", "cin", "--style", "composition_vii",
        ],
        "cin_tubingen_starry_night_scream_mix.jpg": [
            p["tubingen"], "--model", "cin", "--style", "starry_night=0.5",
            "--style", "the_scream=0.5",
        ],
        "adain_tubingen_seurat.jpg": [
            p["tubingen"], "--model", "adain", "--style-image", seurat,
        ],
        "adain_stata_mondrian_alpha0.6.jpg": [
            p["stata"], "--model", "adain", "--style-image", mondrian, "--alpha", "0.6",
        ],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="output names to remake")
    args = parser.parse_args()
    for name, arguments in pictures().items():
        if args.only and name not in args.only:
            continue
        command = ["nstcourse", "fast-stylize", *arguments, "--size", "512"]
        command += ["-o", str(HERE / name)]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
