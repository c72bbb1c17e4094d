"""The layers of the package and the directions in which they may import each other.

The rules are those of the README's "Architecture" section: the engine imports nothing of the
project but the leaves, the cache nothing of the service, and so on. Every import is counted,
including those made inside functions (the command line imports the engine lazily).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEAVES = (
    "worker.errors",
    "worker.paths",
    "worker.atomic",
    "worker.regular",
    "worker.stages",
    "worker.resize",
    "worker.compiled",
    "worker.signals",
    "worker.parallel",
    "worker.numbers",
    "worker.processes",
)

# layer: the project modules it may import (prefixes), besides its own layer
ALLOWED: dict[str, tuple[str, ...]] = {
    # (`resize`'s compiled kernel; copies; the error an output that must not replace raises)
    "leaves": ("worker.compiled", "worker.regular", "worker.errors"),
    "worker.deconv": (
        "worker.errors",
        "worker.stages",
        "worker.resize",
        "worker.compiled",
        "worker.parallel",
        "worker.numbers",
    ),
    "worker.files": LEAVES,
    "cache": LEAVES,
    # a job's description: the engine's settings are part of it
    "worker.jobspec": ("worker.deconv.settings", *LEAVES),
    "worker.pipeline": ("worker.jobspec", "worker.deconv", "worker.files", *LEAVES),
    "worker.service": (
        "worker.jobspec",
        "worker.pipeline",
        "worker.files",
        "cache",
        "worker.__init__",
        *LEAVES,
    ),
    "worker.cli": ("worker", "cache"),  # the top: it may call on every layer
    "worker.__main__": ("worker.cli",),
    "worker.__init__": (),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in LEAVES:
        return "leaves"
    return max((layer for layer in ALLOWED if module.startswith(layer)), key=len)


def project_imports(path: Path) -> set[str]:
    """The project modules (`worker...`, `cache...`) that the file imports, anywhere in it.

    `from package import name` counts as importing `package.name` where that is a module, else
    as importing `package` (`worker.__init__` for the top package, which holds the version).
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if is_module(f"{node.module}.{alias.name}")
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found |= {
            "worker.__init__" if name == "worker" else name
            for name in names
            if name.split(".")[0] in ("worker", "cache")
        }
    return found


def is_module(name: str) -> bool:
    """`name` is a module or package of the project (not a function imported from one)."""
    if name == "worker.__init__":
        return True
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative).is_dir()


SOURCES = sorted((ROOT / "worker").rglob("*.py")) + sorted((ROOT / "cache").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    module = module_name(path)
    layer = layer_of(module)
    allowed = ALLOWED[layer] if layer == "leaves" else (layer, *ALLOWED[layer])
    wrong = sorted(
        name
        for name in project_imports(path)
        if is_module(name) and not any(name == a or name.startswith(a + ".") for a in allowed)
    )
    assert not wrong, f"{module} ({layer}) may not import {wrong}"


def test_the_leaves_import_nothing_of_the_project_but_the_compiler_and_regular() -> None:
    for leaf in LEAVES:
        path = ROOT / Path(*leaf.split(".")).with_suffix(".py")
        assert project_imports(path) <= set(ALLOWED["leaves"]), leaf
    for imported in ALLOWED["leaves"]:  # (which themselves import nothing of the project)
        assert not project_imports(ROOT / Path(*imported.split(".")).with_suffix(".py"))


def test_the_module_graph_has_no_cycle() -> None:
    graph = {
        module_name(path): {n for n in project_imports(path) if is_module(n)} for path in SOURCES
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, " -> ".join([*trail, node])
        state[node] = 1
        for child in graph.get(node, ()):
            if child != node and not node.startswith(child):  # a package's own __init__
                visit(child, [*trail, node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_a_wrong_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: an engine module importing the service is reported."""
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from worker.service import server\n")
    names = {n for n in project_imports(source) if is_module(n)}
    assert names == {"worker.service.server"}
    assert layer_of("worker.deconv.rl_tv") == "worker.deconv"
    assert not any(n.startswith(ALLOWED["worker.deconv"]) for n in names)


def test_a_command_does_not_import_scipy_signal() -> None:
    """scipy.signal takes a third of a second to import, a tenth of a small picture's run: the
    modules a `deblur`, `run` or the worker load must not need it (test data may)."""
    code = (
        "import sys, worker.cli, worker.pipeline, worker.service.server;"
        "print('scipy.signal' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_the_command_line_starts_without_the_engines_libraries() -> None:
    """The plug-in runs `key`, `cache lookup`, `submit` and `cache kernel` for every picture: the
    parser of every command must load without NumPy, SciPy, numba, tifffile or pyexiv2 (about
    0.4 s of each command's start, measured), which only the commands that compute import."""
    heavy = ("numpy", "scipy", "numba", "tifffile", "pyexiv2")
    code = (
        "import sys; from worker.cli import build_parser; build_parser();"
        f"print(' '.join(name for name in {heavy!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""
