"""``tito module check [NN ...] | --all``: the student's whole-course check (``bash scripts/check.sh``).

It runs what a student copy can run, with no git and no PyTorch:

1. every notebook's code compiles and its fresh export imports (a typo is named by notebook,
   cell and line), and the package is compared with the notebooks (``stale``: export again);
2. every package module imports;
3. each module's checkpoint and progressive tests (the ones ``tito module complete NN`` runs)
   in one pytest process against the package.

A test that fails because an exercise stub raised ``NotImplementedError("Exercise: implement
this (...)")`` is *to do*, not broken: an untouched release reports every exercise still to do
and exits 0. Exit 1 when anything else is wrong: a notebook that does not compile or export, a
package module that does not import, a test failing on its own assertion (a wrong answer), a
test file that cannot be loaded, a timeout.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .release import STUB_PREFIX, parse_stub_message


def exercises_left(nb_paths) -> list[str]:
    """``module NN, Name`` of every stub line still in the notebooks (what is left to write)."""
    found = []
    pat = re.compile(re.escape(STUB_PREFIX) + r" \(([^)]*)\)")
    for nb in nb_paths:
        if nb.is_file():
            found.extend(pat.findall(nb.read_text(encoding="utf-8")))
    return found


def module_test_files(mod) -> list[Path]:
    """The module's checkpoint and progressive tests, those that exist."""
    return [p for p in (mod.checkpoint, mod.tests_dir / "test_progressive_integration.py")
            if p.is_file()]


def split_runnable(paths):
    """(runnable here, {path: packages this environment lacks}) for the test files."""
    from .studentenv import unavailable_imports
    ok, skipped = [], {}
    for p in paths:
        lacking = unavailable_imports(p)
        if lacking:
            skipped[p] = lacking
        else:
            ok.append(p)
    return ok, skipped


def run_check(ctx, mods, timeout: float = 1800) -> int:
    from .checkrun import run_pytest, short_message
    from .exporter import check_sync
    from .release import check_imports

    root, settings = ctx.root, ctx.settings
    lib = settings.lib_path
    broken: list[str] = []
    notes: list[str] = []

    def rel(p):
        try:
            return str(Path(p).resolve().relative_to(root))
        except ValueError:
            return str(p)

    print(f"checking the course in {root} (package {rel(lib)}/)")
    # 1. notebooks: compile, export, import; the package against them
    report = check_sync(root, lib, settings.nbs_path, settings.lib_name, check_imports=True)
    for nb, err in report.notebook_errors.items():
        broken.append(f"{rel(nb)} cannot be exported:\n      " + err.replace("\n", "\n      "))
    stale = sorted({rel(p) for p in report.differing + report.missing})
    if stale:
        notes.append("not exported since the notebook changed (tito module complete NN exports "
                     "it): " + ", ".join(stale))
    # 2. every package module imports
    present = [x for m in ctx.manifest
               for x, f in zip(m.exports, m.export_files(lib, settings.lib_name)) if f.is_file()]
    for name, err in (check_imports(lib, present) if present else {}).items():
        broken.append(f"package module {name} does not import: {err}")
    # 3. the tests
    files = [p for m in mods for p in module_test_files(m)]
    env_ck = root / "tests" / "checkpoints" / "checkpoint_00_environment.py"
    if env_ck.is_file():
        files.insert(0, env_ck)
    files, skipped = split_runnable(files)
    for p, lacking in skipped.items():
        notes.append(f"not run here: {rel(p)} needs {', '.join(lacking)} (the repository's "
                     "test oracle, not part of the student environment)")
    todo: dict[str, int] = {}
    per_file: dict[str, list[int]] = {}
    if files:
        print("running: " + ", ".join(rel(p) for p in files), flush=True)
        run = run_pytest(files, lib, cwd=root, timeout=timeout,
                         extra_args=["-q", "--no-header", "-rN", "--tb=native", "-p",
                                     "no:cacheprovider"])
        if run.timed_out:
            broken.append(f"the tests did not finish within {timeout:g} s")
        if run.foreign:
            broken.append("tinytorch modules were imported from outside the package: "
                          + ", ".join(run.foreign))
        if not run.has_results and not run.timed_out:
            broken.append(f"pytest did not run (exit {run.exit_code}): "
                          + "\n".join(run.output.strip().splitlines()[-10:]))
        for t in run.tests + [{**e, "outcome": "error", "name": e.get("nodeid") or "collection"}
                              for e in run.collect_errors]:
            f = (t.get("nodeid") or "").split("::", 1)[0]
            counts = per_file.setdefault(f, [0, 0])
            counts[1] += 1
            if t["outcome"] == "passed":
                counts[0] += 1
                continue
            where = parse_stub_message(t.get("message") or "")
            if where:
                todo[where] = todo.get(where, 0) + 1
            elif t["outcome"] != "skipped":
                msg = " / ".join(short_message(t.get("message") or "", 2)) or t["outcome"]
                broken.append(f"{t.get('nodeid') or t['name']}: {msg}")
    # report
    print()
    for f, (ok, n) in per_file.items():
        print(f"  {f}: {ok}/{n} passed")
    left = exercises_left([nb for m in mods for nb in m.notebooks])
    print()
    if left:
        by_module: dict[str, list[str]] = {}
        for ex in left:
            mod, _, name = ex.partition(", ")
            by_module.setdefault(mod, []).append(name)
        print(f"{len(left)} exercise(s) to do in {len(by_module)} module(s):")
        for mod, names in by_module.items():
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6
                                             else "")
            print(f"  {mod}: {shown}")
        waiting = sum(todo.values())
        print(f"  ({waiting} test(s) wait for them: they reach an exercise not written yet)")
    else:
        print("no exercise left to do in the notebooks")
    for n in notes:
        print(f"note: {n}")
    if broken:
        print(f"\n{len(broken)} problem(s) that are not exercises still to do:", file=sys.stderr)
        for b in broken:
            print(f"  - {b}", file=sys.stderr)
        return 1
    print("\ncheck passed: nothing is broken"
          + (f"; {len(left)} exercise(s) still to do (open the first module's notebook, "
             "fill them in, then `tito module complete NN`)" if left else "; every test passes"))
    return 0
