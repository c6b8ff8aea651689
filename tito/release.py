"""Student releases: strip the solutions out of the notebooks and build a student copy.

What students write sits between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION``.
:func:`strip_source` replaces each such block (markers included) by one stub line, indented like
the block, that says which exercise it is::

    raise NotImplementedError("Exercise: implement this (module 03, LinearFunction.forward)")

In markdown cells a block becomes ``*Your answer here.*``. Markers must be balanced and not
nested: anything else raises :class:`MarkerError` naming the notebook and the cell.

:func:`make_release` writes a complete student copy of the course (stripped notebooks, a
``tinytorch`` package exported *from the stripped notebooks*, tests, tito, scripts, settings...).
The reference package is never copied: it contains the solutions.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
STUB_PREFIX = "Exercise: implement this"
MARKDOWN_STUB = "*Your answer here.*"

_BEGIN_RE = re.compile(r"^\s*###\s*BEGIN\s+SOLUTION\b")
_END_RE = re.compile(r"^\s*###\s*END\s+SOLUTION\b")
_STUB_RE = re.compile(re.escape(STUB_PREFIX) + r" \((?P<where>[^)]*)\)")

# What the release copies from the project (besides modules/ and the exported tinytorch/, and
# README.md, which is the student README of tito/student_readme.py, not the instructor's).
RELEASE_DIRS = ("tests", "tito", "scripts", "datasets", "milestones", "benchmarks")
RELEASE_FILES = ("settings.ini", "pyproject.toml", "requirements-student.lock", ".gitignore")
# Test folders not shipped: the instructor's (they need the solutions, git or the repository's
# tools), the book's (the book is not part of a student copy) and JupyterLab's server tests.
INSTRUCTOR_TESTS = ("release", "grading", "book", "tito", "jupyter")
# Scripts not shipped: scripts/test.sh is the repository's suite (git sync check, the oracle);
# a student copy's test command is scripts/check.sh.
INSTRUCTOR_SCRIPTS = ("test.sh",)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ipynb_checkpoints",
                                 ".hypothesis")


class MarkerError(TitoError):
    """Unbalanced or nested solution markers."""


def is_begin(line: str) -> bool:
    return bool(_BEGIN_RE.match(line))


def is_end(line: str) -> bool:
    return bool(_END_RE.match(line))


def stub_line(indent: str, where: str) -> str:
    return f'{indent}raise NotImplementedError("{STUB_PREFIX} ({where})")'


def parse_stub_message(message: str) -> str | None:
    """``"module 03, Linear.forward"`` from a stub's NotImplementedError message, else None."""
    m = _STUB_RE.search(message or "")
    return m.group("where") if m else None


@dataclass
class Block:
    """One solution block of a cell: line numbers (0-based, markers included) and its body."""
    begin: int
    end: int
    body: list[str]
    indent: str = ""
    name: str = ""          # the exercise, e.g. "LinearFunction.forward"


# --------------------------------------------------------------------------------------------
# Finding blocks and naming them
# --------------------------------------------------------------------------------------------

def find_blocks(lines: list[str], where: str) -> list[Block]:
    """The solution blocks among ``lines``; ``where`` names the cell in error messages."""
    blocks, open_at = [], None
    for i, ln in enumerate(lines):
        if is_begin(ln):
            if open_at is not None:
                raise MarkerError(f"{where}: nested '{BEGIN_MARKER}' on line {i + 1} (the block "
                                  f"opened on line {open_at + 1} is not closed)")
            open_at = i
        elif is_end(ln):
            if open_at is None:
                raise MarkerError(f"{where}: '{END_MARKER}' on line {i + 1} without a "
                                  f"'{BEGIN_MARKER}' before it")
            blocks.append(Block(open_at, i, lines[open_at + 1:i]))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}: '{BEGIN_MARKER}' on line {open_at + 1} is never closed "
                          f"by '{END_MARKER}'")
    return blocks


def _indent_of(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _python_lines(lines: list[str]) -> str:
    """The cell as Python for ``ast``: IPython magics / shell lines blanked (line numbers kept)."""
    out = []
    for ln in lines:
        s = ln.lstrip()
        out.append("" if s.startswith(("%", "!")) else ln)
    return "\n".join(out)


def _scope_by_ast(tree, lineno: int) -> list[str] | None:
    """Names of the classes/functions enclosing 1-based ``lineno``, outermost first."""
    path = []
    nodes = list(ast.iter_child_nodes(tree))
    while True:
        for node in nodes:
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and node.lineno <= lineno <= (node.end_lineno or node.lineno)):
                path.append(node.name)
                nodes = list(ast.iter_child_nodes(node))
                break
        else:
            return path


_DEF_RE = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+([A-Za-z_][A-Za-z0-9_]*)")


def _scope_by_indent(lines: list[str], idx: int, indent: str) -> list[str]:
    """Fallback when the cell does not parse: walk up to the defs with a smaller indent."""
    path, cur = [], len(indent)
    for ln in reversed(lines[:idx]):
        m = _DEF_RE.match(ln)
        if m and len(m.group(1)) < cur:
            path.append(m.group(2))
            cur = len(m.group(1))
            if cur == 0:
                break
    return list(reversed(path))


def _block_indent(lines: list[str], b: Block) -> str:
    """The block's indentation: its first non-blank body line's, else the BEGIN marker's."""
    for ln in b.body:
        if ln.strip():
            return _indent_of(ln)
    return _indent_of(lines[b.begin])


def name_blocks(lines: list[str], blocks: list[Block], cell_label: str) -> None:
    """Fill ``indent`` and ``name`` of each block (``Class.method`` or the cell's label)."""
    tree = None
    try:
        tree = ast.parse(_python_lines(lines))
    except SyntaxError:
        pass
    for b in blocks:
        b.indent = _block_indent(lines, b)
        body_line = next((b.begin + 1 + k for k, ln in enumerate(b.body) if ln.strip()), b.begin)
        scope = _scope_by_ast(tree, body_line + 1) if tree is not None else None
        if scope is None:
            scope = _scope_by_indent(lines, b.begin, b.indent)
        b.name = ".".join(scope) if scope else cell_label
    # two blocks in one function: "f, part 2"
    counts: dict[str, int] = {}
    for b in blocks:
        counts[b.name] = counts.get(b.name, 0) + 1
    seen: dict[str, int] = {}
    for b in blocks:
        if counts[b.name] > 1:
            seen[b.name] = seen.get(b.name, 0) + 1
            b.name = f"{b.name}, part {seen[b.name]}"


# --------------------------------------------------------------------------------------------
# Stripping
# --------------------------------------------------------------------------------------------

def strip_source(source: str, where: str, module_label: str, cell_label: str,
                 cell_type: str = "code") -> tuple[str, list[Block]]:
    """``source`` with every solution block replaced by its stub, and the blocks found.

    ``where`` names the cell in errors (notebook and cell); ``module_label`` (e.g. "module 03")
    goes into the stub message with the exercise name.
    """
    lines = source.split("\n")
    blocks = find_blocks(lines, where)
    if not blocks:
        return source, []
    if cell_type == "code":
        name_blocks(lines, blocks, cell_label)
    out, pos = [], 0
    for b in blocks:
        out.extend(lines[pos:b.begin])
        if cell_type == "code":
            out.append(stub_line(b.indent, f"{module_label}, {b.name}"))
        else:
            out.append(_indent_of(lines[b.begin]) + MARKDOWN_STUB)
        pos = b.end + 1
    out.extend(lines[pos:])
    stripped = "\n".join(out)
    if cell_type == "code":
        try:
            ast.parse(_python_lines(lines))
        except SyntaxError:
            pass                          # the reference cell itself does not parse: not ours
        else:
            try:
                ast.parse(_python_lines(stripped.split("\n")))
            except SyntaxError as e:
                raise MarkerError(f"{where}: the cell is not valid Python once its solution is "
                                  f"replaced by a stub ({e.msg}, line {e.lineno}): check the "
                                  "markers' placement") from None
    return stripped, blocks


def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _as_source_list(text: str) -> list[str]:
    """Jupyter's on-disk form: a list of lines, each ending with a newline except the last."""
    if not text:
        return []
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@dataclass
class StrippedNotebook:
    notebook: dict
    blocks: dict[int, list[Block]] = field(default_factory=dict)   # cell index -> its blocks

    @property
    def n_blocks(self) -> int:
        return sum(len(b) for b in self.blocks.values())

    def exercises(self) -> list[str]:
        return [b.name for i in sorted(self.blocks) for b in self.blocks[i]]


def cell_where(nb_label: str, index: int, cell: dict) -> str:
    cid = cell.get("id")
    return f"{nb_label}: cell {index}" + (f" (id {cid})" if cid else "")


def strip_notebook(nb: dict, nb_label: str, module_label: str,
                   clear_outputs: bool = True) -> StrippedNotebook:
    """A copy of notebook ``nb`` (a dict, nbformat 4) with every solution block stubbed out.
    Outputs and execution counts of code cells are cleared (they may show solution results)."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise TitoError(f"{nb_label}: not a notebook (no list of cells)")
    out = copy.deepcopy(nb)
    res = StrippedNotebook(out)
    for i, cell in enumerate(out["cells"]):
        ctype = cell.get("cell_type")
        if ctype not in ("code", "markdown"):
            continue
        src = _cell_source(cell)
        where = cell_where(nb_label, i, cell)
        new, blocks = strip_source(src, where, module_label, f"cell {i}", ctype)
        if blocks:
            res.blocks[i] = blocks
            cell["source"] = _as_source_list(new)
        if ctype == "code" and clear_outputs:
            cell["outputs"] = []
            cell["execution_count"] = None
    return res


def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TitoError(f"{path}: not a valid notebook (JSON error: {e})") from None


def write_notebook(nb: dict, path: Path) -> None:
    """Write like nbdev/Jupyter do: indent 1, sorted keys, non-ASCII kept, final newline."""
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    Path(path).write_text(text, encoding="utf-8")


def solution_blocks(nb: dict, nb_label: str = "notebook") -> dict[int, list[Block]]:
    """The solution blocks of every code or markdown cell (cell index -> blocks)."""
    found = {}
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") not in ("code", "markdown"):
            continue
        lines = _cell_source(cell).split("\n")
        blocks = find_blocks(lines, cell_where(nb_label, i, cell))
        if blocks:
            found[i] = blocks
    return found


# --------------------------------------------------------------------------------------------
# The student copy
# --------------------------------------------------------------------------------------------

@dataclass
class ReleaseReport:
    out: Path
    notebooks: dict[Path, StrippedNotebook] = field(default_factory=dict)   # released path -> info
    package_files: list[Path] = field(default_factory=list)
    not_released: list[str] = field(default_factory=list)   # reference package files no notebook writes
    skipped: list[str] = field(default_factory=list)        # project items absent
    oracle_tests: dict[str, list[str]] = field(default_factory=dict)   # test file -> oracle imports
    import_errors: dict[str, str] = field(default_factory=dict)


def _check_out_path(root: Path, out: Path) -> None:
    if out == root or out in root.parents:
        raise TitoError(f"refusing to release into {out}: it is (or contains) the project itself")
    for d in ("modules", "tinytorch", *RELEASE_DIRS):
        src = root / d
        if out == src or src in out.parents:
            raise TitoError(f"refusing to release into {out}: it is inside the project's {d}/")


def _managed_entries() -> list[str]:
    return ["modules", "tinytorch", *RELEASE_DIRS, *RELEASE_FILES, "README.md"]


def prepare_out(root: Path, out: Path, force: bool) -> None:
    _check_out_path(root, out)
    if out.exists() and not out.is_dir():
        raise TitoError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise TitoError(f"{out} is not empty: choose an empty or new directory, or pass "
                            "--force to replace the release in it")
        # --force: replace what a release writes; leave anything else alone
        for name in _managed_entries():
            p = out / name
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
    out.mkdir(parents=True, exist_ok=True)


def make_release(root: Path, out: Path, manifest, force: bool = False,
                 log=print) -> ReleaseReport:
    """Write the student copy of the project at ``root`` into ``out``."""
    from .student_readme import render as render_student_readme

    root, out = Path(root).resolve(), Path(out).resolve()
    settings = manifest.settings
    prepare_out(root, out, force)
    report = ReleaseReport(out)
    # 1. modules/: every file copied, notebooks stripped (markers checked before anything else)
    stripped = _strip_notebooks(root, settings.nbs_path, manifest)
    _copy_modules(settings.nbs_path, out, stripped, report)
    # 2. the rest of the course
    _copy_course(root, out, report)
    (out / "README.md").write_text(render_student_readme(manifest), encoding="utf-8")
    if not (out / "settings.ini").is_file():
        raise TitoError(f"{root / 'settings.ini'} is missing: the release cannot be exported")
    # 3. tinytorch/, exported from the *stripped* notebooks in `out`
    _export_release(root, out, settings, report)
    # 4. no solution marker may be left anywhere in the release
    _check_no_markers_left(out)
    return report


def _strip_notebooks(root: Path, nbs_src: Path, manifest) -> dict:
    """{path under modules/: StrippedNotebook} for every notebook under ``nbs_src`` (so every
    notebook of a module with several)."""
    stripped: dict[Path, StrippedNotebook] = {}
    nb_files = sorted(p for p in nbs_src.rglob("*.ipynb")
                      if not any(part.startswith(".") for part in p.relative_to(nbs_src).parts))
    for nb_path in nb_files:
        rel = nb_path.relative_to(nbs_src)
        mod = manifest.module_of_notebook(nb_path)
        module_label = f"module {mod.nn}" if mod else f"notebook {nb_path.stem}"
        nb = read_notebook(nb_path)
        stripped[rel] = strip_notebook(nb, str(nb_path.relative_to(root)
                                               if nb_path.is_relative_to(root) else nb_path),
                                       module_label)
    return stripped


def _copy_modules(nbs_src: Path, out: Path, stripped: dict, report: ReleaseReport) -> None:
    "Every file under modules/ into the release; notebooks stripped; markers elsewhere refused."
    for src in sorted(nbs_src.rglob("*")):
        rel = src.relative_to(nbs_src)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        dst = out / "modules" / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel in stripped:
            write_notebook(stripped[rel].notebook, dst)
            report.notebooks[dst] = stripped[rel]
            continue
        try:
            text = src.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            text = None
        if text is not None and any(is_begin(ln) or is_end(ln) for ln in text.splitlines()):
            raise MarkerError(f"{src}: solution markers in a file that is not a notebook: "
                              "a release would leak it (move it out of modules/)")
        shutil.copy2(src, dst)


def _copy_course(root: Path, out: Path, report: ReleaseReport) -> None:
    "RELEASE_DIRS and RELEASE_FILES into the release, minus instructor files and oracle tests."
    for d in RELEASE_DIRS:
        src = root / d
        if not src.is_dir():
            report.skipped.append(d + "/")
            continue
        shutil.copytree(src, out / d, ignore=_ignore_for(d, src, root, report), symlinks=False)
    for f in RELEASE_FILES:
        if (root / f).is_file():
            shutil.copy2(root / f, out / f)
        else:
            report.skipped.append(f)


def _ignore_for(d: str, src: Path, root: Path, report: ReleaseReport):
    "The copytree ignore function of course folder ``d``."
    from .studentenv import oracle_imports
    if d in ("milestones", "benchmarks"):
        return shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "results")
    if d == "scripts":
        return shutil.ignore_patterns("__pycache__", "*.pyc", *INSTRUCTOR_SCRIPTS)
    if d != "tests":
        return _IGNORE

    def ignore(path, names, _base=src):
        drop = set(_IGNORE(path, names))
        if Path(path).resolve() == _base.resolve():
            drop |= {n for n in names if n in INSTRUCTOR_TESTS}
        for n in names:             # tests that need the repository's oracle (torch...)
            f = Path(path) / n
            if n.endswith(".py") and n not in drop and f.is_file():
                needs = oracle_imports(f)
                if needs:
                    drop.add(n)
                    report.oracle_tests[str(f.relative_to(root))] = needs
        return drop
    return ignore


def _export_release(root: Path, out: Path, settings, report: ReleaseReport) -> None:
    "The release's package, exported from its stripped notebooks; what the reference has beyond it."
    from .exporter import export_notebooks, find_notebooks
    nbs_src = settings.nbs_path
    out_nbs = out / nbs_src.relative_to(root) if nbs_src.is_relative_to(root) else out / "modules"
    lib_out = out / settings.lib_path.relative_to(root) if settings.lib_path.is_relative_to(root) \
        else out / settings.lib_name
    notebooks = find_notebooks(out_nbs, out)
    if notebooks:
        export_notebooks(notebooks, lib_out, out, nbs_path=out_nbs, clean=False,
                         lib_name=settings.lib_name)
        report.package_files = sorted(p for p in lib_out.rglob("*.py")
                                      if "__pycache__" not in p.parts)
    ref_files = {p.relative_to(settings.lib_path) for p in settings.lib_path.rglob("*.py")
                 if "__pycache__" not in p.parts} if settings.lib_path.is_dir() else set()
    rel_out = {p.relative_to(lib_out) for p in report.package_files}
    report.not_released = sorted(str(p) for p in ref_files - rel_out)


def _check_no_markers_left(out: Path) -> None:
    for p in sorted(out.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 20_000_000:
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if any(is_begin(ln) or is_end(ln) for ln in text.splitlines()):
                raise MarkerError(f"{p}: solution markers left in the release (is a solution "
                                  "outside modules/?)")


def check_imports(lib_path: Path, modules: list[str], timeout: float = 300) -> dict[str, str]:
    """Import each of ``modules`` alone from the package at ``lib_path`` (python -P, its parent
    first on the path): {module: error} for those that fail."""
    code = (
        "import importlib, json, sys, traceback\n"
        "errs = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException as e:\n"
        "        errs[name] = f'{type(e).__name__}: {e}'\n"
        "print('@@TITO@@' + json.dumps(errs))\n")
    env = os.environ.copy()
    env["PYTHONPATH"] = str(Path(lib_path).resolve().parent)
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, "-P", "-s", "-c", code, *modules], env=env,
                       cwd=Path(lib_path).parent, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    for ln in r.stdout.splitlines():
        if ln.startswith("@@TITO@@"):
            return json.loads(ln[len("@@TITO@@"):])
    return {"(all)": f"the import check crashed (exit {r.returncode}): {r.stderr[-2000:]}"}
