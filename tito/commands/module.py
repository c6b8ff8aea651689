"""``tito module complete NN``: check your own work on one module, in your copy of the course.

1. Exports *your* notebook ``modules/NN_name/NN_name.ipynb`` (every notebook of the module, when
   it has several: ``NN_name_*.ipynb`` as the manifest lists them) into *your* package (the
   ``tinytorch/`` of the copy you are working in; the notebooks themselves are not modified).
   A cell that does not compile, or an export that does not import, stops here with the
   notebook, the cell and the line, and your package stays as it was.
2. Runs the module's tests (``tests/NN_name/``) and its checkpoint
   (``tests/checkpoints/checkpoint_NN_name.py``), exactly what ``tito test NN`` runs
   (:func:`tito.testing.module_test_paths`; a test needing the repository's oracle, e.g. torch,
   is named and left out when this environment lacks it), against that package in a fresh
   process: ``python -P -s``, your package's parent the only entry of PYTHONPATH,
   editable-install finders of any other tinytorch removed. The run fails if any tinytorch
   module was imported from anywhere but your package.
3. Prints which package was tested, what passed, and for each failure what to fix: the test,
   the exercise stub you have not filled in yet or the assertion message, and the first lines
   of the failure. The result is recorded for ``tito status``.

Exit code 0 when every test passed, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import add_command


def register(sub):
    p = sub.add_parser("module", help="work on one module: `tito module complete NN`",
                       description="Commands for the module you are working on.")
    msub = p.add_subparsers(dest="module_command", metavar="ACTION")
    msub.required = True
    c = add_command(msub, "complete", "export your notebook and run the module's checkpoint "
                                      "and progressive tests against your package", __doc__)
    c.add_argument("module", metavar="NN", help="module number, e.g. 3 or 03")
    c.add_argument("--timeout", type=float, default=900, metavar="S",
                   help="stop the tests after S seconds (default 900)")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="also show pytest's own output")
    c.set_defaults(func=run_complete)
    from ..studentcheck import __doc__ as check_doc
    k = add_command(msub, "check", "check the whole course: notebooks export, package "
                                   "imports, tests pass or wait for exercises still to do", check_doc)
    k.add_argument("modules", nargs="*", metavar="NN", help="modules to test (default: all)")
    k.add_argument("--all", action="store_true", help="every module (the default)")
    k.add_argument("--timeout", type=float, default=1800, metavar="S",
                   help="stop the tests after S seconds (default 1800)")
    k.set_defaults(func=run_check)
    p.set_defaults(func=run_complete)


def run_check(args, ctx) -> int:
    from ..studentcheck import run_check as check
    mods = ctx.manifest.select(args.modules, all_=args.all or not args.modules)
    return check(ctx, mods, timeout=args.timeout)


def run_complete(args, ctx) -> int:
    from ..checkrun import run_pytest
    root = ctx.root
    mod = ctx.manifest.get(args.module)
    _check_notebooks(mod)
    print(f"== module {mod.nn} {mod.title}")
    _export_module(mod, ctx)
    paths = _test_paths(mod, root)
    print("running: " + ", ".join(str(p.relative_to(root)) for p in paths), flush=True)
    run = run_pytest(paths, ctx.settings.lib_path, cwd=root, timeout=args.timeout,
                     extra_args=["-q", "--no-header", "-rN", "--tb=native"],
                     echo=sys.stdout if args.verbose else None)
    if run.lib_file:
        print(f"tested package: {Path(run.lib_file).parent}")
    print()
    fixes = _print_outcomes(run, paths, mod, root)
    problems = _run_problems(run, args.timeout)
    if fixes:
        _print_fixes(fixes, mod, args.verbose)
    for p in problems:
        print(f"\nproblem: {p}")
    return _record_and_conclude(run, problems, mod, root, paths)


def _check_notebooks(mod) -> None:
    "Every notebook of the module is there (the main one first) and is valid JSON."
    from ..errors import TitoError
    from ..release import read_notebook
    notebooks = mod.notebooks
    absent = [nb for nb in notebooks if not nb.is_file()]
    if absent:
        which = ("your notebook" if len(absent) == 1 else "your notebooks") + " " + \
            ", ".join(str(nb) for nb in absent)
        raise TitoError(f"module {mod.nn} ({mod.title}): {which} "
                        f"{'is' if len(absent) == 1 else 'are'} missing"
                        + (f" (the module has {len(notebooks)} notebooks: "
                           + ", ".join(nb.name for nb in notebooks) + ")"
                           if len(notebooks) > 1 else ""))
    for nb in notebooks:
        read_notebook(nb)                           # a clear error if it is not valid JSON


def _export_module(mod, ctx) -> None:
    from ..exporter import export_notebooks
    root, settings, notebooks = ctx.root, ctx.settings, mod.notebooks
    lib_path = settings.lib_path
    names = ", ".join(str(nb.relative_to(root)) for nb in notebooks)
    print(f"exporting your notebook{'s' if len(notebooks) > 1 else ''} {names} into your "
          f"package {lib_path}")
    # all or nothing: a cell that does not compile, or an export that does not import, is an
    # error naming the notebook, the cell and the line, and your package stays as it was
    res = export_notebooks(notebooks, lib_path, root, nbs_path=settings.nbs_path, clean=False,
                           lib_name=settings.lib_name)
    written = [res.module_name(f) for rec in res.notebooks for f in rec.files]
    lacking = [x for x in mod.exports if x not in written]
    if lacking:
        print(f"warning: your notebook{'s' if len(notebooks) > 1 else ''} did not export "
              f"{', '.join(lacking)} (check the `#| default_exp` and `#| export` lines)")


def _test_paths(mod, root: Path) -> list:
    from ..errors import TitoError
    from ..testing import module_test_paths
    not_here: dict = {}
    paths = module_test_paths(mod, not_here)        # the same as `tito test NN`
    for p, lacking in not_here.items():
        print(f"not run in this environment: {p.relative_to(root)} needs {', '.join(lacking)} "
              "(the repository's test oracle; the student environment does not have it)")
    if not paths:
        raise TitoError(f"module {mod.nn} has no checkpoint ({mod.checkpoint.relative_to(root)}) "
                        f"and no tests ({mod.tests_dir.relative_to(root)}/)")
    return paths


def _print_outcomes(run, paths: list, mod, root: Path) -> list:
    "Per test file, what passed; returns the tests to fix (failures and files that did not load)."
    groups = {}
    for t in run.tests:
        groups.setdefault(t["nodeid"].split("::", 1)[0], []).append(t)
    fixes = []
    files = [p for p in paths if p.is_file()] + sorted(
        f for d in paths if d.is_dir() for f in d.rglob("test*.py"))
    for path in files:
        rel = str(path.relative_to(root))
        tests = groups.get(rel, [])
        if not tests and path != mod.checkpoint:
            continue
        kind = "checkpoint" if path == mod.checkpoint else "tests"
        n_ok = sum(t["outcome"] == "passed" for t in tests)
        print(f"{kind} {rel}: {n_ok}/{len(tests)} passed")
        for t in tests:
            mark = "PASS" if t["outcome"] == "passed" else t["outcome"].upper()
            print(f"  {mark:<7} {t['name']}")
            if t["outcome"] != "passed":
                fixes.append(t)
    for e in run.collect_errors:
        fixes.append({**e, "name": f"{e['nodeid'] or 'collection'} (could not be loaded)"})
    return fixes


def _run_problems(run, timeout: float) -> list:
    problems = []
    if run.timed_out:
        problems.append(f"the tests did not finish within {timeout:g} s (an endless loop?); "
                        "they were stopped")
    if run.foreign:
        problems.append("tinytorch modules were imported from outside your package: "
                        + ", ".join(run.foreign))
    if not run.has_results and not run.timed_out:
        problems.append(f"pytest did not run (exit code {run.exit_code}):\n"
                        + "\n".join(run.output.strip().splitlines()[-15:]))
    elif not run.tests and not run.collect_errors and not run.timed_out:
        problems.append("no tests were collected")
    return problems


def _print_fixes(fixes: list, mod, verbose: bool) -> None:
    from ..release import parse_stub_message
    print("\nwhat to fix:")
    stubs: dict[str, list[str]] = {}
    others = []
    for t in fixes:
        where = parse_stub_message(t.get("message") or "")
        if where:
            stubs.setdefault(where, []).append(t["name"])
        else:
            others.append(t)
    if stubs:
        _print_stubs(stubs, mod)
    _print_failures(others, verbose)


def _print_stubs(stubs: dict, mod) -> None:
    print("  exercises not implemented yet (their stub raised NotImplementedError):")
    for where, names in stubs.items():
        hint = ""
        num = where.split(",")[0].replace("module", "").strip()
        if num.isdigit() and int(num) != mod.number:
            hint = (f" [module {num} comes first: finish it, then "
                    f"`tito module complete {num}`]")
        eg = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        print(f"  - {where}: needed by {len(names)} test(s) ({eg}){hint}")


def _print_failures(others: list, verbose: bool) -> None:
    "One entry per distinct failure: its tests, its message and where it happened."
    from ..checkrun import first_lines, short_message
    groups: dict[tuple, list[dict]] = {}
    for t in others:
        groups.setdefault((t.get("message") or "", t.get("location")), []).append(t)
    items = list(groups.items())
    shown = items if verbose else items[:10]
    for (msg, loc), ts in shown:
        names = [t["name"] for t in ts]
        print(f"  - {names[0]}" + (f" (and {len(names) - 1} more: "
                                   + ", ".join(names[1:4])
                                   + (", ..." if len(names) > 4 else "") + ")"
                                   if len(names) > 1 else ""))
        for ln in short_message(msg) or ["(no message)"]:
            print(f"      {ln}")
        where = first_lines(ts[0].get("details", ""))
        if where:
            print("      where:")
            for ln in where:
                print(f"        {ln}")
        elif loc:
            print(f"      at {loc}")
    if len(items) > len(shown):
        print(f"  ... and {len(items) - len(shown)} more distinct failure(s) (-v shows all)")


def _record_and_conclude(run, problems: list, mod, root: Path, paths: list) -> int:
    "Record the result for `tito status`; 0 when every test passed and nothing else went wrong."
    from ..results import record_result
    n_pass = len(run.passed)
    n_all = len(run.tests)
    ok = run.all_passed and not problems
    summary = (f"{n_pass}/{n_all} tests passed" + (f", {len(run.collect_errors)} file(s) could "
               "not be loaded" if run.collect_errors else "") + (", timed out" if run.timed_out
                                                                  else ""))
    record_result(root, mod.folder, {
        "number": mod.number, "status": "passed" if ok else "failed",
        "exit_code": run.exit_code, "summary": f"module complete: {summary}",
        "duration_s": round(run.duration_s, 2),
        "paths": [str(p.relative_to(root)) for p in paths], "command": "module complete"})
    print()
    if ok:
        print(f"module {mod.nn} complete: {summary}. Well done!")
        return 0
    print(f"module {mod.nn} not complete yet: {summary}")
    return 1
