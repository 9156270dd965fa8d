"""The ``nstcourse`` command line: one module per command group, plus ``common``.

``nstcourse run-notebooks [--mode auto|full|laptop|smoke] ...``  (``cli.notebooks``)
    execute the course notebooks headless with papermill and print a table.
``nstcourse stylize CONTENT STYLE [STYLE ...] -o OUT [options]``  (``cli.stylize``)
    Gatys style transfer of one image (``nstcourse.style.gatys.stylize``).
``nstcourse fast-stylize ...``, ``nstcourse train-style ...``  (``cli.style``)
    feed-forward style networks (``nstcourse.style``).
``nstcourse upscale ...``, ``nstcourse train-sr ...``  (``cli.sr``)
    super-resolution (``nstcourse.sr``).
``nstcourse translate ...``, ``nstcourse train-cyclegan ...``  (``cli.translate``)
    unpaired translation with CycleGAN (``nstcourse.translate``).
``nstcourse fetch-data DIR [ITEM ...]``  (``cli.data``)
    download the course data into a folder (a mirror, or a data dir for offline use).

Only this package knows argparse; the library never imports it.
"""

from __future__ import annotations

import argparse
import sys

from nstcourse.cli.common import sigterm_as_interrupt
from nstcourse.cli.data import add_data_commands
from nstcourse.cli.notebooks import add_notebook_commands
from nstcourse.cli.sr import add_sr_commands
from nstcourse.cli.style import add_style_commands
from nstcourse.cli.stylize import add_stylize_commands
from nstcourse.cli.translate import add_translate_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nstcourse",
        description="The nstcourse command line: run the course notebooks, stylize images "
        "(by optimisation or with trained networks), train style networks, upscale images and "
        "train super-resolution models, translate images with CycleGAN and train it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_notebook_commands(commands)  # run-notebooks, student-edition
    add_stylize_commands(commands)  # stylize
    add_sr_commands(commands)  # upscale, train-sr
    add_style_commands(commands)  # fast-stylize, train-style
    add_translate_commands(commands)  # translate, train-cyclegan
    add_data_commands(commands)  # fetch-data
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (``cli.common``: 0, 1, 2, 130, 143).

    SIGTERM is handled as Ctrl-C (``sigterm_as_interrupt``): the command cleans up and
    says what it kept, then exits 143 (128 + SIGTERM), so that whoever sent the signal
    (``timeout``, a scheduler, a container stop) sees it was terminated, not that it failed.
    """
    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt() as received:
        try:
            code = args.func(args)
        except KeyboardInterrupt:  # a command that does not report it itself
            print(f"nstcourse {args.command}: interrupted", file=sys.stderr)
            code = 130
    return 128 + received[0] if received and code == 130 else code
