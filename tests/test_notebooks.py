"""The course notebooks: how they are stored, and the papermill runner end to end.

Executing every notebook under nbval is pytest's other job (``testpaths`` includes
``notebooks``); here we check what nbval cannot: the stored form, the parameters cell,
the runner's table and exit codes, and outputs that must come out the same every run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STAR_IMPORT = re.compile(r"^\s*from\s+\S+\s+import\s+\(?\s*\*", re.MULTILINE)
# A kernel start plus a few tiny cells; generous so that a slow CI machine never flakes.
TIMEOUT_S = 600


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    """``nstcourse run-notebooks ARGS`` in a fresh interpreter; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "nstcourse.cli", "run-notebooks", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The runner's table as {notebook: [status, seconds, executed copy]}."""
    rows = {}
    for line in stdout.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4 and fields[0].endswith(".ipynb") and fields[1] in ("ok", "failed"):
            rows[fields[0]] = fields[1:]
    return rows


def _stdout_of(notebook: nbformat.NotebookNode) -> str:
    """Everything the executed notebook's code cells printed to stdout or returned."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                texts.append(output.text)
            elif output.output_type == "execute_result":
                texts.append(output.data.get("text/plain", "") + "\n")
    return "".join(texts)


def _write_notebook(path: Path, *sources: str) -> Path:
    """A course-style notebook: a ``parameters`` cell, then one code cell per source."""
    parameters = nbformat.v4.new_code_cell('MODE = "auto"')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[parameters, *(nbformat.v4.new_code_cell(s) for s in sources)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(notebook, path)
    return path


# --- how notebooks are stored -------------------------------------------------------


def test_the_course_has_notebooks() -> None:
    assert (REPO / "notebooks" / "00_getting_started.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or an execution count"
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_starting_with_mode_auto(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in _tags(cell)]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', not 1"
    cell = tagged[0]
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells[0] is cell, f"{path.name}: the parameters cell is not the first code cell"
    assert cell.source.splitlines()[0] == 'MODE = "auto"', cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_star_imports(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    stars = [
        match.group(0).strip()
        for cell in notebook.cells
        if cell.cell_type == "code"
        for match in STAR_IMPORT.finditer(cell.source)
    ]
    assert not stars, f"{path.name}: star imports {stars}"


def test_star_import_pattern() -> None:
    assert STAR_IMPORT.search("x = 1\nfrom nstcourse.images import *")
    assert STAR_IMPORT.search("from torch.nn import (*)")
    assert not STAR_IMPORT.search("from nstcourse.images import to_numpy\ny = 2 * 3")


# --- the runner end to end on notebook 00 -------------------------------------------


@pytest.mark.datapack
def test_runner_executes_notebook_00_in_smoke_mode(data_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "executed"
    result = _run_cli(
        "--mode",
        "smoke",
        "--only",
        "00",
        "--output-dir",
        str(out),
        cwd=REPO,
        env={
            "NSTCOURSE_DATA_DIR": str(data_pack),
            "NSTCOURSE_WEIGHTS_DIR": str(data_pack / "weights"),
            "NSTCOURSE_VGG_MISSING": "random",  # the data pack's VGG-19 stops at conv3_4
            "NSTCOURSE_MODE": "smoke",
            "MPLBACKEND": "Agg",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _table_rows(result.stdout)
    assert list(rows) == ["00_getting_started.ipynb"], result.stdout
    status, _seconds, copy = rows["00_getting_started.ipynb"]
    assert status == "ok"
    executed = out / "00_getting_started.ipynb"
    assert Path(copy) == executed and executed.is_file()
    assert "1 passed, 0 failed" in result.stdout

    notebook = nbformat.read(executed, as_version=4)
    tags = [_tags(cell) for cell in notebook.cells]
    parameters = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[parameters + 1]
    assert 'MODE = "smoke"' in notebook.cells[parameters + 1].source
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors

    printed = _stdout_of(notebook)
    expected_lines = [
        "MODE = 'smoke'; Budget(long_side=128, channels=4); device = ",
        "convention   caffe",
        "shape  (1, 3, 96, 128)  (N, C, H, W)",
        "dtype  torch.float32",
        "block 1: conv1_1 relu1_1 conv1_2 relu1_2 pool1",
        "block 2: conv2_1 relu2_1 conv2_2 relu2_2 pool2",
        "block 3: conv3_1 relu3_1 conv3_2 relu3_2 conv3_3 relu3_3 conv3_4 relu3_4 pool3",
        "block 4: conv4_1 relu4_1 conv4_2 relu4_2 conv4_3 relu4_3 conv4_4 relu4_4 pool4",
        "block 5: conv5_1 relu5_1 conv5_2 relu5_2 conv5_3 relu5_3 conv5_4 relu5_4 pool5",
        "conv4_2 = features[21]",
        "all 16 convolutions: 20,024,384 parameters",
        "relu5_1  (1, 512, 6, 8)",
        "(25, 37)",
        "2325568",
    ]
    missing = [line for line in expected_lines if line not in printed]
    assert not missing, f"not printed by the executed notebook: {missing}"
    assert re.search(r"pool5\s+7\s+268 px", printed), "receptive-field table changed"
    assert printed.count("✓ correct") == 3, "an exercise check did not pass"
    # The figures are embedded in the executed copy (MPLBACKEND=Agg must not hide them).
    figures = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert figures >= 7, f"only {figures} figures in the executed copy"


# --- the runner's failure behaviour, on tiny notebooks without torch ----------------


def test_a_failing_notebook_is_reported_and_the_next_one_still_runs(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "01_ok.ipynb", "print('one ran')")
    _write_notebook(notebooks / "02_fails.ipynb", "raise RuntimeError('boom in 02')")
    _write_notebook(notebooks / "03_ok.ipynb", "print('three ran')")
    out = tmp_path / "out"

    result = _run_cli("--notebooks-dir", str(notebooks), "--output-dir", str(out), cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    rows = _table_rows(result.stdout)
    assert {name: row[0] for name, row in rows.items()} == {
        "01_ok.ipynb": "ok",
        "02_fails.ipynb": "failed",
        "03_ok.ipynb": "ok",
    }, result.stdout
    assert "2 passed, 1 failed" in result.stdout
    # The line under the table names the failing cell's exception.
    assert "02_fails.ipynb failed: cell In [3]: RuntimeError: boom in 02" in result.stdout
    third = nbformat.read(out / "03_ok.ipynb", as_version=4)
    assert "three ran" in _stdout_of(third)
    # The failed notebook's executed copy is kept, with the traceback in it.
    failed = nbformat.read(out / "02_fails.ipynb", as_version=4)
    assert any(
        output.output_type == "error" for cell in failed.cells for output in cell.get("outputs", [])
    )


def test_only_an_unknown_notebook_exits_2_and_names_the_available_ones(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "01_ok.ipynb", "pass")
    _write_notebook(notebooks / "02_also.ipynb", "pass")
    out = tmp_path / "out"

    result = _run_cli(
        "--notebooks-dir", str(notebooks), "--only", "99", "--output-dir", str(out), cwd=tmp_path
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "--only 99" in result.stderr
    assert "01_ok.ipynb" in result.stderr and "02_also.ipynb" in result.stderr
    assert not out.exists(), "nothing should run"


@pytest.mark.parametrize("mode", ["smoke", "laptop", "full"])
def test_the_mode_given_is_the_mode_the_notebook_sees(tmp_path: Path, mode: str) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    seen = tmp_path / "seen.txt"
    _write_notebook(
        notebooks / "01_mode.ipynb",
        "import os\n"
        "from pathlib import Path\n"
        f"Path({str(seen)!r}).write_text(MODE + ' ' + os.environ['NSTCOURSE_MODE'])",
    )
    # The caller's environment says the opposite: --mode must win.
    other = "full" if mode == "smoke" else "smoke"

    result = _run_cli(
        "--notebooks-dir",
        str(notebooks),
        "--mode",
        mode,
        "--output-dir",
        str(tmp_path / "out"),
        cwd=tmp_path,
        env={"NSTCOURSE_MODE": other},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert seen.read_text() == f"{mode} {mode}"
    executed = nbformat.read(tmp_path / "out" / "01_mode.ipynb", as_version=4)
    injected = [cell for cell in executed.cells if "injected-parameters" in _tags(cell)]
    assert len(injected) == 1 and f'MODE = "{mode}"' in injected[0].source
