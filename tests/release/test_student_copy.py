"""The student copy as a student gets it (issue 13, point 3): its README is the student one, no
shipped test needs the repository's oracle, and its own test command, `bash scripts/check.sh`,
passes on an untouched copy with no git and no PyTorch (listing the exercises to do) and fails on
what is really broken (a wrong answer, a typo).

The untouched-copy run uses the repository's student environment (.venv-student, built from
requirements-student.lock by scripts/env.sh; TINYTORCH_VENV points the copy's env.sh at it)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from student_env import STUDENT_VENV, outside_env, student_python
from tito.manifest import load_manifest
from tito.studentenv import oracle_imports

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)


def tito(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def code_exercises(report) -> int:
    return sum(len(blocks) for info in report.notebooks.values()
               for i, blocks in info.blocks.items()
               if info.notebook["cells"][i]["cell_type"] == "code")


def test_the_release_readme_is_the_students(release):
    out, _ = release
    text = (out / "README.md").read_text()
    assert text != (ROOT / "README.md").read_text()
    # the two commands: set up, open the course; and how to open the first notebook
    assert "source scripts/env.sh" in text and "jupyter lab modules" in text
    first = re.search(r"jupyter lab (modules/\S+\.ipynb)", text).group(1)
    assert (out / first).is_file()
    # the loop per module, what tito status shows, the copy's own test command
    for words in ("tito module complete NN", "tito status", "in sync", "stale",
                  "bash scripts/check.sh", "exercises still to do"):
        assert words in text, words
    for m in MANIFEST:
        assert f"modules/{m.folder}/{m.folder}.ipynb" in text and m.title in text
    # nothing instructor-only, nothing that needs git or PyTorch
    for words in ("tito release", "tito grade", "tito book", "scripts/test.sh",
                  "requirements.lock", "git ", "instructor"):
        assert words not in text, words
    assert not re.search(r"\b(py)?torch\b", text, re.I)
    assert (out / "scripts" / "check.sh").is_file() and not (out / "scripts" / "test.sh").exists()


def test_no_shipped_test_needs_the_oracle_and_the_oracle_tests_stay_here(release):
    out, report = release
    shipped = [p for p in (out / "tests").rglob("*.py")]
    assert shipped and not [p for p in shipped if oracle_imports(p)]
    assert report.oracle_tests                      # the repository has such tests ...
    for rel in report.oracle_tests:
        assert (ROOT / rel).is_file() and not (out / rel).exists()   # ... and keeps them


@pytest.fixture(scope="module")
def student_py():
    return student_python()


def test_the_student_environment_has_the_course_tools_and_no_pytorch(student_py):
    code = ("import importlib.util as u; print(*[n for n in ('numpy', 'numba', 'nbdev', "
            "'jupyterlab', 'ipykernel', 'matplotlib', 'pytest', 'safetensors', 'torch', 'scipy', "
            "'transformers') if u.find_spec(n)])")
    r = subprocess.run([str(student_py), "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["numpy", "numba", "nbdev", "jupyterlab", "ipykernel",
                                "matplotlib", "pytest", "safetensors"], r.stdout + r.stderr


def test_check_passes_on_an_untouched_release_without_git_or_pytorch(release, student_py,
                                                                      tmp_path):
    out, report = release
    copy = tmp_path / "fresh"
    shutil.copytree(out, copy)
    assert not (copy / ".git").exists()
    r = subprocess.run(["bash", "scripts/check.sh"], cwd=copy, capture_output=True, text=True,
                       timeout=1800, stdin=subprocess.DEVNULL,
                       env=outside_env(TINYTORCH_VENV=str(STUDENT_VENV), GIT_DIR="/nonexistent"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = re.search(r"^(\d+) exercise\(s\) to do in (\d+) module\(s\):", r.stdout, re.M)
    assert m, r.stdout[-3000:]
    assert int(m.group(1)) == code_exercises(report) > 0
    assert int(m.group(2)) == len({nb.parent.name for nb, info in report.notebooks.items()
                                   if any(info.notebook["cells"][i]["cell_type"] == "code"
                                          for i in info.blocks)})
    assert "check passed: nothing is broken" in r.stdout
    assert re.search(r"checkpoint_00_environment\.py: (\d+)/\1 passed", r.stdout)   # set up well
    assert re.search(r"checkpoint_01_tensor\.py: \d+/\d+ passed", r.stdout)        # and it ran
    waiting = re.search(r"\((\d+) test\(s\) wait for them", r.stdout)
    assert waiting and int(waiting.group(1)) > 0
    assert "not run here" not in r.stdout              # no shipped test needs the oracle


@pytest.fixture
def done_copy(release, tmp_path):
    """A copy whose every module is done: the reference notebooks, exported."""
    out, report = release
    copy = tmp_path / "done"
    shutil.copytree(out, copy)
    for key, text in report.reference.items():
        (copy / "modules" / key).write_text(text, encoding="utf-8")
    return copy


def test_check_fails_on_a_wrong_answer_and_names_the_test(done_copy):
    nb = done_copy / "modules/02_activations/02_activations.ipynb"
    text = nb.read_text()
    assert text.count('"        return x * mask\\n"') == 1
    nb.write_text(text.replace('"        return x * mask\\n"', '"        return x\\n"'))
    assert tito("export", "--all", cwd=done_copy).returncode == 0
    r = tito("module", "check", "2", cwd=done_copy)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not exercises still to do" in r.stderr
    assert re.search(r"checkpoint_02_activations\.py::test_\w+: Assert", r.stderr), r.stderr
    assert "no exercise left to do" in r.stdout


def test_check_fails_on_a_typo_naming_notebook_cell_and_line(release, tmp_path):
    out, _ = release
    copy = tmp_path / "typo"
    shutil.copytree(out, copy)
    nb = copy / "modules/01_tensor/01_tensor.ipynb"
    data = json.loads(nb.read_text())
    data["cells"].append({"cell_type": "code", "id": "typo1", "metadata": {}, "outputs": [],
                          "execution_count": None, "source": ["x = 1\n", "y = (x))\n"]})
    nb.write_text(json.dumps(data, indent=1))
    r = tito("module", "check", "1", cwd=copy)
    assert r.returncode == 1
    n = len(data["cells"])
    assert f"01_tensor.ipynb, cell {n} of {n} (id typo1), line 2: SyntaxError" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_milestone_in_an_untouched_release_names_the_modules_it_needs(release):
    out, _ = release
    r = tito("milestone", "run", "1986", cwd=out)
    assert r.returncode == 1
    assert "1986_mlp" in r.stdout and "not done yet" in r.stdout
    assert re.search(r"module 01 .*: \d+ exercise\(s\) to do", r.stdout), r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert not (out / "milestones" / "results").exists()       # it did not start
