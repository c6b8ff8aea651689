"""``tito release OUT [--force] [--check]``: write the student copy of the course into OUT.

The solution blocks (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) of every notebook under
modules/ (each notebook of a module that has several, too) become a stub
``raise NotImplementedError("Exercise: implement this (module NN, Class.method)")`` indented like
the block; everything else is kept (code-cell outputs are cleared). OUT gets modules/ (stripped
notebooks and the manifest), a tinytorch/ package exported from the *stripped* notebooks (the
reference package is never copied), tests/ (without the instructor-only tests/release,
tests/grading, tests/tito, tests/jupyter and tests/book, and without any test file that imports
the repository's test oracle: torch, scipy, transformers...), tito/, scripts/ (without the
repository's scripts/test.sh: the student copy's test command is scripts/check.sh), datasets/,
milestones/, benchmarks/, settings.ini, pyproject.toml, requirements-student.lock (its
environment: no PyTorch) and a student README.md (two commands, the loop per module, tito
status; nothing instructor-only). No solution marker may be left anywhere in OUT.

OUT must be empty or new unless ``--force`` (which replaces what a release writes and leaves
other files alone). Unbalanced or nested markers are an error naming the notebook and cell.
After writing, every package module is imported once (from OUT, python -P) to prove the release
imports; ``--check`` also runs each released notebook top to bottom and requires that it stops at
its first exercise stub (or finishes, when it has none) and at no other error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from . import add_command


def register(sub):
    p = add_command(sub, "release", "write the student copy (solutions replaced by stubs)", __doc__)
    p.add_argument("out", metavar="OUT", help="directory to write the student copy into")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty OUT (replacing a previous release there)")
    p.add_argument("--check", action="store_true",
                   help="also run every released notebook until its first exercise stub")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    from ..release import make_release

    out = Path(args.out).resolve()
    report = make_release(ctx.root, out, ctx.manifest, force=args.force)
    _print_report(report, ctx.manifest, out)
    problems, lib = _check_released_imports(out)
    if args.check:
        problems += _run_released_notebooks(report, lib, out)
    if problems:
        print(f"tito release: {problems} problem(s) in the release at {out}", file=sys.stderr)
        return 1
    print(f"student copy ready: {out}")
    return 0


def _print_report(report, manifest, out: Path) -> None:
    "What was released: the stubs per notebook, what was left out and why."
    total = 0
    print(f"released {len(report.notebooks)} notebook(s) into {out}")
    for nb_path, info in sorted(report.notebooks.items()):
        total += info.n_blocks
        mod = manifest.module_of_notebook(nb_path)
        label = mod.notebook_label(nb_path.stem) if mod else nb_path.stem
        names = ", ".join(info.exercises()) or "no exercises"
        print(f"  {label}: {info.n_blocks} exercise stub(s): {names}")
    print(f"  {total} solution block(s) replaced; package exported from the stripped notebooks: "
          f"{len(report.package_files)} file(s) in {out / manifest.settings.lib_name}")
    missing_nb = [nb for m in manifest for nb in m.notebooks if not nb.is_file()]
    if missing_nb:
        print(f"  note: {len(missing_nb)} notebook(s) of the manifest's modules not written yet "
              "(not in the release): " + ", ".join(nb.name for nb in missing_nb))
    if report.not_released:
        print("  note: reference package files that no notebook exports (not in the release): "
              + ", ".join(report.not_released))
    if report.oracle_tests:
        print(f"  not shipped: {len(report.oracle_tests)} test file(s) that need the repository's "
              "test oracle: " + ", ".join(f"{f} ({', '.join(n)})"
                                          for f, n in sorted(report.oracle_tests.items())))
    if report.skipped:
        print("  note: not in the project, so not in the release: " + ", ".join(report.skipped))


def _check_released_imports(out: Path) -> tuple:
    "(number of released package modules that do not import, the released package's path)."
    from ..manifest import load_manifest
    from ..release import check_imports
    rel_manifest = load_manifest(out)
    lib = rel_manifest.settings.lib_path
    # every package module the release has (a module's notebooks not written yet export nothing)
    exported = [x for m in rel_manifest
                for x, f in zip(m.exports, m.export_files(lib, rel_manifest.settings.lib_name))
                if f.is_file()]
    errors = check_imports(lib, exported) if exported else {}
    for name, err in errors.items():
        print(f"tito release: error: released package module {name} does not import: {err}",
              file=sys.stderr)
    if not errors:
        print(f"  import check: all {len(exported)} released package module(s) import")
    return len(errors), lib


def _run_released_notebooks(report, lib: Path, out: Path) -> int:
    "Run every released notebook: each must stop at its first exercise stub (or finish, without one)."
    from ..nbrun import run_notebook
    problems = 0
    for nb_path in sorted(report.notebooks):
        res = run_notebook(nb_path, lib)
        rel = nb_path.relative_to(out)
        if res["status"] == "stub":
            print(f"  run {rel}: stops at its first exercise ({res['exercise']}) in cell "
                  f"{res['cell']}, after {res['cells_run']} cell(s)")
        elif res["status"] == "finished" and not report.notebooks[nb_path].n_blocks:
            print(f"  run {rel}: runs to the end (no exercises)")
        else:
            problems += 1
            where = f" in cell {res.get('cell')}" if res.get("cell") is not None else ""
            print(f"tito release: error: {rel} does not stop at an exercise stub: "
                  f"{res['status']}{where}: {res.get('ename', '')}: {res.get('evalue', '')}",
                  file=sys.stderr)
    return problems
