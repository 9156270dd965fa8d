"""checkpoints/train_*.sh retrain exactly the shipped checkpoints, with the stored commands.

Each shipped checkpoint holds the command that wrote it (``recipe["command"]``). The
scripts are run here with a stand-in ``nstcourse`` on PATH that only records its
arguments; every recorded call, parsed by the real CLI parser, must equal the stored
command of the checkpoint it writes, and every shipped checkpoint must be written by it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nstcourse.checkpoints import checkpoint_info
from nstcourse.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


def recorded_calls(script: Path, tmp_path: Path) -> list[list[str]]:
    """Run ``script`` with STEPS_SCALE=1 and a recording ``nstcourse``; its argv lists."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake = bin_dir / "nstcourse"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "with open(os.environ['CALLS'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "STEPS_SCALE": "1",
    }
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.parametrize(
    "script, command",
    [
        ("train_sr.sh", "train-sr"),
        ("train_style.sh", "train-style"),
        ("train_cyclegan.sh", "train-cyclegan"),
    ],
)
def test_script_reproduces_the_stored_commands(script, command, tmp_path):
    parser = build_parser()
    stored = {}  # shipped checkpoint -> its stored argv, for this script's command
    for path in CHECKPOINTS.glob("*.safetensors"):
        argv = shlex.split(checkpoint_info(path)["recipe"]["command"])
        assert argv[0] == "nstcourse"
        if argv[1] == command:
            stored[path.name] = argv[1:]
    written = {}
    for argv in recorded_calls(CHECKPOINTS / script, tmp_path):
        assert argv[0] == command
        args = vars(parser.parse_args(argv))
        written[Path(args["output"]).name] = args
    assert set(written) == set(stored)
    for name, args in written.items():
        assert vars(parser.parse_args(stored[name])) == args, name
