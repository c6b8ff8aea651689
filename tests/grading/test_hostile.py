"""`tito grade` against students who want the points without the work, on the fake two-module
course (tests/fake_course.py: module 02 is graded by a two-test checkpoint, 10 points).

Every hostile student hands in the *blank* module 02 (the stripped release: it earns 0) plus one
attack, each as a student would write it: code in an exported cell (it runs when the sandboxed
runner imports the package), or files in the submission folder. One `tito grade --jobs 2` run
grades them all next to two honest students (the victims). For every attack: the attacker scores
0, both victims score 10, no secret of the course appears in any gradebook file, no process of
the run is left, and the gradebook parses.
"""

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fake_course import MULTI_MANIFEST, PAIR_CHECKPOINT, TENSOR_SRC, notebook, ops_src, pair_src
from tito.release import read_notebook, strip_notebook, write_notebook

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"solution": "SECRET-SOLUTION-5e1f0c", "git": "SECRET-GIT-a93d27",
           "notes": "SECRET-NOTES-77b0e4"}
DAEMON = "tito-daemon-4c1d9e"
TIMEOUT = 20
HONEST = ("honest_a", "honest_b")
SOLUTION = f"    ### BEGIN SOLUTION\n    # {SECRETS['solution']}\n    return Tensor(t.data * 2)\n    ### END SOLUTION\n"
NOTEBOOKS = {
    "01_tensor/01_tensor.ipynb": notebook(["# Tensor", "#| default_exp core.tensor", TENSOR_SRC]),
    "02_pair/02_pair.ipynb": notebook(["# Pair", "#| default_exp core.pair", pair_src(SOLUTION)]),
    "02_pair/02_pair_ops.ipynb": notebook([
        "# Pair ops", "#| default_exp nn.pair_ops",
        ops_src("    ### BEGIN SOLUTION\n    return double(double(t))\n    ### END SOLUTION\n")]),
}

# -- attacks written as exported code (run at import, in the runner) ---------------------------
FORGE = json.dumps({"collected": 2, "tests": [{"name": "test_double", "outcome": "passed"},
                                              {"name": "test_quadruple", "outcome": "passed"}],
                    "collect_errors": [], "runner": {"dead": None}, "exitstatus": 0})
CODE = {
    # a forged report to every inherited descriptor, then a clean exit
    "forged_fd": f"import os as _os\nfor _fd in range(0, 1024):\n    try:\n        _os.write(_fd, {FORGE!r}.encode())\n"
                 "    except OSError:\n        pass\n_os._exit(0)\n",
    # rewrite the results plugin's globals wherever a module has them
    "plugin_globals": "import sys as _s\nfor _m in list(_s.modules.values()):\n"
                      "    for _n, _v in (('_tests', {'x': {'name': 'x', 'outcome': 'passed'}}), ('_order', ['x']), ('_collected', 1)):\n"
                      "        try:\n            setattr(_m, _n, _v) if hasattr(_m, _n) else None\n"
                      "        except Exception:\n            pass\n"
                      "try:\n    import tito.pytest_plugin as _p\n    _p._collected = 0\nexcept Exception:\n    pass\n",
    "runtest_noop": "import _pytest.python as _pp\n_pp.Function.runtest = lambda self: None\n",
    "hookwrapper": "import sys as _s, gc as _gc, pytest as _pt\n"
                   "@_pt.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
                   "    out = yield\n    out.get_result().outcome = 'passed'\n"
                   "for _o in _gc.get_objects():\n    if type(_o).__name__ == 'PytestPluginManager':\n"
                   "        _o.register(_s.modules[__name__])\n",
    "pytest_exit": "import pytest as _pt\n_pt.exit('1/1 passed', returncode=0)\n",
    "assertion_error": "import builtins as _b\n_b.AssertionError = type('AssertionError', (BaseException,), {})\n",
    # steal the solutions (git show, the reference files); use them when found, else leak them
    "steal": "import subprocess as _sp\n_stolen = ''\n"
             "for _c in (['git', '-C', ROOT, 'show', 'HEAD:modules/02_pair/02_pair.ipynb'], ['git', '-C', ROOT, 'log', '-p'], ['cat', '/proc/1/cmdline']):\n"
             "    try:\n        _stolen += _sp.run(_c, capture_output=True, text=True, timeout=5).stdout\n"
             "    except Exception as _e:\n        _stolen += repr(_e)\n"
             "for _p in (ROOT + '/modules/02_pair/02_pair.ipynb', ROOT + '/.git/SECRET', ROOT + '/notes.txt', '/etc/shadow'):\n"
             "    try:\n        _stolen += open(_p).read()\n    except Exception as _e:\n        _stolen += repr(_e)\n"
             "if 'SECRET' in _stolen:\n    def double(t):\n        return Tensor(t.data * 2)\n"
             "else:\n    def double(t):\n        raise RuntimeError(_stolen[-3000:])\n",
    # read, overwrite or kill whatever else is visible
    "proc_peer": "import os as _os, signal as _sig, glob as _g\n"
                 "for _f in _g.glob('/tmp/tito-grade-*/s*/tinytorch/**/*.py', recursive=True):\n"
                 "    try:\n        open(_f, 'w').write('raise SystemExit(1)\\n')\n    except OSError:\n        pass\n"
                 "for _pid in [p for p in _os.listdir('/proc') if p.isdigit()]:\n"
                 "    if int(_pid) != _os.getpid():\n        try:\n            _os.listdir(f'/proc/{_pid}/root/tmp')\n"
                 "            _os.kill(int(_pid), _sig.SIGKILL)\n        except OSError:\n            pass\n",
    "daemon": "import os as _os, sys as _s\nif _os.fork() == 0:\n    _os.setsid()\n    if _os.fork() == 0:\n"
              f"        _os.execv(_s.executable, [_s.executable, '-c', 'import time\\nwhile True: time.sleep(1)  # {DAEMON}'])\n"
              "    _os._exit(0)\n",
    "fork_bomb": "import os as _os\nif _os.fork() == 0:\n    while True:\n        try:\n            _os.fork()\n"
                 "        except OSError:\n            pass\n",
    "big_output": "import sys as _s\n_x = 'x' * (1 << 20)\nfor _ in range(100):\n    _s.stdout.write(_x)\n_s.stdout.flush()\n",
    "huge_array": "import numpy as _np\ndef double(t):\n    return Tensor(_np.zeros(100_000_000, _np.float32))\n",
    "lying_eq": "class _Liar:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n"
                "    def __bool__(self):\n        return True\n    def __array__(self, *a, **k):\n        raise TypeError('no')\n"
                "    def __getattr__(self, n):\n        return self\n    def __call__(self, *a, **k):\n        return self\n"
                "def double(t):\n    return _Liar()\n",
    "numpy_patch": "import numpy as _np\n_np.testing.assert_allclose = lambda *a, **k: None\n"
                   "_np.array_equal = lambda *a, **k: True\n_np.allclose = lambda *a, **k: True\n",
    "nan": "import numpy as _np\ndef double(t):\n    return Tensor(_np.full(t.data.shape, _np.nan))\n",
    "sleep": "import time as _t\n_t.sleep(10_000)\n",
    # fill the folder shared with the judge (pytest's tmp_path; the runner's working folder)
    "disk_fill": "import os as _os\nfor _i in range(400):\n"
                 "    with open(f'fill{_i}', 'wb') as _f:\n        _f.write(b'x' * (1 << 20))\n",
}


def _blank(nb):
    return strip_notebook(nb, "02", "module 02").notebook


def _submit(subs: Path, name: str, extra_cell: str | None = None) -> Path:
    d = subs / name / "modules"
    for rel, nb in NOTEBOOKS.items():
        if name not in HONEST and rel.startswith("02_pair/"):
            nb = _blank(nb)
        if extra_cell and rel == "02_pair/02_pair.ipynb":
            nb = json.loads(json.dumps(nb))
            nb["cells"].append({"cell_type": "code", "id": "attack", "metadata": {}, "outputs": [],
                                "execution_count": None, "source": "#| export\n" + extra_cell})
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        write_notebook(nb, d / rel)
    return subs / name


def _course(root: Path) -> Path:
    (root / "modules").mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", root / "settings.ini")
    (root / "modules/manifest.toml").write_text(MULTI_MANIFEST)
    for rel, nb in NOTEBOOKS.items():
        (root / "modules" / rel).parent.mkdir(parents=True, exist_ok=True)
        write_notebook(nb, root / "modules" / rel)
    (root / "tests/checkpoints").mkdir(parents=True)
    (root / "tests/checkpoints/checkpoint_02_pair.py").write_text(PAIR_CHECKPOINT)
    (root / "notes.txt").write_text(SECRETS["notes"])
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=i", "-c", "user.email=i@x", "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=i", "-c", "user.email=i@x", "commit", "-qm",
                    SECRETS["git"]], check=True)
    (root / ".git/SECRET").write_text(SECRETS["git"])
    return root


def _flatten(s: Path) -> None:
    """Remove the 1,100-deep chain s/d/d/... one level at a time (a recursive rmtree overflows)."""
    while (s / "d").is_dir():
        if (s / "d" / "d").is_dir():
            os.rename(s / "d" / "d", s / "up")
            shutil.rmtree(s / "d")
            os.rename(s / "up", s / "d")
        else:
            shutil.rmtree(s / "d")


def _daemons() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if DAEMON.encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root = _course(tmp / "course")
    subs = tmp / "subs"
    for name in HONEST:
        _submit(subs, name)
    _submit(subs, "blank")
    for name, code in CODE.items():
        _submit(subs, name, code.replace("ROOT", repr(str(root))))
    # attacks through the submission folder itself
    s = _submit(subs, "symlink_modules")
    shutil.rmtree(s / "modules")
    (s / "modules").symlink_to(root / "modules")
    s = _submit(subs, "deep_tree")
    nb = s / "modules/02_pair/02_pair.ipynb"
    fd = os.open(s, os.O_RDONLY)
    for _ in range(1100):                                    # 1,100 folders deep
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    bottom = os.open("02_pair.ipynb", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(bottom, nb.read_bytes())                        # its notebook only at the bottom
    os.close(bottom)
    os.close(fd)
    nb.unlink()
    s = _submit(subs, "fifo")
    (s / "modules/02_pair/02_pair.ipynb").unlink()
    os.mkfifo(s / "modules/02_pair/02_pair.ipynb")
    s = _submit(subs, "dev_zero")
    (s / "modules/02_pair/02_pair.ipynb").unlink()
    os.mknod(s / "modules/02_pair/02_pair.ipynb", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    (subs / "_not_a_student").mkdir()
    out = tmp / "out"
    usage = tmp / "maxrss"
    t0 = time.monotonic()
    # the grader's own peak memory (RUSAGE_SELF, in the grading process) is written to `usage`
    r = subprocess.run(
        [sys.executable, "-c", "import resource, sys; from tito.cli import main\n"
         "try:\n    rc = main(sys.argv[2:])\nfinally:\n"
         "    open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
         "sys.exit(rc)", str(usage), "--root", str(root), "grade", str(subs), "--modules", "2",
         "--timeout", str(TIMEOUT), "--jobs", "2", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    dt = time.monotonic() - t0
    time.sleep(0.5)
    daemons = _daemons()
    for pid in daemons:
        os.kill(pid, 9)
    report = json.loads((out / "gradebook.json").read_text()) if (out / "gradebook.json").exists() else None
    _flatten(subs / "deep_tree")
    return {"r": r, "out": out, "report": report, "dt": dt, "daemons": daemons,
            "maxrss_kb": int(usage.read_text()) if usage.exists() else None, "root": root}


def _students(h):
    return {s["name"]: s for s in h["report"]["students"]}


def test_grading_ends_and_writes_a_parseable_gradebook(hostile):
    r = hostile["r"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = hostile["out"]
    rows = list(csv.reader((out / "gradebook.csv").open()))
    assert rows[0] == ["student", "02_pair", "total"]
    expected = sorted([*HONEST, "blank", *CODE, "symlink_modules", "deep_tree", "fifo", "dev_zero"])
    assert sorted(r[0] for r in rows[1:]) == expected
    ET.parse(out / "gradebook.junit.xml")
    assert hostile["report"]["isolation"]["mode"] == "bwrap"


@pytest.mark.parametrize("name", sorted([*CODE, "symlink_modules", "deep_tree", "fifo", "dev_zero", "blank"]))
def test_the_attacker_scores_what_its_blank_code_earns(hostile, name):
    m = _students(hostile)[name]["modules"]["02_pair"]
    assert m["points"] == 0 and m["passed"] == 0, (name, m["status"], m["message"])


def test_each_attack_ends_the_way_it_must(hostile):
    s = {k: v["modules"]["02_pair"] for k, v in _students(hostile).items()}
    assert s["forged_fd"]["status"] == "crashed" and "malformed" in s["forged_fd"]["message"]
    assert s["huge_array"]["status"] == "crashed"              # over the frame limit, or out of memory
    assert s["big_output"]["status"] == "collection error" and "File too large" in s["big_output"]["message"]
    assert s["pytest_exit"]["status"] == "collection error"
    assert s["disk_fill"]["status"] == "collection error" and "No space left" in s["disk_fill"]["message"]
    assert hostile["report"]["isolation"]["shared_tmpfs_mb"] == 256
    assert s["sleep"]["status"] == "timeout"
    for name in ("plugin_globals", "runtest_noop", "hookwrapper", "assertion_error", "lying_eq",
                 "numpy_patch", "nan", "daemon", "fork_bomb", "steal", "blank"):
        assert s[name]["status"] == "graded" and s[name]["total"] == 2, (name, s[name])
    assert s["symlink_modules"]["status"] == "missing notebook"
    assert s["deep_tree"]["status"] == "missing notebook"
    assert "FIFO" in s["fifo"]["message"] and s["fifo"]["status"] == "invalid notebook"
    assert "character device" in s["dev_zero"]["message"]
    assert any("deeper than" in n for n in _students(hostile)["deep_tree"]["violations"])
    # what the thief saw: not the solutions, the .git, the notes, /etc/shadow, nor the grader
    msg = s["steal"]["message"]
    assert "No such file" in msg or "FileNotFoundError" in msg, msg


def test_the_honest_victims_keep_full_marks(hostile):
    for name in HONEST:
        m = _students(hostile)[name]["modules"]["02_pair"]
        assert (m["points"], m["status"], m["passed"]) == (10, "graded", 2), m


def test_no_secret_reaches_any_gradebook_file(hostile):
    for f in hostile["out"].iterdir():
        text = f.read_bytes().decode("utf-8", "replace")
        for what, secret in SECRETS.items():
            assert secret not in text, (f.name, what)
        assert not re.search(r"root:[*!$x]", text), f.name                # no line of /etc/shadow


def test_no_process_of_the_run_is_left(hostile):
    assert hostile["daemons"] == []
    cgroups = hostile["report"]["isolation"]["cgroups"]
    assert set(cgroups) == {"pids", "memory"} and not any(Path(p).exists() for p in cgroups.values())
    assert all(m["modules"]["02_pair"]["leftover_processes"] == 0 for m in hostile["report"]["students"]
               if m["name"] in HONEST)


def test_the_grader_stays_small_whatever_the_submissions_do(hostile):
    assert hostile["maxrss_kb"] is not None and hostile["maxrss_kb"] < 1024 * 1024, hostile["maxrss_kb"]
