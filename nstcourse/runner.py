"""Execute the course notebooks headless with papermill (the instructors' main job).

Each notebook runs in order with ``MODE`` injected into its ``parameters`` cell (and
``$NSTCOURSE_MODE`` set for the kernel), its executed copy is written to the output
folder, a failure is recorded and the next notebook still runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nstcourse.runmode import AUTO, MODE_ENV, MODES


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one notebook: status "ok" or "failed", wall seconds, executed copy."""

    notebook: str
    status: str
    seconds: float
    output: Path
    error: str = ""


def default_notebooks_dir() -> Path:
    """``./notebooks`` if it exists, else the ``notebooks/`` folder of this checkout."""
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "notebooks"


def find_notebooks(notebooks_dir: Path, only: Sequence[str] | None = None) -> list[Path]:
    """Course notebooks (``NN_name.ipynb``) in order; ``only`` keeps names or NN prefixes."""
    notebooks = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {notebooks_dir}")
    if not only:
        return notebooks
    chosen = []
    for key in only:
        matches = [
            p for p in notebooks if p.name == key or p.stem == key or p.name.startswith(f"{key}_")
        ]
        if not matches:
            raise ValueError(
                f"--only {key}: no such notebook; have {', '.join(p.name for p in notebooks)}"
            )
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def run_notebook(
    notebook: Path, output_dir: Path, *, mode: str, cell_timeout: float | None = None
) -> NotebookResult:
    """Execute one notebook with papermill; never raises for a failing cell.

    ``cell_timeout`` (seconds, > 0) is rounded up to whole seconds, which is what the
    notebook client takes. Raises ValueError for a bad ``mode`` or ``cell_timeout`` and
    OSError if the executed copy cannot be written in ``output_dir``.
    """
    import papermill

    if mode not in (AUTO, *MODES):
        raise ValueError(f"mode={mode!r}; use one of {(AUTO, *MODES)}")
    timeout = _whole_seconds(cell_timeout)
    make_output_dir(output_dir)
    output = output_dir / notebook.name
    start = time.perf_counter()
    try:
        with _env(MODE_ENV, mode):
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={"MODE": mode},
                cwd=str(notebook.parent),
                progress_bar=False,
                execution_timeout=timeout,
            )
        status, error = "ok", ""
    except Exception as err:  # a failing notebook must not stop the others
        status, error = "failed", _describe(err)
    return NotebookResult(notebook.name, status, time.perf_counter() - start, output, error)


def _whole_seconds(cell_timeout: float | None) -> int | None:
    """A cell timeout as whole seconds (rounded up), or a ValueError naming it."""
    if cell_timeout is None:
        return None
    if not (isinstance(cell_timeout, int | float) and 0 < cell_timeout < math.inf):
        raise ValueError(f"cell_timeout={cell_timeout!r}; give seconds > 0, or None for none")
    return math.ceil(cell_timeout)


def make_output_dir(output_dir: Path) -> None:
    """Create the folder for the executed copies (and its parents) if missing.

    Raises:
        OSError: it is a file, cannot be created, or cannot be written in; the message
            names the folder. Checked before any notebook runs, so that this is not
            reported as every notebook failing.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output folder {output_dir} is a file; give a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"output folder {output_dir}: cannot create it ({err})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {output_dir}: cannot write in it")


def _describe(err: Exception) -> str:
    """One line that says what went wrong; for a failing cell, its exception and number."""
    if hasattr(err, "ename"):  # papermill's PapermillExecutionError: str() starts with "\n---"
        ename, evalue = err.ename, getattr(err, "evalue", "")
        return f"cell In [{getattr(err, 'exec_count', '?')}]: {ename}: {evalue}"
    return f"{type(err).__name__}: {err}".strip()


def run_notebooks(
    notebooks: Sequence[Path],
    output_dir: Path,
    *,
    mode: str,
    cell_timeout: float | None = None,
) -> list[NotebookResult]:
    """Run ``notebooks`` in order, echoing one line per notebook as it finishes.

    Raises OSError naming ``output_dir`` before any notebook runs if the executed copies
    cannot be written there (``make_output_dir``).
    """
    make_output_dir(output_dir)
    results = []
    for notebook in notebooks:
        print(f"running {notebook.name} ({mode}) ...", flush=True)
        result = run_notebook(notebook, output_dir, mode=mode, cell_timeout=cell_timeout)
        print(f"  {result.status} in {result.seconds:.1f} s", flush=True)
        results.append(result)
    return results


def format_table(results: Sequence[NotebookResult]) -> str:
    """A plain-text table: notebook, status, seconds, executed copy; errors below it."""
    rows = [("notebook", "status", "seconds", "executed copy")]
    rows += [(r.notebook, r.status, f"{r.seconds:.1f}", str(r.output)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.error:
            lines.append(f"\n{r.notebook} failed: {r.error.splitlines()[0][:500]}")
    return "\n".join(lines)
