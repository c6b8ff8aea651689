"""`tito release`: solution blocks become stubs, nothing of a solution survives, every released
notebook is valid and runs until its first exercise stub, and the student copy is complete.

"Every notebook" is every notebook of every module: a module may have several (``notebooks =
[...]`` in the manifest), each checked on its own. A throwaway project with a two-notebook module
checks this even where the course has no such module yet."""

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from tito.exporter import check_sync
from fake_course import MULTI_MANIFEST, TENSOR_SRC, ops_src, pair_src, write_notebook
from tito.manifest import load_manifest, module_file
from tito.nbrun import run_notebook
from tito.release import (MARKDOWN_STUB, MarkerError, STUB_PREFIX, is_begin, is_end,
                          parse_stub_message, solution_blocks, strip_notebook, strip_source)

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)
RELEASED = [m for m in MANIFEST if m.notebook.is_file()]     # modules that have a notebook
# every notebook of every module that exists: (module, "NN_name/stem.ipynb")
NOTEBOOKS = [(m, f"{m.folder}/{p.name}") for m in MANIFEST for p in m.notebooks if p.is_file()]


def nb_id(item):
    return Path(item[1]).stem


def default_exp_files(nb: dict, lib: Path, lib_name: str = "tinytorch") -> list[Path]:
    """The package files a notebook exports to (its ``#| default_exp`` targets) under ``lib``."""
    out = []
    for c in nb["cells"]:
        for ln in cell_text(c).split("\n"):
            m = re.match(r"^#\|\s*default_exp\s+(\S+)", ln.strip())
            if m and c["cell_type"] == "code":
                out.append(module_file(f"{lib_name}.{m.group(1)}", lib, lib_name))
    return out


def tito(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def cell_text(cell):
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


# ---------------------------------------------------------------------------------------------
# stripping one cell
# ---------------------------------------------------------------------------------------------

CELL = '''#| export
class LinearFunction(Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        ### BEGIN SOLUTION
        out = x @ w.T
        return out
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        ### BEGIN SOLUTION
        return grad @ w, grad.T @ x
        ### END SOLUTION'''


def test_each_block_becomes_one_stub_indented_like_the_block_and_naming_the_exercise():
    out, blocks = strip_source(CELL, "nb.ipynb: cell 3", "module 03", "cell 3")
    assert [b.name for b in blocks] == ["LinearFunction.forward", "LinearFunction.backward"]
    lines = out.split("\n")
    stubs = [ln for ln in lines if STUB_PREFIX in ln]
    assert stubs == [
        '        raise NotImplementedError("Exercise: implement this (module 03, '
        'LinearFunction.forward)")',
        '        raise NotImplementedError("Exercise: implement this (module 03, '
        'LinearFunction.backward)")']
    assert "x @ w.T" not in out and "grad.T @ x" not in out and "SOLUTION" not in out
    # everything outside the blocks is kept, in order
    kept = [ln for ln in CELL.split("\n")]
    for ln in ("#| export", "    def forward(ctx, x, w):", "        ctx.save_for_backward(x, w)",
               "", "    def backward(ctx, grad):", "        x, w = ctx.saved_tensors"):
        assert ln in kept and ln in lines
    assert len(lines) == len(CELL.split("\n")) - 7 + 2
    compile(out.replace("#| export", ""), "<cell>", "exec")


def test_top_level_function_and_two_blocks_in_one_function():
    src = ("def unbroadcast(g, shape):\n    ### BEGIN SOLUTION\n    a = 1\n    ### END SOLUTION\n"
           "    x = 2\n    ### BEGIN SOLUTION\n    return a + x\n    ### END SOLUTION\n")
    out, blocks = strip_source(src, "w", "module 05", "cell 1")
    assert [b.name for b in blocks] == ["unbroadcast, part 1", "unbroadcast, part 2"]
    assert out.count("    raise NotImplementedError(") == 2
    assert "    x = 2" in out.split("\n")


def test_block_outside_any_function_is_named_after_its_cell():
    out, blocks = strip_source("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n", "w",
                               "module 07", "cell 12")
    assert blocks[0].name == "cell 12"
    assert out.split("\n")[1] == ('raise NotImplementedError("Exercise: implement this '
                                  '(module 07, cell 12)")')


def test_markdown_answers_are_replaced_too():
    out, blocks = strip_source("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "w",
                               "module 01", "cell 2", cell_type="markdown")
    assert len(blocks) == 1 and "Because." not in out and "Your answer here" in out


@pytest.mark.parametrize("src, words", [
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION", "nested"),
    ("x = 1\n### END SOLUTION", "without"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
])
def test_unbalanced_or_nested_markers_are_an_error_naming_the_cell(src, words):
    nb = {"cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# t"},
                    {"cell_type": "code", "id": "c0ffee", "metadata": {}, "outputs": [],
                     "execution_count": None, "source": src}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    with pytest.raises(MarkerError) as ei:
        strip_notebook(nb, "modules/09_x/09_x.ipynb", "module 09")
    msg = str(ei.value)
    assert "modules/09_x/09_x.ipynb" in msg and "cell 1" in msg and "c0ffee" in msg
    assert words in msg


def test_stub_that_breaks_the_cell_is_an_error():
    src = "if x:\n### BEGIN SOLUTION\n    y = 1\n### END SOLUTION\nelse:\n    y = 2\n"
    out, _ = strip_source(src, "w", "m", "c")            # the body's indentation is used
    assert out.split("\n")[1].startswith("    raise NotImplementedError")
    bad = "try:\n    a = 1\n### BEGIN SOLUTION\nexcept E:\n    pass\n### END SOLUTION\n"
    with pytest.raises(MarkerError, match="not valid Python"):
        strip_source(bad, "nb: cell 4", "m", "c")


def test_parse_stub_message():
    assert parse_stub_message("Exercise: implement this (module 03, Linear.forward)") == \
        "module 03, Linear.forward"
    assert parse_stub_message("some other error") is None


# ---------------------------------------------------------------------------------------------
# the release of this checkout
# ---------------------------------------------------------------------------------------------

def test_release_is_a_complete_student_copy(release):
    out, report = release
    for rel in ("modules/manifest.toml", "settings.ini", "pyproject.toml",
                "requirements-student.lock", "README.md", "tito/cli.py", "scripts/env.sh",
                "scripts/check.sh", "tinytorch/__init__.py", "tests/checkpoints", "datasets"):
        assert (out / rel).exists(), rel
    # the repository's lock (with PyTorch), its git-based suite and its contributor guide stay
    for rel in ("requirements.lock", "scripts/test.sh", "CONTRIBUTING.md", "tests/tito",
                "tests/jupyter"):
        assert not (out / rel).exists(), rel
    assert (out / "tests" / "checkpoints" / "checkpoint_00_environment.py").is_file()
    # instructor-only tests need the solutions: they are not in a student copy
    assert not (out / "tests" / "release").exists() and not (out / "tests" / "grading").exists()
    assert not (out / "book").exists() and not (out / "tests" / "book").exists()
    for d in ("milestones", "benchmarks"):                 # shipped when the course has them
        assert (out / d).is_dir() == (ROOT / d).is_dir()
    released = sorted(p.relative_to(out / "modules") for p in (out / "modules").rglob("*.ipynb"))
    # the module notebooks (stripped) and the PyTorch-shaped faces (not a chapter: no exercises), as they are
    faces = sorted(p.relative_to(ROOT / "modules") for p in (ROOT / "modules" / "faces").glob("*.ipynb"))
    assert faces and all((out / "modules" / f).read_bytes() == (ROOT / "modules" / f).read_bytes() for f in faces)
    assert released == sorted([Path(k) for k in report.reference] + faces)
    # every notebook of every module (several for some modules) is in the release
    assert {Path(key) for _, key in NOTEBOOKS} <= set(released)
    assert set(report.reference) >= {f"{m.folder}/{m.folder}.ipynb" for m in RELEASED[:1]}
    # no cache copied from the project (the package itself may get Numba caches once run)
    assert not [p for p in out.rglob("__pycache__") if p.relative_to(out).parts[0] != "tinytorch"]


def test_released_package_is_exported_from_the_stripped_notebooks(release):
    out, report = release
    sync = check_sync(out, out / "tinytorch", out / "modules")
    assert sync.in_sync(), (sync.differing, sync.missing, sync.notebook_errors)
    for m, key in NOTEBOOKS:
        if not report.notebooks[out / "modules" / key].n_blocks:
            continue
        files = default_exp_files(json.loads(report.reference[key]), out / "tinytorch")
        assert files, f"{key} has exercises but no `#| default_exp`"
        for f in files:
            assert f in m.export_files(out / "tinytorch"), f"{key} writes {f}, not in the manifest"
            text = f.read_text()
            assert f'raise NotImplementedError("{STUB_PREFIX} (module {m.nn},' in text, f
            assert text != (ROOT / "tinytorch" / f.relative_to(out / "tinytorch")).read_text()


@pytest.mark.parametrize("item", NOTEBOOKS, ids=nb_id)
def test_released_notebook_is_valid_nbformat(release, item):
    out, _ = release
    mod, key = item
    path = out / "modules" / key
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    ref = json.loads(release[1].reference[key])
    assert [c["id"] for c in nb.cells] == [c.get("id") for c in ref["cells"]]


@pytest.mark.parametrize("item", NOTEBOOKS, ids=nb_id)
def test_no_solution_text_survives(release, item):
    out, report = release
    mod, key = item
    path = out / "modules" / key
    rel_nb = json.loads(path.read_text())
    ref_nb = json.loads(report.reference[key])
    blocks = solution_blocks(ref_nb, key)
    assert len(rel_nb["cells"]) == len(ref_nb["cells"])
    raw = path.read_text()
    assert "BEGIN SOLUTION" not in raw and "END SOLUTION" not in raw
    # the package files this notebook exports (for a one-notebook module: all of the module's)
    own = default_exp_files(ref_nb, out / "tinytorch")
    assert blocks == {} or own, f"{key} has exercises but no `#| default_exp`"
    package_text = "".join(f.read_text() for f in own if f.is_file())
    ref_text = "\n".join(cell_text(c) for c in ref_nb["cells"])
    n_stubs = 0
    for i, (ref_cell, rel_cell) in enumerate(zip(ref_nb["cells"], rel_nb["cells"])):
        ref_lines = cell_text(ref_cell).split("\n")
        rel_lines = cell_text(rel_cell).split("\n")
        assert not any(is_begin(ln) or is_end(ln) for ln in rel_lines)
        if i not in blocks:
            assert rel_lines == ref_lines, f"cell {i} changed although it has no solution"
            continue
        inside = {k for b in blocks[i] for k in range(b.begin, b.end + 1)}
        outside = [ln for k, ln in enumerate(ref_lines) if k not in inside]
        outside_set = {ln.strip() for ln in outside}
        rel_set = {ln.strip() for ln in rel_lines}
        for b in blocks[i]:
            for ln in b.body:
                s = ln.strip()
                if not s or s in outside_set:
                    continue
                assert s not in rel_set, f"cell {i}: solution line survives: {s!r}"
                # nor in the package exported for students (a long line is unmistakable)
                if len(s) >= 25 and ref_text.count(s) == 1:
                    assert s not in package_text, f"solution line in the package: {s!r}"
        # everything else is kept: the released cell is the outside lines plus one stub each
        # (a code stub raising NotImplementedError, or the markdown answer placeholder)
        if ref_cell["cell_type"] == "code":
            def is_stub(ln):
                return STUB_PREFIX in ln
        else:
            def is_stub(ln):
                return ln.strip() == MARKDOWN_STUB
        stubs = [ln for ln in rel_lines if is_stub(ln)]
        assert len(stubs) == len(blocks[i])
        assert [ln for ln in rel_lines if not is_stub(ln)] == outside
        n_stubs += len(stubs)
    assert n_stubs == report.notebooks[path].n_blocks


@pytest.fixture(scope="session")
def notebook_runs(release):
    out, _ = release
    paths = {key: out / "modules" / key for _, key in NOTEBOOKS}
    with ThreadPoolExecutor(max_workers=2) as ex:
        futs = {k: ex.submit(run_notebook, p, out / "tinytorch", 300) for k, p in paths.items()}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("item", NOTEBOOKS, ids=nb_id)
def test_released_notebook_runs_until_its_first_exercise_stub(release, notebook_runs, item):
    out, report = release
    mod, key = item
    res = notebook_runs[key]
    all_exercises = {f"module {(MANIFEST.by_folder(p.parent.name)).nn}, {name}"
                     for p, info in report.notebooks.items() for name in info.exercises()}
    if res["status"] == "finished":
        # only a notebook without exercises of its own may run to the end
        assert report.notebooks[out / "modules" / key].n_blocks == 0
    else:
        assert res["status"] == "stub", (
            f"{key}: the first error is not an exercise stub: {res.get('ename')}: "
            f"{res.get('evalue')}\n{res.get('traceback', '')}")
        assert res["ename"] == "NotImplementedError"
        assert res["exercise"] in all_exercises
        assert res["cells_run"] >= 1


def test_reference_notebooks_run_past_where_the_release_stops(release, notebook_runs):
    """The stub is the only reason the released notebook stops: the same notebook with its
    solutions (run against the reference package) gets past that cell."""
    mod = RELEASED[0]
    stop = notebook_runs[f"{mod.folder}/{mod.folder}.ipynb"]
    ref = run_notebook(mod.notebook, ROOT / "tinytorch", 300)
    assert ref["status"] in ("finished", "error", "stub")
    assert ref["status"] != "stub"
    assert ref.get("cell", 10**9) > stop["cell"]


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def test_release_refuses_a_non_empty_out_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = tito("release", out)
    assert r.returncode == 1 and "not empty" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    r = tito("release", out, "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "notes.txt").read_text() == "mine"           # not ours: left alone
    assert (out / "tinytorch" / "core" / "tensor.py").is_file()
    assert "import check: all" in r.stdout and "student copy ready" in r.stdout


def test_release_refuses_to_write_into_the_project(tmp_path):
    r = tito("release", ROOT / "tests" / "x")
    assert r.returncode == 1 and "inside the project" in r.stderr
    assert not (ROOT / "tests" / "x").exists()


def test_release_names_the_notebook_and_cell_of_bad_markers(tmp_path):
    proj = tmp_path / "proj"
    (proj / "modules").mkdir(parents=True)
    for f in ("settings.ini", "pyproject.toml"):
        shutil.copy(ROOT / f, proj / f)
    shutil.copy(ROOT / "modules" / "manifest.toml", proj / "modules" / "manifest.toml")
    nbdir = proj / "modules" / "01_tensor"
    nbdir.mkdir()
    cells = [{"cell_type": "code", "id": "aaa", "metadata": {}, "outputs": [],
              "execution_count": None, "source": "#| default_exp core.tensor"},
             {"cell_type": "code", "id": "bbb", "metadata": {}, "outputs": [],
              "execution_count": None,
              "source": "#| export\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n"}]
    (nbdir / "01_tensor.ipynb").write_text(json.dumps(
        {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    r = tito("--root", proj, "release", tmp_path / "out")
    assert r.returncode == 1
    assert "01_tensor.ipynb" in r.stderr and "cell 1" in r.stderr and "never closed" in r.stderr


# ---------------------------------------------------------------------------------------------
# a module with several notebooks (a throwaway project: module 02 is two notebooks)
# ---------------------------------------------------------------------------------------------

PAIR_SECRET = "return Tensor(t.data * 2)  # the solution of double"
OPS_SECRET = "return double(double(t))  # the solution of quadruple"


@pytest.fixture
def multi_project(tmp_path):
    proj = tmp_path / "proj"
    (proj / "modules").mkdir(parents=True)
    for f in ("settings.ini", "pyproject.toml"):
        shutil.copy(ROOT / f, proj / f)
    (proj / "modules" / "manifest.toml").write_text(MULTI_MANIFEST)
    nbs = proj / "modules"
    write_notebook(nbs / "01_tensor/01_tensor.ipynb", ["# Tensor", "#| default_exp core.tensor", TENSOR_SRC])
    write_notebook(nbs / "02_pair/02_pair.ipynb", [
        "# Pair", "#| default_exp core.pair",
        pair_src(f"    ### BEGIN SOLUTION\n    {PAIR_SECRET}\n    ### END SOLUTION\n"),
        "assert double(Tensor([1.0])).data.tolist() == [2.0]"])
    write_notebook(nbs / "02_pair/02_pair_ops.ipynb", [
        "# Pair ops", "#| default_exp nn.pair_ops",
        ops_src(f"    ### BEGIN SOLUTION\n    {OPS_SECRET}\n    ### END SOLUTION\n"),
        "from tinytorch.core.tensor import Tensor\n"
        "assert quadruple(Tensor([1.0])).data.tolist() == [4.0]"])
    return proj


def test_release_strips_every_notebook_of_a_multi_notebook_module(multi_project, tmp_path):
    out = tmp_path / "student"
    r = tito("--root", multi_project, "release", out, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "released 3 notebook(s)" in r.stdout
    assert "02 02_pair: 1 exercise stub(s): double" in r.stdout
    assert "02 02_pair_ops: 1 exercise stub(s): quadruple" in r.stdout
    for stem, name, secret in (("02_pair", "double", PAIR_SECRET),
                               ("02_pair_ops", "quadruple", OPS_SECRET)):
        raw = (out / "modules/02_pair" / f"{stem}.ipynb").read_text()
        assert secret not in raw and "SOLUTION" not in raw
        # the stub names the module, whichever of its notebooks it is in
        assert f"{STUB_PREFIX} (module 02, {name})" in raw
        # each released notebook runs until its own first exercise
        assert re.search(rf"run modules/02_pair/{stem}\.ipynb: stops at its first exercise "
                         rf"\(module 02, {name}\)", r.stdout), r.stdout
    # the package is exported from the stripped notebooks, both of them
    for f, secret, name in (("core/pair.py", PAIR_SECRET, "double"),
                            ("nn/pair_ops.py", OPS_SECRET, "quadruple")):
        text = (out / "tinytorch" / f).read_text()
        assert secret.split("  #")[0] not in text
        assert f'raise NotImplementedError("{STUB_PREFIX} (module 02, {name})")' in text
    sync = check_sync(out, out / "tinytorch", out / "modules")
    assert sync.in_sync(), (sync.differing, sync.missing, sync.notebook_errors)
    res = run_notebook(out / "modules/02_pair/02_pair_ops.ipynb", out / "tinytorch", 120)
    assert res["status"] == "stub" and res["exercise"] == "module 02, quadruple", res
    # the reference notebooks, untouched, still hold the solutions
    assert OPS_SECRET in (multi_project / "modules/02_pair/02_pair_ops.ipynb").read_text()


def test_release_notes_a_notebook_not_written_yet(multi_project, tmp_path):
    (multi_project / "modules/02_pair/02_pair_ops.ipynb").unlink()
    r = tito("--root", multi_project, "release", tmp_path / "student")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"note: 1 notebook\(s\) of the manifest's modules not written yet .*"
                     r"02_pair_ops\.ipynb", r.stdout), r.stdout
    assert not (tmp_path / "student/modules/02_pair/02_pair_ops.ipynb").exists()


def test_notebook_runner_runs_cells_like_a_kernel_does(tmp_path):
    """A released notebook is run by tito.nbrun, not by a kernel: code that needs its cell's
    source (Numba's `cache=True`, inspect) must work there as it does in Jupyter."""
    lib = tmp_path / "pkg" / "tinytorch"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    nb_path = tmp_path / "nb" / "99_x.ipynb"
    write_notebook(nb_path, [
        "# Runner",
        "import inspect\nimport numba\n\n@numba.njit(cache=True)\ndef plus_one(x):\n"
        "    return x + 1\n\nassert plus_one(1) == 2\n"
        "assert 'return x + 1' in inspect.getsource(plus_one.py_func)",
        f'raise NotImplementedError("{STUB_PREFIX} (module 99, later)")'])
    res = run_notebook(nb_path, lib, 300)
    assert res["status"] == "stub", res
    assert res["cells_run"] == 1 and res["exercise"] == "module 99, later"
    assert not (nb_path.parent / "__pycache__").exists()      # nothing left next to it
