"""``tito module check [NN ...] | --all``: the student's whole-course check (``bash scripts/check.sh``).

It runs what a student copy can run, with no git and no PyTorch:

1. every notebook's code compiles and its fresh export imports (a typo is named by notebook,
   cell and line), and the package is compared with the notebooks (``stale``: export again);
2. every package module imports;
3. each module's tests and checkpoint (what ``tito module complete NN`` runs, minus tests that
   need the repository's oracle when this environment lacks it) in one pytest process against
   the package.

A test that fails because an exercise stub raised ``NotImplementedError("Exercise: implement
this (...)")`` is *to do*, not broken; so is any failure of a test of a module that, or one
of whose prerequisites, still has a stub in the package (it cannot be judged before those
exercises are written). An untouched release reports every exercise still to do and exits 0. Exit 1 when anything else is wrong: a notebook that does not compile or export, a
package module that does not import, a test failing on its own assertion (a wrong answer), a
test file that cannot be loaded, a timeout.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
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


def unfinished_modules(manifest, lib: Path, lib_name: str) -> set[int]:
    """Numbers of the modules whose exported files still hold an exercise stub."""
    out = set()
    for m in manifest:
        for f in m.export_files(lib, lib_name):
            if f.is_file() and STUB_PREFIX in f.read_text(encoding="utf-8"):
                out.add(m.number)
    return out


def builds_on(manifest, number: int) -> set[int]:
    """The module and every module it builds on (its manifest prerequisites, transitively)."""
    seen, todo = set(), [number]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            todo.extend(manifest.get(n).prerequisites)
        except Exception:          # noqa: BLE001 - a number not in the manifest: itself only
            pass
    return seen


def module_of_test(nodeid: str) -> int | None:
    """``tests/NN_name/...`` or ``tests/checkpoints/checkpoint_NN_name.py`` -> NN."""
    m = re.match(r"tests/(?:checkpoints/checkpoint_)?(\d{2})_", nodeid or "")
    return int(m.group(1)) if m else None


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


@dataclass
class _Findings:
    """What the check found: problems that are not exercises (``broken``), notes, and per test file
    ``[passed, run]``; ``todo``: tests waiting per exercise; ``blocked``: failures per module that
    builds on an unfinished one."""
    root: Path
    broken: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    todo: dict = field(default_factory=dict)
    blocked: dict = field(default_factory=dict)
    per_file: dict = field(default_factory=dict)

    def rel(self, p) -> str:
        try:
            return str(Path(p).resolve().relative_to(self.root))
        except ValueError:
            return str(p)


def run_check(ctx, mods, timeout: float = 1800) -> int:
    found = _Findings(ctx.root)
    print(f"checking the course in {ctx.root} (package {found.rel(ctx.settings.lib_path)}/)")
    _check_package(ctx, found)
    files = _test_files(mods, found)
    if files:
        _run_tests(ctx, files, timeout, found)
    return _report(mods, found)


def _check_package(ctx, found: _Findings) -> None:
    "1. notebooks compile, export and import, the package against them; 2. every package module imports."
    from .exporter import check_sync
    from .release import check_imports
    root, settings = ctx.root, ctx.settings
    lib = settings.lib_path
    report = check_sync(root, lib, settings.nbs_path, settings.lib_name, check_imports=True)
    for nb, err in report.notebook_errors.items():
        found.broken.append(f"{found.rel(nb)} cannot be exported:\n      " + err.replace("\n", "\n      "))
    stale = sorted({found.rel(p) for p in report.differing + report.missing})
    if stale:
        found.notes.append("not exported since the notebook changed (tito module complete NN exports "
                           "it): " + ", ".join(stale))
    present = [x for m in ctx.manifest
               for x, f in zip(m.exports, m.export_files(lib, settings.lib_name)) if f.is_file()]
    for name, err in (check_imports(lib, present) if present else {}).items():
        found.broken.append(f"package module {name} does not import: {err}")


def _test_files(mods, found: _Findings) -> list:
    "3. what module complete runs for `mods` (plus the environment checkpoint), minus oracle tests."
    from .testing import module_test_paths
    skipped: dict = {}
    files = [p for m in mods for p in module_test_paths(m, skipped)]
    env_ck = found.root / "tests" / "checkpoints" / "checkpoint_00_environment.py"
    if env_ck.is_file():
        files.insert(0, env_ck)
    for p, lacking in skipped.items():
        found.notes.append(f"not run here: {found.rel(p)} needs {', '.join(lacking)} (the repository's "
                           "test oracle, not part of the student environment)")
    return files


def _run_tests(ctx, files: list, timeout: float, found: _Findings) -> None:
    "Run the test files in one pytest process; sort every outcome into passed, to do, waiting or broken."
    from .checkrun import run_pytest
    settings = ctx.settings
    unfinished = unfinished_modules(ctx.manifest, settings.lib_path, settings.lib_name)
    print("running: " + ", ".join(found.rel(p) for p in files), flush=True)
    run = run_pytest(files, settings.lib_path, cwd=ctx.root, timeout=timeout,
                     extra_args=["-q", "--no-header", "-rN", "--tb=native", "-p",
                                 "no:cacheprovider", "--continue-on-collection-errors"])
    _run_problems(run, timeout, found)
    for t in run.tests + [{**e, "outcome": "error", "name": e.get("nodeid") or "collection"}
                          for e in run.collect_errors]:
        _sort_outcome(ctx.manifest, t, unfinished, found)


def _run_problems(run, timeout: float, found: _Findings) -> None:
    if run.timed_out:
        found.broken.append(f"the tests did not finish within {timeout:g} s")
    if run.foreign:
        found.broken.append("tinytorch modules were imported from outside the package: "
                            + ", ".join(run.foreign))
    if not run.has_results and not run.timed_out:
        found.broken.append(f"pytest did not run (exit {run.exit_code}): "
                            + "\n".join(run.output.strip().splitlines()[-10:]))
    elif not run.tests and not run.timed_out:
        found.broken.append(f"no test ran (pytest exit {run.exit_code}): "
                            + "\n".join(run.output.strip().splitlines()[-10:]))


def _sort_outcome(manifest, t: dict, unfinished: set, found: _Findings) -> None:
    from .checkrun import short_message
    f = (t.get("nodeid") or "").split("::", 1)[0]
    counts = found.per_file.setdefault(f, [0, 0])
    counts[1] += 1
    if t["outcome"] == "passed":
        counts[0] += 1
        return
    where = parse_stub_message(t.get("message") or "")
    nn = module_of_test(t.get("nodeid") or "")
    if where:
        found.todo[where] = found.todo.get(where, 0) + 1
    elif t["outcome"] == "skipped":
        return
    elif nn is not None and builds_on(manifest, nn) & unfinished:
        # a test of a module that (or whose prerequisites) still has exercises to do
        # cannot be judged yet: it waits, like the ones that reach a stub
        found.blocked[nn] = found.blocked.get(nn, 0) + 1
    else:
        msg = " / ".join(short_message(t.get("message") or "", 2)) or t["outcome"]
        found.broken.append(f"{t.get('nodeid') or t['name']}: {msg}")


def _report(mods, found: _Findings) -> int:
    print()
    for f, (ok, n) in found.per_file.items():
        print(f"  {f}: {ok}/{n} passed")
    left = exercises_left([nb for m in mods for nb in m.notebooks])
    print()
    if left:
        _print_exercises_left(left, found)
    else:
        print("no exercise left to do in the notebooks")
    for n in found.notes:
        print(f"note: {n}")
    if found.broken:
        print(f"\n{len(found.broken)} problem(s) that are not exercises still to do:", file=sys.stderr)
        for b in found.broken:
            print(f"  - {b}", file=sys.stderr)
        return 1
    print("\ncheck passed: nothing is broken"
          + (f"; {len(left)} exercise(s) still to do (open the first module's notebook, "
             "fill them in, then `tito module complete NN`)" if left else "; every test passes"))
    return 0


def _print_exercises_left(left: list, found: _Findings) -> None:
    by_module: dict[str, list[str]] = {}
    for ex in left:
        mod, _, name = ex.partition(", ")
        by_module.setdefault(mod, []).append(name)
    print(f"{len(left)} exercise(s) to do in {len(by_module)} module(s):")
    for mod, names in by_module.items():
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6
                                         else "")
        print(f"  {mod}: {shown}")
    waiting = sum(found.todo.values())
    blocked = found.blocked
    print(f"  ({waiting} test(s) wait for them: they reach an exercise not written yet"
          + (f"; {sum(blocked.values())} more fail in modules "
             f"{', '.join(f'{n:02d}' for n in sorted(blocked))}, which build on modules "
             "with exercises still to do" if blocked else "") + ")")
