"""How much of the package students write: the share of exported lines inside solution blocks.

Two counts of the exported code cells (cells with a ``#| export`` directive) of a module's notebooks:

* **lines**: every line that is not blank, not an nbdev directive (``#| ...``) and not a solution
  marker; docstrings and comments included.
* **code**: the lines that hold code, as ``cloc`` counts source lines: docstrings (a string standing
  alone as a statement) and comment-only lines are documentation, not code. Issue 12 asks every stub
  for a contract docstring; this count does not charge those docstrings to the given side.

A line is a *student* line when it sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``.
Counted on the notebooks (the source of truth), per module and overall; ``tito status --authorship``
prints both counts.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from .release import _cell_source, is_begin, is_end, read_notebook

_EXPORT_RE = re.compile(r"^\s*#\|\s*export\b")
_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENDMARKER}


@dataclass(frozen=True)
class Count:
    "Lines of one kind (all non-blank lines, or code lines): how many, and how many students write."
    total: int = 0
    student: int = 0

    def __add__(self, other: "Count") -> "Count":
        return Count(self.total + other.total, self.student + other.student)

    def __sub__(self, other: "Count") -> "Count":
        return Count(self.total - other.total, self.student - other.student)

    @property
    def share(self) -> float:
        return self.student / self.total if self.total else 0.0


@dataclass(frozen=True)
class CellCount:
    lines: Count = Count()
    code: Count = Count()
    blocks: int = 0

    def __add__(self, other: "CellCount") -> "CellCount":
        return CellCount(self.lines + other.lines, self.code + other.code, self.blocks + other.blocks)

    def __sub__(self, other: "CellCount") -> "CellCount":
        return CellCount(self.lines - other.lines, self.code - other.code, self.blocks - other.blocks)


@dataclass(frozen=True)
class Authorship:
    number: int
    folder: str
    count: CellCount
    kit: CellCount = CellCount()    # the part in the module's PyTorch-kit notebooks (manifest `kit`)

    @property
    def share(self) -> float:
        return self.count.lines.share

    @property
    def code_share(self) -> float:
        return self.count.code.share


def code_line_numbers(source: str) -> set[int] | None:
    """The 1-based numbers of the lines of ``source`` that hold code: a token other than a comment, and
    not inside a string that stands alone as a statement (a docstring). None when it does not parse."""
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError):
        return None
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, node.end_lineno + 1))
    lines = set()
    for tok in tokens:
        if tok.type not in _NOT_CODE:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return lines


def count_cell(source: str) -> CellCount:
    """The counts of one exported cell's source. A cell that does not parse counts every line that is
    not blank and not a comment as code."""
    code_lines = code_line_numbers(source)
    lines = code = Count()
    blocks, inside = 0, False
    for number, line in enumerate(source.split("\n"), 1):
        if is_begin(line):
            inside, blocks = True, blocks + 1
            continue
        if is_end(line):
            inside = False
            continue
        text = line.strip()
        if not text or text.startswith("#|"):
            continue
        one = Count(1, int(inside))
        lines += one
        is_code = number in code_lines if code_lines is not None else not text.startswith("#")
        code += one if is_code else Count()
    return CellCount(lines, code, blocks)


def is_exported(source: str) -> bool:
    return any(_EXPORT_RE.match(line) for line in source.split("\n"))


def count_notebook(path: Path) -> CellCount:
    total = CellCount()
    for cell in read_notebook(path).get("cells", []):
        if cell.get("cell_type") == "code":
            src = _cell_source(cell)
            if is_exported(src):
                total += count_cell(src)
    return total


def module_authorship(mod) -> Authorship:
    total = kit = CellCount()
    for nb in mod.notebooks:
        if nb.is_file():
            c = count_notebook(nb)
            total += c
            kit += c if nb.stem in mod.kit_names else CellCount()
    return Authorship(mod.number, mod.folder, total, kit)


def course_authorship(manifest) -> list[Authorship]:
    return [module_authorship(m) for m in manifest]


def summarize(rows: list[Authorship], numbers=None, label: str = "total") -> Authorship:
    """The total over ``rows`` (or over the modules whose number is in ``numbers``)."""
    picked = [r for r in rows if numbers is None or r.number in numbers]
    count = kit = CellCount()
    for r in picked:
        count, kit = count + r.count, kit + r.kit
    return Authorship(0, label, count, kit)


def without_kit(row: Authorship) -> Authorship:
    "`row` without its PyTorch-kit notebooks (their given plumbing and their exercises alike)."
    return Authorship(row.number, row.folder, row.count - row.kit)


HEADER = (f"{'#':<3} {'module':<20} {'lines':>6} {'student':>7} {'share':>6}   "
          f"{'code':>6} {'student':>7} {'share':>6} {'exercises':>9}")


def _row(prefix: str, name: str, c: CellCount) -> str:
    return (f"{prefix:<3} {name:<20} {c.lines.total:>6} {c.lines.student:>7} {c.lines.share:>6.1%}   "
            f"{c.code.total:>6} {c.code.student:>7} {c.code.share:>6.1%} {c.blocks:>9}")


def format_table(rows: list[Authorship]) -> str:
    lines = [HEADER]
    lines += [_row(f"{r.number:02d}", r.folder, r.count) for r in rows]
    course = summarize(rows, set(range(1, 14)))
    lines.append(_row("", "modules 01-13", course.count))
    lines.append(_row("", "all modules", summarize(rows).count))
    if course.kit.lines.total:
        lines.append(_row("", "01-13 without kit", without_kit(course).count))
        lines.append(f"    (kit: module 01's PyTorch-compatibility notebooks, manifest `kit`: "
                     f"{course.kit.lines.total} lines, {course.kit.lines.student} of them the student's)")
    return "\n".join(lines)


LEGEND = ("lines: exported lines that are not blank (docstrings and comments included); code: those that hold\n"
          "code, as cloc counts source lines (no docstring, no comment-only line); student: inside solution blocks")
