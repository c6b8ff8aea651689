"""Tests of the `tito` command line: manifest, module lookup, export, test, status.

Most run `python -m tito.cli` in a subprocess (real exit codes, no shared state) against either
the real checkout or a small throwaway project built in tmp_path from the real settings.ini,
manifest and pyproject.toml plus two tiny notebooks.
"""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tito.cli import main
from tito.errors import UnknownModuleError
from tito.manifest import load_manifest, parse_module_number

ROOT = Path(__file__).resolve().parents[2]

# SPEC.md section 2: the oracle for the module folders, in order.
SPEC_FOLDERS = [
    "01_tensor", "02_activations", "03_layers", "04_losses", "05_autograd", "06_optimizers",
    "07_training", "08_dataloader", "09_spatial", "10_tokenization", "11_embeddings",
    "12_attention", "13_transformers", "14_profiling", "15_memoization", "16_quantization",
    "17_compression", "18_acceleration", "19_benchmarking", "20_capstone",
]


def status_rows(stdout):
    """{folder: table row} from `tito status` output."""
    rows = {}
    for ln in stdout.splitlines():
        m = re.match(r"^(\d{2})\s+(\d{2}_[a-z0-9_]+)\s", ln)
        if m:
            rows[m.group(2)] = ln
    return rows


def tito(*args, cwd=ROOT, env=None):
    """Run `python -m tito.cli ARGS` from the checkout (so this tito is the one imported)."""
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                          env=env)


# ---------------------------------------------------------------------------------------------
# manifest and module lookup
# ---------------------------------------------------------------------------------------------

def test_manifest_has_the_20_spec_modules_in_order():
    m = load_manifest(ROOT)
    assert [mod.number for mod in m] == list(range(1, 21))
    assert [mod.folder for mod in m] == SPEC_FOLDERS
    for mod in m:
        assert mod.notebook == ROOT / "modules" / mod.folder / f"{mod.folder}.ipynb"
        assert mod.tests_dir == ROOT / "tests" / mod.folder
        assert mod.checkpoint == ROOT / "tests" / "checkpoints" / f"checkpoint_{mod.folder}.py"
        assert mod.exports and all(x.startswith("tinytorch.") for x in mod.exports)
        assert all(p < mod.number for p in mod.prerequisites)
        assert mod.points > 0


@pytest.mark.parametrize("spec", ["1", "01", 1])
def test_lookup_accepts_plain_and_zero_padded_numbers(spec):
    assert load_manifest(ROOT).get(spec).folder == "01_tensor"


@pytest.mark.parametrize("spec", ["1.0", "x", "", " 1", "-1", "1e0", True])
def test_lookup_rejects_malformed_numbers(spec):
    with pytest.raises(UnknownModuleError) as ei:
        load_manifest(ROOT).get(spec)
    assert ei.value.exit_code == 2
    assert "1..20" in str(ei.value)


def test_parse_module_number():
    assert parse_module_number("07") == 7
    with pytest.raises(UnknownModuleError):
        parse_module_number("7.0")


@pytest.mark.parametrize("number", ["21", "0", "99"])
def test_unknown_module_number_exits_2_and_names_it(number):
    r = tito("export", number)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"unknown module {number}" in r.stderr
    assert "1..20" in r.stderr


@pytest.mark.parametrize("command", ["export", "test"])
def test_malformed_module_number_exits_2_in_process(command, capsys):
    assert main(["--root", str(ROOT), command, "1.0"]) == 2
    err = capsys.readouterr().err
    assert "'1.0'" in err and "1..20" in err


def test_test_command_rejects_unknown_module(capsys):
    assert main(["--root", str(ROOT), "test", "21"]) == 2
    assert "unknown module 21" in capsys.readouterr().err


def test_export_without_module_or_all_is_a_usage_error(capsys):
    assert main(["--root", str(ROOT), "export"]) == 2
    assert "--all" in capsys.readouterr().err


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# a throwaway project: real settings.ini/manifest/pyproject, two tiny notebooks
# ---------------------------------------------------------------------------------------------

def _cell(source, cell_id, cell_type="code"):
    c = {"cell_type": cell_type, "id": cell_id, "metadata": {}, "source": source}
    if cell_type == "code":
        c.update(execution_count=None, outputs=[])
    return c


def write_notebook(path, cells):
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


TENSOR_SRC = ("#| export\nimport numpy as np\n\nclass Tensor:\n"
              "    def __init__(self, data):\n        self.data = np.asarray(data, dtype=np.float32)\n")
RELU_SRC = ("#| export\nimport numpy as np\nfrom tinytorch.core.tensor import Tensor\n\n"
            "def relu(x):\n    return Tensor(np.maximum(x.data, 0))\n")


@pytest.fixture
def project(tmp_path):
    proj = tmp_path / "proj"
    (proj / "modules").mkdir(parents=True)
    for f in ("settings.ini", "pyproject.toml", "modules/manifest.toml"):
        shutil.copy(ROOT / f, proj / f)
    # this project's module 01 is one notebook (the real one also has the notebooks of its PyTorch kit)
    manifest = proj / "modules/manifest.toml"
    text = re.sub(r'(folder = "01_tensor"\ntitle = [^\n]*\n)exports = [^\n]*\n(notebooks = [^\n]*\n)?(kit = [^\n]*\n)?',
                  r'\1exports = ["tinytorch.core.tensor"]\n', manifest.read_text())
    assert 'notebooks = ["01_tensor"' not in text and 'kit = ["01_tensor' not in text
    manifest.write_text(text)
    dirty = _cell("t = Tensor([1.0])\nt.data", "c3")
    dirty.update(execution_count=7, metadata={"scrolled": True},
                 outputs=[{"output_type": "execute_result", "execution_count": 7,
                           "metadata": {}, "data": {"text/plain": ["array([1.], dtype=float32)"]}}])
    write_notebook(proj / "modules/01_tensor/01_tensor.ipynb", [
        _cell("# Tensor\n\n> the data structure", "c0", "markdown"),
        _cell("#| default_exp core.tensor", "c1"), _cell(TENSOR_SRC, "c2"), dirty])
    write_notebook(proj / "modules/02_activations/02_activations.ipynb", [
        _cell("#| default_exp core.activations", "d1"), _cell(RELU_SRC, "d2")])
    return proj


def test_export_into_a_temporary_lib_path(project, tmp_path):
    lib = tmp_path / "student" / "tinytorch"
    r = tito("--root", project, "export", "1", "--lib-path", lib)
    assert r.returncode == 0, r.stdout + r.stderr
    target = lib / "core" / "tensor.py"
    assert target.is_file()
    text = target.read_text()
    assert "class Tensor:" in text and "__all__ = ['Tensor']" in text
    assert "tinytorch.core.tensor" in r.stdout
    assert (lib / "__init__.py").read_text().startswith('__version__ = "0.1.0"')
    assert (lib / "core" / "__init__.py").exists() and (lib / "_modidx.py").exists()
    # the project's own package is untouched
    assert not (project / "tinytorch").exists()
    # the notebook was cleaned: execution counts and extra cell metadata gone
    nb = json.loads((project / "modules/01_tensor/01_tensor.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is None and c["metadata"] == {} for c in code)


def test_exported_package_imports_from_its_own_location(project, tmp_path):
    lib = tmp_path / "out" / "tinytorch"
    r = tito("--root", project, "export", "--all", "--lib-path", lib, "--no-clean")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from .tensor import Tensor" in (lib / "core" / "activations.py").read_text()
    env = {**os.environ, "PYTHONPATH": str(lib.parent)}
    code = ("import tinytorch.core.activations as a, tinytorch.core.tensor as t;"
            "print(a.relu(t.Tensor([-1.0, 2.0])).data.tolist()); print(a.__file__)")
    p = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0] == "[0.0, 2.0]"
    assert Path(out[1]).resolve() == (lib / "core" / "activations.py").resolve()


def test_export_lib_path_must_be_named_like_the_package(project, tmp_path):
    r = tito("--root", project, "export", "1", "--lib-path", tmp_path / "pkg")
    assert r.returncode == 1
    assert "must be a directory named 'tinytorch'" in r.stderr
    assert not (tmp_path / "pkg").exists()


def test_export_of_a_module_without_notebook_fails(project):
    r = tito("--root", project, "export", "3")
    assert r.returncode == 1
    assert "03_layers" in r.stderr and "not found" in r.stderr


def _nbdev_export(cwd):
    exe = Path(sys.executable).parent / "nbdev_export"
    cmd = [str(exe)] if exe.exists() else [
        sys.executable, "-c", "from nbdev.doclinks import nbdev_export; nbdev_export()"]
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def _py_files(lib):
    return {p.relative_to(lib).as_posix(): p.read_text()
            for p in sorted(lib.rglob("*.py")) if "__pycache__" not in p.parts}


def test_export_all_writes_exactly_what_nbdev_export_writes(project, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(project, twin)
    r = tito("--root", project, "export", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    _nbdev_export(twin)
    mine, theirs = _py_files(project / "tinytorch"), _py_files(twin / "tinytorch")
    assert set(mine) == {"__init__.py", "_modidx.py", "core/__init__.py", "core/tensor.py",
                         "core/activations.py"}
    assert mine == theirs


def test_status_tracks_export_state_and_test_results(project):
    r = tito("--root", project, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = status_rows(r.stdout)
    assert "missing" in rows["01_tensor"] and "no notebook" in rows["03_layers"]

    assert tito("--root", project, "export", "--all").returncode == 0
    rows = status_rows(tito("--root", project, "status").stdout)
    assert "in sync" in rows["01_tensor"] and "in sync" in rows["02_activations"]

    nb = project / "modules/01_tensor/01_tensor.ipynb"
    nb.write_text(nb.read_text().replace("np.float32", "np.float64"))
    rows = status_rows(tito("--root", project, "status").stdout)
    assert "stale" in rows["01_tensor"] and "in sync" in rows["02_activations"]


def test_test_command_runs_tests_and_checkpoints_and_records_results(project):
    assert tito("--root", project, "export", "--all").returncode == 0
    (project / "tests/01_tensor").mkdir(parents=True)
    (project / "tests/01_tensor/test_progressive_integration.py").write_text(
        "from tinytorch.core.tensor import Tensor\n"
        "def test_float32():\n    assert str(Tensor([1]).data.dtype) == 'float32'\n")
    (project / "tests/checkpoints").mkdir()
    (project / "tests/checkpoints/checkpoint_02_activations.py").write_text(
        "from tinytorch.core.activations import relu\nfrom tinytorch.core.tensor import Tensor\n"
        "def test_relu_is_wrong_on_purpose():\n"
        "    assert relu(Tensor([-1.0])).data.tolist() == [1.0]\n")

    r1 = tito("--root", project, "test", "01")
    assert r1.returncode == 0, r1.stdout + r1.stderr
    assert "PASS 01 01_tensor" in r1.stdout and "1 passed" in r1.stdout

    r2 = tito("--root", project, "test", "2")
    assert r2.returncode == 1
    assert "FAIL 02 02_activations" in r2.stdout and "1 failed" in r2.stdout

    r3 = tito("--root", project, "test", "3")
    assert r3.returncode == 1
    assert "FAIL 03 03_layers" in r3.stdout and "no tests found" in r3.stdout

    results = json.loads((project / ".tito/results.json").read_text())["modules"]
    assert results["01_tensor"]["status"] == "passed"
    assert results["02_activations"]["status"] == "failed"
    assert results["03_layers"]["status"] == "no tests"
    assert all(e["timestamp"] for e in results.values())

    rows = status_rows(tito("--root", project, "status").stdout)
    assert "passed (" in rows["01_tensor"] and "failed (" in rows["02_activations"]
    assert "not run" in rows["04_losses"] or "no tests yet" in rows["04_losses"]


def test_test_command_with_lib_path_uses_that_package(project, tmp_path):
    """A student's export elsewhere is what the tests import, not the project's package."""
    assert tito("--root", project, "export", "--all").returncode == 0
    student = tmp_path / "student_nbs"
    shutil.copytree(project / "modules", student)
    nb = student / "02_activations/02_activations.ipynb"
    nb.write_text(nb.read_text().replace("np.maximum(x.data, 0)", "np.abs(x.data)"))
    lib = tmp_path / "grade" / "tinytorch"
    r = tito("--root", project, "export", "--all", "--nbs-path", student, "--lib-path", lib,
             "--no-clean")
    assert r.returncode == 0, r.stdout + r.stderr
    (project / "tests/checkpoints").mkdir(parents=True)
    (project / "tests/checkpoints/checkpoint_02_activations.py").write_text(
        "from tinytorch.core.activations import relu\nfrom tinytorch.core.tensor import Tensor\n"
        "def test_abs():\n    assert relu(Tensor([-1.0])).data.tolist() == [1.0]\n")
    assert tito("--root", project, "test", "2").returncode == 1          # project's relu
    r = tito("--root", project, "test", "2", "--lib-path", lib)           # student's "relu"
    assert r.returncode == 0, r.stdout + r.stderr


def test_status_on_the_checkout_lists_all_20_modules():
    r = tito("status")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = status_rows(r.stdout)
    assert list(rows) == SPEC_FOLDERS
    assert all(rows[f].startswith(f[:2] + " ") for f in SPEC_FOLDERS)
