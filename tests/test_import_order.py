"""Chapter order is import order (SPEC section 2).

Every exported file of the package (each manifest module's `exports`) is read as source (AST): its
`import` and `from ... import` statements at any depth (inside functions too), and
`importlib.import_module("...")` / `__import__("...")` calls with a literal name. Each import of a
package module is mapped to the module number that exports it. The test fails when

- an import points to a later module (a higher number), except the one documented exception:
  `Tensor.backward` (module 01) importing module 05's engine at call time;
- an import points to a module that is not among the importing module's prerequisites (the
  manifest's `prerequisites`, followed transitively): the manifest must say what a chapter builds on.
  (The other way round is allowed: a chapter may build on an earlier one it does not import, e.g.
  module 05 trains the layers and losses of 02-04 in its notebook but its engine imports only 01.)
- an import names a package module that no manifest module exports.

KNOWN_VIOLATIONS lists the violations that are known and being fixed elsewhere; the test fails too
when one of them no longer occurs, so the list only ever shrinks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tito.manifest import load_manifest, module_file

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = load_manifest(ROOT)
LIB = MANIFEST.settings.lib_path
LIB_NAME = MANIFEST.settings.lib_name

# The documented exception (SPEC section 2): Tensor.backward delegates at call time to module 05's
# engine, as torch.Tensor.backward delegates to torch.autograd.backward.
ALLOWED = {("tinytorch.core.tensor", "Tensor.backward", "tinytorch.core.autograd")}

# Known violations, fixed elsewhere and not merged yet; empty now that every module follows the
# chapter order. Each entry is (importing package module, where, imported package module).
KNOWN_VIOLATIONS: set = set()


@dataclass(frozen=True)
class Import:
    source: str          # the importing package module (dotted)
    scope: str           # "Class.method", "function" or "<module>"
    target: str          # the imported package module (dotted), resolved
    line: int


def module_numbers() -> dict[str, int]:
    """Package module -> module number; the package root itself (its `__init__`, the version) is 0:
    every chapter may import it."""
    return {LIB_NAME: 0, **{x: m.number for m in MANIFEST for x in m.exports}}


def _resolve_from(source: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = source.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _package_targets(name: str, known: set[str]) -> list[str]:
    """The exported package module a dotted import name refers to: the longest known prefix."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in known:
            return [cand]
    return [name] if name.split(".")[0] == LIB_NAME else []


def _literal_import_call(node: ast.Call) -> str | None:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name in ("import_module", "__import__") and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        return "<non-literal>"
    return None


def scan(source: str, text: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import of a package module in `text` (the source of package module `source`)."""
    tree = ast.parse(text)
    found: list[Import] = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if scope == "<module>" else f"{scope}.{child.name}"
            if isinstance(child, ast.Import):
                for a in child.names:
                    for t in _package_targets(a.name, known):
                        found.append(Import(source, scope, t, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve_from(source, child, is_package)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    targets = [sub] if sub in known else _package_targets(base, known)
                    for t in targets:
                        found.append(Import(source, scope, t, child.lineno))
            elif isinstance(child, ast.Call):
                lit = _literal_import_call(child)
                if lit == "<non-literal>":
                    found.append(Import(source, scope, "<non-literal import_module>", child.lineno))
                elif lit:
                    for t in _package_targets(lit, known):
                        found.append(Import(source, scope, t, child.lineno))
            visit(child, inner)

    visit(tree, "<module>")
    return [i for i in found if i.target != source]


def all_imports(lib: Path = LIB) -> list[Import]:
    numbers = module_numbers()
    known = set(numbers)
    out = []
    for name in numbers:
        if name == LIB_NAME:
            continue
        path = module_file(name, lib, LIB_NAME)
        if path.is_file():
            out += scan(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", known)
    return out


def _closure(start: set[int], edges: dict[int, set[int]]) -> set[int]:
    seen, stack = set(), list(start)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(edges.get(n, ()))
    return seen


def violations(imports: list[Import]) -> dict[tuple, list[Import]]:
    """{(source, kind, target): [imports]} for every rule an import breaks; kinds: "later",
    "not a prerequisite", "unknown module"."""
    numbers = module_numbers()
    prereq = {0: set(), **{m.number: set(m.prerequisites) for m in MANIFEST}}
    out: dict[tuple, list[Import]] = {}
    for i in imports:
        if (i.source, i.scope, i.target) in ALLOWED:
            continue
        src = numbers[i.source]
        if i.target not in numbers:
            out.setdefault((i.source, "unknown module", i.target), []).append(i)
            continue
        dst = numbers[i.target]
        if dst == src or dst == 0:
            continue
        if dst > src:
            out.setdefault((i.source, "later", i.target), []).append(i)
        if dst not in _closure(prereq[src], prereq):
            out.setdefault((i.source, "not a prerequisite", i.target), []).append(i)
    return out


def _describe(key, items) -> str:
    where = ", ".join(f"line {i.line} in {i.scope}" for i in items) or "the manifest"
    return f"{key[0]}: {key[1]}: {key[2]} ({where})"


# ---------------------------------------------------------------------------------------------
# the rules, checked on the package
# ---------------------------------------------------------------------------------------------
def face_modules() -> tuple:
    "The PyTorch-shaped faces (the manifest's [faces] table): above every chapter, imported by none."
    import tomllib
    data = tomllib.loads((ROOT / "modules" / "manifest.toml").read_text(encoding="utf-8"))
    return tuple(data.get("faces", {}).get("exports", ()))


def test_every_package_file_belongs_to_a_manifest_module():
    known = {module_file(x, LIB, LIB_NAME).resolve() for x in (*module_numbers(), *face_modules())}
    stray = [p.relative_to(ROOT) for p in LIB.rglob("*.py")
             if p.resolve() not in known and p.name not in ("__init__.py", "_modidx.py")]
    assert not stray, f"package files no manifest module exports (their imports go unchecked): {stray}"


def test_imports_follow_the_chapter_order_and_the_manifest():
    found = violations(all_imports())
    new = {k: v for k, v in found.items() if k not in KNOWN_VIOLATIONS}
    assert not new, "imports against the chapter order or the manifest:\n" + "\n".join(
        _describe(k, v) for k, v in sorted(new.items()))


def test_known_violations_still_occur():
    # an entry that no longer occurs must leave the list, so the list only shrinks
    found = violations(all_imports())
    gone = sorted(KNOWN_VIOLATIONS - set(found))
    assert not gone, f"fixed: remove from KNOWN_VIOLATIONS: {gone}"


def test_the_documented_exception_is_the_only_one_and_is_call_time():
    imports = all_imports()
    # (module 01's own second notebook, tensor_kit, is the same chapter: TensorKit reaches it lazily)
    to_engine = [i for i in imports if i.source == "tinytorch.core.tensor" and module_numbers().get(i.target) != 1]
    assert [(i.scope, i.target) for i in to_engine] == [("Tensor.backward", "tinytorch.core.autograd")]


# ---------------------------------------------------------------------------------------------
# the scanner itself can fail
# ---------------------------------------------------------------------------------------------
KNOWN = {"tinytorch.core.tensor", "tinytorch.core.autograd", "tinytorch.core.layers",
         "tinytorch.optimization.quantization"}


@pytest.mark.parametrize("code, target, scope", [
    ("from .autograd import backward", "tinytorch.core.autograd", "<module>"),
    ("from tinytorch.core import autograd", "tinytorch.core.autograd", "<module>"),
    ("import tinytorch.core.autograd as a", "tinytorch.core.autograd", "<module>"),
    ("def f():\n    from .autograd import x", "tinytorch.core.autograd", "f"),
    ("class C:\n    def g(self):\n        import tinytorch.core.autograd", "tinytorch.core.autograd", "C.g"),
    ("import importlib\ndef f():\n    return importlib.import_module('tinytorch.optimization.quantization')",
     "tinytorch.optimization.quantization", "f"),
    ("from importlib import import_module\nm = import_module('tinytorch.core.layers')",
     "tinytorch.core.layers", "<module>"),
    ("m = __import__('tinytorch.core.autograd')", "tinytorch.core.autograd", "<module>"),
    ("from ..core.layers import Linear", "tinytorch.core.layers", "<module>"),
])
def test_scanner_finds_every_form_of_import(code, target, scope):
    src = "tinytorch.optimization.x" if ".." in code else "tinytorch.core.tensor"
    found = scan(src, code, False, KNOWN)
    assert [(i.target, i.scope) for i in found] == [(target, scope)]


def test_scanner_flags_a_non_literal_import_module():
    found = scan("tinytorch.core.tensor", "import importlib\nname = 'x'\nimportlib.import_module(name)",
                 False, KNOWN)
    assert [i.target for i in found] == ["<non-literal import_module>"]


def test_a_backward_import_is_reported():
    imports = [Import("tinytorch.core.tensor", "<module>", "tinytorch.core.layers", 3)]
    found = violations(imports)
    assert ("tinytorch.core.tensor", "later", "tinytorch.core.layers") in found
    assert ("tinytorch.core.tensor", "not a prerequisite", "tinytorch.core.layers") in found
