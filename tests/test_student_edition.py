"""The graded exercises (nbgrader format), ``nstcourse student-edition`` and
``grading.unavailable``: the student edition has stubs and no hidden tests, and run in
smoke mode every autograded test fails on the stubs while the rest of the notebook runs
(the instructor edition passes under nbval with the other notebooks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
from clirun import run
from nbclient import NotebookClient

from nstcourse.editions import graded_cells, student_edition
from nstcourse.grading import ExerciseError, unavailable

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


# The notebooks whose exercises are in nbgrader's format (all of them: a test says so).
GRADED = [
    p.name
    for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if graded_cells(nbformat.read(p, as_version=4)).tests
]


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def test_every_notebook_is_graded() -> None:
    every = [p.name for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
    assert every == GRADED, f"not in nbgrader's format: {sorted(set(every) - set(GRADED))}"


@pytest.mark.parametrize("name", GRADED)
def test_a_graded_notebook_has_three_exercises_tests_and_a_written_answer(name: str) -> None:
    cells = graded_cells(_read(name))
    assert cells.solutions >= 3 and cells.tests >= 3 and cells.written >= 1, cells
    ids = [_meta(c)["grade_id"] for c in _read(name).cells if _meta(c)]
    assert len(ids) == len(set(ids)), f"{name}: repeated grade_id"
    for cell in _read(name).cells:
        meta = _meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if meta.get("grade") and cell.cell_type == "code":
            assert meta["locked"] and meta["points"] > 0
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{meta['grade_id']}: no hidden test"


@pytest.mark.parametrize("name", GRADED)
def test_the_student_edition_has_stubs_and_no_hidden_tests_or_rubrics(name: str) -> None:
    instructor = _read(name)
    student = student_edition(instructor)
    assert len(student.cells) == len(instructor.cells)
    text = json.dumps(student)
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "Rubric", "Model answer"):
        assert secret not in text, secret
    for cell in student.cells:
        meta = _meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source
        elif meta.get("solution"):
            assert cell.source.strip() == "YOUR ANSWER HERE"
        if cell.cell_type == "code":
            assert cell.outputs == []
    assert "BEGIN SOLUTION" in json.dumps(instructor), "the instructor's copy is unchanged"


@pytest.mark.parametrize("name", GRADED)
def test_every_autograded_test_fails_on_the_stubs_and_nothing_else_does(
    name: str, data_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))
    monkeypatch.setenv("NSTCOURSE_MODE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    student = student_edition(_read(name))
    client = NotebookClient(
        student, timeout=600, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if _meta(cell).get("grade"):
            assert [e.ename for e in errors] == ["NotImplementedError"], (
                f"{name} cell {index} ({_meta(cell)['grade_id']}) should fail on the stub"
            )
        else:
            assert not errors, f"{name} cell {index}: {[(e.ename, e.evalue) for e in errors]}"


def test_student_edition_command_writes_and_protects_existing_work(tmp_path, capsys) -> None:
    out = tmp_path / "students"
    code, stdout, err = run(capsys, ["student-edition", out, "--only", "11"])
    assert code == 0, err
    assert "3 exercises, 3 autograded tests, 1 written answers, 10 points" in stdout
    written = nbformat.read(out / "11_cyclegan.ipynb", as_version=4)
    assert "BEGIN SOLUTION" not in json.dumps(written)

    (out / "11_cyclegan.ipynb").write_text("a student's work")
    code, _, err = run(capsys, ["student-edition", out, "--only", "11"])
    assert code == 2 and "11_cyclegan.ipynb" in err and "--overwrite" in err
    assert (out / "11_cyclegan.ipynb").read_text() == "a student's work"
    code, _, err = run(capsys, ["student-edition", out, "--only", "11", "--overwrite"])
    assert code == 0, err

    code, _, err = run(capsys, ["student-edition", NOTEBOOKS, "--only", "11", "--overwrite"])
    assert code == 2 and "notebooks' own folder" in err
    code, _, err = run(capsys, ["student-edition", out, "--only", "99"])
    assert code == 2 and "--only 99" in err


class _Net:
    def __init__(self) -> None:
        self.size = 3

    @property
    def field(self) -> int:
        return 70

    def forward(self) -> int:
        return 1


class _Child(_Net):
    pass


def test_unavailable_blocks_methods_properties_construction_and_functions() -> None:
    with unavailable(_Net, "field", "forward"):
        net = _Net()
        with pytest.raises(ExerciseError, match="_Net.field is not available"):
            _ = net.field
        with pytest.raises(ExerciseError, match="_Net.forward"):
            net.forward()
    assert net.field == 70 and net.forward() == 1
    with unavailable(_Net, "__init__"), pytest.raises(ExerciseError, match="__init__"):
        _Net()
    with pytest.raises(ZeroDivisionError), unavailable(math, "sqrt"):
        with pytest.raises(ExerciseError, match="math.sqrt"):
            math.sqrt(4.0)
        raise ZeroDivisionError  # restored after an exception too
    assert math.sqrt(4.0) == 2.0


def test_unavailable_restores_inherited_attributes_and_names_typos() -> None:
    with unavailable(_Child, "field"):
        with pytest.raises(ExerciseError):
            _ = _Child().field
        assert _Net().field == 70  # the parent is untouched
    assert "field" not in vars(_Child) and _Child().field == 70
    with pytest.raises(AttributeError, match="fiel"), unavailable(_Net, "fiel"):
        pass
    with pytest.raises(AttributeError), unavailable(math, "squareroot"):
        pass


def test_unavailable_blocks_a_name_in_a_namespace_dict() -> None:
    namespace = {"gram": lambda x: x * x, "other": 1}
    with unavailable(namespace, "gram"):
        with pytest.raises(ExerciseError, match="gram is not available"):
            namespace["gram"](3)
        assert namespace["other"] == 1
    assert namespace["gram"](3) == 9
    with pytest.raises(AttributeError, match="'missing'"), unavailable(namespace, "missing"):
        pass
