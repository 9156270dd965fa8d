"""The install files agree with each other."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
CONDA_NAMES = {  # PyPI name -> conda-forge name where they differ
    "torch": "pytorch",
    "playwright": "playwright-python",
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        r
        for r in project["dependencies"] + project["optional-dependencies"]["test"]
        if "python_version" not in r  # environment.yml pins one Python
    ]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    missing = [r for r in wanted if CONDA_NAMES.get(_name(r), _name(r)) not in conda]
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    assert "-e ." in pip and "conda-forge" in env["channels"]


def test_console_script_points_at_the_cli():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"nstcourse": "nstcourse.cli:main"}
