"""``tito grade``: grade every student's own exported code with the checkpoints.

For each student folder of the submissions directory (its notebooks under ``modules/``):

1. The notebooks are read and checked in this (parent) process: every notebook of every module
   (a module may have several, ``notebooks = [...]`` in the manifest, the main one first). A
   missing main notebook, a symlink or a file that is not a JSON notebook scores 0 for its
   module and is reported. Valid notebooks are copied into the student's own folder in a private
   workspace, next to a copy of every checkpoint file (read once, before any student code runs).
   A notebook that is missing or invalid is replaced there by its stand-in, the stripped release
   version (exercises raise NotImplementedError, never a solution), so that the modules which
   import it can still be graded; when it is not the main notebook of its module, the module is
   graded too and its message names the notebook.
2. A sandboxed child (:mod:`tito.sandbox`) exports the notebooks into the student's own
   ``tinytorch`` package there (:mod:`tito.grade_worker`).
3. One sandboxed child per graded module runs ``tests/checkpoints/checkpoint_NN_*.py`` against
   that package with pytest (``python -P -s``, ``PYTHONPATH`` the student's folder only, no
   conftest files, no plugin autoload, the results plugin :mod:`tito.pytest_plugin` reporting
   every test through a file descriptor), under a memory limit and a wall-clock limit that
   kills the child's whole process group.

Scoring rule (also written into the JSON gradebook): a module scores its manifest points times
the fraction of its checkpoint tests that passed; it scores 0 when its (main) notebook is
missing or invalid, when the checkpoint cannot be collected (syntax error, import error), when
the run times out or crashes, or when any ``tinytorch`` module was imported from outside the
student's package.

Children run concurrently (``jobs``), all spawned from the main thread. After every child the
reference package and tests are hashed and compared with their state before grading; any change
is reported loudly and makes ``tito grade`` exit 1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import TitoError
from .sandbox import Sandbox, child_env, choose_isolation, make_workspace

PLUGIN_NAME = "_tito_pytest_plugin"
SCORING_RULE = (
    "module points = manifest points x (checkpoint tests passed / checkpoint tests collected); "
    "0 when the module's main notebook is missing or not a valid notebook, when the checkpoint "
    "cannot be collected (syntax or import error), when the run times out or crashes, or when a "
    "tinytorch module was imported from outside the student's package. Another notebook of a "
    "module that has several, when missing or invalid, is replaced by its stripped release "
    "version (its exercises fail) and the module is graded. Skipped tests do not count as "
    "passed.")
PYTEST_INI = ("[pytest]\n"
              "python_files = checkpoint_*.py test_*.py\n"
              "addopts = --import-mode=importlib\n")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass
class ModuleGrade:
    folder: str
    number: int
    max_points: float
    status: str = "pending"          # graded | missing notebook | invalid notebook | timeout |
    #                                  collection error | crashed | foreign package | export error
    points: float = 0.0
    passed: int = 0
    total: int = 0
    message: str = ""
    duration_s: float = 0.0
    tests: list[dict] = field(default_factory=list)
    lib_file: str | None = None
    log_tail: str = ""
    notebooks: dict[str, str] = field(default_factory=dict)   # stem -> ok / missing / why not
    stand_ins: list[str] = field(default_factory=list)        # stems given the stripped version

    def stand_in_note(self) -> str:
        """What the message says about the module's other notebooks (not the main one) that the
        submission lacks or has broken: each was replaced by its stripped release version."""
        notes = []
        for stem, state in self.notebooks.items():
            if stem == self.folder or state == "ok":
                continue
            what = f"{stem}.ipynb missing" if state == "missing" else state
            notes.append(what + ("; its stripped release version was used instead (its "
                                 "exercises fail)" if stem in self.stand_ins
                                 else "; no release version to stand in for it"))
        return "".join(f" [{n}]" for n in notes)

    def as_dict(self) -> dict:
        return {"number": self.number, "status": self.status, "points": self.points,
                "max_points": self.max_points, "passed": self.passed, "total": self.total,
                "message": self.message, "duration_s": round(self.duration_s, 2),
                "notebooks": self.notebooks, "stripped_stand_ins": self.stand_ins,
                "tinytorch": self.lib_file, "tests": self.tests, "log_tail": self.log_tail}


@dataclass
class StudentGrade:
    name: str
    path: str
    modules: dict[str, ModuleGrade] = field(default_factory=dict)
    notebooks: dict[str, str] = field(default_factory=dict)     # stem -> ok / why not
    export: dict = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)    # stems given the stripped notebook

    @property
    def total(self) -> float:
        return round(sum(m.points for m in self.modules.values()), 2)

    @property
    def max_total(self) -> float:
        return round(sum(m.max_points for m in self.modules.values()), 2)

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "total": self.total,
                "max_total": self.max_total, "notebooks": self.notebooks,
                "export": self.export, "violations": self.violations,
                "stripped_stand_ins": self.stand_ins,
                "modules": {k: v.as_dict() for k, v in self.modules.items()}}


# ---------------------------------------------------------------------------------------------
# Integrity of the reference checkout
# ---------------------------------------------------------------------------------------------

def tree_digest(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (caches excluded), keyed by path."""
    out = {}
    for base in paths:
        if not base.exists():
            continue
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for f in files:
            if any(part in ("__pycache__", ".pytest_cache", ".hypothesis") for part in f.parts):
                continue
            if f.is_symlink():
                out[str(f)] = "symlink:" + os.readlink(f)
            elif f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            elif f.is_dir():
                out[str(f)] = "dir"
    return out


def diff_digest(before: dict, after: dict) -> list[str]:
    changed = [f"modified {p}" for p in before if p in after and before[p] != after[p]]
    changed += [f"deleted {p}" for p in before if p not in after]
    changed += [f"created {p}" for p in after if p not in before]
    return sorted(changed)


# ---------------------------------------------------------------------------------------------
# Submissions
# ---------------------------------------------------------------------------------------------

def find_students(submissions: Path) -> list[Path]:
    """Every student folder: the direct sub-directories not starting with '.' or '_'."""
    if not submissions.is_dir():
        raise TitoError(f"submissions directory {submissions} does not exist", exit_code=2)
    return sorted((p for p in submissions.iterdir()
                   if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "_"))),
                  key=lambda p: p.name)


def find_notebook(student: Path, folder: str, stem: str | None = None) -> Path | None:
    """The student's notebook ``stem`` (default: the main one, named like the folder) of module
    ``folder``: ``modules/F/S.ipynb``, else ``F/S.ipynb``, else any ``S.ipynb`` in the student's
    folder."""
    stem = stem or folder
    for cand in (student / "modules" / folder / f"{stem}.ipynb",
                 student / folder / f"{stem}.ipynb"):
        if cand.exists() or cand.is_symlink():
            return cand
    hits = sorted(p for p in student.rglob(f"{stem}.ipynb")
                  if not any(part.startswith(".") for part in p.relative_to(student).parts))
    return hits[0] if hits else None


def check_notebook(path: Path) -> tuple[bytes | None, str]:
    """(content, "ok") for a readable JSON notebook, else (None, why not)."""
    if path.is_symlink():
        return None, f"{path.name} is a symbolic link (not graded)"
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror}"
    if len(data) > 50 * 1024 * 1024:
        return None, f"{path.name} is larger than 50 MB"
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name} is not a valid notebook (JSON error: {e})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) \
            or not all(isinstance(c, dict) for c in nb["cells"]):
        return None, f"{path.name} is not a notebook (no list of cells)"
    return data, "ok"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "student"


# ---------------------------------------------------------------------------------------------
# The grader
# ---------------------------------------------------------------------------------------------

@dataclass
class _Job:
    student: "_StudentRun"
    kind: str                      # export | module
    module: object = None          # ModuleInfo
    proc: object = None
    started: float = 0.0
    deadline: float = 0.0
    log_path: Path | None = None
    log_file: object = None
    res_path: Path | None = None


@dataclass
class _StudentRun:
    index: int
    src: Path
    grade: StudentGrade
    sandbox: Path
    todo: list = field(default_factory=list)       # modules left to run
    exported: bool = False
    running: int = 0
    done: bool = False


class Grader:
    def __init__(self, root: Path, manifest, modules, submissions: Path, out: Path,
                 timeout: float = 120, memory_mb: int = 2048, jobs: int = 2,
                 isolation: str = "auto", keep_temp: bool = False, progress: bool = True,
                 log=print):
        self.root = Path(root).resolve()
        self.manifest = manifest
        self.modules = list(modules)
        self.submissions = Path(submissions).resolve()
        self.out = Path(out).resolve()
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.jobs = max(1, int(jobs))
        self.want_isolation = isolation
        self.keep_temp = keep_temp
        self.progress = progress
        self.log = log
        self.violations: list[dict] = []
        self.started = datetime.now(timezone.utc)

    # -- setup --------------------------------------------------------------------------------
    def _snapshot_checkpoints(self) -> dict[str, bytes]:
        cdir = self.root / "tests" / "checkpoints"
        files = {}
        for f in sorted(cdir.rglob("*")):
            rel = f.relative_to(cdir)
            if f.is_file() and not any(p in ("__pycache__", ".pytest_cache") for p in rel.parts):
                files[str(rel)] = f.read_bytes()
        for m in self.modules:
            if not m.checkpoint.is_file():
                raise TitoError(f"module {m.nn} has no checkpoint {m.checkpoint}", exit_code=2)
        return files

    def _stand_ins(self) -> dict[str, bytes]:
        """The stripped release version of every reference notebook, each notebook of every
        module (stem -> bytes)."""
        from .release import read_notebook, strip_notebook
        out = {}
        for m in self.manifest:
            for path in m.notebooks:
                if not path.is_file():
                    continue
                try:
                    nb = strip_notebook(read_notebook(path), path.stem, f"module {m.nn}")
                except TitoError as e:
                    self.log(f"warning: no stand-in for {path.name}: {e}", file=sys.stderr)
                    continue
                out[path.stem] = (json.dumps(nb.notebook, indent=1, sort_keys=True,
                                             ensure_ascii=False) + "\n").encode("utf-8")
        return out

    def _tools(self) -> Path:
        """A root-owned, read-only copy of tito for the export child (its only import path)."""
        tools = self.ws / "_tools"
        src = Path(__file__).resolve().parent
        shutil.copytree(src, tools / "tito",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for d, _, files in os.walk(tools):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        return tools

    def _prepare_student(self, i: int, src: Path) -> _StudentRun:
        g = StudentGrade(src.name, str(src))
        sd = self.ws / f"s{i:03d}-{_safe(src.name)}"
        sd.mkdir(mode=0o755)
        os.chmod(sd, 0o755)
        for rel, data in self.checkpoints.items():
            dst = sd / "tests" / "checkpoints" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        (sd / "pytest.ini").write_text(PYTEST_INI)
        (sd / f"{PLUGIN_NAME}.py").write_bytes(self.plugin)
        (sd / "settings.ini").write_bytes((self.root / "settings.ini").read_bytes())
        (sd / "modules").mkdir()
        for m in self.manifest:
            for stem in m.stems:                 # every notebook of the module, main one first
                nb = find_notebook(src, m.folder, stem)
                data = None
                if nb is None:
                    g.notebooks[stem] = "missing"
                else:
                    data, why = check_notebook(nb)
                    g.notebooks[stem] = why
                if data is None and stem in self.stand_ins:
                    # so that the modules which import this one can still be graded: the
                    # *stripped* release notebook (its exercises raise NotImplementedError),
                    # never a solution
                    data = self.stand_ins[stem]
                    g.stand_ins.append(stem)
                if data is not None:
                    dst = sd / "modules" / m.folder / f"{stem}.ipynb"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
        for d, dirs, files in os.walk(sd):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        for d in ("tinytorch", "home", "home/tmp"):
            (sd / d).mkdir(mode=0o700)
        self.sandbox.chown(sd / "tinytorch")
        self.sandbox.chown(sd / "home")
        run = _StudentRun(i, src, g, sd)
        for m in self.modules:
            mg = ModuleGrade(m.folder, m.number, float(m.points))
            g.modules[m.folder] = mg
            mg.notebooks = {stem: g.notebooks.get(stem, "missing") for stem in m.stems}
            mg.stand_ins = [stem for stem in m.stems if stem in g.stand_ins]
            state = mg.notebooks[m.folder]              # the main notebook decides
            if state == "missing":
                others = [f"{stem}.ipynb" for stem in m.stems[1:]
                          if mg.notebooks[stem] == "missing"]
                mg.status, mg.message = "missing notebook", \
                    f"no notebook {m.folder}/{m.folder}.ipynb in the submission" + (
                        f" (nor {', '.join(others)})" if others else "")
            elif state != "ok":
                mg.status, mg.message = "invalid notebook", state
            else:
                run.todo.append(m)
        return run

    # -- children -------------------------------------------------------------------------------
    def _spawn(self, job: _Job) -> None:
        run, sd = job.student, job.student.sandbox
        tag = f"s{run.index:03d}-" + ("export" if job.kind == "export" else job.module.folder)
        job.log_path = self.ws / "_logs" / f"{tag}.log"
        job.res_path = self.ws / "_results" / f"{tag}.json"
        job.log_file = open(job.log_path, "wb")
        res_fd = os.open(job.res_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        home = sd / "home"
        if job.kind == "export":
            cmd = [sys.executable, "-P", "-s", "-m", "tito.grade_worker", str(sd)]
            env = child_env(home, [self.tools], {"TITO_RESULTS_FD": str(res_fd)})
            limit = max(120.0, self.timeout)
        else:
            ck = sd / "tests" / "checkpoints" / job.module.checkpoint.name
            cmd = [sys.executable, "-P", "-s", "-m", "pytest", "-c", str(sd / "pytest.ini"),
                   "--rootdir", str(sd), "--noconftest", "-p", PLUGIN_NAME,
                   "-p", "no:cacheprovider", "-q", "--no-header", "-rN", "--tb=native",
                   str(ck.relative_to(sd))]
            env = child_env(home, [sd], {
                "TITO_RESULTS_FD": str(res_fd), "TITO_EXPECT_LIB": str(sd / "tinytorch"),
                "TITO_LIB_NAME": "tinytorch", "TINYTORCH_UNDER_TEST": str(sd / "tinytorch")})
            limit = self.timeout
        others = [p for p in self.ws.iterdir()
                  if p.name.startswith("s") and p.is_dir() and p != sd]
        try:
            job.proc = self.sandbox.spawn(cmd, cwd=sd, env=env, writable=[sd / "tinytorch", home],
                                          stdout=job.log_file, pass_fds=[res_fd],
                                          cpu_s=int(limit * 2) + 10, hide_extra=others)
        finally:
            os.close(res_fd)
        job.started = time.monotonic()
        job.deadline = job.started + limit
        run.running += 1

    def _kill(self, job: _Job) -> None:
        try:
            os.killpg(job.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self, job: _Job, timed_out: bool) -> None:
        self._kill(job)                      # anything left in the child's process group
        try:
            job.proc.wait(timeout=10)
        except Exception:                    # noqa: BLE001 - a zombie we cannot reap
            pass
        job.log_file.close()
        dt = time.monotonic() - job.started
        run = job.student
        run.running -= 1
        log_text = job.log_path.read_text(encoding="utf-8", errors="replace")
        tail = "\n".join(log_text.strip().splitlines()[-25:])[-4000:]
        try:
            data = json.loads(job.res_path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            data = None
        if job.kind == "export":
            run.exported = True
            run.grade.export = {"duration_s": round(dt, 2), "timed_out": timed_out,
                                "exit_code": job.proc.returncode,
                                "notebooks": (data or {}).get("notebooks", {}),
                                "warnings": (data or {}).get("warnings", []),
                                "error": (data or {}).get("error") if data else
                                ("timed out" if timed_out else f"no report; log: {tail}")}
            if timed_out or data is None or data.get("error"):
                why = run.grade.export["error"] or "export failed"
                for m in run.todo:
                    mg = run.grade.modules[m.folder]
                    mg.status, mg.message = "export error", f"exporting the notebooks failed: {why}"
                    mg.message += mg.stand_in_note()
                run.todo = []
            self._check_package(run)
            return
        mg = run.grade.modules[job.module.folder]
        self._score(mg, job.module, data, timed_out, job.proc.returncode, dt, tail, run)
        mg.message += mg.stand_in_note()

    def _check_package(self, run: _StudentRun) -> None:
        """Every file the export wrote must be inside the student's package."""
        lib = (run.sandbox / "tinytorch").resolve()
        for nb, rec in run.grade.export.get("notebooks", {}).items():
            for f in rec.get("files") or []:
                if not Path(f).resolve().is_relative_to(lib):
                    msg = f"the export of {nb} wrote {f}, outside the student's package"
                    run.grade.violations.append(msg)

    def _score(self, mg: ModuleGrade, mod, data, timed_out, rc, dt, tail, run) -> None:
        mg.duration_s = dt
        mg.log_tail = tail
        exported = run.grade.export.get("notebooks", {})
        errs = [(stem, exported.get(f"{mod.folder}/{stem}.ipynb", {}).get("error"))
                for stem in mod.stems]
        errs = [(stem, e) for stem, e in errs if e]
        export_note = ""
        if errs:
            export_note = " (export: " + "; ".join(
                (f"{stem}.ipynb: " if len(mod.stems) > 1 else "") + e for stem, e in errs) + ")"
        if timed_out:
            mg.status = "timeout"
            mg.message = (f"timed out after {self.timeout:g} s: the process group was killed "
                          "(an endless loop?)")
            if data:
                mg.tests = data.get("tests", [])
            return
        if not data:
            mg.status = "crashed"
            mg.message = (f"the checkpoint run ended (exit code {rc}) without a report"
                          + (" (killed by a signal: memory limit?)" if rc and rc < 0 else "")
                          + f"; last output: {tail[-600:]}")
            return
        mg.tests = data.get("tests", [])
        mg.lib_file = data.get("lib_file")
        mg.total = len(mg.tests)
        mg.passed = sum(t["outcome"] == "passed" for t in mg.tests)
        if data.get("foreign"):
            mg.status = "foreign package"
            mg.message = ("tinytorch modules were imported from outside the student's package: "
                          + ", ".join(data["foreign"]))
            return
        if data.get("collect_errors"):
            e = data["collect_errors"][0]
            mg.status = "collection error"
            mg.message = f"the checkpoint could not be loaded: {e.get('message')}" + export_note
            mg.tests = mg.tests + data["collect_errors"]
            mg.passed = 0
            return
        if not mg.tests:
            mg.status = "crashed"
            mg.message = f"no checkpoint test ran (pytest exit code {rc}); {tail[-600:]}"
            return
        mg.status = "graded"
        mg.points = round(mg.max_points * mg.passed / mg.total, 2)
        failed = [t for t in mg.tests if t["outcome"] != "passed"]
        mg.message = (f"{mg.passed}/{mg.total} checkpoint tests passed"
                      + (f"; first failure: {failed[0]['name']}: {failed[0]['message']}"
                         if failed else "") + export_note)

    # -- integrity ------------------------------------------------------------------------------
    def _tmp_entries(self) -> dict[str, set[str]]:
        out = {}
        for d in {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}:
            try:
                out[d] = set(os.listdir(d))
            except OSError:
                out[d] = set()
        return out

    def _check_integrity(self, running_students: list[_StudentRun]) -> None:
        after = tree_digest(self.guarded)
        changes = diff_digest(self.digest, after)
        who = [r.grade.name for r in running_students] or ["(unknown)"]
        if changes:
            sandboxed = self.iso.mode != "none"
            v = {"students": who, "what": "the reference package or tests changed",
                 "changes": changes, "students_could_write": not sandboxed}
            self.violations.append(v)
            if not sandboxed:
                for r in running_students:
                    r.grade.violations.append("the reference checkout changed while its code ran: "
                                              + "; ".join(changes[:5]))
            self.log("\n" + "!" * 78 + f"\nTITO GRADE: THE REFERENCE CHECKOUT CHANGED while "
                     f"grading {', '.join(who)}:\n  " + "\n  ".join(changes[:20]) + "\n"
                     + ("(student code cannot write there in this sandbox: another process "
                        "changed it)\n" if sandboxed else "")
                     + "!" * 78, file=sys.stderr)
            self.digest = after
        if self.iso.mode == "nobody" and self.iso.uid is not None:
            now = self._tmp_entries()
            for d, names in now.items():
                for n in sorted(names - self.tmp_before.get(d, set())):
                    p = Path(d) / n
                    try:
                        owner = p.lstat().st_uid
                    except OSError:
                        continue
                    if owner != self.iso.uid:
                        continue
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    for r in running_students:
                        msg = f"wrote {p} outside its folder (removed)"
                        if msg not in r.grade.violations:
                            r.grade.violations.append(msg)
            self.tmp_before = self._tmp_entries()

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        self.checkpoints = self._snapshot_checkpoints()
        self.stand_ins = self._stand_ins()
        from .checkrun import PLUGIN_FILE
        self.plugin = PLUGIN_FILE.read_bytes()
        students = find_students(self.submissions)
        self.guarded = [self.root / self.manifest.settings.lib_name, self.root / "tests"]
        self.digest = tree_digest(self.guarded)
        self.ws = make_workspace()
        try:
            for d in ("_logs", "_results"):
                (self.ws / d).mkdir(mode=0o700)
            self.tools = self._tools()
            self.iso = choose_isolation(self.ws, self.memory_mb, self.want_isolation)
            if self.iso.mode == "none" and self.jobs > 1:
                self.iso.notes.append("without a privilege drop children run one at a time, "
                                      "so a change to the reference names its student")
                self.jobs = 1
            hide = [self.root / self.manifest.settings.lib_name, self.manifest.settings.nbs_path,
                    self.submissions]
            keep_visible = [self.ws, Path(sys.executable), Path(sys.prefix), Path(sys.base_prefix)]
            hide = [h for h in hide if not any(h == k or h in k.parents for k in keep_visible)]
            self.sandbox = Sandbox(self.ws, self.iso, self.memory_mb, hide=hide)
            self.tmp_before = self._tmp_entries()
            runs = self._loop(students)
            result = self._report(runs)
        finally:
            if self.keep_temp:
                self.log(f"temporary workspace kept: {self.ws}")
            else:
                shutil.rmtree(self.ws, ignore_errors=True)
        return result

    def _loop(self, students: list[Path]) -> list[_StudentRun]:
        from tqdm import tqdm
        tqdm.monitor_interval = 0            # no monitor thread: preexec_fn needs one thread
        total_jobs = len(students) * (1 + len(self.modules))
        bar = tqdm(total=total_jobs, desc="grading", unit="run", disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True)
        pending = list(enumerate(students, 1))
        runs: list[_StudentRun] = []
        active: list[_StudentRun] = []
        running: list[_Job] = []
        try:
            while pending or running or any(not r.done for r in active):
                # start what can start, oldest student first
                while len(running) < self.jobs:
                    job = None
                    # without a mount namespace all children share one uid: two students' code
                    # must never run at the same time (one could write into the other's folder)
                    candidates = active if self.iso.mode == "namespace" else active[:1]
                    for r in candidates:
                        if not r.exported and r.running == 0 and not r.done:
                            job = _Job(r, "export")
                            break
                        if r.exported and r.todo:
                            job = _Job(r, "module", r.todo.pop(0))
                            break
                    if job is None:
                        if not pending or (self.iso.mode != "namespace" and active):
                            break
                        i, src = pending.pop(0)
                        r = self._prepare_student(i, src)
                        runs.append(r)
                        active.append(r)
                        bar.update(len(self.modules) - len(r.todo))   # nothing to run for these
                        if not r.todo:
                            r.exported = True
                            bar.update(1)
                        continue
                    bar.set_postfix_str(f"{job.student.grade.name}: "
                                        f"{job.kind if job.kind == 'export' else job.module.folder}")
                    self._spawn(job)
                    running.append(job)
                # reap
                for job in list(running):
                    timed_out = False
                    if job.proc.poll() is None:
                        if time.monotonic() < job.deadline:
                            continue
                        timed_out = True
                        self._kill(job)
                    running.remove(job)
                    self._finish(job, timed_out)
                    self._check_integrity([j.student for j in running] + [job.student])
                    bar.update(1)
                    if job.kind == "export":
                        bar.update(len(self.modules) - len(job.student.todo)
                                   - sum(1 for m in job.student.grade.modules.values()
                                         if m.status in ("missing notebook", "invalid notebook")))
                # students with nothing left
                for r in active:
                    if not r.done and r.exported and not r.todo and r.running == 0:
                        r.done = True
                        self.sandbox.reclaim(r.sandbox)
                active = [r for r in active if not r.done]
                if running:
                    time.sleep(0.05)
        finally:
            for job in running:
                self._kill(job)
            bar.close()
        return runs

    # -- gradebook ------------------------------------------------------------------------------
    def _report(self, runs: list[_StudentRun]) -> dict:
        return {
            "version": 1, "tool": "tito grade",
            "created": self.started.isoformat(timespec="seconds"),
            "root": str(self.root), "submissions": str(self.submissions),
            "scoring_rule": SCORING_RULE,
            "limits": {"timeout_s": self.timeout, "memory_mb": self.memory_mb,
                       "jobs": self.jobs},
            "isolation": self.iso.as_dict(),
            "modules": [{"number": m.number, "folder": m.folder, "title": m.title,
                         "points": m.points,
                         "checkpoint": str(m.checkpoint.relative_to(self.root)),
                         "question": _docstring(m.checkpoint)} for m in self.modules],
            "students": [r.grade.as_dict() for r in runs],
            "integrity": {"ok": not self.violations, "violations": self.violations,
                          "guarded": [str(p) for p in self.guarded]},
        }


def _docstring(path: Path) -> str:
    import ast
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""


# ---------------------------------------------------------------------------------------------
# Writing the gradebook
# ---------------------------------------------------------------------------------------------

def write_gradebook(report: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    folders = [m["folder"] for m in report["modules"]]
    paths = {"csv": out / "gradebook.csv", "json": out / "gradebook.json",
             "junit": out / "gradebook.junit.xml"}

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", *folders, "total"])
    for s in report["students"]:
        w.writerow([s["name"], *[_num(s["modules"][f]["points"]) for f in folders],
                    _num(s["total"])])
    _atomic(paths["csv"], buf.getvalue())
    _atomic(paths["json"], json.dumps(report, indent=1) + "\n")
    _atomic(paths["junit"], junit_xml(report))
    return paths


def _num(x: float) -> str:
    return f"{x:g}"


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(s) -> str:
    return _XML_BAD.sub("?", str(s or ""))


def junit_xml(report: dict) -> str:
    """One <testsuite> per student and module, one <testcase> per checkpoint test; a module
    that could not run is one failing (or skipped, when its notebook is missing) testcase."""
    suites = ET.Element("testsuites", name="tito grade")
    n_all = n_fail = n_err = n_skip = 0
    for s in report["students"]:
        for folder, m in s["modules"].items():
            name = f"{s['name']}.{folder}"
            suite = ET.SubElement(suites, "testsuite", name=_x(name))
            cases = []
            if m["status"] in ("graded", "foreign package") and m["tests"]:
                for t in m["tests"]:
                    tc = ET.Element("testcase", classname=_x(name), name=_x(t["name"]),
                                    time=f"{t.get('duration', 0):.3f}")
                    if t["outcome"] == "failed":
                        el = ET.SubElement(tc, "failure", message=_x(t.get("message")))
                        el.text = _x(t.get("details"))
                    elif t["outcome"] == "error":
                        el = ET.SubElement(tc, "error", message=_x(t.get("message")))
                        el.text = _x(t.get("details"))
                    elif t["outcome"] == "skipped":
                        ET.SubElement(tc, "skipped", message=_x(t.get("message")))
                    cases.append(tc)
            else:
                tc = ET.Element("testcase", classname=_x(name), name="checkpoint",
                                time=f"{m['duration_s']:.3f}")
                if m["status"] == "missing notebook":
                    ET.SubElement(tc, "skipped", message=_x(m["message"]))
                else:
                    el = ET.SubElement(tc, "error", message=_x(f"{m['status']}: {m['message']}"))
                    el.text = _x(m.get("log_tail"))
                cases.append(tc)
            f = sum(1 for c in cases if c.find("failure") is not None)
            e = sum(1 for c in cases if c.find("error") is not None)
            k = sum(1 for c in cases if c.find("skipped") is not None)
            suite.set("tests", str(len(cases)))
            suite.set("failures", str(f))
            suite.set("errors", str(e))
            suite.set("skipped", str(k))
            suite.set("time", f"{m['duration_s']:.3f}")
            ET.SubElement(suite, "properties").append(
                ET.Element("property", name="points", value=f"{m['points']:g}/{m['max_points']:g}"))
            suite.extend(cases)
            n_all += len(cases)
            n_fail += f
            n_err += e
            n_skip += k
    suites.set("tests", str(n_all))
    suites.set("failures", str(n_fail))
    suites.set("errors", str(n_err))
    suites.set("skipped", str(n_skip))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def summary_table(report: dict) -> str:
    folders = [m["folder"] for m in report["modules"]]
    head = ["student", *[f[:2] for f in folders], "total", "notes"]
    rows = []
    for s in report["students"]:
        notes = []
        for f in folders:
            m = s["modules"][f]
            if m["status"] != "graded":
                notes.append(f"{f[:2]}: {m['status']}")
            else:
                for stem, state in (m.get("notebooks") or {}).items():
                    if stem != f and state != "ok":
                        notes.append(f"{f[:2]}: " + ("stand-in for " if stem in
                                                     m.get("stripped_stand_ins", []) else "no ")
                                     + stem)
        if s["violations"]:
            notes.append(f"{len(s['violations'])} violation(s)")
        rows.append([s["name"], *[f"{s['modules'][f]['points']:g}" for f in folders],
                     f"{s['total']:g}/{s['max_total']:g}", "; ".join(notes)])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
