"""How much of the package students write: the share of exported lines inside solution blocks.

A line counts when it is in an exported code cell (a cell with a ``#| export`` directive) of one of a
module's notebooks, is not blank, and is neither an nbdev directive (``#| ...``) nor a solution marker.
It is a *student* line when it sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. Counted
on the notebooks (the source of truth), per module and overall; ``tito status --authorship`` prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .release import _cell_source, is_begin, is_end, read_notebook

_EXPORT_RE = re.compile(r"^\s*#\|\s*export\b")


@dataclass
class Authorship:
    number: int
    folder: str
    exported: int          # counted exported lines
    student: int           # of which inside solution blocks
    blocks: int            # number of solution blocks (exercises) in exported cells
    kit: int = 0           # of the exported lines, those in the module's given PyTorch-kit notebooks

    @property
    def share(self) -> float:
        return self.student / self.exported if self.exported else 0.0


def count_cell(source: str) -> tuple[int, int, int]:
    """(exported lines, student lines, blocks) of one exported cell's source."""
    total = student = blocks = 0
    inside = False
    for line in source.split("\n"):
        if is_begin(line):
            inside, blocks = True, blocks + 1
            continue
        if is_end(line):
            inside = False
            continue
        text = line.strip()
        if not text or text.startswith("#|"):
            continue
        total += 1
        student += inside
    return total, student, blocks


def is_exported(source: str) -> bool:
    return any(_EXPORT_RE.match(line) for line in source.split("\n"))


def count_notebook(path: Path) -> tuple[int, int, int]:
    nb = read_notebook(path)
    total = student = blocks = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = _cell_source(cell)
        if not is_exported(src):
            continue
        t, s, b = count_cell(src)
        total, student, blocks = total + t, student + s, blocks + b
    return total, student, blocks


def module_authorship(mod) -> Authorship:
    total = student = blocks = kit = 0
    for nb in mod.notebooks:
        if nb.is_file():
            t, s, b = count_notebook(nb)
            total, student, blocks = total + t, student + s, blocks + b
            kit += t if nb.stem in mod.kit_names else 0
    return Authorship(mod.number, mod.folder, total, student, blocks, kit)


def course_authorship(manifest) -> list[Authorship]:
    return [module_authorship(m) for m in manifest]


def summarize(rows: list[Authorship], numbers=None) -> Authorship:
    """The total over ``rows`` (or over the modules whose number is in ``numbers``)."""
    picked = [r for r in rows if numbers is None or r.number in numbers]
    return Authorship(0, "total", sum(r.exported for r in picked), sum(r.student for r in picked),
                      sum(r.blocks for r in picked), sum(r.kit for r in picked))


def without_kit(row: Authorship) -> Authorship:
    "`row` without the lines of given PyTorch-kit notebooks (issue 15: given code, not exercises)."
    return Authorship(row.number, row.folder, row.exported - row.kit, row.student, row.blocks)


def format_table(rows: list[Authorship]) -> str:
    lines = [f"{'#':<3} {'module':<20} {'exported':>8} {'student':>8} {'share':>6} {'exercises':>9}"]
    for r in rows:
        lines.append(f"{r.number:02d}  {r.folder:<20} {r.exported:>8} {r.student:>8} "
                     f"{r.share:>6.1%} {r.blocks:>9}")
    for label, nums in (("modules 01-13", set(range(1, 14))), ("all modules", None)):
        t = summarize(rows, nums)
        lines.append(f"    {label:<20} {t.exported:>8} {t.student:>8} {t.share:>6.1%} {t.blocks:>9}")
    kit = summarize(rows, set(range(1, 14)))
    if kit.kit:
        t = without_kit(kit)
        lines.append(f"    {'01-13 without kit':<20} {t.exported:>8} {t.student:>8} {t.share:>6.1%} {t.blocks:>9}")
        lines.append(f"    (kit: {kit.kit} given lines of PyTorch-compatibility notebooks, manifest `kit`)")
    return "\n".join(lines)
