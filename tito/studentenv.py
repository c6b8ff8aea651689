"""What belongs to the student environment and what only to the repository's.

The student environment (``requirements-student.lock``) has what the course needs; the
repository's (``requirements.lock``) adds the test oracle and the book tools. A test file that
imports one of :data:`ORACLE_PACKAGES` is a repository test: ``tito release`` does not ship it,
and ``tito module complete`` in an environment without that package says so and leaves it out.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

# top-level import names of what requirements.lock adds to requirements-student.lock
ORACLE_PACKAGES = ("torch", "scipy", "transformers", "tokenizers", "jupyter_book", "myst_nb",
                   "sphinx", "jupytext")


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in the Python file (at any depth)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
    return names


def oracle_imports(path: Path) -> list[str]:
    """The repository-only packages the file imports (empty: the file runs for students)."""
    return sorted(imported_packages(path) & set(ORACLE_PACKAGES))


def unavailable_imports(path: Path) -> list[str]:
    """The repository-only packages the file imports that this environment does not have."""
    return [name for name in oracle_imports(path) if importlib.util.find_spec(name) is None]
