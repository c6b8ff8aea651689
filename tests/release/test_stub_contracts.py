"""Issue 12, point 4: every stub states its contract. For each solution block in an exported cell of
every module notebook: the function around it has a docstring; a block that saves on ``ctx`` has a
docstring that says what it saves; and no given code after the block reads a local variable that
only the block creates (the stub returns what the following code needs)."""
import ast
import json
import re
from pathlib import Path

import pytest

from tito.authorship import is_exported
from tito.release import _cell_source, is_begin, is_end

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(ROOT.glob("modules/[0-9][0-9]_*/*.ipynb"))
_SAVES = re.compile(r"ctx\.\w+\s*(,\s*ctx\.\w+\s*)*=[^=]|save_for_backward")


def _blocks(source: str) -> list[tuple[int, int]]:
    out, start = [], None
    for number, line in enumerate(source.split("\n"), 1):
        if is_begin(line):
            start = number
        elif is_end(line) and start is not None:
            out.append((start, number))
            start = None
    return out


def _stored(nodes) -> set[str]:
    return {n.id for s in nodes for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _innermost_function(tree, line: int):
    found = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno < line <= node.end_lineno:
            if found is None or node.lineno > found.lineno:
                found = node
    return found


def contract_problems(source: str, where: str) -> list[str]:
    "What is wrong with the stubs of one exported cell's source (empty when nothing is)."
    blocks = _blocks(source)
    if not blocks:
        return []
    tree, lines, problems = ast.parse(source), source.split("\n"), []
    for begin, end in blocks:
        fn = _innermost_function(tree, begin)
        if fn is None:
            problems.append(f"{where}: the solution block at line {begin} is not inside a function")
            continue
        name = f"{where}: {fn.name} (line {begin})"
        doc = ast.get_docstring(fn)
        if not doc:
            problems.append(f"{name}: the stub has no docstring stating its contract")
            continue
        body = "\n".join(lines[begin:end - 1])
        if _SAVES.search(body) and not re.search(r"[Ss]ave|ctx", doc):
            problems.append(f"{name}: the block saves on ctx but the docstring does not say what")
        inside = [s for s in fn.body if begin < s.lineno < end]
        before = [s for s in fn.body if s.lineno < begin]
        after = [s for s in fn.body if s.lineno > end]
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        params |= {a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None}
        only_block = _stored(inside) - _stored(before) - params
        read_after = {n.id for s in after for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        leaked = sorted((only_block & read_after) - _stored(after))
        if leaked:
            problems.append(f"{name}: given code after the stub reads {', '.join(leaked)}, which only the stub creates")
    return problems


def _cells(notebook: Path):
    for index, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
        if cell.get("cell_type") == "code" and is_exported(_cell_source(cell)):
            yield index, _cell_source(cell)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_states_its_contract(notebook):
    problems = [p for i, src in _cells(notebook) for p in contract_problems(src, f"{notebook.stem} cell {i}")]
    assert not problems, "\n".join(problems)


MAX_EXERCISE_LINES = 35        # issue 12: "a few to ~30 lines each; a longer one is split into steps"


def _long_blocks(source: str, where: str) -> list[str]:
    lines = source.split("\n")
    out = []
    for begin, end in _blocks(source):
        code = [ln for ln in lines[begin:end - 1] if ln.strip() and not ln.strip().startswith("#")]
        if len(code) > MAX_EXERCISE_LINES:
            out.append(f"{where}: the exercise at line {begin} has {len(code)} lines of code; split it into steps")
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_is_student_sized(notebook):
    problems = [p for i, src in _cells(notebook) for p in _long_blocks(src, f"{notebook.stem} cell {i}")]
    assert not problems, "\n".join(problems)


def test_a_long_exercise_is_reported():
    src = "def f():\n    ### BEGIN SOLUTION\n" + "    x = 1\n" * 36 + "    ### END SOLUTION\n"
    assert "36 lines of code" in _long_blocks(src, "nb")[0]
    assert _long_blocks(src.replace("    x = 1\n", "    # x\n", 5), "nb") == []


def test_the_notebooks_have_stubs_to_check():
    blocks = sum(len(_blocks(src)) for nb in NOTEBOOKS for _, src in _cells(nb))
    assert len(NOTEBOOKS) >= 20 and blocks >= 300


def test_the_check_finds_each_kind_of_missing_contract():
    no_doc = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert "no docstring" in contract_problems(no_doc, "nb")[0]
    silent_ctx = ('def forward(ctx, a):\n    "Returns 2a."\n    ### BEGIN SOLUTION\n'
                  '    ctx.a = a\n    return 2 * a\n    ### END SOLUTION\n')
    assert "saves on ctx" in contract_problems(silent_ctx, "nb")[0]
    leak = ('def f(x):\n    "Computes y."\n    ### BEGIN SOLUTION\n    y = x + 1\n    ### END SOLUTION\n'
            '    return y * 2\n')
    assert "reads y" in contract_problems(leak, "nb")[0]
    outside = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"
    assert "not inside a function" in contract_problems(outside, "nb")[0]
    fine = ('def f(x):\n    "Returns y = x + 1; saves nothing."\n    y = 0\n    ### BEGIN SOLUTION\n    y = x + 1\n'
            '    ### END SOLUTION\n    return y\n')
    assert contract_problems(fine, "nb") == []
