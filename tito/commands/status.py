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
blocks (what students write), per module, for modules 01-13 and overall (see tito/authorship.py).
A notebook whose code does not compile, or whose fresh export does not import, is an
``export error`` row with one note naming the notebook, the cell and the line.
Exits 0, or 1 when a notebook has such an error (2 if the manifest itself is broken).
"""

from __future__ import annotations

import argparse


def register(sub):
    p = sub.add_parser("status", help="show every module's notebook, export and test state",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib-path", metavar="DIR",
                   help="package directory to compare (default: lib_path of settings.ini)")
    p.add_argument("--authorship", action="store_true",
                   help="print the share of exported lines inside solution blocks, per module")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    if getattr(args, "authorship", False):
        from ..authorship import course_authorship, format_table
        print("exported lines inside solution blocks (what students write), counted in the notebooks:")
        print(format_table(course_authorship(ctx.manifest)))
        return 0
    from pathlib import Path
    from ..exporter import check_sync
    from ..results import describe, load_results

    manifest, settings, root = ctx.manifest, ctx.settings, ctx.root
    lib_path = Path(args.lib_path).resolve() if args.lib_path else settings.lib_path
    report = check_sync(root, lib_path, settings.nbs_path, settings.lib_name, check_imports=True)
    results = load_results(root)

    def rel(p):
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    rows, notes = [], []
    missing_ids = {p.resolve() for p in report.missing_ids}
    for m in manifest:
        # a module is the set of its notebooks: in sync only when every one exists and exports
        # in sync
        nbs = [nb.resolve() for nb in m.notebooks]
        present = [nb for nb in nbs if nb.is_file()]
        absent = [nb for nb in nbs if not nb.is_file()]
        targets = m.export_files(lib_path, settings.lib_name)
        if not present:
            has_nb = "no"
        elif absent:
            has_nb = f"{len(present)}/{len(nbs)}"
        else:
            has_nb = "yes"
        errors = [nb for nb in present if nb in report.notebook_errors]
        if not present:
            exported = "no notebook" + (" (files present)" if all(t.exists() for t in targets)
                                        else "")
            if len(nbs) > 1:
                notes.append(f"{m.folder}: no notebook yet: " + ", ".join(rel(nb) for nb in nbs))
        elif errors:
            exported = "export error"
            for nb in errors:
                notes.append(f"{m.folder}: exporting {nb.name} fails (fix it, then "
                             f"tito export {m.nn}):\n      "
                             + report.notebook_errors[nb].replace("\n", "\n      "))
        else:
            written = {f for nb in present for f in report.notebook_files.get(nb, [])}
            lacking = [x for x, t in zip(m.exports, targets) if t not in written]
            missing_files = [t for t in targets if not t.exists()]
            stale = [t for t in targets if t in report.differing]
            source, verb = ("its notebooks", "do") if len(nbs) > 1 else ("the notebook", "does")
            if absent:
                exported = "incomplete"
                notes.append(f"{m.folder}: notebook(s) missing: "
                             + ", ".join(rel(nb) for nb in absent)
                             + (f" (so {', '.join(lacking)} is not exported)" if lacking else ""))
            elif lacking:
                exported = "incomplete"
                notes.append(f"{m.folder}: {source} {verb} not export {', '.join(lacking)} "
                             "(listed in the manifest)")
            elif missing_files:
                exported = "missing"
                notes.append(f"{m.folder}: not exported yet: "
                             + ", ".join(rel(t) for t in missing_files)
                             + f" (run: tito export {m.nn})")
            elif stale:
                exported = "stale"
                notes.append(f"{m.folder}: {', '.join(rel(t) for t in stale)} differs from "
                             f"{source} (run: tito export {m.nn})")
            else:
                exported = "in sync"
            for nb in present:
                if nb in missing_ids:
                    notes.append(f"{m.folder}: {nb.name} has cells without ids, so every export "
                                 f"differs (run: tito export {m.nn}, which cleans it first)")
        entry = results.get(m.folder)
        if entry:
            tests = describe(entry)
        elif not m.test_paths():
            tests = "no tests yet"
        else:
            tests = "not run"
        rows.append((m.nn, m.folder, has_nb, exported, tests))

    header = ("#", "module", "notebook", "exported", "tests")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"project {root}  (package {rel(lib_path)}/, notebooks {rel(settings.nbs_path)}/)")
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r))

    n_nb = sum(r[2] == "yes" for r in rows)
    n_sync = sum(r[3] == "in sync" for r in rows)
    n_pass = sum(r[4].startswith("passed") for r in rows)
    print(f"\n{len(rows)} modules: {n_nb} notebooks, {n_sync} exported in sync, "
          f"{n_pass} passing tests")
    pkg_files = {t for m in manifest for t in m.export_files(lib_path, settings.lib_name)}
    other = [p for p in report.differing + report.missing if p not in pkg_files]
    if other:
        notes.append("other generated files differ from a fresh export: "
                     + ", ".join(rel(p) for p in other) + " (run: tito export --all)")
    for n in notes:
        print(f"  - {n}")
    if report.notebook_errors:
        import sys
        print(f"tito status: {len(report.notebook_errors)} notebook(s) cannot be exported: "
              "see the notes above", file=sys.stderr)
        return 1
    return 0
