"""The three Python wings stay apart, and each `__init__` lists what its wing holds.

- `buildqueue/`: what the CLI needs at run time; it imports the performance lab only
  inside the commands that use it (`./run bench`, `./run load`), never at module level;
- `buildqueue/perf/`: the performance lab;
- `pytests/support/`: what only tests use; nothing in `buildqueue` imports it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from buildqueue.paths import PROJECT_DIR

RUNTIME = PROJECT_DIR / "buildqueue"
PERF = RUNTIME / "perf"
SUPPORT = PROJECT_DIR / "pytests" / "support"


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if p.stem not in {"__init__", "__main__"})


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    "path", _modules(RUNTIME) + _modules(PERF), ids=lambda p: str(p.relative_to(PROJECT_DIR))
)
def test_the_package_never_imports_the_tests(path: Path) -> None:
    leaks = {name for name in _imports(path) if name.split(".")[0] in {"support", "pytests"}}
    assert not leaks, f"{path.name} imports test-only code: {sorted(leaks)}"


@pytest.mark.parametrize("path", _modules(RUNTIME), ids=lambda p: p.name)
def test_the_runtime_wing_loads_the_lab_only_on_demand(path: Path) -> None:
    eager = {n for n in _imports(path, top_level_only=True) if n.startswith("buildqueue.perf")}
    assert not eager, (
        f"buildqueue/{path.name} imports {sorted(eager)} at module level: import it inside "
        "the command that needs it, so the CLI starts without the performance lab"
    )


@pytest.mark.parametrize("folder", [RUNTIME, PERF, SUPPORT], ids=lambda p: p.name)
def test_each_wing_lists_its_modules(folder: Path) -> None:
    docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    named = set(re.findall(r"\w+", docstring))
    unlisted = [p.stem for p in _modules(folder) if p.stem not in named]
    assert not unlisted, f"{folder.name}/__init__.py does not say what {unlisted} hold"
