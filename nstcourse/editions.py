"""The two editions of the course notebooks: the instructor's (``notebooks/``, with the
solutions, hidden tests and rubrics) and the student's (``nstcourse student-edition``).

The exercises are in nbgrader's format (https://nbgrader.readthedocs.io), so an
instructor can also run ``nbgrader generate_assignment`` and ``nbgrader autograde`` on
``notebooks/`` directly:

- a **solution cell** (code, ``nbgrader.solution``) holds the answer between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- an **autograded test cell** (code, ``nbgrader.grade`` with ``points``, locked) checks it
  with visible asserts and, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN
  TESTS``, more that students do not see;
- a **written answer** (markdown, ``nbgrader.solution`` and ``grade``) holds a model answer
  and its rubric, graded by hand.

``student_edition`` applies nbgrader's own preprocessors, in the order of its
``generate_assignment``, without its database: solutions become stubs that raise
``NotImplementedError`` (written answers "YOUR ANSWER HERE"), hidden tests and mark
schemes go, outputs are cleared and graded cells locked, with nbgrader's checksums.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nstcourse.files import atomic_path


@dataclass(frozen=True)
class GradedCells:
    """How many graded cells of each kind a notebook has."""

    solutions: int  # code cells with a solution region
    tests: int  # autograded test cells
    written: int  # manually graded markdown answers
    points: float  # all points together


def graded_cells(notebook: nbformat.NotebookNode) -> GradedCells:
    """Count a notebook's nbgrader cells (``nbformat.read`` gives the notebook)."""
    solutions = tests = written = 0
    points = 0.0
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            solutions += 1
        elif cell.cell_type == "code" and meta.get("grade"):
            tests += 1
        elif cell.cell_type == "markdown" and meta.get("solution") and meta.get("grade"):
            written += 1
        points += float(meta.get("points", 0) if meta.get("grade") else 0)
    return GradedCells(solutions, tests, written, points)


def student_edition(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` as students get it (see the module docstring)."""
    # nbgrader takes ~2 s to import; only this command needs it.
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    steps = (
        LockCells(), ClearSolutions(), ClearOutput(), CheckCellMetadata(),
        ComputeChecksums(), ClearHiddenTests(), ClearMarkScheme(), ComputeChecksums(),
        CheckCellMetadata(),
    )  # fmt: skip
    result, resources = copy.deepcopy(notebook), dict[str, object]()
    for step in steps:
        result, resources = step.preprocess(result, resources)
    return result


def write_student_edition(notebooks: list[Path], out: str | os.PathLike) -> dict[Path, GradedCells]:
    """The student edition of each notebook, written to ``out`` under the same name
    (atomically: a failure leaves no half-written notebook). Returns {path written: the
    source notebook's graded cells}.

    Raises:
        FileNotFoundError: a notebook is missing.
        ValueError: a notebook has nbgrader cells nbgrader refuses (the message names it).
    """
    out = Path(out)
    written = {}
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        try:
            student = student_edition(notebook)
        except Exception as error:  # nbgrader raises its own types; name the notebook
            raise ValueError(f"{path}: {type(error).__name__}: {error}") from error
        target = out / path.name
        with atomic_path(target) as tmp:
            nbformat.write(student, tmp)
        written[target] = graded_cells(notebook)
    return written
