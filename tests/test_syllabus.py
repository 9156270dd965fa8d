"""docs/syllabus.md against the notebooks and the README, so that it cannot drift silently.

Fast: reads the notebooks' JSON (nbgrader metadata) and two markdown files; executes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from nstcourse.editions import graded_cells

ROOT = Path(__file__).resolve().parents[1]
SYLLABUS = ROOT / "docs" / "syllabus.md"
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def section(text: str, heading: str) -> str:
    """The lines of ``text`` from the heading that starts with ``heading`` to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
    assert len(starts) == 1, f"expected one heading {heading!r}, found {len(starts)}"
    level = len(heading) - len(heading.lstrip("#"))
    out = []
    for line in lines[starts[0] + 1 :]:
        hashes = len(line) - len(line.lstrip("#"))
        if 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            break
        out.append(line)
    return "\n".join(out)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in ``text``, each a list of stripped cells,
    bold markers removed (header and separator rows dropped)."""
    rows, previous = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not re.fullmatch(r"\|[-| :]+\|", line):
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            if previous.startswith("|"):  # the first row of a table is its header
                rows.append(cells)
        previous = line
    return rows


def nbgrader_counts(path: Path) -> dict[str, float]:
    """Autograded tests and their points, written answers and theirs, from the metadata."""
    notebook = nbformat.read(path, as_version=4)
    counts = dict.fromkeys(("tests", "test_points", "written", "written_points"), 0.0)
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            kind = "test" if cell.cell_type == "code" else "written"
            counts["tests" if kind == "test" else "written"] += 1
            counts[f"{kind}_points"] += float(meta.get("points", 0))
    # the same total as `nstcourse student-edition` prints
    assert counts["test_points"] + counts["written_points"] == graded_cells(notebook).points
    return counts


def grading_table() -> dict[str, list[str]]:
    text = section(SYLLABUS.read_text(encoding="utf-8"), "## 6 · Graded exercises and points")
    return {row[0].strip("`"): row[1:] for row in table_rows(text)}


def test_the_notebooks_are_found():
    assert len(NOTEBOOKS) >= 12


def test_syllabus_names_every_notebook():
    text = SYLLABUS.read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in text]
    assert not missing, f"docs/syllabus.md does not mention {missing}"
    for path in NOTEBOOKS:  # and has its learning outcomes
        assert re.search(rf"^\*\*{path.name[:2]} · ", text, re.M), (
            f"docs/syllabus.md has no learning outcomes for {path.name} ('**{path.name[:2]} · …**')"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_points_per_notebook_match_nbgrader_metadata(path):
    table = grading_table()
    assert path.name in table, f"the syllabus's points table has no row for {path.name}"
    tests, test_points, written, written_points, total = (float(c) for c in table[path.name])
    counts = nbgrader_counts(path)
    listed = dict(
        tests=tests, test_points=test_points, written=written, written_points=written_points
    )
    assert listed == counts, (
        f"{path.name}: docs/syllabus.md says {listed}, the notebook's nbgrader metadata "
        f"{counts}; update section 6 (`nstcourse student-edition OUT` prints the counts)"
    )
    assert total == test_points + written_points


def test_points_table_total_and_no_stale_rows():
    table = grading_table()
    total = table.pop("all")
    assert set(table) == {p.name for p in NOTEBOOKS}, "rows for notebooks that do not exist"
    sums = [sum(float(row[i]) for row in table.values()) for i in range(5)]
    assert [float(c) for c in total] == sums


def test_compute_times_are_the_readmes():
    """Section 4's smoke, laptop and full columns are copied from the README's table."""
    readme = section(README.read_text(encoding="utf-8"), "### Run modes and times")
    syllabus = section(SYLLABUS.read_text(encoding="utf-8"), "## 4 · Time per notebook")
    theirs = {row[0]: row[1:] for row in table_rows(readme)}
    ours = {row[0]: row[2:] for row in table_rows(syllabus)}
    assert len(theirs) == len(NOTEBOOKS) + 1  # every notebook and "all"
    assert ours == theirs


def test_readme_links_the_syllabus():
    readme = README.read_text(encoding="utf-8")
    assert "](docs/syllabus.md)" in readme
    instructors = section(readme, "## For instructors: graded exercises")
    assert "docs/syllabus.md" in instructors
