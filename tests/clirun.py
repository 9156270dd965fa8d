"""Running the ``nstcourse`` command line in-process, for the command-line tests."""

from __future__ import annotations

import pytest

from nstcourse.cli import main


def run(capsys: pytest.CaptureFixture, argv: list) -> tuple[int, str, str]:
    """``nstcourse ARGV`` (items made str): (exit code, stdout, stderr)."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
