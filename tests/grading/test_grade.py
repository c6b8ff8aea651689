"""`tito grade` on the real course and the pieces it is made of.

The real-course run (modules 01-03, one `tito grade --jobs 2` run) is the integrity gate: the
reference scores full marks, the untouched release scores 0 in every module, a student who fills
in only module k scores module k only (the modules that build on it need their own code), and
the usual broken submissions (syntax error, endless loop, missing or invalid notebook, import
error) score 0 in that module with the reason while the rest is graded. The grading root is a
throwaway copy of this checkout's grading inputs. Hostile submissions: tests/grading/test_hostile.py.
"""

import csv
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from fake_course import MULTI_MANIFEST, PAIR_CHECKPOINT, TENSOR_SRC, notebook, ops_src, pair_src
from tito.errors import TitoError
from tito.grading import parse_report
from tito.grading_submissions import Scan, find_notebook, read_regular, scan
from tito.grading_wire import Codec, ProtocolError, array_blob, read_frame, write_frame
from tito.manifest import load_manifest
from tito.release import read_notebook, strip_notebook, write_notebook
from tito.sandbox import Box, Jail, Limits, choose_jail, clean_env, make_workspace, remove_cgroup_parents

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)
TIMEOUT = 30
MODULES = ["01_tensor", "02_activations", "03_layers"]


def tito(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def grading_root(dest: Path) -> Path:
    """A project with this checkout's grading inputs."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", dest / "settings.ini")
    shutil.copytree(ROOT / "modules", dest / "modules",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "tinytorch", dest / "tinytorch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "checkpoints", dest / "tests" / "checkpoints",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "datasets").is_dir():
        shutil.copytree(ROOT / "datasets", dest / "datasets")
    return dest


def add_cell(nb: dict, source: str) -> dict:
    nb = json.loads(json.dumps(nb))
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": secrets.token_hex(4),
                        "metadata": {}, "outputs": [], "source": source})
    return nb


_STRIPPED: dict = {}


def stripped(folder: str) -> dict:
    """The release version of the module's main notebook (the same object on every call, so that
    ``student`` knows to strip the module's other notebooks too)."""
    if folder not in _STRIPPED:
        m = MANIFEST.by_folder(folder)
        _STRIPPED[folder] = strip_notebook(read_notebook(m.notebook), m.folder, f"module {m.nn}").notebook
    return _STRIPPED[folder]


def copy_other_notebook(folder: str, other: Path, dst: Path, release: bool) -> None:
    "One of the module's other notebooks: the reference's, or its release version (stubs) when `release`."
    if release:
        m = MANIFEST.by_folder(folder)
        write_notebook(strip_notebook(read_notebook(other), other.stem, f"module {m.nn}").notebook, dst)
    else:
        shutil.copy(other, dst)


def student(subs: Path, name: str, changes: dict) -> Path:
    """A submission of modules 01-03: the reference notebooks, with ``changes[folder]`` = a
    notebook dict, raw text, or None (no notebook) for the module's main notebook; its other
    notebooks (sections, some with exercises) are the reference's, or their release versions when
    the main notebook is the release version (``stripped``), and absent when the module is missing."""
    for folder in MODULES:
        dst = subs / name / "modules" / folder / f"{folder}.ipynb"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if folder not in changes:
            shutil.copy(MANIFEST.by_folder(folder).notebook, dst)
        elif isinstance(changes[folder], dict):
            write_notebook(changes[folder], dst)
        elif isinstance(changes[folder], str):
            dst.write_text(changes[folder])
        if changes.get(folder, "") is not None:       # the module's other notebooks (e.g. 01's kit notebooks)
            for other in MANIFEST.by_folder(folder).notebooks[1:]:
                copy_other_notebook(folder, other, dst.parent / other.name,
                                    release=changes.get(folder) is _STRIPPED.get(folder, ()))
    return subs / name


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    root = grading_root(tmp / "course")
    nb01 = read_notebook(MANIFEST.by_folder("01_tensor").notebook)
    nb03 = read_notebook(MANIFEST.by_folder("03_layers").notebook)
    subs = tmp / "submissions"
    blank = {f: stripped(f) for f in MODULES}
    student(subs, "reference", {})
    student(subs, "release", blank)
    student(subs, "only01", {**blank, "01_tensor": nb01})
    student(subs, "only03", {**blank, "03_layers": nb03})
    student(subs, "loop", {"03_layers": add_cell(nb03, (
        "#| export\ndef _forward_forever(self, x):\n    while True:\n        pass\n"
        "Linear.forward = _forward_forever\n"))})
    student(subs, "syntax", {"01_tensor": add_cell(nb01, "#| export\ndef broken(:\n    pass\n")})
    student(subs, "missing", {"03_layers": None})
    student(subs, "importerr", {"03_layers": add_cell(
        nb03, "#| export\nfrom tinytorch.core.does_not_exist import Nothing\n")})
    student(subs, "badjson", {"01_tensor": "{ this is not a notebook"})
    out = tmp / "gradebook"
    t0 = time.monotonic()
    r = tito("--root", root, "grade", subs, "--modules", "1,2,3", "--timeout", TIMEOUT,
             "--out", out, "--jobs", "2")
    report = json.loads((out / "gradebook.json").read_text()) if (out / "gradebook.json").exists() else None
    return {"r": r, "root": root, "out": out, "report": report, "dt": time.monotonic() - t0}


def grades(g):
    return {s["name"]: s for s in g["report"]["students"]}


def points(g, name):
    return [grades(g)[name]["modules"][f]["points"] for f in MODULES]


def test_grading_runs_to_the_end(graded):
    r = graded["r"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(grades(graded)) == ["badjson", "importerr", "loop", "missing", "only01",
                                      "only03", "reference", "release", "syntax"]
    assert graded["report"]["integrity"]["ok"] is True


def test_the_reference_scores_full_marks(graded):
    s = grades(graded)["reference"]
    assert points(graded, "reference") == [10, 10, 10], s
    for f in MODULES:
        m = s["modules"][f]
        assert m["status"] == "graded" and m["passed"] == m["total"] > 0
        assert m["leftover_processes"] == 0


def test_the_untouched_release_scores_zero_everywhere(graded):
    assert points(graded, "release") == [0, 0, 0]
    for m in grades(graded)["release"]["modules"].values():
        assert m["status"] == "graded" and m["passed"] == 0 and "NotImplementedError" in m["message"]


def test_filling_in_one_module_scores_that_module_only(graded):
    assert points(graded, "only01") == [10, 0, 0]
    # module 03 builds on 01 and 02 (manifest prerequisites): without them its tests cannot pass
    assert MANIFEST.by_folder("03_layers").prerequisites == (1, 2)
    only03 = points(graded, "only03")
    assert only03[:2] == [0, 0] and only03[2] < 10


def test_endless_loop_times_out_and_the_rest_is_graded(graded):
    s = grades(graded)["loop"]
    m3 = s["modules"]["03_layers"]
    assert m3["status"] == "timeout" and m3["points"] == 0
    assert f"{TIMEOUT:g} s" in m3["message"]
    assert TIMEOUT <= m3["duration_s"] < TIMEOUT + 15
    assert s["modules"]["01_tensor"]["points"] == 10


def test_syntax_error_scores_zero_with_the_reason(graded):
    m1 = grades(graded)["syntax"]["modules"]["01_tensor"]
    assert m1["points"] == 0 and m1["status"] == "collection error"
    assert "SyntaxError" in m1["message"], m1["message"]


def test_missing_notebook_scores_zero_and_the_rest_is_graded(graded):
    s = grades(graded)["missing"]
    assert s["modules"]["03_layers"]["status"] == "missing notebook"
    assert points(graded, "missing") == [10, 10, 0]
    assert "03_layers" in s["stripped_stand_ins"]


def test_import_error_scores_zero_with_the_error(graded):
    m3 = grades(graded)["importerr"]["modules"]["03_layers"]
    assert m3["status"] == "collection error" and m3["points"] == 0
    assert "does_not_exist" in m3["message"]


def test_invalid_json_notebook_scores_zero(graded):
    m1 = grades(graded)["badjson"]["modules"]["01_tensor"]
    assert m1["status"] == "invalid notebook" and m1["points"] == 0 and "JSON" in m1["message"]


def test_gradebook_files(graded):
    out, report = graded["out"], graded["report"]
    rows = list(csv.reader((out / "gradebook.csv").open()))
    assert rows[0] == ["student", *MODULES, "total"]
    table = {r[0]: r[1:] for r in rows[1:]}
    assert table["reference"] == ["10", "10", "10", "30"]
    assert table["release"] == ["0", "0", "0", "0"]
    assert "trusted judge" in report["scoring_rule"]
    assert report["isolation"]["mode"] == "bwrap"
    assert all(m["question"].endswith("?") for m in report["modules"])
    xml = ET.parse(out / "gradebook.junit.xml").getroot()
    suites = {s.get("name"): s for s in xml.findall("testsuite")}
    assert len(suites) == 9 * len(MODULES)
    assert int(suites["reference.01_tensor"].get("failures")) == 0
    assert suites["loop.03_layers"].find("testcase/error") is not None
    assert not list(out.glob(".gradebook*"))                  # no temporary file left behind


def test_terminal_summary_table(graded):
    out = graded["r"].stdout
    assert re.search(r"^student\s+01\s+02\s+03\s+total", out, re.M)
    assert re.search(r"^reference\s+10\s+10\s+10\s+30/30", out, re.M)
    assert re.search(r"^loop\s+10\s+10\s+0\s+20/30\s+03: timeout", out, re.M)
    assert "sandbox: bwrap" in out


# ---------------------------------------------------------------------------------------------
# the sandbox
# ---------------------------------------------------------------------------------------------

_SEE = r"""
import json, os, socket, sys, resource
out = {"uid": os.getuid(), "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
       "root": os.path.exists(sys.argv[1]), "etc": sorted(os.listdir("/etc")) if os.path.isdir("/etc") else []}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    out["net"] = True
except OSError:
    out["net"] = False
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            import time; time.sleep(3); os._exit(0)
        n += 1
except OSError:
    pass
out["forks"] = n
try:
    bytearray(900 << 20)
    out["big"] = True
except MemoryError:
    out["big"] = False
print(json.dumps(out))
"""


def test_a_box_is_one_identity_with_limits_and_nothing_survives_it(tmp_path):
    ws = make_workspace()
    try:
        jail = choose_jail(ws, ROOT / "settings.ini", False, ws.name)
        box = Box(jail, "see", Limits(memory_mb=512, pids=20, cpu_s=30))
        with open(tmp_path / "log", "wb") as f:
            p = box.spawn([sys.executable, "-P", "-s", "-c", _SEE, str(ROOT / "settings.ini")],
                          env=clean_env(tmp_path, []), cwd=tmp_path, rw=[tmp_path], stdout=f)
            p.wait(timeout=120)
        left = box.teardown()
        r = json.loads((tmp_path / "log").read_text().strip().splitlines()[-1])
        assert r["uid"] == 65534 and not r["root"] and not r["net"]
        assert set(r["etc"]) <= {"ld.so.cache", "localtime"}          # no passwd, no shadow
        assert r["procs"] == [1]                      # its own PID namespace, it is PID 1
        assert 0 < r["forks"] < 20                    # the pids cgroup stops a fork bomb
        assert r["big"] is False                      # the memory limit
        assert left == 0 and not box.cgroups          # the sleepers died with it, cgroup removed
    finally:
        remove_cgroup_parents(jail.cgroups)
        shutil.rmtree(ws, ignore_errors=True)


def test_without_bwrap_grading_refuses_unless_the_weak_sandbox_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    ws = make_workspace()
    try:
        with pytest.raises(TitoError, match="--allow-weak-sandbox") as e:
            choose_jail(ws, ROOT / "settings.ini", False, ws.name)
        assert e.value.exit_code == 2 and "bubblewrap" in str(e.value)
        jail = choose_jail(ws, ROOT / "settings.ini", True, ws.name)
        assert jail.kind == "weak" and any("forge" in n for n in jail.notes)
        remove_cgroup_parents(jail.cgroups)
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def test_tito_grade_without_bwrap_exits_2_and_still_writes_a_gradebook(tmp_path):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}      # no /usr/bin: no bwrap
    r = tito("grade", subs, "--modules", "1", "--out", tmp_path / "out", "--no-progress", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--allow-weak-sandbox" in r.stderr
    report = json.loads((tmp_path / "out/gradebook.json").read_text())
    assert report["students"] == [] and "no sandbox" in report["error"]


# ---------------------------------------------------------------------------------------------
# reading submissions
# ---------------------------------------------------------------------------------------------

def test_submissions_are_read_without_following_or_blocking(tmp_path):
    s = tmp_path / "s"
    (s / "modules/01_tensor").mkdir(parents=True)
    (s / "modules/01_tensor/01_tensor.ipynb").write_text("{}")
    (tmp_path / "secret.txt").write_text("secret")
    (s / "link.ipynb").symlink_to(tmp_path / "secret.txt")
    os.mkfifo(s / "fifo.ipynb")
    (s / "big.ipynb").write_bytes(b" " * 2048)
    (s / "linkdir").symlink_to(tmp_path)
    assert read_regular(s, "modules/01_tensor/01_tensor.ipynb") == (b"{}", "ok")
    assert "symbolic link" in read_regular(s, "link.ipynb")[1]
    assert "FIFO" in read_regular(s, "fifo.ipynb")[1]
    assert "larger than" in read_regular(s, "big.ipynb", limit=1024)[1]
    assert read_regular(s, "linkdir/secret.txt")[0] is None        # no symlinked folder either
    assert read_regular(s, "../secret.txt")[0] is None
    found = scan(s)
    assert found.entries == {"modules/01_tensor/01_tensor.ipynb": "file", "link.ipynb": "symbolic link",
                             "fifo.ipynb": "FIFO", "big.ipynb": "file"}
    assert find_notebook(found, "01_tensor", "01_tensor") == "modules/01_tensor/01_tensor.ipynb"
    assert find_notebook(Scan({"x/y/02_a.ipynb": "file", "02_a/02_a.ipynb": "file"}), "02_a", "02_a") \
        == "02_a/02_a.ipynb"


# ---------------------------------------------------------------------------------------------
# the judge's report and the wire
# ---------------------------------------------------------------------------------------------

def test_a_report_of_the_wrong_shape_is_no_report():
    ok = {"collected": 1, "tests": [{"name": "t", "outcome": "passed"}], "collect_errors": [],
          "runner": {"dead": None}}
    assert parse_report(json.dumps(ok).encode())[0]["tests"][0]["outcome"] == "passed"
    for bad in ({"tests": [1]}, {**ok, "tests": [{"outcome": "passed"}]}, {**ok, "collected": "1"},
                {**ok, "tests": [{"name": "t", "outcome": "won"}]}, [ok], {**ok, "runner": None}):
        rep, why = parse_report(json.dumps(bad).encode())
        assert rep is None and why.startswith("report"), bad
    assert parse_report(b"\xff")[0] is None and parse_report(None)[0] is None
    assert parse_report(b"[" * 100_000)[0] is None


def test_the_wire_carries_plain_data_only(tmp_path):
    a, b = Codec("j", weak=False), Codec("r", weak=False)
    value = {"x": [1, 2.5, float("nan"), None, "s", (3, b"b")], 4: np.arange(6).reshape(2, 3),
             "d": np.dtype("float32"), "t": np.float32, "n": np.int8(3)}
    blobs = []
    back = b.decode(a.encode(value, blobs), blobs)
    assert back["x"][:2] == [1, 2.5] and back["x"][4:] == ["s", (3, b"b")] and back["x"][2] != back["x"][2]
    assert back[4].tolist() == [[0, 1, 2], [3, 4, 5]] and back["t"] is np.float32 and back["n"] == 3
    with pytest.raises(ProtocolError):
        a.encode(np.array([object()]), [])                   # object arrays never leave
    import pickle
    evil = pickle.dumps(np.array([{"a": 1}], dtype=object))
    with pytest.raises(ProtocolError):
        b.decode({"$a": "r1", "b": 0}, [evil])
    obj_npy = __import__("io").BytesIO()
    np.save(obj_npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ProtocolError):
        b.decode({"$a": "j9", "b": 0}, [obj_npy.getvalue()])
    with pytest.raises(ProtocolError):
        b.decode(_deep(200), [])
    r, w = os.pipe()
    os.write(w, b"TW" + (100 << 20).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="over"):
        read_frame(r)
    write_frame(w, {"op": "ret", "v": 1}, [array_blob(np.ones(3))])
    header, blobs = read_frame(r)
    assert header["v"] == 1 and len(blobs) == 1


def _deep(n):
    v = 0
    for _ in range(n):
        v = {"$l": [v]}
    return v

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
    return {"r": r, "out": out, "report": report, "subs": subs, "root": root}


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
    assert all(e["error"] is None for e in exported.values())


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


def test_the_weak_sandbox_grades_when_accepted_and_says_what_it_gives_up(graded_multi, tmp_path):
    subs = tmp_path / "subs"
    shutil.copytree(graded_multi["subs"] / "full", subs / "full")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}      # no bwrap on the PATH
    out = tmp_path / "out"
    r = tito("--root", graded_multi["root"], "grade", subs, "--modules", "2", "--out", out,
             "--no-progress", "--allow-weak-sandbox", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "gradebook.json").read_text())
    assert report["isolation"]["mode"] == "weak" and report["limits"]["jobs"] == 1
    assert any("forge" in n for n in report["isolation"]["notes"])
    assert report["students"][0]["modules"]["02_pair"]["points"] == 10
    assert "sandbox: weak" in r.stdout
