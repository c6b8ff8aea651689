"""``tito grade SUBMISSIONS_DIR``: grade each student's own code with the checkpoints.

SUBMISSIONS_DIR holds one folder per student, each with the student's notebooks under
``modules/NN_name/NN_name.ipynb`` (``NN_name/NN_name.ipynb`` or any ``NN_name.ipynb`` inside
the folder also works; a module with several notebooks has each of them, e.g.
``modules/17_compression/17_compression_sparse.ipynb``, found the same way). For every
student: the notebooks are exported into an isolated, temporary package of their own, and each
graded module's checkpoint (``tests/checkpoints/checkpoint_NN_name.py``, copied next to it) runs
against that package in a separate sandboxed process with a time limit and a memory limit. The
reference package is never imported (a run that imports any other tinytorch scores 0).

A module scores its manifest points times the fraction of its checkpoint tests that pass, and 0
when its (main) notebook is missing or invalid, the checkpoint cannot be loaded (syntax or import
error), or the run times out, crashes or answers malformed data. Another notebook of the module that is missing or
invalid is replaced by its stripped release version (its exercises fail) and the module's
message says so. Broken and hostile submissions are graded, not fatal.

Writes OUT/gradebook.csv (student x module points), OUT/gradebook.json (every test's outcome and
message, the scoring rule, limits and isolation used) and OUT/gradebook.junit.xml, and prints a
summary table. Exit code 0 when grading ran (whatever the grades), 1 when the reference
checkout changed during grading, 2 for usage errors.

Trust boundary (see tito/grading.py): student code runs only in a sandboxed runner that answers
calls with plain data; the checkpoint's tests and the scoring run in a trusted judge that never
imports student code. Every run is a bubblewrap (bwrap) box with its own user, PID, mount and
network namespaces, cgroup limits and a private /tmp, and sees only Python and its own files.
Without bwrap, tito grade refuses (exit 2) unless --allow-weak-sandbox is given.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..errors import TitoError
from . import add_command


def register(sub):
    p = add_command(sub, "grade", "grade student submissions with the checkpoints", __doc__)
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR",
                   help="folder with one sub-folder per student")
    p.add_argument("--out", metavar="DIR", default="gradebook",
                   help="where to write the gradebook (default: ./gradebook)")
    p.add_argument("--modules", metavar="LIST",
                   help="modules to grade, e.g. 1,2,5 (default: every module with a checkpoint)")
    p.add_argument("--timeout", type=float, default=120, metavar="S",
                   help="wall-clock limit per module and student, in seconds (default 120)")
    p.add_argument("--memory-mb", type=int, default=2048, metavar="M",
                   help="address-space limit of each run, in MB (default 2048)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="runs at the same time (default: 2, or 1 on one CPU)")
    p.add_argument("--allow-weak-sandbox", action="store_true",
                   help="grade even where bwrap namespaces are unavailable, giving up hiding "
                        "solutions and other students from student code and the guarantee that "
                        "no submission can forge its score (written into the gradebook)")
    p.add_argument("--keep-temp", action="store_true",
                   help="keep the temporary workspace (students' packages and logs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_modules(spec: str | None, manifest):
    if not spec:
        mods = [m for m in manifest if m.checkpoint.is_file()]
        if not mods:
            raise TitoError("no module has a checkpoint (tests/checkpoints/) to grade with",
                            exit_code=2)
        return mods
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    if not parts:
        raise TitoError(f"--modules: no module numbers in {spec!r}", exit_code=2)
    mods = manifest.select(parts)
    lacking = [m.label for m in mods if not m.checkpoint.is_file()]
    if lacking:
        raise TitoError("--modules: no checkpoint to grade with for " + ", ".join(lacking),
                        exit_code=2)
    return mods


def run(args, ctx) -> int:
    from ..grading import GradeSettings, Grader, empty_report, summary_table, write_gradebook

    if args.timeout <= 0:
        raise TitoError("--timeout must be positive", exit_code=2)
    if args.memory_mb < 256:
        raise TitoError("--memory-mb must be at least 256", exit_code=2)
    if args.jobs < 1:
        raise TitoError("--jobs must be at least 1", exit_code=2)
    mods = parse_modules(args.modules, ctx.manifest)
    subs = Path(args.submissions).resolve()
    if not subs.is_dir():
        raise TitoError(f"submissions directory {subs} does not exist", exit_code=2)
    out = Path(args.out).resolve()
    settings = GradeSettings(timeout=args.timeout, memory_mb=args.memory_mb, jobs=args.jobs,
                             allow_weak=args.allow_weak_sandbox, keep_temp=args.keep_temp,
                             progress=not args.no_progress, log=lambda *a, **k: print(*a, **k))
    grader = Grader(ctx.root, ctx.manifest, mods, subs, out, settings)
    print(f"grading {subs} against modules {', '.join(m.nn for m in mods)} "
          f"(timeout {args.timeout:g} s, memory {args.memory_mb} MB)", flush=True)
    t0 = time.monotonic()
    try:
        report = grader.run()
    except BaseException as e:                       # the gradebook is written whatever happens
        write_gradebook(empty_report(mods, subs, f"{type(e).__name__}: {e}"
                                     if not isinstance(e, TitoError) else str(e)), out)
        raise
    report["duration_s"] = round(time.monotonic() - t0, 1)
    paths = write_gradebook(report, out)
    iso = report["isolation"]
    print(f"sandbox: {iso['mode']}" + (f" (cgroups: {', '.join(iso['cgroups'])})"
                                       if iso.get("cgroups") else ""))
    for n in iso["notes"]:
        print(f"  note: {n}")
    print()
    print(summary_table(report))
    print()
    for s in report["students"]:
        for v in s["violations"]:
            print(f"violation: {s['name']}: {v}")
    print(f"{len(report['students'])} student(s) x {len(mods)} module(s) graded in "
          f"{report['duration_s']:g} s; gradebook: {paths['csv']}, {paths['json']}, {paths['junit']}")
    if not report["integrity"]["ok"]:
        print("tito grade: error: the reference checkout changed during grading (see above "
              "and the 'integrity' section of the JSON): re-check it before trusting grades",
              file=sys.stderr)
        return 1
    return 0
