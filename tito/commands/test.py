"""``tito test NN [NN ...] | --all [-- PYTEST_ARGS]``: run each module's tests
(``tests/NN_name/``) and checkpoint (``tests/checkpoints/checkpoint_NN_name.py``) with pytest,
one pytest run per module, print a PASS/FAIL line per module and record the results in
``.tito/results.json``. A module with neither tests nor checkpoint fails.

These are exactly the tests ``tito module complete NN`` runs, run the same way: against one
package only (the project's own ``tinytorch/`` by default), with ``python -P -s``, that package's
parent the only ``PYTHONPATH`` entry, the editable install's import hook removed (so a part missing
from it is an import error, never some other copy's code), and a run that imported ``tinytorch``
from anywhere else fails. So the two commands agree on whether a module is complete.

``--lib-path DIR`` runs the tests against another package (e.g. a student's export, DIR named
``tinytorch``) instead of the project's own. Such runs are not recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import add_command, add_module_selection, selected_modules


def register(sub):
    p = add_command(sub, "test", "run module tests and checkpoints (pytest)", __doc__)
    add_module_selection(p, "test")
    p.add_argument("--lib-path", metavar="DIR",
                   help="test this package directory instead of the project's own tinytorch/")
    p.set_defaults(func=run, accepts_passthrough=True)


def run(args, ctx) -> int:
    from ..results import record_result
    from ..testing import run_module_tests
    from ..exporter import check_lib_path

    mods = selected_modules(args, ctx)
    lib_path = None
    if args.lib_path:
        lib_path = check_lib_path(Path(args.lib_path), ctx.settings.lib_name)
        if not lib_path.is_dir():
            from ..errors import TitoError
            raise TitoError(f"package directory {lib_path} does not exist")
    record = lib_path is None
    if lib_path is None:
        lib_path = ctx.settings.lib_path
    runs = []
    for m in mods:
        print(f"=== {m.nn} {m.folder}: {m.title}", flush=True)
        r = run_module_tests(m, ctx.root, lib_path=lib_path, extra_args=args.passthrough)
        runs.append(r)
        if record:
            record_result(ctx.root, m.folder,
                          {**r.as_record(ctx.root), "pytest_args": list(args.passthrough)})
        word = "PASS" if r.passed else "FAIL"
        print(f"{word} {m.nn} {m.folder}: {r.status} - {r.summary} [{r.duration_s:.1f} s]",
              flush=True)
    if len(runs) > 1:
        print("\nsummary:")
        for r in runs:
            print(f"  {'PASS' if r.passed else 'FAIL'}  {r.module.nn} {r.module.folder:<18} "
                  f"{r.status}: {r.summary}")
    failed = [r for r in runs if not r.passed]
    print(f"\n{len(runs) - len(failed)}/{len(runs)} module(s) passed"
          + (f" (against {lib_path})" if record else f" (against {lib_path}; not recorded)"), flush=True)
    if failed:
        print("failed: " + ", ".join(r.module.folder for r in failed), file=sys.stderr)
    return 1 if failed else 0
