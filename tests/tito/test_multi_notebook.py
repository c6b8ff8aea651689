"""A module made of several notebooks (``notebooks = [...]`` in the manifest: nbdev writes one
package module per notebook) is one module to every tito command: export, status and module
complete handle all of its notebooks. Also: ``tito test --lib-path`` tests exactly that package.

The multi-notebook tests run against a throwaway project (the real settings.ini and
pyproject.toml, a three-module manifest) whose module 02 is one chapter in two notebooks:
``02_pair.ipynb`` (``tinytorch.core.pair``) and ``02_pair_ops.ipynb`` (``tinytorch.nn.pair_ops``,
which imports the first). So the behaviour is tested whatever the course's own modules look like.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_course import MULTI_MANIFEST, PAIR_CHECKPOINT, TENSOR_SRC, ops_src, pair_src, write_notebook
from tito.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]

MANIFEST = MULTI_MANIFEST + '''
[[module]]
number = 3
folder = "03_later"
title = "Later: not written yet"
exports = ["tinytorch.core.later"]
prerequisites = [2]
points = 10
'''
PAIR_SRC = pair_src("    return Tensor(t.data * 2)\n")
OPS_SRC = ops_src("    return double(double(t))\n")
CHECKPOINT = PAIR_CHECKPOINT


def tito(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def status_rows(stdout):
    rows = {}
    for ln in stdout.splitlines():
        m = re.match(r"^(\d{2})\s+(\d{2}_[a-z0-9_]+)\s", ln)
        if m:
            rows[m.group(2)] = ln.split()
    return rows


@pytest.fixture
def project(tmp_path):
    proj = tmp_path / "proj"
    (proj / "modules").mkdir(parents=True)
    for f in ("settings.ini", "pyproject.toml"):
        shutil.copy(ROOT / f, proj / f)
    (proj / "modules" / "manifest.toml").write_text(MANIFEST, encoding="utf-8")
    nbs = proj / "modules"
    write_notebook(nbs / "01_tensor/01_tensor.ipynb",
                   ["# Tensor", "#| default_exp core.tensor", TENSOR_SRC])
    write_notebook(nbs / "02_pair/02_pair.ipynb",
                   ["# Pair", "#| default_exp core.pair", PAIR_SRC])
    write_notebook(nbs / "02_pair/02_pair_ops.ipynb",
                   ["# Pair ops", "#| default_exp nn.pair_ops", OPS_SRC])
    return proj


def test_manifest_lists_every_notebook_of_the_module(project):
    m = load_manifest(project)
    pair = m.get(2)
    assert pair.stems == ("02_pair", "02_pair_ops")
    assert pair.notebook == project / "modules/02_pair/02_pair.ipynb"
    assert pair.notebooks == [project / "modules/02_pair/02_pair.ipynb",
                              project / "modules/02_pair/02_pair_ops.ipynb"]
    assert m.get(1).notebooks == [m.get(1).notebook]
    assert m.module_of_notebook(project / "modules/02_pair/02_pair_ops.ipynb") is pair
    assert m.module_of_notebook("/elsewhere/02_pair/02_pair.ipynb") is pair
    assert m.module_of_notebook(project / "modules/02_pair/scratch.ipynb") is None
    assert m.module_of_notebook(project / "modules/01_tensor/02_pair_ops.ipynb") is None


def test_export_writes_every_notebook_of_the_module(project, tmp_path):
    for stem in ("02_pair", "02_pair_ops"):             # as Jupyter leaves them: to be cleaned
        path = project / f"modules/02_pair/{stem}.ipynb"
        nb = json.loads(path.read_text())
        for c in nb["cells"]:
            c["metadata"] = {"scrolled": True}
        path.write_text(json.dumps(nb, indent=1))
    lib = tmp_path / "out" / "tinytorch"
    assert tito("--root", project, "export", "1", "--lib-path", lib).returncode == 0
    r = tito("--root", project, "export", "2", "--lib-path", lib)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exported 2 notebook(s)" in r.stdout
    assert re.search(r"02 02_pair: tinytorch\.core\.pair\b", r.stdout), r.stdout
    assert re.search(r"02 02_pair_ops: tinytorch\.nn\.pair_ops\b", r.stdout), r.stdout
    assert "def double" in (lib / "core" / "pair.py").read_text()
    ops = (lib / "nn" / "pair_ops.py").read_text()
    assert "def quadruple" in ops and "from ..core.pair import double" in ops
    assert (lib / "nn" / "__init__.py").exists()
    # both notebooks were cleaned by the export, not only the main one
    for stem in ("02_pair", "02_pair_ops"):
        nb = json.loads((project / f"modules/02_pair/{stem}.ipynb").read_text())
        assert all(c["metadata"] == {} for c in nb["cells"])
    code = ("from tinytorch.nn.pair_ops import quadruple; from tinytorch.core.tensor import Tensor;"
            "print(quadruple(Tensor([1.5])).data.tolist())")
    p = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": str(lib.parent),
                                                    "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[6.0]"


def test_export_names_a_missing_notebook_of_the_module(project, tmp_path):
    (project / "modules/02_pair/02_pair_ops.ipynb").unlink()
    lib = tmp_path / "out" / "tinytorch"
    r = tito("--root", project, "export", "1", "2", "--lib-path", lib)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "02_pair_ops.ipynb" in r.stderr and "not found" in r.stderr
    assert "tinytorch.nn.pair_ops" in r.stderr          # what is therefore not exported
    assert "02_pair.ipynb" not in r.stderr.replace("02_pair_ops.ipynb", "")
    # the notebooks that exist are still exported
    assert (lib / "core" / "pair.py").is_file() and (lib / "core" / "tensor.py").is_file()
    assert not (lib / "nn" / "pair_ops.py").exists()


def test_export_with_no_notebook_of_the_module_names_all_of_them(project, tmp_path):
    shutil.rmtree(project / "modules/02_pair")
    r = tito("--root", project, "export", "2", "--lib-path", tmp_path / "o" / "tinytorch")
    assert r.returncode == 1
    assert "02_pair/02_pair.ipynb" in r.stderr and "02_pair/02_pair_ops.ipynb" in r.stderr
    assert not (tmp_path / "o").exists()


def test_export_checks_the_manifest_against_what_all_notebooks_wrote(project, tmp_path):
    nb = project / "modules/02_pair/02_pair_ops.ipynb"
    nb.write_text(nb.read_text().replace("nn.pair_ops", "nn.other_ops"))
    lib = tmp_path / "out" / "tinytorch"
    r = tito("--root", project, "export", "--all", "--lib-path", lib)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "tinytorch.nn.pair_ops" in r.stderr and "did not write" in r.stderr
    assert "02 02_pair" in r.stderr                     # the module, not a notebook, is named
    assert "tinytorch.core.pair" not in r.stderr        # written by the main notebook
    assert "also wrote tinytorch.nn.other_ops" in r.stdout


def test_status_is_in_sync_only_when_every_notebook_exists_and_is_exported(project):
    rows = status_rows(tito("--root", project, "status").stdout)
    assert rows["02_pair"][2:4] == ["yes", "missing"]
    assert rows["03_later"][2:4] == ["no", "no"]        # "no notebook"

    assert tito("--root", project, "export", "--all").returncode == 0
    r = tito("--root", project, "status")
    rows = status_rows(r.stdout)
    assert rows["02_pair"][2:5] == ["yes", "in", "sync"], r.stdout

    # the second notebook changes: the module is stale
    ops = project / "modules/02_pair/02_pair_ops.ipynb"
    ops.write_text(ops.read_text().replace("double(double(t))", "double(double(double(t)))"))
    r = tito("--root", project, "status")
    rows = status_rows(r.stdout)
    assert rows["02_pair"][3] == "stale", r.stdout
    assert re.search(r"02_pair: tinytorch/nn/pair_ops\.py differs", r.stdout), r.stdout

    # the second notebook is gone: not in sync although the package still has both files
    ops.unlink()
    r = tito("--root", project, "status")
    rows = status_rows(r.stdout)
    assert rows["02_pair"][2:4] == ["1/2", "incomplete"], r.stdout
    assert re.search(r"02_pair: notebook\(s\) missing: modules/02_pair/02_pair_ops\.ipynb",
                     r.stdout), r.stdout
    assert rows["01_tensor"][2:5] == ["yes", "in", "sync"]


def test_module_complete_exports_every_notebook_of_the_module(project):
    (project / "tests/checkpoints").mkdir(parents=True)
    (project / "tests/checkpoints/checkpoint_02_pair.py").write_text(CHECKPOINT)
    assert tito("--root", project, "export", "1").returncode == 0
    r = tito("--root", project, "module", "complete", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "modules/02_pair/02_pair.ipynb, modules/02_pair/02_pair_ops.ipynb" in r.stdout
    assert f"tested package: {project / 'tinytorch'}" in r.stdout
    assert re.search(r"checkpoint tests/checkpoints/checkpoint_02_pair.py: 2/2 passed", r.stdout)
    assert (project / "tinytorch/nn/pair_ops.py").is_file()

    # a wrong second notebook is what the checkpoint sees
    ops = project / "modules/02_pair/02_pair_ops.ipynb"
    ops.write_text(ops.read_text().replace("double(double(t))", "double(t)"))
    r = tito("--root", project, "module", "complete", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"FAILED\s+test_quadruple", r.stdout) and re.search(r"PASS\s+test_double",
                                                                           r.stdout)

    ops.unlink()
    r = tito("--root", project, "module", "complete", "2")
    assert r.returncode == 1
    assert "02_pair_ops.ipynb" in r.stderr and "missing" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# tito test --lib-path: the package under test, and only it
# ---------------------------------------------------------------------------------------------

def test_test_lib_path_fails_on_a_package_missing_core_instead_of_using_the_reference(tmp_path):
    """The editable install maps `tinytorch` to this checkout; a package without `core/` must
    not have its missing piece filled in from there."""
    bare = tmp_path / "bare" / "tinytorch"
    bare.mkdir(parents=True)
    (bare / "__init__.py").write_text('__version__ = "0.1.0"\n')
    r = tito("test", "1", "--lib-path", bare)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL 01 01_tensor" in r.stdout, r.stdout
    assert "No module named 'tinytorch.core'" in r.stdout, r.stdout[-3000:]
    assert not re.search(r"\b\d+ passed\b", r.stdout), r.stdout[-3000:]
    # the same tests against the reference package itself, given as --lib-path, pass
    r = tito("test", "1", "--lib-path", ROOT / "tinytorch")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "PASS 01 01_tensor" in r.stdout


def test_test_lib_path_fails_a_run_that_imports_tinytorch_from_elsewhere(project, tmp_path):
    assert tito("--root", project, "export", "--all").returncode == 0
    lib = tmp_path / "student" / "tinytorch"
    shutil.copytree(project / "tinytorch", lib)
    (project / "tests/01_tensor").mkdir(parents=True)
    (project / "tests/01_tensor/test_sneaky.py").write_text(
        "import sys\n"
        "def test_imports_the_other_package():\n"
        "    import tinytorch\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] == 'tinytorch']:\n"
        "        del sys.modules[k]\n"
        f"    sys.path.insert(0, {str(project)!r})\n"
        "    import tinytorch.core.tensor as t\n"
        "    assert t.Tensor([1]).data.tolist() == [1.0]\n")
    r = tito("--root", project, "test", "1", "--lib-path", lib)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL 01 01_tensor" in r.stdout
    assert f"tinytorch imported from outside {lib.resolve()}" in r.stdout
    assert str(project / "tinytorch") in r.stdout
