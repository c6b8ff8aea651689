"""`tito module complete NN` in a student copy tests the student's own code, never the reference.

The student copy is a real release. The student "finished" every other module (their notebooks
are the reference ones) and filled in module 02's exercise stubs: all with the reference code
except Softmax, written differently (no axis: wrong for batches). module complete must report
exactly that: the Softmax checkpoint test fails with the student's assertion, the ReLU one
passes, and the package tested is the student's.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tito.manifest import load_manifest
from student_copy import fill_stubs

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)
TARGET = MANIFEST.get(2)
WRONG_SOFTMAX = ["        e = np.exp(x - x.max())",
                 "        out = e / e.sum()             # the student forgot the axis",
                 "        ctx.save_for_backward(out)",
                 "        ctx.dim = dim",
                 "        return out"]


def tito(*args, cwd):
    # `python -m tito.cli` from the copy: the copy's own tito, as the student's `tito` would be
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def student_copy(release, tmp_path_factory):
    out, _ = release
    copy = tmp_path_factory.mktemp("student") / "course"
    shutil.copytree(out, copy)
    for m in MANIFEST:
        if m is TARGET:
            continue
        for nb in m.notebooks:                 # every notebook of a module that has several
            if nb.is_file():
                shutil.copy(nb, copy / "modules" / m.folder / nb.name)
    nb_path = copy / "modules" / TARGET.folder / f"{TARGET.folder}.ipynb"
    filled = fill_stubs(json.loads(nb_path.read_text()),
                        json.loads(TARGET.notebook.read_text()),
                        {"SoftmaxFunction.forward": WRONG_SOFTMAX})
    nb_path.write_text(json.dumps(filled, indent=1))
    r = tito("export", "--all", cwd=copy)
    assert r.returncode == 0, r.stdout + r.stderr
    return copy


def test_module_complete_reports_the_students_own_result(student_copy):
    r = tito("module", "complete", "02", cwd=student_copy)
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    # the student's package, exported from the student's notebook, is what was tested
    assert f"tested package: {student_copy / 'tinytorch'}" in out
    exported = (student_copy / "tinytorch" / "core" / "activations.py").read_text()
    assert "the student forgot the axis" in exported
    # what passed and what to fix
    assert re.search(r"checkpoint tests/checkpoints/checkpoint_02_activations.py: \d+/\d+ passed",
                     out)
    assert re.search(r"PASS\s+test_local_derivatives_handed_to_the_engine", out)
    assert re.search(r"FAILED\s+test_softmax_is_a_distribution_along_its_dim", out)
    fix = out.split("what to fix:", 1)[1]
    assert "test_softmax_is_a_distribution_along_its_dim" in fix
    assert "Error" in fix                      # the assertion's message is shown
    assert "not implemented yet" not in fix    # every other exercise was filled in
    assert "module 02 not complete yet" in out
    results = json.loads((student_copy / ".tito" / "results.json").read_text())
    assert results["modules"][TARGET.folder]["status"] == "failed"


def test_module_complete_names_the_stubs_still_to_fill(release, tmp_path):
    out, _ = release
    copy = tmp_path / "fresh"
    shutil.copytree(out, copy)
    r = tito("module", "complete", "5", cwd=copy)
    assert r.returncode == 1
    assert f"tested package: {copy / 'tinytorch'}" in r.stdout
    assert "not implemented yet" in r.stdout
    assert re.search(r"- module 0\d, [\w.]+: needed by \d+ test\(s\)", r.stdout)


def test_module_complete_rejects_a_broken_notebook(release, tmp_path):
    out, _ = release
    copy = tmp_path / "broken"
    shutil.copytree(out, copy)
    (copy / "modules" / "01_tensor" / "01_tensor.ipynb").write_text("{ not json")
    r = tito("module", "complete", "1", cwd=copy)
    assert r.returncode == 1 and "not a valid notebook" in r.stderr
