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


def _test_helpers(path: Path) -> dict[str, Path]:
    """The tests' own helper modules a test file can import by name (pytest puts ``tests/`` on
    ``sys.path``, see tests/conftest.py): ``name -> tests/name.py`` for the ``tests`` folder above it."""
    for parent in Path(path).resolve().parents:
        if parent.name == "tests":
            return {p.stem: p for p in parent.glob("*.py") if p.stem != "conftest"}
    return {}


def oracle_imports(path: Path, _seen: frozenset = frozenset()) -> list[str]:
    """The repository-only packages the file imports (empty: the file runs for students), also through
    the tests' own helper modules it imports (e.g. a helper that builds checkpoints with transformers)."""
    names = imported_packages(path)
    found = names & set(ORACLE_PACKAGES)
    helpers = _test_helpers(path)
    for name in sorted(names & set(helpers)):
        helper = helpers[name]
        if helper not in _seen and helper.resolve() != Path(path).resolve():
            found |= set(oracle_imports(helper, _seen | {helper}))
    return sorted(found)


def unavailable_imports(path: Path) -> list[str]:
    """The repository-only packages the file imports that this environment does not have."""
    return [name for name in oracle_imports(path) if importlib.util.find_spec(name) is None]
