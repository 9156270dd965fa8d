"""``nstcourse fetch-data DIR [ITEM ...]``: download catalog items into a folder laid out
like the data dir, so that it can be served as a campus mirror
(``$NSTCOURSE_DATA_MIRROR``) or used as ``$NSTCOURSE_DATA_DIR`` offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nstcourse.cli.common import UsageError, check_writable, run_command
from nstcourse.data import DataNotFoundError, fetch_files, missing_files, select_files

FETCH_DATA = "nstcourse fetch-data"


def _fetch_data(args: argparse.Namespace) -> int:
    def work() -> int:
        check_writable(args.dir, "DIR", folder=True)
        try:
            entries = select_files(args.items)
        except ValueError as err:
            raise UsageError(str(err)) from None
        todo = missing_files(entries, args.dir, verify=True)
        try:
            fetch_files(todo, args.dir, verify=True, progress=not args.quiet)
        except DataNotFoundError as err:
            print(f"{FETCH_DATA}: error: {err}", file=sys.stderr)
            return 1
        megabytes = sum(entry.bytes for entry in todo) / 1e6
        print(
            f"{args.dir}: {len(todo)} files fetched ({megabytes:.1f} MB), "
            f"{len(entries) - len(todo)} already there and verified"
        )
        return 0

    return run_command(FETCH_DATA, args.dir, work, failed="a download failed")


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "fetch-data",
        help="download the course data (or some items) into a folder",
        description="Download catalog items into DIR, laid out like the data dir, each "
        "checked against its sha256; files already there with the right sha256 are kept. "
        "Serve DIR over HTTP and point $NSTCOURSE_DATA_MIRROR at it (a lab without "
        "internet), or set $NSTCOURSE_DATA_DIR to it. Downloads come from each file's "
        "public source, or from $NSTCOURSE_DATA_MIRROR when set.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the folder to fill (created)")
    p.add_argument(
        "items",
        nargs="*",
        metavar="ITEM",
        help="what to fetch (default: everything): an image name (tubingen), a dataset "
        "(sr/Set5, photos/bsds500_train, unpaired/horse2zebra) or a folder (sr, images)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fetch_data)
