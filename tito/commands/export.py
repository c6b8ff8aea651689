"""``tito export NN [NN ...] | --all``: notebooks -> package, with nbdev.

Each notebook is cleaned (nbdev_clean) and exported (nbdev's nb_export) into the package;
``__init__.py`` files and ``_modidx.py`` are rebuilt as ``nbdev_export`` does. ``--all`` exports
every notebook under the notebooks folder (exactly the set ``nbdev_export`` would).

``--lib-path DIR`` writes the package somewhere else (DIR must be named ``tinytorch``, e.g.
``/tmp/grade/tinytorch``); ``--nbs-path DIR`` reads notebooks from another folder laid out like
``modules/`` (``DIR/NN_name/NN_name.ipynb``); ``--no-clean`` leaves the notebooks untouched.

A module is all of its notebooks: most have one, a module whose manifest entry lists
``notebooks = [...]`` (nbdev writes one package module per notebook) has several in its folder,
and ``tito export NN`` exports every one of them. The manifest's ``exports`` of the module are
checked against what its notebooks wrote together. A missing notebook is an error naming the
file (the module's other notebooks are still exported).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import TitoError
from . import add_command, add_module_selection, selected_modules


def register(sub):
    p = add_command(sub, "export", "export module notebooks into the package (nbdev)", __doc__)
    add_module_selection(p, "export")
    p.add_argument("--lib-path", metavar="DIR",
                   help="package directory to write (default: lib_path of settings.ini)")
    p.add_argument("--nbs-path", metavar="DIR",
                   help="notebooks folder to read (default: nbs_path of settings.ini)")
    p.add_argument("--no-clean", action="store_true",
                   help="do not nbdev_clean the notebooks")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    from ..exporter import export_notebooks

    settings, root = ctx.settings, ctx.root
    lib_path = Path(args.lib_path).resolve() if args.lib_path else settings.lib_path
    nbs_path = Path(args.nbs_path).resolve() if args.nbs_path else settings.nbs_path
    mods = selected_modules(args, ctx)
    if not nbs_path.is_dir():
        raise TitoError(f"notebooks folder {nbs_path} does not exist")

    # a module is the set of its notebooks (one per package module it writes, main one first)
    absent = {m: [nb for nb in m.notebooks_in(nbs_path) if not nb.is_file()] for m in mods}
    problems: list = []
    notebooks = _notebooks_to_export(args.all, mods, absent, nbs_path, root, problems)
    res = export_notebooks(notebooks, lib_path, root, nbs_path=nbs_path,
                           clean=not args.no_clean, lib_name=settings.lib_name)
    print(f"exported {len(res.notebooks)} notebook(s) into {lib_path}")
    written_by = _print_written(res, ctx.manifest, nbs_path, lib_path)
    problems += _manifest_mismatches(written_by, absent)
    nb_files = {f for rec in res.notebooks for f in rec.files}
    others = [f for f in res.changed if f not in nb_files]
    if others:
        print("  also updated: " + ", ".join(str(f.relative_to(lib_path.parent)) for f in others))
    if res.cleaned:
        print("  cleaned: " + ", ".join(str(_rel(nb, root)) for nb in res.cleaned))
    for msg in problems:
        print(f"tito export: error: {msg}", file=sys.stderr)
    return 1 if problems else 0


def _notebooks_to_export(all_: bool, mods, absent: dict, nbs_path: Path, root: Path,
                         problems: list) -> list:
    """Every notebook under ``nbs_path`` (``--all``), or the selected modules' notebooks (a missing
    one is added to ``problems``)."""
    from ..exporter import find_notebooks
    if all_:
        notebooks = find_notebooks(nbs_path, root)
        lacking_nb = [m for m in mods if absent[m]]
        if lacking_nb:
            print(f"note: {len(lacking_nb)} manifest module(s) lack notebook(s): "
                  + "; ".join(f"{m.folder} (no {', '.join(nb.name for nb in absent[m])})"
                              for m in lacking_nb))
        if not notebooks:
            raise TitoError(f"no notebooks found under {nbs_path}")
        return notebooks
    notebooks = [nb for m in mods for nb in m.notebooks_in(nbs_path) if nb.is_file()]
    for m in mods:
        if absent[m]:
            problems.append(f"module {m.nn} ({m.title}): notebook(s) not found: "
                            + ", ".join(str(nb) for nb in absent[m]))
    if not notebooks:
        raise TitoError("; ".join(problems))
    return notebooks


def _print_written(res, manifest, nbs_path: Path, lib_path: Path) -> dict:
    "Print what each notebook wrote; returns {module: package modules its notebooks wrote}."
    by_nb = {nb.resolve(): (m, nb.stem) for m in manifest for nb in m.notebooks_in(nbs_path)}
    written_by: dict = {}
    changed = set(res.changed)
    for rec in res.notebooks:
        mod, stem = by_nb.get(rec.notebook, (None, None))
        label = mod.notebook_label(stem) if mod else rec.notebook.name
        written = [res.module_name(f) for f in rec.files]
        if mod:
            written_by.setdefault(mod, []).extend(written)
        if not written:
            print(f"  {label}: wrote nothing (no `#| default_exp` / `#| export` cells)")
        for f, name in zip(rec.files, written):
            state = "updated" if f in changed else "unchanged"
            print(f"  {label}: {name}  ({f.relative_to(lib_path.parent)}, {state})")
    return written_by


def _manifest_mismatches(written_by: dict, absent: dict) -> list:
    "The manifest's exports of each module against the union of what its notebooks wrote."
    problems = []
    for mod, written in written_by.items():
        lacking = [x for x in mod.exports if x not in written]
        extra = [x for x in written if x not in mod.exports]
        what = "its notebooks" if len(mod.stems) > 1 else "the notebook"
        if lacking:
            why = (" (missing notebook(s): " + ", ".join(nb.name for nb in absent[mod]) + ")"
                   if absent.get(mod) else "")
            problems.append(f"{mod.label}: the manifest says it exports {', '.join(lacking)} "
                            f"but {what} did not write it{why}")
        if extra:
            print(f"  warning: {mod.label} also wrote {', '.join(extra)}, "
                  "which the manifest does not list")
    return problems


def _rel(p: Path, root: Path):
    try:
        return p.relative_to(root)
    except ValueError:
        return p
