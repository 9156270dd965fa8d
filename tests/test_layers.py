"""The package's layers point one way, and the import graph has no cycle.

- plumbing (the modules at the top of ``nstcourse/``) imports no track and not the
  command line;
- a track (``nstcourse/style/``, ``nstcourse/sr/``, ``nstcourse/translate/``) imports
  plumbing and itself, never another track or the command line;
- only the command line (``nstcourse/cli/``) imports the command line;
- every import of ``nstcourse`` sits at the top of its module, none inside a function;
- no import cycle.

The checks read the source with ``ast`` (nothing is imported); the last tests plant bad
imports in a throw-away package to show that each rule can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nstcourse"
CLI = "cli"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str, root: Path = PACKAGE) -> str:
    """ "package" (the root ``__init__``), "plumbing", "cli" or the track's name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return parts[1] if (root / parts[1] / "__init__.py").is_file() else "plumbing"


def imports(path: Path, root: Path) -> list[tuple[list[str], int, bool]]:
    """(names it may import, line, at module level) for every nstcourse import in ``path``;
    ``from a.b import c`` may import the module a.b.c or the name c of a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from nstcourse import data" imports the module nstcourse.data
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        names = [name for name in names if name.split(".")[0] == root.name]
        if names:
            found.append((names, node.lineno, id(node) in top))
    return found


def graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, for the modules that exist under ``root``."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    edges: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges[name] = {}
        for targets, line, _ in imports(path, root):
            for target in targets:
                while target not in modules and "." in target:  # a name inside a module
                    target = target.rpartition(".")[0]
                if target in modules and target not in (name, root.name):
                    edges[name].setdefault(target, line)
    return edges


def layer_violations(root: Path) -> list[str]:
    problems = []
    for module, targets in graph(root).items():
        source, where = layer(module, root), module
        for target, line in targets.items():
            kind = layer(target, root)
            if source == "package" or kind == "package":
                continue
            if kind == CLI and source != CLI:
                problems.append(f"{where}:{line} imports the command line ({target})")
            elif source == "plumbing" and kind != "plumbing":
                problems.append(f"{where}:{line}: plumbing imports the {kind} track ({target})")
            elif source not in ("plumbing", CLI) and kind not in ("plumbing", source):
                problems.append(f"{where}:{line}: track {source} imports track {kind} ({target})")
    return problems


def nested_imports(root: Path) -> list[str]:
    return [
        f"{module_name(path, root)}:{line} imports {targets[0]} inside a function"
        for path in sorted(root.rglob("*.py"))
        for targets, line, at_top in imports(path, root)
        if not at_top
    ]


def cycles(root: Path) -> list[list[str]]:
    edges = graph(root)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, {})):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_package_has_plumbing_tracks_and_a_command_line() -> None:
    layers = {layer(module) for module in graph(PACKAGE)}
    assert {"plumbing", "style", "sr", "cli"} <= layers
    assert "plumbing" == layer("nstcourse.training") == layer("nstcourse.recipes")


def test_layers_point_one_way() -> None:
    assert layer_violations(PACKAGE) == []


def test_no_nstcourse_import_inside_a_function() -> None:
    assert nested_imports(PACKAGE) == []


def test_no_import_cycle() -> None:
    assert cycles(PACKAGE) == []


# --- the checks can fail: a planted package -----------------------------------------------


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "nstcourse"
    for name, text in {"__init__.py": "", "style/__init__.py": "", "sr/__init__.py": "",
                       "cli/__init__.py": "", **files}.items():  # fmt: skip
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"metrics.py": "from nstcourse.sr.data import y_channel\n", "sr/data.py": ""},
         "nstcourse.metrics:1: plumbing imports the sr track"),
        ({"style/recipes.py": "from nstcourse.sr import recipes\n", "sr/recipes.py": ""},
         "nstcourse.style.recipes:1: track style imports track sr"),
        ({"training.py": "import nstcourse.cli.common\n", "cli/common.py": ""},
         "nstcourse.training:1 imports the command line"),
        ({"style/gatys.py": "from ..cli import main\n"},
         "nstcourse.style.gatys:1 imports the command line"),
    ],
)  # fmt: skip
def test_a_planted_bad_import_is_found(tmp_path, files, expected) -> None:
    problems = layer_violations(_plant(tmp_path, files))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_planted_nested_import_and_cycle_are_found(tmp_path) -> None:
    root = _plant(
        tmp_path,
        {
            "cli/sr.py": "def f():\n    from nstcourse.cli import main\n",
            "a.py": "from nstcourse import b\n",
            "b.py": "from nstcourse.a import x\n",
        },
    )
    assert nested_imports(root) == [
        "nstcourse.cli.sr:2 imports nstcourse.cli.main inside a function"
    ]
    assert cycles(root) == [["nstcourse.a", "nstcourse.b", "nstcourse.a"]]
