"""Which course modules a milestone needs, and which of them are not done yet.

A milestone's needs are declared by its imports: every ``tinytorch`` module the script (and the
milestone helpers it imports from ``milestones/``) imports, plus everything those package modules
import in turn (read from the package's own files), mapped to the course modules whose
notebooks export them (``modules/manifest.toml``). A module is *not done* while one of its
exported files still holds an exercise stub (``raise NotImplementedError("Exercise: implement
this (...)")``): running the milestone would only end in that stub's traceback.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from .release import STUB_PREFIX

_STUB_RE = re.compile(re.escape(STUB_PREFIX) + r" \(([^)]*)\)")


def _imports(path: Path, package: str | None, lib_name: str) -> tuple[set[str], set[str]]:
    """(tinytorch modules, top-level local names) imported by the file. ``package`` is the
    dotted package of ``path`` for resolving relative imports (None outside the package)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set(), set()
    mods, local = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                (mods if a.name.split(".")[0] == lib_name else local).add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            elif node.level:
                continue
            else:
                name = node.module or ""
            if name.split(".")[0] == lib_name:
                mods.add(name)
                mods.update(f"{name}.{a.name}" for a in node.names)   # `from pkg import sub`
            elif name:
                local.add(name.split(".")[0])
    return mods, local


def _file_of(dotted: str, lib_path: Path, lib_name: str) -> Path | None:
    parts = dotted.split(".")[1:]
    cand = [lib_path.joinpath(*parts).with_suffix(".py") if parts else None,
            lib_path.joinpath(*parts, "__init__.py")]
    return next((c for c in cand if c is not None and c.is_file()), None)


def package_modules_used(script: Path, lib_path: Path, lib_name: str = "tinytorch") -> set[str]:
    """Every package module the milestone script reaches through imports."""
    script = Path(script).resolve()
    todo_files = [script]
    seen_files: set[Path] = set()
    found: set[str] = set()
    queue: list[str] = []
    while todo_files:                        # the script and its helpers in milestones/
        f = todo_files.pop()
        if f in seen_files:
            continue
        seen_files.add(f)
        mods, local = _imports(f, None, lib_name)
        queue.extend(mods)
        for name in local:
            helper = script.parent / f"{name}.py"
            if helper.is_file():
                todo_files.append(helper.resolve())
    while queue:                             # the package modules, transitively
        name = queue.pop()
        parts = name.split(".")
        queue.extend(".".join(parts[:k]) for k in range(1, len(parts))
                     if ".".join(parts[:k]) not in found)     # parent packages run first
        f = _file_of(name, lib_path, lib_name)
        if f is None or name in found:
            continue
        found.add(name)
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        queue.extend(_imports(f, pkg, lib_name)[0])
    return found


@dataclass
class Need:
    module: object                 # ModuleInfo
    stubs: list[str]               # exercises still stubbed in its exported files


def milestone_needs(script: Path, manifest, lib_path: Path | None = None) -> list[Need]:
    """The course modules the milestone needs, in course order, with their remaining stubs."""
    settings = manifest.settings
    lib_path = Path(lib_path or settings.lib_path)
    used = package_modules_used(script, lib_path, settings.lib_name)
    needs = []
    for m in manifest:
        if not any(x in used for x in m.exports):
            continue
        stubs = []
        for f in m.export_files(lib_path, settings.lib_name):
            if f.is_file():
                stubs.extend(w.split(", ", 1)[-1] for w in _STUB_RE.findall(f.read_text()))
        needs.append(Need(m, stubs))
    return needs
