"""Find the errors a typo puts in a notebook's code before anything is exported, and name them
by notebook, cell and line.

Two checks, both used by :func:`tito.exporter.export_notebooks` before it moves a fresh export
into the package (so a broken notebook never reaches ``tinytorch/``):

- :func:`syntax_problems`: every code cell of a notebook is ``compile()``d (IPython magics and
  shell lines translated first, as a kernel does). A ``SyntaxError`` becomes a
  :class:`CodeProblem` with the cell's position (1-based, counting every cell as Jupyter shows
  them), its id and the line inside the cell.
- :func:`import_problems`: every package module the export wrote is imported, in a fresh
  ``python -P -s`` process with only the freshly exported package on the path. An exception at
  import time (``ImportError``, ``NameError``, ...) is traced back through the exported file's
  ``# %% <notebook> #<cell id>`` markers to the notebook cell and the line in it.

:class:`NotebookCodeError` carries the problems; its message is one block per problem::

    modules/02_activations/02_activations.ipynb, cell 12 of 41 (id 1f95940d), line 7: SyntaxError: unmatched ')'
        return x * mask)
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError

_MARKER_RE = re.compile(r"^# %% (?P<nb>\S+\.ipynb) #(?P<cid>\S+)\s*$")
_DIRECTIVE_RE = re.compile(r"^\s*#\s*\|")


@dataclass
class CodeProblem:
    """One error in a notebook's code: where it is and what it is."""
    notebook: Path
    cell: int | None            # 1-based position among all cells, as Jupyter lists them
    n_cells: int | None
    cell_id: str | None
    line: int | None            # 1-based line inside the cell
    kind: str                   # "SyntaxError", "ImportError", ...
    message: str
    text: str | None = None     # the offending line of the cell
    module: str | None = None   # the package module whose import failed

    def describe(self, root: Path | None = None) -> str:
        nb = _rel(self.notebook, root)
        where = str(nb)
        if self.cell is not None:
            where += f", cell {self.cell}" + (f" of {self.n_cells}" if self.n_cells else "")
            if self.cell_id:
                where += f" (id {self.cell_id})"
        if self.line is not None:
            where += f", line {self.line}"
        what = f"{self.kind}: {self.message}"
        if self.module:
            what = f"importing {self.module} fails: {what}"
        out = f"{where}: {what}"
        if self.text and self.text.strip():
            out += "\n    " + self.text.rstrip()
        return out


class NotebookCodeError(TitoError):
    """Notebook code that does not compile or whose exported package does not import."""

    def __init__(self, problems: list[CodeProblem], root: Path | None = None,
                 unchanged: Path | None = None):
        self.problems = list(problems)
        head = (f"{len(self.problems)} error(s) in notebook code" if len(self.problems) > 1
                else "error in notebook code")
        lines = [head + ":"] + [p.describe(root) for p in self.problems]
        if unchanged is not None:
            lines.append(f"nothing was exported: {_rel(unchanged, root)}/ is unchanged. "
                         "Fix the cell, then run the command again.")
        super().__init__("\n".join(lines))


def _rel(p: Path, root: Path | None):
    if root is not None:
        try:
            return Path(p).resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
    return p


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _as_python(src: str) -> str:
    """The cell as the kernel runs it: IPython magics / shell escapes translated."""
    if not any(ln.lstrip().startswith(("%", "!")) for ln in src.splitlines()):
        return src
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:                      # no IPython: blank the magic lines, keep numbering
        return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                         for ln in src.split("\n"))
    return TransformerManager().transform_cell(src)


def read_cells(nb_path: Path) -> list[dict]:
    try:
        nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TitoError(f"{nb_path}: not a valid notebook (JSON error: {e})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise TitoError(f"{nb_path}: not a notebook (no list of cells)")
    return cells


def syntax_problems(nb_path: Path) -> list[CodeProblem]:
    """Every code cell of the notebook that does not compile (one problem per cell)."""
    cells = read_cells(nb_path)
    out = []
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        src = _source(cell)
        try:
            compile(_as_python(src), f"<cell {i + 1}>", "exec",
                    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        except (SyntaxError, ValueError) as e:     # ValueError: a null byte in the source
            line = getattr(e, "lineno", None)
            lines = src.split("\n")
            text = lines[line - 1] if line and 0 < line <= len(lines) else getattr(e, "text", None)
            out.append(CodeProblem(Path(nb_path), i + 1, len(cells), cell.get("id"), line,
                                   type(e).__name__, getattr(e, "msg", None) or str(e), text))
    return out


# --------------------------------------------------------------------------------------------
# Import check of a freshly exported package
# --------------------------------------------------------------------------------------------

_IMPORT_CHILD = r"""
import importlib, json, os, sys, traceback
try:
    from pytest_plugin import purge_editable_finders
    purge_editable_finders(os.environ.get("TITO_LIB_NAME", "tinytorch"))
except ImportError:
    pass
lib = os.path.realpath(os.environ["TITO_CHECK_LIB"])
errs = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.realpath(f.filename).startswith(lib + os.sep)]
        if isinstance(e, SyntaxError) and e.filename and \
                os.path.realpath(e.filename).startswith(lib + os.sep):
            where = (e.filename, e.lineno)
        else:
            where = (frames[-1].filename, frames[-1].lineno) if frames else (None, None)
        errs[name] = {"kind": type(e).__name__, "message": str(e),
                      "file": where[0], "line": where[1]}
print("@@TITO-IMPORT@@" + json.dumps(errs))
"""


def run_import_check(lib_path: Path, modules: list[str], timeout: float = 300) -> dict:
    """Import each of ``modules`` from the package at ``lib_path`` alone (``python -P -s``,
    its parent first on the path): ``{module: {"kind", "message", "file", "line"}}``."""
    lib_path = Path(lib_path).resolve()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update({"PYTHONPATH": os.pathsep.join([str(lib_path.parent), str(Path(__file__).parent)]),
                "TITO_CHECK_LIB": str(lib_path), "TITO_LIB_NAME": lib_path.name,
                "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"})
    try:
        r = subprocess.run([sys.executable, "-P", "-s", "-c", _IMPORT_CHILD, *modules], env=env,
                           cwd=lib_path.parent, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"(all)": {"kind": "Timeout", "message": f"importing the package took more than "
                                                        f"{timeout:g} s", "file": None, "line": None}}
    for ln in r.stdout.splitlines():
        if ln.startswith("@@TITO-IMPORT@@"):
            return json.loads(ln[len("@@TITO-IMPORT@@"):])
    return {"(all)": {"kind": "Crash", "message": f"the import check crashed (exit "
                                                  f"{r.returncode}): {r.stderr[-2000:]}",
                      "file": None, "line": None}}


def locate_in_notebook(py_file: Path, lineno: int) -> tuple[Path, str, int | None] | None:
    """``(notebook, cell id, line in cell)`` of line ``lineno`` of an nbdev-exported file, found
    from the ``# %% <notebook> #<cell id>`` marker above it (None when there is none)."""
    try:
        lines = Path(py_file).read_text(encoding="utf-8").split("\n")
    except OSError:
        return None
    for k in range(min(lineno, len(lines)) - 1, -1, -1):
        m = _MARKER_RE.match(lines[k])
        if not m:
            continue
        nb = (Path(py_file).parent / m.group("nb")).resolve()
        exported = lines[k + 1:lineno]         # the cell's exported lines up to the error
        return nb, m.group("cid"), _cell_line(nb, m.group("cid"), exported)
    return None


def _cell_line(nb: Path, cell_id: str, exported: list[str]) -> int | None:
    """The 1-based line of the cell whose text is ``exported[-1]``: nbdev drops the cell's
    ``#|`` directive lines, so count the cell's other lines."""
    cell = _find_cell(nb, cell_id)
    if cell is None or not exported:
        return None
    src = _source(cell[1]).split("\n")
    kept = [i for i, ln in enumerate(src) if not _DIRECTIVE_RE.match(ln)]
    idx = len(exported) - 1
    if idx < len(kept) and _same_line(src[kept[idx]], exported[-1]):
        return kept[idx] + 1
    hits = [i for i, ln in enumerate(src) if _same_line(ln, exported[-1])]
    return hits[0] + 1 if len(hits) == 1 else None


def _same_line(cell_line: str, exported_line: str) -> bool:
    """Equal, or the same import that nbdev rewrote (``from tinytorch.core.x import y`` is
    exported as ``from .x import y``)."""
    a, b = cell_line.rstrip(), exported_line.rstrip()
    if a == b:
        return True
    ma, mb = re.match(r"^(\s*)from\s+\S+\s+(import\s.*)$", a), \
        re.match(r"^(\s*)from\s+\.\S*\s+(import\s.*)$", b)
    return bool(ma and mb and ma.groups() == mb.groups())


def _find_cell(nb: Path, cell_id: str):
    try:
        cells = read_cells(nb)
    except (TitoError, OSError):
        return None
    for i, c in enumerate(cells):
        if c.get("id") == cell_id:
            return i, c, len(cells)
    return None


def import_problems(lib_path: Path, modules: list[str], nb_of=lambda p: p,
                    timeout: float = 300) -> list[CodeProblem]:
    """Import ``modules`` from the package at ``lib_path``; one :class:`CodeProblem` per
    failing module, placed in its notebook cell when the error is in exported code.
    ``nb_of`` maps a notebook path found in the package (e.g. a temporary copy) to the one
    to report (the student's own)."""
    out, seen = [], set()
    for module, err in run_import_check(lib_path, modules, timeout).items():
        key = (err.get("file"), err.get("line"), err["kind"], err["message"])
        if key in seen:               # a module that imports the broken one: same error
            continue
        seen.add(key)
        loc = locate_in_notebook(Path(err["file"]), err["line"]) if err.get("file") else None
        if loc is None:
            out.append(CodeProblem(Path(err.get("file") or lib_path), None, None, None,
                                   err.get("line"), err["kind"], err["message"],
                                   module=module))
            continue
        nb, cid, line = loc
        found = _find_cell(nb, cid)
        text = None
        if found and line:
            text = _source(found[1]).split("\n")[line - 1]
        out.append(CodeProblem(Path(nb_of(nb)), found[0] + 1 if found else None,
                               found[2] if found else None, cid, line, err["kind"],
                               err["message"], text, module=module))
    return out
