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


def export_notebooks(notebooks, lib_path, root, nbs_path=None, clean=True,
                     lib_name="tinytorch", keep_going=False) -> ExportResult:
    """Export ``notebooks`` into the package at ``lib_path``, as nbdev_export does.

    Notebooks are cleaned first (when ``clean``) so that cells get stable ids before their
    code is exported. Then ``__init__.py`` files and ``_modidx.py`` are (re)built.
    With ``keep_going`` an export error is recorded per notebook instead of raised.
    """
    from nbdev.doclinks import _build_modidx
    from nbdev.config import add_init
    from nbdev.export import black_format, nb_export
    from nbdev.maker import ModuleMaker

    root = Path(root).resolve()
    lib_path = check_lib_path(lib_path, lib_name)
    notebooks = [Path(n).resolve() for n in notebooks]
    for nb in notebooks:
        if not nb.is_file():
            raise TitoError(f"notebook {nb} not found")
    nbs_path = Path(nbs_path).resolve() if nbs_path else (
        notebooks[0].parent.parent if notebooks else root)

    cleaned = []
    if clean:
        cleaned = [nb for nb in notebooks if clean_notebook(nb, root)]

    before = _snapshot(lib_path)
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
                if not keep_going:
                    raise TitoError(f"exporting {nb} failed: {rec.error}") from e
            results.append(rec)
        lib_path.mkdir(parents=True, exist_ok=True)
        add_init(lib_path)
        _build_modidx(dest=lib_path, nbs_path=nbs_path)
    after = _snapshot(lib_path)
    changed = sorted(p for p, b in after.items() if before.get(p) != b)
    return ExportResult(lib_path, lib_name, results, changed, cleaned)


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

    def in_sync(self) -> bool:
        return not (self.differing or self.missing or self.notebook_errors)


def check_sync(root, lib_path, nbs_path, lib_name="tinytorch") -> SyncReport:
    """Export all notebooks under ``nbs_path`` into a temporary copy of the package and compare
    the text of every generated file with ``lib_path``. The temporary project mirrors the real
    layout, so the relative notebook paths nbdev writes into each file are identical."""
    root, lib_path, nbs_path = (Path(p).resolve() for p in (root, lib_path, nbs_path))
    notebooks = find_notebooks(nbs_path, root)
    report = SyncReport({}, {}, [], [], [])
    if not notebooks:
        return report
    try:
        lib_rel, nbs_rel = lib_path.relative_to(root), nbs_path.relative_to(root)
    except ValueError:
        raise TitoError(f"{lib_path} and {nbs_path} must both be inside {root}") from None
    with tempfile.TemporaryDirectory(prefix="tito-sync-") as td:
        troot = Path(td).resolve()
        tlib, tnbs = troot / lib_rel, troot / nbs_rel
        copies = {}
        for nb in notebooks:
            dst = tnbs / nb.relative_to(nbs_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dst)
            copies[dst.resolve()] = nb
            if notebook_missing_ids(nb):
                report.missing_ids.append(nb)
        shutil.copy2(root / "settings.ini", troot / "settings.ini")
        if lib_path.is_dir():
            # start from the package as it is, so non-generated files stay as they are
            shutil.copytree(lib_path, tlib, ignore=shutil.ignore_patterns("__pycache__"))
        res = export_notebooks(list(copies), tlib, troot, nbs_path=tnbs, clean=False,
                               lib_name=lib_name, keep_going=True)
        generated = {tlib / "__init__.py", tlib / "_modidx.py"}
        for rec in res.notebooks:
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
    return report
