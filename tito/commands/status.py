"""``tito status``: one line per manifest module: are its notebooks there, is the package in sync
with them, and the last recorded test result.

"exported" is checked by exporting every notebook into a temporary copy of the project and
comparing the generated text with the package on disk: ``in sync``, ``stale`` (the notebook
changed since the last export), ``missing`` (not exported yet), ``incomplete`` (a notebook of
the module, or an export the manifest lists, is missing), or ``no notebook``. A module with
several notebooks (``notebooks = [...]`` in the manifest) is in sync only when every one of them
exists and exports in sync; the notebook column then reads ``2/3`` when some are missing, and
the notes below the table name them.
``--authorship`` prints instead the share of each module's exported lines that sit inside solution
blocks (what students write), per module, for modules 01-13 and overall, counted over all non-blank
lines and over code lines only (see tito/authorship.py).
A notebook whose code does not compile, or whose fresh export does not import, is an
``export error`` row with one note naming the notebook, the cell and the line.
Exits 0, or 1 when a notebook has such an error (2 if the manifest itself is broken).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from . import add_command


def register(sub):
    p = add_command(sub, "status", "show every module's notebook, export and test state", __doc__)
    p.add_argument("--lib-path", metavar="DIR",
                   help="package directory to compare (default: lib_path of settings.ini)")
    p.add_argument("--authorship", action="store_true",
                   help="print the share of exported lines inside solution blocks, per module")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    if getattr(args, "authorship", False):
        from ..authorship import LEGEND, course_authorship, format_table
        print("exported lines inside solution blocks (what students write), counted in the notebooks:")
        print(LEGEND)
        print(format_table(course_authorship(ctx.manifest)))
        return 0
    from ..exporter import check_sync
    from ..results import load_results

    settings = ctx.settings
    lib_path = Path(args.lib_path).resolve() if args.lib_path else settings.lib_path
    report = check_sync(ctx.root, lib_path, settings.nbs_path, settings.lib_name, check_imports=True)
    view = _View(ctx.root, lib_path, settings.lib_name, report)
    results = load_results(ctx.root)
    rows = [(m.nn, m.folder, *view.notebook_and_export(m), _tests_state(m, results))
            for m in ctx.manifest]
    _print_table(rows, view, settings.nbs_path)
    pkg_files = {t for m in ctx.manifest for t in m.export_files(lib_path, settings.lib_name)}
    other = [p for p in report.differing + report.missing if p not in pkg_files]
    if other:
        view.notes.append("other generated files differ from a fresh export: "
                          + ", ".join(view.rel(p) for p in other) + " (run: tito export --all)")
    for n in view.notes:
        print(f"  - {n}")
    if report.notebook_errors:
        print(f"tito status: {len(report.notebook_errors)} notebook(s) cannot be exported: "
              "see the notes above", file=sys.stderr)
        return 1
    return 0


@dataclass
class _View:
    "The sync report read per module; `notes` collects what the table's cells cannot say."
    root: Path
    lib_path: Path
    lib_name: str
    report: object
    notes: list = field(default_factory=list)

    def rel(self, p) -> str:
        try:
            return str(Path(p).relative_to(self.root))
        except ValueError:
            return str(p)

    def notebook_and_export(self, m) -> tuple:
        """(notebook column, exported column) of module `m`: a module is the set of its notebooks,
        in sync only when every one exists and exports in sync."""
        nbs = [nb.resolve() for nb in m.notebooks]
        present = [nb for nb in nbs if nb.is_file()]
        absent = [nb for nb in nbs if not nb.is_file()]
        has_nb = "no" if not present else f"{len(present)}/{len(nbs)}" if absent else "yes"
        errors = [nb for nb in present if nb in self.report.notebook_errors]
        if not present:
            targets = m.export_files(self.lib_path, self.lib_name)
            if len(nbs) > 1:
                self.notes.append(f"{m.folder}: no notebook yet: " + ", ".join(self.rel(nb) for nb in nbs))
            return has_nb, "no notebook" + (" (files present)" if all(t.exists() for t in targets) else "")
        if errors:
            for nb in errors:
                self.notes.append(f"{m.folder}: exporting {nb.name} fails (fix it, then "
                                  f"tito export {m.nn}):\n      "
                                  + self.report.notebook_errors[nb].replace("\n", "\n      "))
            return has_nb, "export error"
        exported = self._export_state(m, nbs, present, absent)
        missing_ids = {p.resolve() for p in self.report.missing_ids}
        for nb in present:
            if nb in missing_ids:
                self.notes.append(f"{m.folder}: {nb.name} has cells without ids, so every export "
                                  f"differs (run: tito export {m.nn}, which cleans it first)")
        return has_nb, exported

    def _export_state(self, m, nbs: list, present: list, absent: list) -> str:
        "incomplete, missing, stale or in sync, for a module whose notebooks export without error."
        targets = m.export_files(self.lib_path, self.lib_name)
        written = {f for nb in present for f in self.report.notebook_files.get(nb, [])}
        lacking = [x for x, t in zip(m.exports, targets) if t not in written]
        missing_files = [t for t in targets if not t.exists()]
        stale = [t for t in targets if t in self.report.differing]
        source, verb = ("its notebooks", "do") if len(nbs) > 1 else ("the notebook", "does")
        if absent:
            self.notes.append(f"{m.folder}: notebook(s) missing: "
                              + ", ".join(self.rel(nb) for nb in absent)
                              + (f" (so {', '.join(lacking)} is not exported)" if lacking else ""))
            return "incomplete"
        if lacking:
            self.notes.append(f"{m.folder}: {source} {verb} not export {', '.join(lacking)} "
                              "(listed in the manifest)")
            return "incomplete"
        if missing_files:
            self.notes.append(f"{m.folder}: not exported yet: "
                              + ", ".join(self.rel(t) for t in missing_files)
                              + f" (run: tito export {m.nn})")
            return "missing"
        if stale:
            self.notes.append(f"{m.folder}: {', '.join(self.rel(t) for t in stale)} differs from "
                              f"{source} (run: tito export {m.nn})")
            return "stale"
        return "in sync"


def _tests_state(m, results: dict) -> str:
    from ..results import describe
    entry = results.get(m.folder)
    if entry:
        return describe(entry)
    return "no tests yet" if not m.test_paths() else "not run"


def _print_table(rows: list, view: _View, nbs_path: Path) -> None:
    header = ("#", "module", "notebook", "exported", "tests")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"project {view.root}  (package {view.rel(view.lib_path)}/, notebooks {view.rel(nbs_path)}/)")
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r))
    n_nb = sum(r[2] == "yes" for r in rows)
    n_sync = sum(r[3] == "in sync" for r in rows)
    n_pass = sum(r[4].startswith("passed") for r in rows)
    print(f"\n{len(rows)} modules: {n_nb} notebooks, {n_sync} exported in sync, "
          f"{n_pass} passing tests")
