"""The code's own checks, run with the suite: the type checker and the linters must pass."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = TOOLS / name if (TOOLS / name).exists() else shutil.which(name)
    if tool is None:
        pytest.skip(f"{name} is not installed (./install.sh --test installs it)")
    return subprocess.run([str(tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_package_type_checks() -> None:
    """mypy, as configured in pyproject.toml (the `worker` and `cache` packages)."""
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")])
def test_ruff_is_clean(command: tuple[str, ...]) -> None:
    result = run_tool("ruff", *command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_shell_scripts_pass_shellcheck() -> None:
    result = run_tool("shellcheck", "install.sh", ".ci/run")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _section(doc: str, title: str) -> list[str] | None:
    """The lines of numpydoc section `title` in docstring `doc`, up to the next section's title
    (None: no such section)."""
    lines = [line.strip() for line in doc.splitlines()] + [""]

    def is_title(at: int) -> bool:
        underline = lines[at + 1] if at + 1 < len(lines) else ""
        return bool(lines[at]) and bool(underline) and set(underline) == {"-"}

    for at in range(len(lines)):
        if lines[at] == title and is_title(at):
            end = next((k for k in range(at + 2, len(lines)) if is_title(k)), len(lines))
            return lines[at + 2 : end]
    return None


def _documented_names(entries: list[str]) -> set[str]:
    """The names a Parameters section lists: `name : type`, `a, b : type`, or `name` alone."""
    names: set[str] = set()
    for entry in entries:
        head = entry.split(" : ")[0] if " : " in entry else entry
        if head and all(part.strip().lstrip("*").isidentifier() for part in head.split(",")):
            names.update(part.strip().lstrip("*") for part in head.split(","))
    return names


def _numpydoc_faults(path: Path) -> list[str]:
    """Where the public functions and methods of `path` fall short of numpydoc: no docstring, a
    parameter not listed under Parameters, a value returned without a Returns (or Yields)
    section. Nested functions are not public; a class's `__init__` is documented by the class."""
    tree = ast.parse(path.read_text())
    faults = []

    def check(node: ast.FunctionDef, doc_owner: ast.AST, where: str) -> None:
        doc = ast.get_docstring(doc_owner) or ""  # type: ignore[arg-type]
        if not doc:
            faults.append(f"{where}: no docstring")
            return
        arguments = node.args
        names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
        names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
        names = [name for name in names if name not in ("self", "cls")]
        if names:
            listed = _documented_names(_section(doc, "Parameters") or [])
            for name in names:
                if name not in listed:
                    faults.append(f"{where}: parameter '{name}' not under Parameters")
        returns = node.returns
        says_nothing = returns is None or (
            isinstance(returns, ast.Constant) and returns.value is None
        )
        is_property = any(
            isinstance(d, ast.Name) and d.id in ("property", "cached_property")
            for d in node.decorator_list
        )
        gives = not says_nothing and not is_property and node.name != "__init__"
        if gives and _section(doc, "Returns") is None and _section(doc, "Yields") is None:
            faults.append(f"{where}: no Returns section")

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            check(node, node, f"{path}:{node.lineno} {node.name}")
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if not isinstance(item, ast.FunctionDef):
                    continue
                where = f"{path}:{item.lineno} {node.name}.{item.name}"
                if item.name == "__init__":
                    check(item, node, where)
                elif not item.name.startswith("_"):
                    check(item, item, where)
    return faults


def test_public_functions_have_numpydoc_sections() -> None:
    """Every public function and method in `worker` and `cache` says what it takes and gives
    in numpydoc's sections (scikit-image's style), so that a newcomer reads the contract
    without reading the body."""
    faults = [
        fault
        for package in ("worker", "cache")
        for path in sorted((ROOT / package).rglob("*.py"))
        for fault in _numpydoc_faults(path.relative_to(ROOT))
    ]
    assert not faults, f"{len(faults)} faults:\n" + "\n".join(faults)
