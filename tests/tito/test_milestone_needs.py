"""`tito milestone run` checks the course modules a milestone needs before running it (issue 13,
point 6): the needs come from the script's imports followed through the package, and a module
whose exported code still holds an exercise stub is named, with its exercises, instead of a
NotImplementedError traceback."""

import shutil
import subprocess
import sys
from pathlib import Path

from fake_course import MULTI_MANIFEST
from tito.manifest import load_manifest
from tito.milestone_needs import milestone_needs, package_modules_used

ROOT = Path(__file__).resolve().parents[2]
STUB = 'raise NotImplementedError("Exercise: implement this (module 02, double)")'
SCRIPT = '''"""2000 Fake: doubles a tensor twice"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # as milestones/_common.py does
from tinytorch.nn.pair_ops import quadruple
Path(__file__).with_name("ran.txt").write_text("ran")
'''


def fake_course(tmp_path, stubbed: bool) -> Path:
    proj = tmp_path / "course"
    (proj / "modules").mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", proj / "settings.ini")
    (proj / "modules/manifest.toml").write_text(MULTI_MANIFEST)
    lib = proj / "tinytorch"
    for d in ("core", "nn"):
        (lib / d).mkdir(parents=True)
        (lib / d / "__init__.py").write_text("")
    (lib / "__init__.py").write_text('__version__ = "0"\n')
    (lib / "core/tensor.py").write_text("class Tensor:\n    pass\n")
    body = f"    {STUB}\n" if stubbed else "    return t\n"
    (lib / "core/pair.py").write_text(f"from .tensor import Tensor\n\ndef double(t):\n{body}")
    (lib / "nn/pair_ops.py").write_text("from ..core.pair import double\n\n"
                                        "def quadruple(t):\n    return double(double(t))\n")
    (proj / "milestones").mkdir()
    (proj / "milestones/2000_fake.py").write_text(SCRIPT)
    return proj


def tito(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tito.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_needs_follow_the_imports_through_the_package(tmp_path):
    proj = fake_course(tmp_path, stubbed=True)
    used = package_modules_used(proj / "milestones/2000_fake.py", proj / "tinytorch")
    assert {"tinytorch.nn.pair_ops", "tinytorch.core.pair", "tinytorch.core.tensor"} <= used
    needs = milestone_needs(proj / "milestones/2000_fake.py", load_manifest(proj))
    assert [(n.module.nn, n.stubs) for n in needs] == [("01", []), ("02", ["double"])]


def test_run_names_the_unfinished_module_instead_of_a_traceback(tmp_path):
    proj = fake_course(tmp_path, stubbed=True)
    r = tito("milestone", "run", "2000", cwd=proj)
    assert r.returncode == 1
    assert "needs modules 01, 02" in r.stdout
    assert "module 02 Pair: one chapter in two notebooks: 1 exercise(s) to do (double)" in r.stdout
    assert "tito module complete 02" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert not (proj / "milestones/ran.txt").exists()          # the script never started


def test_run_starts_the_milestone_once_its_modules_are_done(tmp_path):
    proj = fake_course(tmp_path, stubbed=False)
    r = tito("milestone", "run", "2000", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (proj / "milestones/ran.txt").read_text() == "ran"


def test_every_course_milestone_declares_its_modules_and_the_reference_has_them_all():
    m = load_manifest(ROOT)
    scripts = sorted((ROOT / "milestones").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert scripts
    for s in scripts:
        needs = milestone_needs(s, m)
        assert needs and needs[0].module.nn == "01", s.name      # everything starts at Tensor
        assert not [n.module.nn for n in needs if n.stubs], s.name


def test_milestone_results_go_where_git_ignores_them():
    r = subprocess.run(["git", "check-ignore", "-q", "milestones/results/x.json"], cwd=ROOT)
    assert r.returncode == 0
    default = (ROOT / "milestones/_common.py").read_text()
    assert 'default=str(HERE / "results")' in default
