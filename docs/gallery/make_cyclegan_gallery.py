"""Remake the README's CycleGAN gallery with ``nstcourse translate``.

A fixed set of held-out photos, the first six of each test folder of
``unpaired/horse2zebra`` by file name (not chosen by how they come out), translated by the
shipped model at their own size (256 × 256): horses by ``--model horse2zebra`` (G), zebras
by ``--model zebra2horse`` (F). Each sheet has the photos on top and the translations
below. Needs ``NSTCOURSE_DATA_DIR`` or the internet (see the README). Seconds on 2 CPU
cores.

    python docs/gallery/make_cyclegan_gallery.py
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from nstcourse.data import folder_files
from nstcourse.files import atomic_path

HERE = Path(__file__).resolve().parent
PHOTOS = 6
SHEETS = {  # output sheet: (test folder, --model)
    "cyclegan_horse2zebra.jpg": ("unpaired/horse2zebra/testA", "horse2zebra"),
    "cyclegan_zebra2horse.jpg": ("unpaired/horse2zebra/testB", "zebra2horse"),
}


def sheet(inputs: list[Path], outputs: list[Path]) -> Image.Image:
    """The inputs in one row, the outputs below them, each at the inputs' size."""
    tiles = [[Image.open(p).convert("RGB") for p in row] for row in (inputs, outputs)]
    width, height = tiles[0][0].size
    canvas = Image.new("RGB", (width * len(inputs), 2 * height), "white")
    for y, row in enumerate(tiles):
        for x, tile in enumerate(row):
            canvas.paste(tile.resize((width, height)), (x * width, y * height))
    return canvas


def main() -> int:
    for name, (folder, model) in SHEETS.items():
        photos = folder_files(folder, limit=PHOTOS)
        with tempfile.TemporaryDirectory() as tmp:
            given, made = Path(tmp) / "in", Path(tmp) / "out"
            given.mkdir()
            for photo in photos:
                shutil.copy(photo, given / photo.name)
            command = ["nstcourse", "translate", str(given), "-o", str(made), "--model", model]
            print("$", shlex.join(command), f"  # {', '.join(p.name for p in photos)}", flush=True)
            subprocess.run(command, check=True)
            outputs = [next(made.glob(photo.stem + ".*")) for photo in photos]
            with atomic_path(HERE / name) as target:
                sheet(photos, outputs).save(target, format="JPEG", quality=90)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
