"""``tito milestone list`` and ``tito milestone run NAME [--fast] [--out DIR]``.

Milestones are the scripts ``milestones/YYYY_name.py`` (found on disk, sorted by year); the first
line of each script's docstring is its title. ``run`` accepts the full name (``1986_mlp``), the year
(``1986``) or the name part (``mlp``), runs the script with this Python, streams its output, and
returns its exit code (1 when a gate fails).

Before running, ``run`` checks the course modules the milestone needs (every ``tinytorch`` module
the script imports, and what those import in turn, mapped to the modules of the manifest): when
one of them still has an exercise stub in the package, it names those modules and their
exercises and exits 1 instead of running into the stub. ``list`` shows what each milestone needs.
Results and plots go to ``--out DIR`` (default ``milestones/results/``, which git ignores).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from . import add_command


def register(sub):
    p = add_command(sub, "milestone", "list or run the historical milestones", __doc__)
    msub = p.add_subparsers(dest="milestone_cmd", metavar="{list,run}")
    msub.required = True
    msub.add_parser("list", help="list the milestones")
    r = msub.add_parser("run", help="run one milestone")
    r.add_argument("name", help="e.g. 1986_mlp, 1986 or mlp")
    r.add_argument("--fast", action="store_true", help="the short run used by the tests")
    r.add_argument("--out", help="where results and plots go (default milestones/results/)")
    p.set_defaults(func=run)


def discover(root: Path) -> list[tuple[str, str, Path]]:
    "(name, title, path) of every milestone script, by year."
    found = []
    for path in sorted((root / "milestones").glob("[0-9][0-9][0-9][0-9]_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        found.append((path.stem, doc.strip().splitlines()[0] if doc.strip() else path.stem, path))
    return found


def resolve(root: Path, name: str):
    from ..errors import TitoError
    milestones = discover(root)
    matches = [m for m in milestones
               if name in (m[0], m[0].split("_", 1)[0], m[0].split("_", 1)[1])]
    if len(matches) != 1:
        known = ", ".join(m[0] for m in milestones) or "none"
        what = "matches several milestones" if matches else "is not a milestone"
        raise TitoError(f"{name!r} {what}; known milestones: {known}", exit_code=2)
    return matches[0]


def run(args, ctx) -> int:
    from ..milestone_needs import milestone_needs
    if args.milestone_cmd == "list":
        for name, title, path in discover(ctx.root):
            needs = milestone_needs(path, ctx.manifest)
            todo = [n.module.nn for n in needs if n.stubs]
            print(f"  {name:<22} {title}")
            print(f"  {'':<22} needs modules {', '.join(n.module.nn for n in needs) or 'none'}"
                  + (f" (not done yet: {', '.join(todo)})" if todo else ""))
        return 0
    name, title, path = resolve(ctx.root, args.name)
    needs = milestone_needs(path, ctx.manifest)
    missing = [n for n in needs if n.stubs]
    if missing:
        print(f"{name} ({title}) needs modules {', '.join(n.module.nn for n in needs)}; "
              f"{len(missing)} of them are not done yet:")
        for n in missing:
            shown = ", ".join(n.stubs[:5]) + (f" and {len(n.stubs) - 5} more"
                                               if len(n.stubs) > 5 else "")
            print(f"  module {n.module.nn} {n.module.title}: {len(n.stubs)} exercise(s) to do "
                  f"({shown}); then `tito module complete {n.module.nn}`")
        print(f"tito milestone: {name} not run: finish the modules above first", file=sys.stderr)
        return 1
    cmd = [sys.executable, str(path)]
    if args.fast:
        cmd.append("--fast")
    if args.out:
        cmd += ["--out", args.out]
    print(f"running {name}: {title}", flush=True)
    return subprocess.call(cmd, cwd=ctx.root)
