"""``tito export NN [NN ...] | --all``: notebooks -> package, with nbdev.

Each notebook is cleaned (nbdev_clean) and exported (nbdev's nb_export) into the package;
``__init__.py`` files and ``_modidx.py`` are rebuilt as ``nbdev_export`` does. ``--all`` exports
every notebook under the notebooks folder (exactly the set ``nbdev_export`` would).

``--lib-path DIR`` writes the package somewhere else (DIR must be named ``tinytorch``, e.g.
``/tmp/grade/tinytorch``); ``--nbs-path DIR`` reads notebooks from another folder laid out like
``modules/`` (``DIR/NN_name/NN_name.ipynb``); ``--no-clean`` leaves the notebooks untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import TitoError
from . import add_module_selection, selected_modules


def register(sub):
    p = sub.add_parser("export", help="export module notebooks into the package (nbdev)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    add_module_selection(p, "export")
    p.add_argument("--lib-path", metavar="DIR",
                   help="package directory to write (default: lib_path of settings.ini)")
    p.add_argument("--nbs-path", metavar="DIR",
                   help="notebooks folder to read (default: nbs_path of settings.ini)")
    p.add_argument("--no-clean", action="store_true",
                   help="do not nbdev_clean the notebooks")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    from ..exporter import export_notebooks, find_notebooks

    manifest, settings, root = ctx.manifest, ctx.settings, ctx.root
    lib_path = Path(args.lib_path).resolve() if args.lib_path else settings.lib_path
    nbs_path = Path(args.nbs_path).resolve() if args.nbs_path else settings.nbs_path
    mods = selected_modules(args, ctx)
    if not nbs_path.is_dir():
        raise TitoError(f"notebooks folder {nbs_path} does not exist")

    if args.all:
        notebooks = find_notebooks(nbs_path, root)
        missing = [m for m in mods if not m.notebook_in(nbs_path).is_file()]
        if missing:
            print(f"note: {len(missing)} manifest module(s) have no notebook yet: "
                  + ", ".join(m.folder for m in missing))
        if not notebooks:
            raise TitoError(f"no notebooks found under {nbs_path}")
    else:
        notebooks = []
        for m in mods:
            nb = m.notebook_in(nbs_path)
            if not nb.is_file():
                raise TitoError(f"module {m.nn} ({m.title}): notebook {nb} not found")
            notebooks.append(nb)

    res = export_notebooks(notebooks, lib_path, root, nbs_path=nbs_path,
                           clean=not args.no_clean, lib_name=settings.lib_name)

    by_nb = {m.notebook_in(nbs_path).resolve(): m for m in manifest}
    changed = set(res.changed)
    problems = []
    print(f"exported {len(res.notebooks)} notebook(s) into {lib_path}")
    for rec in res.notebooks:
        mod = by_nb.get(rec.notebook)
        label = f"{mod.nn} {mod.folder}" if mod else rec.notebook.name
        written = [res.module_name(f) for f in rec.files]
        if not written:
            print(f"  {label}: wrote nothing (no `#| default_exp` / `#| export` cells)")
        for f, name in zip(rec.files, written):
            state = "updated" if f in changed else "unchanged"
            print(f"  {label}: {name}  ({f.relative_to(lib_path.parent)}, {state})")
        if mod:
            lacking = [x for x in mod.exports if x not in written]
            extra = [x for x in written if x not in mod.exports]
            if lacking:
                problems.append(f"{label}: the manifest says it exports {', '.join(lacking)} "
                                "but the notebook did not write it")
            if extra:
                print(f"  warning: {label} also wrote {', '.join(extra)}, "
                      "which the manifest does not list")
    nb_files = {f for rec in res.notebooks for f in rec.files}
    others = [f for f in res.changed if f not in nb_files]
    if others:
        print("  also updated: " + ", ".join(str(f.relative_to(lib_path.parent)) for f in others))
    if res.cleaned:
        print("  cleaned: " + ", ".join(str(_rel(nb, root)) for nb in res.cleaned))
    for msg in problems:
        print(f"tito export: error: {msg}", file=sys.stderr)
    return 1 if problems else 0


def _rel(p: Path, root: Path):
    try:
        return p.relative_to(root)
    except ValueError:
        return p
