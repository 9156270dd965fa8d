"""The notebook commands of the ``nstcourse`` command line.

``nstcourse run-notebooks``
    execute the course notebooks headless with papermill (``nstcourse.runner``) and print
    a table; exit 1 if any failed.
``nstcourse student-edition OUT``
    write the notebooks as students get them (``nstcourse.editions``): solutions
    replaced by stubs, hidden tests and rubrics removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nstcourse.cli.common import check_writable, positive
from nstcourse.editions import write_student_edition
from nstcourse.runmode import AUTO, MODES
from nstcourse.runner import default_notebooks_dir, find_notebooks, format_table, run_notebooks

RUN_NOTEBOOKS = "nstcourse run-notebooks"
STUDENT_EDITION = "nstcourse student-edition"


def _run_notebooks(args: argparse.Namespace) -> int:
    try:
        notebooks = find_notebooks(args.notebooks_dir or default_notebooks_dir(), args.only)
        check_writable(args.output_dir, "--output-dir", folder=True)
        results = run_notebooks(
            notebooks, args.output_dir, mode=args.mode, cell_timeout=args.cell_timeout
        )
    except (OSError, ValueError) as err:  # a failing notebook is a result, not an error
        print(f"{RUN_NOTEBOOKS}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{RUN_NOTEBOOKS}: interrupted; executed copies so far are in {args.output_dir}",
              file=sys.stderr)  # fmt: skip
        return 130
    print(format_table(results))
    failed = sum(r.status != "ok" for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _student_edition(args: argparse.Namespace) -> int:
    try:
        notebooks = find_notebooks(args.notebooks_dir or default_notebooks_dir(), args.only)
        check_writable(args.output, "OUT", folder=True)
        if args.output.resolve() == notebooks[0].parent.resolve():
            raise ValueError(f"OUT {args.output} is the notebooks' own folder; choose another")
        existing = [args.output / p.name for p in notebooks if (args.output / p.name).exists()]
        if existing and not args.overwrite:
            names = ", ".join(p.name for p in existing)
            raise FileExistsError(
                f"{args.output} already holds {names} (perhaps a student's work); "
                "choose another OUT or pass --overwrite"
            )
        written = write_student_edition(notebooks, args.output)
    except ModuleNotFoundError as err:
        print(f"{STUDENT_EDITION} needs nbgrader (Python 3.11 or later): "
              f"pip install 'nstcourse[instructor]' ({err})", file=sys.stderr)  # fmt: skip
        return 2
    except (OSError, ValueError) as err:
        print(f"{STUDENT_EDITION}: {err}", file=sys.stderr)
        return 2
    for path, cells in written.items():
        print(f"wrote {path}: {cells.solutions} exercises, {cells.tests} autograded tests, "
              f"{cells.written} written answers, {cells.points:g} points")  # fmt: skip
    return 0


def add_notebook_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run-notebooks",
        help="execute the course notebooks headless with papermill",
        description="Execute notebooks in order, write executed copies, print a table; "
        "exit 1 if any notebook failed.",
    )
    run.add_argument(
        "--mode",
        choices=(AUTO, *MODES),
        default=AUTO,
        help="auto (default): full on a CUDA GPU, else laptop; full: the papers' budgets; "
        "laptop: about ten minutes a notebook on a CPU; smoke: tiny budgets, for tests",
    )
    run.add_argument(
        "--only",
        nargs="+",
        metavar="NN",
        help="run only these notebooks (number prefix or file name)",
    )
    run.add_argument(
        "--output-dir",
        type=Path,
        default=Path("build/notebooks"),
        help="where executed copies go (default: build/notebooks)",
    )
    run.add_argument(
        "--notebooks-dir",
        type=Path,
        default=None,
        help="folder of NN_name.ipynb files (default: ./notebooks)",
    )
    run.add_argument(
        "--cell-timeout",
        type=positive,
        default=None,
        metavar="SECONDS",
        help="fail a notebook whose cell runs longer than this (a number > 0)",
    )
    run.set_defaults(func=_run_notebooks)

    student = commands.add_parser(
        "student-edition",
        help="write the notebooks as students get them (exercises without solutions)",
        description="Write each course notebook with its exercise solutions replaced by "
        "stubs that raise NotImplementedError, written answers by 'YOUR ANSWER HERE', "
        "hidden tests and rubrics removed and outputs cleared (nbgrader's preprocessors).",
    )
    student.add_argument("output", type=Path, metavar="OUT", help="folder to write to")
    student.add_argument(
        "--only", nargs="+", metavar="NN", help="only these notebooks (number or file name)"
    )
    student.add_argument(
        "--notebooks-dir",
        type=Path,
        default=None,
        help="folder of NN_name.ipynb files (default: ./notebooks)",
    )
    student.add_argument(
        "--overwrite", action="store_true", help="replace notebooks already in OUT"
    )
    student.set_defaults(func=_student_edition)
