"""Size as a signal (issue 17): files, functions and signatures that have grown too big.

Prints, over the package (tinytorch/, except the generated index _modidx.py) and tito/:

- every file over MAX_FILE_LINES lines;
- every function over MAX_FUNCTION_LINES lines (decorators excluded, docstring included);
- every function with more than MAX_PARAMS parameters (positional and keyword-only; `*args`,
  `**kwargs` and a leading self/cls/ctx do not count): more settings belong in a config object.

A function may keep a long signature only when it copies a PyTorch signature that users call by
keyword (ALLOWED, each with its reason). Exit 0 when nothing else is over a limit, 1 otherwise (an
ALLOWED entry that no longer matches anything is reported too, so the list only shrinks).

    python scripts/size_report.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 60
MAX_PARAMS = 8
FOLDERS = ("tinytorch", "tito")
SKIP_FILES = ("_modidx.py",)          # nbdev's generated index of every exported name

# (file, qualified name, what is over): why it stays. PyTorch-compatible public signatures only.
ALLOWED = {
    ("tinytorch/core/dataloader.py", "DataLoader.__init__", "params"):
        "torch.utils.data.DataLoader's keyword arguments (batch_size, shuffle, sampler, ...), same names",
    ("tinytorch/core/attention.py", "scaled_dot_product_attention", "params"):
        "torch.nn.functional.scaled_dot_product_attention's signature (attn_mask, dropout_p, is_causal, "
        "scale, enable_gqa)",
    ("tinytorch/core/callbacks.py", "ReduceLROnPlateau.__init__", "params"):
        "torch.optim.lr_scheduler.ReduceLROnPlateau's signature (mode, factor, patience, threshold, "
        "threshold_mode, cooldown, min_lr, eps), plus the keyword-only monitor of its Trainer callback",
}


@dataclass(frozen=True)
class Finding:
    path: str          # relative to the root, with '/'
    name: str          # qualified: Class.method, function.inner; "" for a whole file
    kind: str          # "file", "lines" or "params"
    size: int
    line: int

    @property
    def key(self) -> tuple:
        return (self.path, self.name, self.kind)

    def describe(self) -> str:
        if self.kind == "file":
            return f"{self.path}: {self.size} lines (limit {MAX_FILE_LINES})"
        limit = MAX_FUNCTION_LINES if self.kind == "lines" else MAX_PARAMS
        return f"{self.path}:{self.line} {self.name}: {self.size} {self.kind} (limit {limit})"


def param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    "Positional and keyword-only parameters, without *args/**kwargs and a leading self/cls/ctx."
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args)]
    n = len(names) + len(a.kwonlyargs)
    return n - 1 if names and names[0] in ("self", "cls", "ctx") else n


def _functions(tree: ast.AST):
    "(qualified name, node) of every function, methods and nested functions included."
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                yield from walk(child, name + ".")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def scan_file(path: Path, rel: str) -> list[Finding]:
    text = path.read_text(encoding="utf-8")
    found = []
    n_lines = text.count("\n")
    if n_lines > MAX_FILE_LINES:
        found.append(Finding(rel, "", "file", n_lines, 1))
    for name, fn in _functions(ast.parse(text, filename=str(path))):
        lines = fn.end_lineno - fn.lineno + 1
        if lines > MAX_FUNCTION_LINES:
            found.append(Finding(rel, name, "lines", lines, fn.lineno))
        params = param_count(fn)
        if params > MAX_PARAMS:
            found.append(Finding(rel, name, "params", params, fn.lineno))
    return found


def scan(root: Path, folders=FOLDERS) -> list[Finding]:
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if path.name in SKIP_FILES or "__pycache__" in path.parts:
                continue
            found += scan_file(path, path.relative_to(root).as_posix())
    return found


def report(found: list[Finding], allowed: dict = ALLOWED) -> tuple[list[str], list[str]]:
    "(problems, lines about the allowed exceptions): findings not allowed, and allowed entries unused."
    keys = {f.key for f in found}
    problems = [f.describe() for f in found if f.key not in allowed]
    problems += [f"allow-list entry {k} matches nothing any more: remove it" for k in allowed if k not in keys]
    kept = [f"{f.describe()}  [allowed: {allowed[f.key]}]" for f in found if f.key in allowed]
    return problems, kept


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]).resolve() if argv else Path(__file__).resolve().parents[1]
    problems, kept = report(scan(root))
    for line in kept:
        print(line)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} size problem(s) in {', '.join(f + '/' for f in FOLDERS)}", file=sys.stderr)
        return 1
    print(f"sizes ok: no file over {MAX_FILE_LINES} lines, no function over {MAX_FUNCTION_LINES} lines "
          f"or {MAX_PARAMS} parameters outside the {len(ALLOWED)} allowed PyTorch signatures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
