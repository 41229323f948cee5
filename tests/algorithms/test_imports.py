"""The import rule (issue 14, contract.py "Imports"), read off the syntax tree of every file.

* an algorithm (``algorithms/<name>.py``) imports from the project only ``algorithms.common``:
  never another algorithm, never ``tasks``, ``bench`` or ``benchmarks``;
* ``algorithms/common`` and the registry (``algorithms/__init__.py``) never import an algorithm,
  ``tasks``, ``bench`` or ``benchmarks``;
* ``tasks`` never imports ``algorithms`` or ``bench`` (the layering of DESIGN.md section 2);
* libraries: an algorithm or ``algorithms/common`` uses the standard library and the numerical
  libraries in :data:`LIBRARIES` only (environments, configs and logging belong to the harness).

Every import counts wherever it stands (module level, inside functions, under ``TYPE_CHECKING``),
relative imports are resolved, and ``importlib.import_module``/``__import__`` calls with a literal
name count too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("algorithms", "bench", "tasks", "benchmarks", "tests")
LIBRARIES = ("numpy", "torch", "scipy", "einops", "typing_extensions")
ALGORITHM_FILES = sorted(p for p in (ROOT / "algorithms").glob("*.py") if p.name != "__init__.py")
COMMON_FILES = sorted((ROOT / "algorithms" / "common").rglob("*.py"))
TASK_FILES = sorted((ROOT / "tasks").rglob("*.py"))


def module_name(path: Path) -> str:
    """``algorithms/common/nets.py`` -> ``algorithms.common.nets`` (a package is its folder)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of everything ``source`` (the module ``module``) imports.

    ``from a.b import c`` gives ``a.b.c`` (``c`` may be a module or an attribute: either way it
    comes from ``a.b``); relative imports are made absolute.
    """
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            names += [
                (node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in ("importlib.import_module", "import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append((node.lineno, node.args[0].value))
    return sorted(names)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def forbidden(
    source: str, module: str, allowed: tuple[str, ...], libraries: bool, is_package: bool = False
) -> list[tuple[int, str]]:
    """Imports of project packages outside ``allowed`` and, with ``libraries``, of third-party
    packages outside :data:`LIBRARIES`."""
    found = []
    for line, name in imported_names(source, module, is_package):
        top = name.split(".")[0]
        if top in PROJECT:
            ok = any(within(name, a) for a in allowed)
        elif top == "__future__" or top in sys.stdlib_module_names:
            ok = True
        else:
            ok = not libraries or top in LIBRARIES
        if not ok:
            found.append((line, name))
    return found


def violations(path: Path, allowed: tuple[str, ...], libraries: bool = True) -> list[str]:
    """:func:`forbidden` for a file, as ``file:line: name``."""
    bad = forbidden(
        path.read_text(), module_name(path), allowed, libraries, path.name == "__init__.py"
    )
    return [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in bad]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", ALGORITHM_FILES, ids=rel)
def test_an_algorithm_imports_only_algorithms_common(path):
    assert violations(path, ("algorithms.common",)) == []


@pytest.mark.parametrize("path", [*COMMON_FILES, ROOT / "algorithms" / "__init__.py"], ids=rel)
def test_common_and_the_registry_import_no_algorithm_tasks_or_bench(path):
    assert violations(path, ("algorithms.common",)) == []


@pytest.mark.parametrize("path", TASK_FILES, ids=rel)
def test_tasks_import_neither_algorithms_nor_bench(path):
    assert violations(path, ("tasks",), libraries=False) == []


def test_the_files_are_found():
    assert len(ALGORITHM_FILES) >= 10 and COMMON_FILES and TASK_FILES


def test_the_checker_sees_every_form_of_import(tmp_path):
    """Each forbidden import is caught however it is written; allowed ones pass."""
    source = """
from __future__ import annotations
import math, torch
import numpy as np
from algorithms.common.nets import MLP
from algorithms.common import contract
from .common.schedules import cosine_decay
from . import common
from algorithms.iql import cosine_decay
from . import idql
from .diffuser import Agent
import algorithms.bc
from algorithms import ALGORITHMS
import gymnasium
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from tasks.safety import Barrier
def f():
    import bench.run
    importlib.import_module("tasks.registry")
    __import__("benchmarks")
"""
    module = "algorithms._probe"  # a module beside the algorithms
    names = [n for _, n in imported_names(source, module)]
    assert "algorithms.common.schedules.cosine_decay" in names and "algorithms.common" in names
    assert [n for _, n in forbidden(source, module, ("algorithms.common",), True)] == [
        "algorithms.iql.cosine_decay",
        "algorithms.idql",
        "algorithms.diffuser.Agent",
        "algorithms.bc",
        "algorithms.ALGORITHMS",
        "gymnasium",
        "tasks.safety.Barrier",
        "bench.run",
        "tasks.registry",
        "benchmarks",
    ]
    # a relative import from inside algorithms/common resolves within it, ``..`` leaves it
    nested = imported_names("from . import nets\nfrom .. import iql\n", "algorithms.common.critics")
    assert [n for _, n in nested] == ["algorithms.common.nets", "algorithms.iql"]
