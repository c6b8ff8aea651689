"""A typo in a student notebook: every tito command names the notebook, the cell and the line,
exits non-zero, prints no traceback, and leaves the previously exported package byte for byte
as it was (issue 13, point 6).

The project is the throwaway two-module course of tests/fake_course.py, exported once cleanly;
then one cell of module 02 gets a syntax error (an extra ``)``) or an import of a module that
does not exist, and `tito export 02`, `tito export --all`, `tito module complete 02` and
`tito status` are run in subprocesses.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_course import (MULTI_MANIFEST, PAIR_CHECKPOINT, TENSOR_SRC, ops_src, pair_src,
                         write_notebook)
from tito.nbcode import import_problems, locate_in_notebook, syntax_problems

ROOT = Path(__file__).resolve().parents[2]
GOOD_BODY = "    return Tensor(t.data * 2)\n"
SYNTAX_TYPO = "    return Tensor(t.data * 2))\n"          # line 5 of the cell, one `)` too many
IMPORT_TYPO = "    return Tensor(t.data * 2)\n\nfrom tinytorch.core.tensr import Tensor\n"


def tito(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def package_state(lib: Path) -> dict:
    return {str(p.relative_to(lib)): p.read_bytes() for p in sorted(lib.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def pair_notebook(proj: Path, body: str) -> Path:
    nb = proj / "modules/02_pair/02_pair.ipynb"
    write_notebook(nb, ["# Pair", "#| default_exp core.pair", pair_src(body)])
    return nb


@pytest.fixture
def course(tmp_path):
    """A course exported once from correct notebooks."""
    proj = tmp_path / "course"
    (proj / "modules").mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", proj / "settings.ini")
    shutil.copy(ROOT / "pyproject.toml", proj / "pyproject.toml")
    (proj / "modules/manifest.toml").write_text(MULTI_MANIFEST)
    write_notebook(proj / "modules/01_tensor/01_tensor.ipynb",
                   ["#| default_exp core.tensor", TENSOR_SRC])
    pair_notebook(proj, GOOD_BODY)
    write_notebook(proj / "modules/02_pair/02_pair_ops.ipynb",
                   ["#| default_exp nn.pair_ops", ops_src("    return double(double(t))\n")])
    ck = proj / "tests/checkpoints"
    ck.mkdir(parents=True)
    (ck / "checkpoint_02_pair.py").write_text(PAIR_CHECKPOINT)
    r = tito("export", "--all", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (proj / "tinytorch/core/pair.py").is_file()
    return proj


def assert_clear_message(text: str, line: int, kind: str):
    assert "02_pair/02_pair.ipynb, cell 3 of 3 (id 02_pai2)" in text, text
    assert f"line {line}: " in text and kind in text, text
    assert "Traceback" not in text, text


# --------------------------------------------------------------------------------------------
# syntax error
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("export", "02"), ("export", "--all"),
                                     ("module", "complete", "02")])
def test_a_syntax_error_names_notebook_cell_line_and_leaves_the_package(course, command):
    before = package_state(course / "tinytorch")
    pair_notebook(course, SYNTAX_TYPO)
    r = tito(*command, cwd=course)
    assert r.returncode == 1, r.stdout + r.stderr
    assert_clear_message(r.stderr, 5, "SyntaxError: unmatched ')'")
    assert "return Tensor(t.data * 2))" in r.stderr           # the offending line, quoted
    assert "tinytorch/ is unchanged" in r.stderr
    assert package_state(course / "tinytorch") == before


def test_status_reports_a_syntax_error_and_exits_1(course):
    pair_notebook(course, SYNTAX_TYPO)
    r = tito("status", cwd=course)
    assert r.returncode == 1, r.stdout + r.stderr
    row = next(ln for ln in r.stdout.splitlines() if "02_pair " in ln or ln.endswith("02_pair"))
    assert "export error" in row, r.stdout
    assert_clear_message(r.stdout, 5, "SyntaxError")
    assert "cannot be exported" in r.stderr


def test_after_fixing_the_typo_export_works_again(course):
    pair_notebook(course, SYNTAX_TYPO)
    assert tito("export", "02", cwd=course).returncode == 1
    pair_notebook(course, "    return Tensor(t.data * 3)\n")
    r = tito("export", "02", cwd=course)
    assert r.returncode == 0, r.stderr
    assert "t.data * 3" in (course / "tinytorch/core/pair.py").read_text()
    assert tito("status", cwd=course).returncode == 0


# --------------------------------------------------------------------------------------------
# import error: compiles, but the exported module does not import
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("export", "02"), ("module", "complete", "02")])
def test_an_import_error_names_notebook_cell_line_and_leaves_the_package(course, command):
    before = package_state(course / "tinytorch")
    pair_notebook(course, IMPORT_TYPO)
    r = tito(*command, cwd=course)
    assert r.returncode == 1, r.stdout + r.stderr
    # the cell's line 7 (nbdev drops the `#| export` line 1 from the exported file)
    assert_clear_message(r.stderr, 7, "ModuleNotFoundError")
    assert "importing tinytorch.core.pair fails" in r.stderr
    assert "from tinytorch.core.tensr import Tensor" in r.stderr
    assert package_state(course / "tinytorch") == before


def test_status_reports_an_import_error_of_a_changed_notebook(course):
    pair_notebook(course, IMPORT_TYPO)
    r = tito("status", cwd=course)
    assert r.returncode == 1, r.stdout + r.stderr
    assert_clear_message(r.stdout, 7, "ModuleNotFoundError")


# --------------------------------------------------------------------------------------------
# the checks themselves
# --------------------------------------------------------------------------------------------

def test_magics_and_shell_lines_compile_and_errors_count_lines_in_the_cell(tmp_path):
    nb = tmp_path / "m" / "m.ipynb"
    write_notebook(nb, ["%timeit sum(range(3))\n!echo hi\nx = 1", "# text",
                        "a = 1\nb = (2,\nc = 3", "await_me = 1\n"])
    problems = syntax_problems(nb)
    assert [(p.cell, p.n_cells, p.line, p.kind) for p in problems] == [(3, 4, 2, "SyntaxError")]
    assert problems[0].text == "b = (2,"


def test_an_import_error_is_traced_to_its_cell_line(course, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(course, copy)
    lib = copy / "tinytorch"
    nb = pair_notebook(copy, IMPORT_TYPO)
    pair = lib / "core/pair.py"
    pair.write_text(pair.read_text() + "\nfrom tinytorch.core.tensr import Tensor\n")
    # the copy's file points at the course's notebook: the marker above the line names the cell
    text = pair.read_text().split("\n")
    lineno = next(i for i, ln in enumerate(text, 1) if "tensr" in ln)
    nb_found, cid, line = locate_in_notebook(pair, lineno)
    assert (nb_found, cid, line) == (nb, "02_pai2", 7)
    probs = import_problems(lib, ["tinytorch.core.pair"])
    assert len(probs) == 1 and probs[0].kind == "ModuleNotFoundError"
    assert probs[0].module == "tinytorch.core.pair" and probs[0].cell == 3
    assert json.loads(nb.read_text())["cells"][2]["id"] == "02_pai2"
