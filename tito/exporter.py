"""Export notebooks into a package with nbdev, clean notebooks, and check that a package is in
sync with its notebooks.

Everything takes an explicit ``lib_path`` (the package directory, whose last component must be
the library name, ``tinytorch``) and ``nbs_path`` (the notebooks folder), so the same code exports
the course's own notebooks into ``tinytorch/`` and a student's notebooks into a temporary
package for grading::

    from tito.exporter import export_notebooks
    export_notebooks([student_nbs/"01_tensor/01_tensor.ipynb"], lib_path=tmp/"tinytorch",
                     nbs_path=student_nbs, root=project_root, clean=False)

The result is byte-for-byte what ``nbdev_export`` writes (same processors, same
``__init__.py``/``_modidx.py`` handling). nbdev is imported lazily: ``tito --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError


@contextlib.contextmanager
def nbdev_project(root: Path):
    """Run nbdev calls with the project's settings.ini (nbdev finds it from the cwd)."""
    from nbdev.config import get_config
    with contextlib.chdir(root):
        get_config.cache_clear()
        try:
            yield get_config()
        finally:
            get_config.cache_clear()


def check_lib_path(lib_path: Path, lib_name: str) -> Path:
    lib_path = Path(lib_path).resolve()
    if lib_path.name != lib_name:
        # nbdev turns `from tinytorch.x import y` into a relative import only when the target
        # directory is named like the library: elsewhere, exported code would silently import
        # the course's own package instead of the one being built.
        raise TitoError(f"the library path must be a directory named {lib_name!r} "
                        f"(e.g. /tmp/build/{lib_name}), got {str(lib_path)!r}")
    return lib_path


def find_notebooks(nbs_path: Path, root: Path) -> list[Path]:
    """Every notebook nbdev_export would export from ``nbs_path``, in nbdev's order."""
    from nbdev.doclinks import nbglob
    with nbdev_project(root):
        return list(nbglob(path=str(nbs_path), as_path=True).sorted("name"))


def notebook_missing_ids(nb_path: Path) -> bool:
    """True when a cell has no id: nbdev would invent a random one on every export.
    (False for an unreadable notebook: exporting it reports that error.)"""
    try:
        nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
        return any("id" not in c for c in nb.get("cells", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def clean_notebook(nb_path: Path, root: Path) -> bool:
    """``nbdev_clean`` one notebook (same settings, same output); returns True if it changed.
    Unlike nbdev_clean, an unreadable notebook raises instead of printing a warning."""
    from execnb.nbio import write_nb
    from nbdev.clean import clean_nb
    nb_path = Path(nb_path)
    before = nb_path.read_text(encoding="utf-8")
    try:
        nb = json.loads(before)
    except json.JSONDecodeError as e:
        raise TitoError(f"{nb_path}: not a valid notebook (JSON error: {e})") from None
    with nbdev_project(root) as cfg:
        clean_nb(nb, cfg.clear_all, cfg.get("allowed_metadata_keys").split(),
                 cfg.get("allowed_cell_metadata_keys").split(), cfg.clean_ids)
        write_nb(nb, nb_path)
    return nb_path.read_text(encoding="utf-8") != before


@dataclass
class NotebookExport:
    notebook: Path
    files: list[Path] = field(default_factory=list)   # package files this notebook wrote
    error: str | None = None


@dataclass
class ExportResult:
    lib_path: Path
    lib_name: str
    notebooks: list[NotebookExport]
    changed: list[Path]            # files whose text differs from before the export (or new)
    cleaned: list[Path]            # notebooks that nbdev_clean modified

    def module_name(self, f: Path) -> str:
        rel = Path(f).resolve().relative_to(self.lib_path).with_suffix("")
        parts = [self.lib_name, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)

    @property
    def ok(self) -> bool:
        return all(n.error is None for n in self.notebooks)


def _snapshot(lib_path: Path) -> dict[Path, bytes]:
    if not lib_path.exists():
        return {}
    return {p: p.read_bytes() for p in lib_path.rglob("*.py") if "__pycache__" not in p.parts}


@contextlib.contextmanager
def _mirror(root: Path, lib_path: Path, nbs_path: Path, notebooks: list[Path]):
    """A temporary copy of the project holding ``settings.ini``, ``notebooks`` and the package,
    laid out exactly as the real ones (the relative notebook paths nbdev writes into each file
    are then identical). Yields ``(mirror_root, mirror_lib, mirror_nbs, {copy: real notebook})``."""
    base = Path(os.path.commonpath([root, lib_path, nbs_path, *notebooks]))
    with tempfile.TemporaryDirectory(prefix="tito-export-") as td:
        tbase = Path(td).resolve()

        def at(p: Path) -> Path:
            return tbase / p.relative_to(base)

        troot, tlib, tnbs = at(root), at(lib_path), at(nbs_path)
        troot.mkdir(parents=True, exist_ok=True)
        copies = {}
        for nb in notebooks:
            dst = at(nb)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dst)
            copies[dst.resolve()] = nb
        if (root / "settings.ini").is_file():
            shutil.copy2(root / "settings.ini", troot / "settings.ini")
        if lib_path.is_dir():
            # start from the package as it is, so non-generated files stay as they are
            shutil.copytree(lib_path, tlib, ignore=shutil.ignore_patterns("__pycache__"))
        tnbs.mkdir(parents=True, exist_ok=True)
        yield troot, tlib, tnbs, copies


def _nbdev_export(notebooks: list[Path], lib_path: Path, root: Path, nbs_path: Path
                  ) -> list[NotebookExport]:
    """nbdev_export of ``notebooks`` into ``lib_path``, every notebook tried (errors recorded),
    then ``__init__.py`` files and ``_modidx.py`` rebuilt."""
    from nbdev.config import add_init
    from nbdev.doclinks import _build_modidx
    from nbdev.export import black_format, nb_export
    from nbdev.maker import ModuleMaker

    results = []
    with nbdev_project(root):
        for nb in notebooks:
            rec = NotebookExport(nb)

            def maker(*args, _rec=rec, **kwargs):
                mm = ModuleMaker(*args, **kwargs)
                _rec.files.append(Path(mm.fname).resolve())
                return mm

            try:
                nb_export(nb, lib_path=lib_path, procs=[black_format], mod_maker=maker)
            except Exception as e:  # an nbdev error names a bad cell or directive: pass it on
                rec.error = f"{type(e).__name__}: {e}"
            results.append(rec)
        lib_path.mkdir(parents=True, exist_ok=True)
        add_init(lib_path)
        _build_modidx(dest=lib_path, nbs_path=nbs_path)
    return results


def _write_atomically(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def export_notebooks(notebooks, lib_path, root, nbs_path=None, clean=True,
                     lib_name="tinytorch", keep_going=False, check_imports=True) -> ExportResult:
    """Export ``notebooks`` into the package at ``lib_path``, as nbdev_export does, all or nothing.

    Notebooks are cleaned first (when ``clean``) so that cells get stable ids before their
    code is exported. Every code cell must compile; the notebooks are then exported into a
    temporary copy of the project (``__init__.py`` files and ``_modidx.py`` rebuilt there), the
    package modules they wrote must import (``check_imports``), and only then is every file that
    changed moved into ``lib_path`` (each one written to a temporary file and renamed).
    On any error nothing in ``lib_path`` changes: a :class:`~tito.nbcode.NotebookCodeError`
    names the notebook, the cell and the line (an nbdev error, e.g. a bad directive, is a
    TitoError naming the notebook). With ``keep_going`` the result is returned with each
    notebook's error recorded instead (still nothing moved into place).
    """
    from .nbcode import NotebookCodeError, syntax_problems

    root = Path(root).resolve()
    lib_path = check_lib_path(lib_path, lib_name)
    notebooks = [Path(n).resolve() for n in notebooks]
    for nb in notebooks:
        if not nb.is_file():
            raise TitoError(f"notebook {nb} not found")
    nbs_path = Path(nbs_path).resolve() if nbs_path else (
        notebooks[0].parent.parent if notebooks else root)
    cleaned = [nb for nb in notebooks if clean_notebook(nb, root)] if clean else []

    problems = [p for nb in notebooks for p in syntax_problems(nb)]
    if problems and not keep_going:
        raise NotebookCodeError(problems, root, unchanged=lib_path)
    bad = {p.notebook for p in problems}

    before = _snapshot(lib_path)
    with _mirror(root, lib_path, nbs_path, notebooks) as (troot, tlib, tnbs, copies):
        todo = [c for c, real in copies.items() if real not in bad]
        recs = {r.notebook: r for r in _nbdev_export(todo, tlib, troot, tnbs)}
        results = _export_results(copies, recs, problems, root, lib_path, tlib)
        failed = [r for r in results if r.error]
        if failed and not keep_going:
            raise TitoError("; ".join(f"exporting {_rel(r.notebook, root)} failed: {r.error}"
                                      for r in failed)
                            + f" (nothing was exported: {_rel(lib_path, root)}/ is unchanged)")
        if check_imports and not failed and not problems:
            problems = _check_exported_imports(recs, copies, results, tlib, lib_name, root, lib_path,
                                               keep_going)
        if not any(r.error for r in results) and not problems:
            _move_changed(tlib, lib_path, before)
    after = _snapshot(lib_path)
    changed = sorted(p for p, b in after.items() if before.get(p) != b)
    return ExportResult(lib_path, lib_name, results, changed, cleaned)


def _export_results(copies: dict, recs: dict, problems: list, root: Path, lib_path: Path,
                    tlib: Path) -> list[NotebookExport]:
    "One NotebookExport per real notebook: the package files it wrote, or its error."
    bad = {p.notebook for p in problems}
    results = []
    for copy, real in copies.items():
        rec = recs.get(copy)
        out = NotebookExport(real)
        if real in bad:
            out.error = "\n".join(p.describe(root) for p in problems if p.notebook == real)
        elif rec is not None:
            out.files = [lib_path / f.relative_to(tlib) for f in rec.files]
            out.error = rec.error
        results.append(out)
    return results


def _check_exported_imports(recs: dict, copies: dict, results: list, tlib: Path, lib_name: str,
                            root: Path, lib_path: Path, keep_going: bool) -> list:
    """Import every package module the export wrote (from the mirror); the problems, raised as a
    NotebookCodeError unless ``keep_going`` (then recorded on their notebooks' results)."""
    from .nbcode import NotebookCodeError, import_problems
    modules = sorted({ExportResult(tlib, lib_name, [], [], []).module_name(f)
                      for r in recs.values() for f in r.files})
    problems = import_problems(tlib, modules, nb_of=lambda p: copies.get(p, p))
    if problems:
        if not keep_going:
            raise NotebookCodeError(problems, root, unchanged=lib_path)
        for r in results:
            mine = [p for p in problems if p.notebook == r.notebook]
            r.error = "\n".join(p.describe(root) for p in mine) or None
    return problems


def _move_changed(tlib: Path, lib_path: Path, before: dict) -> None:
    "Write every file of the mirror's package whose text differs from ``before`` into ``lib_path``."
    for f, text in _snapshot(tlib).items():
        real = lib_path / f.relative_to(tlib)
        if before.get(real) != text:
            _write_atomically(f, real)


def _rel(p: Path, root: Path):
    try:
        return Path(p).relative_to(root)
    except ValueError:
        return p


# --------------------------------------------------------------------------------------------
# Sync check: export into a mirror of the project in a temporary directory and compare.
# --------------------------------------------------------------------------------------------

@dataclass
class SyncReport:
    """What a fresh export of every notebook would write, compared with the package on disk."""
    notebook_files: dict[Path, list[Path]]   # real notebook -> real package files it exports
    notebook_errors: dict[Path, str]
    differing: list[Path]                    # real package files whose text differs
    missing: list[Path]                      # generated files absent from the package
    missing_ids: list[Path]                  # notebooks with cells lacking ids (not clean)
    code_problems: list = field(default_factory=list)   # nbcode.CodeProblem: cells that do not compile

    def in_sync(self) -> bool:
        return not (self.differing or self.missing or self.notebook_errors)


def check_sync(root, lib_path, nbs_path, lib_name="tinytorch", check_imports=False) -> SyncReport:
    """Export all notebooks under ``nbs_path`` into a temporary copy of the package and compare
    the text of every generated file with ``lib_path``. The temporary project mirrors the real
    layout, so the relative notebook paths nbdev writes into each file are identical.
    A notebook whose code does not compile is an error naming its cell and line; with
    ``check_imports``, the package modules that differ from ``lib_path`` (notebooks changed
    since their last export) are imported from the fresh export, and an import error is recorded
    against its notebook cell the same way."""
    root, lib_path, nbs_path = (Path(p).resolve() for p in (root, lib_path, nbs_path))
    notebooks = find_notebooks(nbs_path, root)
    report = SyncReport({}, {}, [], [], [])
    if not notebooks:
        return report
    from .nbcode import syntax_problems
    for nb in notebooks:
        if notebook_missing_ids(nb):
            report.missing_ids.append(nb)
        problems = syntax_problems(nb)
        if problems:
            report.notebook_errors[nb] = "\n".join(p.describe(root) for p in problems)
            report.code_problems.extend(problems)
    good = [nb for nb in notebooks if nb not in report.notebook_errors]
    with _mirror(root, lib_path, nbs_path, good) as (troot, tlib, tnbs, copies):
        recs = _nbdev_export(list(copies), tlib, troot, tnbs)
        generated = {tlib / "__init__.py", tlib / "_modidx.py"}
        for rec in recs:
            real_nb = copies[rec.notebook]
            if rec.error:
                report.notebook_errors[real_nb] = rec.error
            report.notebook_files[real_nb] = [lib_path / f.relative_to(tlib) for f in rec.files]
            generated.update(rec.files)
        for f in sorted(generated):
            real = lib_path / f.relative_to(tlib)
            if not f.exists():
                continue
            if not real.exists():
                report.missing.append(real)
            elif not filecmp.cmp(f, real, shallow=False):
                report.differing.append(real)
        if check_imports:
            _record_import_problems(report, recs, copies, tlib, lib_path, root, lib_name)
    return report


def _record_import_problems(report, recs, copies, tlib, lib_path, root, lib_name) -> None:
    from .nbcode import import_problems
    stale = set(report.differing) | set(report.missing)
    res = ExportResult(tlib, lib_name, [], [], [])
    modules = sorted({res.module_name(f) for rec in recs for f in rec.files
                      if lib_path / f.relative_to(tlib) in stale})
    if not modules:
        return
    for p in import_problems(tlib, modules, nb_of=lambda nb: copies.get(nb, nb)):
        report.code_problems.append(p)
        key = p.notebook if p.notebook in report.notebook_files else None
        if key is not None:
            prev = report.notebook_errors.get(key)
            report.notebook_errors[key] = (prev + "\n" if prev else "") + p.describe(root)
        else:
            report.notebook_errors[Path(p.notebook)] = p.describe(root)
