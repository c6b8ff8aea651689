"""`tito grade`: each student's own code is graded in a sandbox; broken and hostile submissions
are graded, not fatal, and cannot touch the reference checkout, the tests or anything outside
their folder.

The grading root is a throwaway copy of this checkout's grading inputs (settings, manifest and
notebooks, package, checkpoints), so a hostile submission's target is that copy. Submissions
are built from the reference notebooks:

    good       the reference notebooks
    loop       module 03 exports a Linear.forward that never returns
    syntax     module 01 has an exported cell that does not parse
    missing    no notebook for module 03
    importerr  module 03 imports a module that does not exist
    hostile    module 01 tries, at import time, to rewrite the reference package and tests, to
               write to /tmp, and to forge its own copy of checkpoint 03 and a conftest.py;
               its module 03 is the stripped release (so a forged checkpoint would show)
    badjson    module 01's notebook is not JSON

One `tito grade --modules 1,3 --timeout 15 --jobs 2` run grades them all.
"""

import contextlib
import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fake_course import MULTI_MANIFEST, PAIR_CHECKPOINT, TENSOR_SRC, notebook, ops_src, pair_src
from tito.manifest import load_manifest
from tito.release import read_notebook, strip_notebook, write_notebook
from tito.sandbox import Isolation, Sandbox, child_env, choose_isolation, make_workspace

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)
TIMEOUT = 15
MODULES = ["01_tensor", "03_layers"]


def tito(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def grading_root(dest: Path) -> Path:
    """A project with this checkout's grading inputs."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", dest / "settings.ini")
    shutil.copytree(ROOT / "modules", dest / "modules",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "tinytorch", dest / "tinytorch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "checkpoints", dest / "tests" / "checkpoints",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for base in (root / "tinytorch", root / "tests") for p in sorted(base.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def add_cell(nb: dict, source: str) -> dict:
    nb = json.loads(json.dumps(nb))
    nb["cells"].append({"cell_type": "code", "execution_count": None,
                        "id": secrets.token_hex(4), "metadata": {}, "outputs": [],
                        "source": source})
    return nb


def student(subs: Path, name: str, changes: dict) -> Path:
    """A submission: the reference notebooks, with ``changes[folder]`` = a notebook dict, raw
    text, or None (no notebook)."""
    d = subs / name / "modules"
    for m in MANIFEST:
        if not m.notebook.is_file():
            continue
        dst = d / m.folder / f"{m.folder}.ipynb"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if m.folder not in changes:
            shutil.copy(m.notebook, dst)
        elif isinstance(changes[m.folder], dict):
            write_notebook(changes[m.folder], dst)
        elif isinstance(changes[m.folder], str):
            dst.write_text(changes[m.folder])
    return subs / name


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    root = grading_root(tmp / "course")
    before = digest(root)
    nb01 = read_notebook(ROOT / "modules/01_tensor/01_tensor.ipynb")
    nb03 = read_notebook(ROOT / "modules/03_layers/03_layers.ipynb")
    tmp_target = Path("/tmp") / f"tito-hostile-{secrets.token_hex(6)}.txt"
    subs = tmp / "submissions"
    student(subs, "good", {})
    student(subs, "loop", {"03_layers": add_cell(nb03, (
        "#| export\n"
        "def _forward_forever(self, x):\n"
        "    while True:\n"
        "        pass\n"
        "Linear.forward = _forward_forever\n"))})
    student(subs, "syntax", {"01_tensor": add_cell(nb01, "#| export\ndef broken(:\n    pass\n")})
    student(subs, "missing", {"03_layers": None})
    student(subs, "importerr", {"03_layers": add_cell(
        nb03, "#| export\nfrom tinytorch.core.does_not_exist import Nothing\n")})
    hostile_code = (
        "#| export\n"
        "import os as _os, pathlib as _pl\n"
        "def _try_write(path, text, mode='w'):\n"
        "    try:\n"
        "        with open(path, mode) as f:\n"
        "            f.write(text)\n"
        "    except OSError:\n"
        "        pass\n"
        f"_try_write({str(root / 'tinytorch/core/tensor.py')!r}, '\\nraise SystemExit(3)\\n', 'a')\n"
        f"_try_write({str(root / 'tests/checkpoints/checkpoint_01_tensor.py')!r}, 'def test_x(): pass\\n')\n"
        f"_try_write({str(root / 'tests/checkpoints/checkpoint_99_evil.py')!r}, 'x = 1\\n')\n"
        f"_try_write({str(tmp_target)!r}, 'escaped')\n"
        "_here = _pl.Path(__file__).resolve().parents[2]\n"
        "_try_write(str(_here / 'tests/checkpoints/checkpoint_03_layers.py'), 'def test_forged(): pass\\n')\n"
        "_try_write(str(_here / 'conftest.py'), 'import pytest\\n')\n"
        "_try_write(str(_here / 'sitecustomize.py'), 'import sys\\n')\n")
    stripped03 = strip_notebook(nb03, "03", "module 03").notebook
    student(subs, "hostile", {"01_tensor": add_cell(nb01, hostile_code), "03_layers": stripped03})
    student(subs, "badjson", {"01_tensor": "{ this is not a notebook"})
    out = tmp / "gradebook"
    t0 = time.monotonic()
    r = tito("--root", root, "grade", subs, "--modules", "1,3", "--timeout", TIMEOUT,
             "--out", out, "--jobs", "2")
    dt = time.monotonic() - t0
    report = json.loads((out / "gradebook.json").read_text()) if (out / "gradebook.json").exists() \
        else None
    yield {"r": r, "root": root, "before": before, "after": digest(root), "out": out,
           "report": report, "tmp_target": tmp_target, "dt": dt}
    tmp_target.unlink(missing_ok=True)


def grades(g):
    return {s["name"]: s for s in g["report"]["students"]}


ROOT_USER = os.geteuid() == 0      # only root can drop privileges in the children


def test_grading_runs_to_the_end(graded):
    r = graded["r"]
    # without a privilege drop the hostile submission does change the reference: exit 1
    assert r.returncode == (0 if ROOT_USER else 1), r.stdout + r.stderr
    assert graded["report"] is not None
    assert sorted(grades(graded)) == ["badjson", "good", "hostile", "importerr", "loop",
                                      "missing", "syntax"]
    assert graded["dt"] < 120


def test_good_student_gets_full_points_from_their_own_package(graded):
    s = grades(graded)["good"]
    assert s["total"] == s["max_total"] == 20
    for f in MODULES:
        m = s["modules"][f]
        assert m["status"] == "graded" and m["passed"] == m["total"] > 0
        assert all(t["outcome"] == "passed" for t in m["tests"])
        # the package tested is the student's temporary one, never the reference
        assert "tito-grade-" in m["tinytorch"]
        assert not Path(m["tinytorch"]).resolve().is_relative_to(graded["root"])
        assert not Path(m["tinytorch"]).resolve().is_relative_to(ROOT)


def test_endless_loop_times_out_and_the_rest_is_graded(graded):
    s = grades(graded)["loop"]
    m3 = s["modules"]["03_layers"]
    assert m3["status"] == "timeout" and m3["points"] == 0
    assert f"{TIMEOUT:g} s" in m3["message"]
    assert TIMEOUT <= m3["duration_s"] < TIMEOUT + 10
    assert s["modules"]["01_tensor"]["points"] == 10


def test_syntax_error_scores_zero_with_the_reason(graded):
    s = grades(graded)["syntax"]
    m1 = s["modules"]["01_tensor"]
    assert m1["points"] == 0 and m1["status"] == "collection error"
    assert m1["message"].startswith("the checkpoint could not be loaded: SyntaxError")
    assert "tensor.py" in m1["message"]                 # where: the student's exported file


def test_missing_notebook_scores_zero_and_the_rest_is_graded(graded):
    s = grades(graded)["missing"]
    assert s["modules"]["03_layers"]["status"] == "missing notebook"
    assert s["modules"]["03_layers"]["points"] == 0
    assert s["modules"]["01_tensor"]["points"] == 10
    assert "03_layers" in s["stripped_stand_ins"]


def test_import_error_scores_zero_with_the_error(graded):
    s = grades(graded)["importerr"]
    m3 = s["modules"]["03_layers"]
    assert m3["status"] == "collection error" and m3["points"] == 0
    assert "does_not_exist" in m3["message"]
    assert s["modules"]["01_tensor"]["points"] == 10


def test_invalid_json_notebook_scores_zero(graded):
    s = grades(graded)["badjson"]
    m1 = s["modules"]["01_tensor"]
    assert m1["status"] == "invalid notebook" and m1["points"] == 0
    assert "JSON" in m1["message"]


def test_hostile_code_cannot_touch_the_reference_the_tests_or_tmp(graded):
    s = grades(graded)["hostile"]
    if not ROOT_USER:
        # no sandbox possible: the change is caught, named and fails the run
        assert graded["report"]["integrity"]["ok"] is False
        assert graded["report"]["integrity"]["violations"][0]["students"] == ["hostile"]
        return
    assert graded["after"] == graded["before"]            # reference package and tests intact
    assert not (graded["root"] / "tests/checkpoints/checkpoint_99_evil.py").exists()
    assert not graded["tmp_target"].exists()
    assert graded["report"]["integrity"]["ok"] is True
    assert s["violations"] == []
    assert s["modules"]["01_tensor"]["points"] == 10      # its own code still graded
    m3 = s["modules"]["03_layers"]
    # the forged checkpoint copy and conftest.py did not count: the real tests ran and failed
    names = {t["name"] for t in m3["tests"]}
    assert "test_forged" not in names
    assert "test_every_parameter_is_found_once" in names
    assert m3["points"] < 10 and m3["passed"] < m3["total"]


def test_sandbox_level_when_root(graded):
    iso = graded["report"]["isolation"]
    if ROOT_USER:
        assert iso["mode"] in ("namespace", "nobody") and iso["uid"] not in (None, 0)
    else:
        assert iso["mode"] == "none"


@pytest.mark.parametrize("level", ["namespace", "nobody"])
def test_each_isolation_level_blocks_writes_outside_the_childs_folders(level, tmp_path):
    ws = make_workspace()
    try:
        iso = choose_isolation(ws, 2048, level)
        if not ROOT_USER:
            assert iso.mode == "none"
            return
        assert iso.mode == level, iso.notes
        own, target = ws / "own", ws / "target"
        own.mkdir()
        target.mkdir(mode=0o755)
        os.chmod(target, 0o755)
        sb = Sandbox(ws, iso, 2048, hide=[])
        sb.chown(own)
        tmp_file = Path("/tmp") / f"tito-level-{secrets.token_hex(6)}"
        code = ("import os, sys, json\n"
                "def w(p):\n"
                "    try:\n"
                "        open(p, 'w').write('x'); return True\n"
                "    except OSError:\n"
                "        return False\n"
                f"print(json.dumps([os.getuid(), w({str(own / 'a')!r}), w({str(target / 'b')!r}),"
                f" w({str(ROOT / 'tinytorch' / 'evil.py')!r}), w({str(tmp_file)!r})]))\n")
        with open(ws / "log", "wb") as f:
            p = sb.spawn([sys.executable, "-P", "-s", "-c", code], cwd=own,
                         env=child_env(own, []), writable=[own], stdout=f)
            p.wait(timeout=60)
        uid, wrote_own, wrote_target, wrote_ref, wrote_tmp = json.loads(
            (ws / "log").read_text().strip().splitlines()[-1])
        tmp_file.unlink(missing_ok=True)
        assert uid == iso.uid != 0
        assert wrote_own and not wrote_target and not wrote_ref
        assert not (ROOT / "tinytorch" / "evil.py").exists()
        assert wrote_tmp == (level == "nobody")      # only a mount namespace closes /tmp
    finally:
        shutil.rmtree(ws, ignore_errors=True)
        if (ROOT / "tinytorch" / "evil.py").exists():          # only if the level failed
            (ROOT / "tinytorch" / "evil.py").unlink()


def test_gradebook_files(graded):
    out, report = graded["out"], graded["report"]
    rows = list(csv.reader((out / "gradebook.csv").open()))
    assert rows[0] == ["student", *MODULES, "total"]
    table = {r[0]: r[1:] for r in rows[1:]}
    assert table["good"] == ["10", "10", "20"]
    assert table["loop"] == ["10", "0", "10"]
    assert table["badjson"][0] == "0"
    assert "fraction" in report["scoring_rule"] or "/" in report["scoring_rule"]
    assert report["limits"] == {"timeout_s": TIMEOUT, "memory_mb": 2048, "jobs": 2}
    assert [m["folder"] for m in report["modules"]] == MODULES
    assert all(m["question"].endswith("?") for m in report["modules"])
    failed = [t for t in grades(graded)["hostile"]["modules"]["03_layers"]["tests"]
              if t["outcome"] != "passed"]
    assert failed and all(t["message"] for t in failed)
    xml = ET.parse(out / "gradebook.junit.xml").getroot()
    assert xml.tag == "testsuites"
    suites = {s.get("name"): s for s in xml.findall("testsuite")}
    assert len(suites) == 7 * len(MODULES)
    assert int(suites["good.01_tensor"].get("failures")) == 0
    assert int(suites["good.01_tensor"].get("tests")) == \
        grades(graded)["good"]["modules"]["01_tensor"]["total"]
    assert suites["loop.03_layers"].find("testcase/error") is not None
    assert int(xml.get("tests")) == sum(int(s.get("tests")) for s in suites.values())


def test_terminal_summary_table(graded):
    out = graded["r"].stdout
    assert re.search(r"^student\s+01\s+03\s+total", out, re.M)
    assert re.search(r"^good\s+10\s+10\s+20/20", out, re.M)
    assert re.search(r"^loop\s+10\s+0\s+10/20\s+03: timeout", out, re.M)
    assert "grading" in graded["r"].stderr                # the progress bar


# ---------------------------------------------------------------------------------------------
# without a sandbox: the integrity check catches what hostile code did
# ---------------------------------------------------------------------------------------------

def test_without_privilege_drop_a_changed_reference_fails_loudly(tmp_path):
    root = grading_root(tmp_path / "course")
    nb01 = read_notebook(ROOT / "modules/01_tensor/01_tensor.ipynb")
    evil = add_cell(nb01, "#| export\n"
                          f"open({str(root / 'tests/checkpoints/checkpoint_01_tensor.py')!r}, 'a')"
                          ".write('\\n# tampered\\n')\n")
    subs = tmp_path / "subs"
    student(subs, "mallory", {"01_tensor": evil})
    r = tito("--root", root, "grade", subs, "--modules", "1", "--timeout", TIMEOUT,
             "--out", tmp_path / "gb", "--isolation", "none", "--no-progress")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REFERENCE CHECKOUT CHANGED" in r.stderr and "mallory" in r.stderr
    report = json.loads((tmp_path / "gb" / "gradebook.json").read_text())
    assert report["isolation"]["mode"] == "none"
    assert report["integrity"]["ok"] is False
    v = report["integrity"]["violations"][0]
    assert v["students"] == ["mallory"]
    assert any("checkpoint_01_tensor.py" in c for c in v["changes"])


# ---------------------------------------------------------------------------------------------
# the sandbox's limits
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path):
    ws = make_workspace()
    iso = Isolation("none")
    yield Sandbox(ws, iso, memory_mb=400), ws
    shutil.rmtree(ws, ignore_errors=True)


def run_child(sb, ws, code, timeout=30):
    home = ws / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    log = ws / "log"
    with open(log, "wb") as f:
        p = sb.spawn([sys.executable, "-c", code], cwd=home, env=child_env(home, []),
                     writable=[home], stdout=f)
        try:
            p.wait(timeout=timeout)
        finally:
            os.killpg(p.pid, 9) if p.poll() is None else None
    return p.returncode, log.read_text()


def test_memory_limit_applies(sandbox):
    sb, ws = sandbox
    rc, out = run_child(sb, ws, "import resource; print(resource.getrlimit(resource.RLIMIT_AS));"
                                "x = bytearray(800 * 2**20)")
    assert rc != 0 and "MemoryError" in out
    assert str(400 * 2**20) in out


def test_timeout_kills_the_whole_process_group(sandbox):
    sb, ws = sandbox
    home = ws / "home"
    (home / "tmp").mkdir(parents=True)
    pidfile = home / "pid"
    code = ("import subprocess, time\n"
            f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(300)\n")
    with open(ws / "log", "wb") as f:
        p = sb.spawn([sys.executable, "-c", code], cwd=home, env=child_env(home, []),
                     writable=[home], stdout=f)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    os.killpg(p.pid, 9)                                      # what the grader does on timeout
    p.wait(timeout=10)
    for _ in range(100):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):        # reap if it became our zombie
            os.waitpid(grandchild, os.WNOHANG)
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


# ---------------------------------------------------------------------------------------------
# a module with several notebooks (a throwaway course: module 02 is two notebooks)
# ---------------------------------------------------------------------------------------------

MULTI_NOTEBOOKS = {
    "01_tensor/01_tensor.ipynb": notebook(["# Tensor", "#| default_exp core.tensor", TENSOR_SRC]),
    "02_pair/02_pair.ipynb": notebook([
        "# Pair", "#| default_exp core.pair",
        pair_src("    ### BEGIN SOLUTION\n    return Tensor(t.data * 2)\n    ### END SOLUTION\n")]),
    "02_pair/02_pair_ops.ipynb": notebook([
        "# Pair ops", "#| default_exp nn.pair_ops",
        ops_src("    ### BEGIN SOLUTION\n    return double(double(t))\n    ### END SOLUTION\n")]),
}


def test_find_notebook_finds_each_notebook_of_a_module(tmp_path):
    from tito.grading import find_notebook
    s = tmp_path / "ann"
    (s / "modules/02_pair").mkdir(parents=True)
    (s / "modules/02_pair/02_pair.ipynb").write_text("{}")
    (s / "notes/02_pair_ops.ipynb").parent.mkdir()
    (s / "notes/02_pair_ops.ipynb").write_text("{}")
    assert find_notebook(s, "02_pair") == s / "modules/02_pair/02_pair.ipynb"
    assert find_notebook(s, "02_pair", "02_pair") == s / "modules/02_pair/02_pair.ipynb"
    assert find_notebook(s, "02_pair", "02_pair_ops") == s / "notes/02_pair_ops.ipynb"
    (s / "02_pair").mkdir()
    (s / "02_pair/02_pair_ops.ipynb").write_text("{}")
    assert find_notebook(s, "02_pair", "02_pair_ops") == s / "02_pair/02_pair_ops.ipynb"
    assert find_notebook(s, "02_pair", "02_pair_extra") is None


@pytest.fixture(scope="module")
def graded_multi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    root = tmp / "course"
    (root / "modules").mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", root / "settings.ini")
    (root / "modules/manifest.toml").write_text(MULTI_MANIFEST)
    for rel, nb in MULTI_NOTEBOOKS.items():
        (root / "modules" / rel).parent.mkdir(parents=True, exist_ok=True)
        write_notebook(nb, root / "modules" / rel)
    (root / "tests/checkpoints").mkdir(parents=True)
    (root / "tests/checkpoints/checkpoint_02_pair.py").write_text(PAIR_CHECKPOINT)
    subs = tmp / "subs"

    def submit(name, files):
        for rel, content in files.items():
            dst = subs / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, dict):
                write_notebook(content, dst)
            else:
                dst.write_text(content)

    t = MULTI_NOTEBOOKS["01_tensor/01_tensor.ipynb"]
    main = MULTI_NOTEBOOKS["02_pair/02_pair.ipynb"]
    ops = MULTI_NOTEBOOKS["02_pair/02_pair_ops.ipynb"]
    # every notebook, in the three places find_notebook looks
    submit("full", {"modules/01_tensor/01_tensor.ipynb": t, "02_pair/02_pair.ipynb": main,
                    "my work/02_pair_ops.ipynb": ops})
    submit("nosecond", {"modules/01_tensor/01_tensor.ipynb": t,
                        "modules/02_pair/02_pair.ipynb": main})
    submit("nomain", {"modules/01_tensor/01_tensor.ipynb": t,
                      "modules/02_pair/02_pair_ops.ipynb": ops})
    submit("badsecond", {"modules/01_tensor/01_tensor.ipynb": t,
                         "modules/02_pair/02_pair.ipynb": main,
                         "modules/02_pair/02_pair_ops.ipynb": "{ not a notebook"})
    out = tmp / "gradebook"
    r = tito("--root", root, "grade", subs, "--modules", "2", "--timeout", 60, "--out", out,
             "--jobs", "2", "--no-progress")
    report = json.loads((out / "gradebook.json").read_text()) \
        if (out / "gradebook.json").exists() else None
    return {"r": r, "out": out, "report": report}


def test_multi_notebook_module_is_graded_from_all_its_notebooks(graded_multi):
    r = graded_multi["r"]
    assert r.returncode == 0, r.stdout + r.stderr
    s = grades(graded_multi)["full"]
    m = s["modules"]["02_pair"]
    assert m["status"] == "graded" and m["passed"] == m["total"] == 2 and m["points"] == 10, m
    assert s["notebooks"] == {"01_tensor": "ok", "02_pair": "ok", "02_pair_ops": "ok"}
    assert m["notebooks"] == {"02_pair": "ok", "02_pair_ops": "ok"}
    assert s["stripped_stand_ins"] == [] and m["stripped_stand_ins"] == []
    assert "stripped release version" not in m["message"]
    exported = s["export"]["notebooks"]
    assert set(exported) == {"01_tensor/01_tensor.ipynb", "02_pair/02_pair.ipynb",
                             "02_pair/02_pair_ops.ipynb"}
    assert all(e["error"] is None and e["files"] for e in exported.values())


def test_missing_second_notebook_gets_its_stand_in_and_is_named(graded_multi):
    s = grades(graded_multi)["nosecond"]
    m = s["modules"]["02_pair"]
    assert m["status"] == "graded", m
    assert (m["passed"], m["total"], m["points"]) == (1, 2, 5)
    assert s["notebooks"]["02_pair_ops"] == "missing"
    assert m["notebooks"] == {"02_pair": "ok", "02_pair_ops": "missing"}
    assert m["stripped_stand_ins"] == ["02_pair_ops"] and "02_pair_ops" in s["stripped_stand_ins"]
    assert "02_pair_ops.ipynb missing" in m["message"]
    assert "stripped release version" in m["message"]
    failed = [t for t in m["tests"] if t["outcome"] != "passed"]
    assert [t["name"] for t in failed] == ["test_quadruple"]
    assert "module 02, quadruple" in failed[0]["message"]        # the stand-in's stub
    table = graded_multi["r"].stdout
    assert re.search(r"^nosecond\s+5\s+5/10\s+02: stand-in for 02_pair_ops", table, re.M), table


def test_missing_main_notebook_is_a_missing_notebook(graded_multi):
    s = grades(graded_multi)["nomain"]
    m = s["modules"]["02_pair"]
    assert m["status"] == "missing notebook" and m["points"] == 0 and m["tests"] == []
    assert "02_pair/02_pair.ipynb" in m["message"]
    assert m["notebooks"] == {"02_pair": "missing", "02_pair_ops": "ok"}


def test_invalid_second_notebook_gets_its_stand_in_and_is_named(graded_multi):
    s = grades(graded_multi)["badsecond"]
    m = s["modules"]["02_pair"]
    assert m["status"] == "graded" and m["points"] == 5, m
    assert "not a valid notebook" in m["notebooks"]["02_pair_ops"]
    assert "02_pair_ops.ipynb is not a valid notebook" in m["message"]
    assert "stripped release version" in m["message"]
    assert m["stripped_stand_ins"] == ["02_pair_ops"]
    rows = list(csv.reader((graded_multi["out"] / "gradebook.csv").open()))
    assert rows[0] == ["student", "02_pair", "total"]
    assert {r[0]: r[1] for r in rows[1:]} == {"badsecond": "5", "full": "10", "nomain": "0",
                                             "nosecond": "5"}
