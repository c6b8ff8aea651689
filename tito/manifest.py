"""The course manifest (``modules/manifest.toml``) and the project layout around it.

The manifest is the only place that lists the modules. Everything else (tito, tests, grader,
book) derives folder names, notebook paths, test paths and export targets from it::

    from tito.manifest import load_manifest
    m = load_manifest()              # finds the project root from the cwd
    mod = m.get("01")                # "1" and "01" work; "1.0", "x", "21" raise UnknownModuleError
    mod.notebook, mod.tests_dir, mod.checkpoint, mod.export_files()

A module is normally one notebook, ``modules/NN_name/NN_name.ipynb``. nbdev writes one package
module per notebook, so a module with several export targets (17: compression, sparse kernels,
the PyTorch-style prune API) lists its notebooks, main one first, with ``notebooks = [...]``
(names without ``.ipynb``, all inside the module's folder). ``mod.notebooks`` gives them all.
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ManifestError, UnknownModuleError

MANIFEST_RELPATH = Path("modules") / "manifest.toml"
SETTINGS_FILE = "settings.ini"

_FOLDER_RE = re.compile(r"^(\d{2})_[a-z0-9_]+$")
_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NUMBER_RE = re.compile(r"^[0-9]{1,3}$")


# --------------------------------------------------------------------------------------------
# Project root and nbdev settings
# --------------------------------------------------------------------------------------------

def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: the nearest directory at or above ``start`` (default: the cwd, or the
    ``TITO_ROOT`` environment variable when set) holding ``modules/manifest.toml``.
    Falls back to the checkout this ``tito`` package lives in."""
    if start is None and os.environ.get("TITO_ROOT"):
        start = os.environ["TITO_ROOT"]
        root = Path(start).resolve()
        if not (root / MANIFEST_RELPATH).is_file():
            raise ManifestError(f"TITO_ROOT={start!r} has no {MANIFEST_RELPATH}")
        return root
    here = Path(start if start is not None else os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / MANIFEST_RELPATH).is_file():
            return d
    pkg_root = Path(__file__).resolve().parent.parent
    if start is None and (pkg_root / MANIFEST_RELPATH).is_file():
        return pkg_root
    raise ManifestError(
        f"no {MANIFEST_RELPATH} found in {here} or any parent directory; "
        "run tito inside the course checkout or pass --root")


@dataclass(frozen=True)
class Settings:
    """The few nbdev settings tito needs (read from settings.ini without importing nbdev)."""

    root: Path
    lib_name: str
    lib_path: Path
    nbs_path: Path

    @classmethod
    def load(cls, root: Path) -> "Settings":
        ini = root / SETTINGS_FILE
        if not ini.is_file():
            raise ManifestError(f"{ini} not found: tito needs the nbdev settings of the project")
        cp = configparser.ConfigParser()
        cp.read(ini, encoding="utf-8")
        d = cp["DEFAULT"]
        lib_name = d.get("lib_name", "tinytorch")
        return cls(root=root, lib_name=lib_name,
                   lib_path=(root / d.get("lib_path", lib_name)).resolve(),
                   nbs_path=(root / d.get("nbs_path", "nbs")).resolve())


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModuleInfo:
    """One course module as the manifest describes it, with the paths derived from it."""

    number: int
    folder: str
    title: str
    exports: tuple[str, ...]
    prerequisites: tuple[int, ...]
    points: float
    root: Path = field(repr=False)
    nbs_path: Path = field(repr=False)
    notebook_names: tuple[str, ...] = ()
    kit_names: tuple[str, ...] = ()     # PyTorch-compatibility notebooks: op exercises + given plumbing

    @property
    def stems(self) -> tuple[str, ...]:
        """The module's notebook names without ``.ipynb``, the main one (the folder's name) first."""
        return self.notebook_names or (self.folder,)

    @property
    def nn(self) -> str:
        """The two-digit number, e.g. ``"01"``."""
        return f"{self.number:02d}"

    @property
    def name(self) -> str:
        """The folder name without the number, e.g. ``"tensor"``."""
        return self.folder.split("_", 1)[1]

    @property
    def label(self) -> str:
        return f"{self.nn} {self.folder}"

    @property
    def notebook(self) -> Path:
        """``modules/NN_name/NN_name.ipynb`` in this checkout."""
        return self.notebook_in(self.nbs_path)

    def notebook_in(self, nbs_path: str | os.PathLike) -> Path:
        """The main notebook of this module inside another notebooks folder (a student's copy)."""
        return Path(nbs_path) / self.folder / f"{self.folder}.ipynb"

    @property
    def notebooks(self) -> list[Path]:
        """Every notebook of this module in this checkout, the main one first."""
        return self.notebooks_in(self.nbs_path)

    def notebooks_in(self, nbs_path: str | os.PathLike) -> list[Path]:
        return [Path(nbs_path) / self.folder / f"{stem}.ipynb" for stem in self.stems]

    def notebook_label(self, stem: str) -> str:
        """``"01 01_tensor"`` for the main notebook, ``"17 17_compression_sparse"`` for another."""
        return f"{self.nn} {stem}"

    @property
    def tests_dir(self) -> Path:
        """``tests/NN_name/``"""
        return self.root / "tests" / self.folder

    @property
    def checkpoint(self) -> Path:
        """``tests/checkpoints/checkpoint_NN_name.py``"""
        return self.root / "tests" / "checkpoints" / f"checkpoint_{self.folder}.py"

    def test_paths(self) -> list[Path]:
        """The tests dir and the checkpoint file, those that exist."""
        return [p for p in (self.tests_dir, self.checkpoint) if p.exists()]

    def export_files(self, lib_path: str | os.PathLike, lib_name: str = "tinytorch") -> list[Path]:
        """The file each export target is written to under ``lib_path``
        (``tinytorch.core.tensor`` -> ``<lib_path>/core/tensor.py``)."""
        return [module_file(dotted, lib_path, lib_name) for dotted in self.exports]


def module_file(dotted: str, lib_path: str | os.PathLike, lib_name: str = "tinytorch") -> Path:
    """Where nbdev writes the package module ``dotted`` inside ``lib_path``."""
    parts = dotted.split(".")
    if parts[0] != lib_name:
        raise ManifestError(f"export target {dotted!r} is not inside the package {lib_name!r}")
    rel = parts[1:]
    if not rel:
        return Path(lib_path) / "__init__.py"
    return Path(lib_path).joinpath(*rel[:-1]) / f"{rel[-1]}.py"


def parse_module_number(spec) -> int:
    """``1``, ``"1"`` and ``"01"`` -> 1. Anything else that is not a plain non-negative integer
    (``"1.0"``, ``"-1"``, ``"x"``, ``""``, ``True``) raises :class:`UnknownModuleError`."""
    if isinstance(spec, bool):
        raise UnknownModuleError(f"invalid module number {spec!r}")
    if isinstance(spec, int):
        return spec
    s = str(spec)
    if not _NUMBER_RE.fullmatch(s):
        raise UnknownModuleError(
            f"invalid module number {s!r}: give a whole number such as 1 or 01")
    return int(s)


class Manifest:
    """The ordered list of modules, with lookup by number."""

    def __init__(self, modules: list[ModuleInfo], root: Path, settings: Settings):
        self.modules = list(modules)
        self.root = root
        self.settings = settings
        self._by_number = {m.number: m for m in self.modules}

    def __iter__(self):
        return iter(self.modules)

    def __len__(self):
        return len(self.modules)

    @property
    def numbers(self) -> list[int]:
        return [m.number for m in self.modules]

    def valid_range(self) -> str:
        nums = sorted(self.numbers)
        if not nums:
            return "none (the manifest is empty)"
        if nums == list(range(nums[0], nums[-1] + 1)):
            return f"{nums[0]}..{nums[-1]}"
        return ", ".join(map(str, nums))

    def get(self, spec) -> ModuleInfo:
        """The module numbered ``spec`` ("1", "01" or 1). Raises :class:`UnknownModuleError`
        (exit code 2) naming the number and the valid range."""
        try:
            n = parse_module_number(spec)
        except UnknownModuleError as e:
            raise UnknownModuleError(f"{e} (valid module numbers: {self.valid_range()})") from None
        if n not in self._by_number:
            raise UnknownModuleError(
                f"unknown module {spec}: valid module numbers are {self.valid_range()}")
        return self._by_number[n]

    def by_folder(self, folder: str) -> ModuleInfo:
        for m in self.modules:
            if m.folder == folder:
                return m
        raise UnknownModuleError(f"unknown module folder {folder!r}")

    def module_of_notebook(self, path: str | os.PathLike) -> ModuleInfo | None:
        """The module a notebook ``<folder>/<stem>.ipynb`` belongs to (in any notebooks folder),
        or None when it is not one of a module's notebooks."""
        p = Path(path)
        for m in self.modules:
            if p.parent.name == m.folder and p.suffix == ".ipynb" and p.stem in m.stems:
                return m
        return None

    def select(self, specs, all_: bool = False) -> list[ModuleInfo]:
        """Modules named by ``specs`` (in the given order, duplicates dropped), or every module."""
        if all_:
            return list(self.modules)
        out: list[ModuleInfo] = []
        for s in specs:
            m = self.get(s)
            if m not in out:
                out.append(m)
        return out


def _as_tuple(value, kind, where, key):
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                              for v in value):
        raise ManifestError(f"{where}: {key} must be a list of {kind.__name__}, got {value!r}")
    return tuple(value)


def load_manifest(root: str | os.PathLike | None = None) -> Manifest:
    """Read and validate ``modules/manifest.toml`` of the project at ``root`` (default: found
    from the cwd, see :func:`find_root`)."""
    root = find_root() if root is None else Path(root).resolve()
    path = root / MANIFEST_RELPATH
    if not path.is_file():
        raise ManifestError(f"{path} not found")
    settings = Settings.load(root)
    modules: list[ModuleInfo] = []
    for i, e in enumerate(_module_entries(path), 1):
        modules.append(_module_info(e, f"{path.name}: module entry #{i}", path.name, modules, settings, root))
    all_exports = [x for m in modules for x in m.exports]
    dup = sorted({x for x in all_exports if all_exports.count(x) > 1})
    if dup:
        raise ManifestError(f"{path.name}: export targets claimed by two modules: {dup}")
    return Manifest(modules, root, settings)


_REQUIRED_KEYS = ("number", "folder", "title", "exports", "prerequisites", "points")
_OPTIONAL_KEYS = ("notebooks", "kit")


def _module_entries(path: Path) -> list:
    "The [[module]] tables of the manifest file at `path`."
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: invalid TOML: {e}") from None
    entries = data.get("module")
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: expected [[module]] tables, found none")
    return entries


def _module_info(e: dict, where: str, filename: str, earlier: list, settings: Settings,
                 root: Path) -> ModuleInfo:
    "One validated [[module]] entry; `earlier` holds the entries before it (numbers, folders)."
    missing = [k for k in _REQUIRED_KEYS if k not in e]
    if missing:
        raise ManifestError(f"{where} lacks {', '.join(missing)}")
    unknown = sorted(set(e) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        raise ManifestError(f"{where} has unknown keys {unknown}")
    number, folder = e["number"], e["folder"]
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ManifestError(f"{where}: number must be a positive integer, got {number!r}")
    where = f"{filename}: module {number}"
    _check_number_and_folder(number, folder, where, earlier)
    if not isinstance(e["title"], str) or not e["title"].strip():
        raise ManifestError(f"{where}: title must be a non-empty string")
    exports = _as_tuple(e["exports"], str, where, "exports")
    for x in exports:
        if not _DOTTED_RE.match(x) or x.split(".")[0] != settings.lib_name:
            raise ManifestError(
                f"{where}: export {x!r} is not a module path inside {settings.lib_name!r}")
    prereqs = _as_tuple(e["prerequisites"], int, where, "prerequisites")
    for p in prereqs:
        if p not in {m.number for m in earlier}:
            raise ManifestError(
                f"{where}: prerequisite {p} is not an earlier module of the manifest")
    points = e["points"]
    if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
        raise ManifestError(f"{where}: points must be a non-negative number, got {points!r}")
    names = _notebook_names(e, folder, where)
    kit = _as_tuple(e.get("kit", []), str, where, "kit")
    if not set(kit) <= set(names[1:]):
        raise ManifestError(f"{where}: kit must name notebooks of the module other than the main one, "
                            f"got {list(kit)!r}")
    return ModuleInfo(number=number, folder=folder, title=e["title"], exports=exports,
                      prerequisites=prereqs, points=points, root=root, nbs_path=settings.nbs_path,
                      notebook_names=names if len(names) > 1 else (), kit_names=kit)


def _check_number_and_folder(number: int, folder, where: str, earlier: list) -> None:
    if number in {m.number for m in earlier}:
        raise ManifestError(f"{where} appears twice")
    mt = _FOLDER_RE.match(folder) if isinstance(folder, str) else None
    if not mt or int(mt.group(1)) != number:
        raise ManifestError(
            f"{where}: folder must be '{number:02d}_<name>' (lower case), got {folder!r}")
    if folder in {m.folder for m in earlier}:
        raise ManifestError(f"{where}: folder {folder!r} appears twice")


def _notebook_names(e: dict, folder: str, where: str) -> tuple:
    "The module's notebooks (default: the folder's name alone), main one first, each named '<folder>_...'."
    names = _as_tuple(e.get("notebooks", [folder]), str, where, "notebooks")
    if not names or names[0] != folder or len(set(names)) != len(names) or \
            not all(n == folder or n.startswith(folder + "_") for n in names):
        raise ManifestError(f"{where}: notebooks must start with {folder!r} and every name must "
                            f"begin with '{folder}_', without repeats; got {list(names)!r}")
    return names
