"""``tito grade``: grade every student's own exported code with the checkpoints, so that no
submission can forge its score.

Nothing that runs student code decides a score. For each student folder of the submissions:

1. The notebooks are read here without following anything (:mod:`tito.grading_submissions`)
   and copied into the student's folder of a private workspace; a missing or invalid notebook
   scores 0 for its module (another notebook of a module that has several is replaced by its
   stripped release version, whose exercises fail).
2. An export box (:mod:`tito.sandbox`, bwrap) turns them into the student's ``tinytorch``
   package (:mod:`tito.grade_worker`, nbdev; no student code runs).
3. Per graded module, two boxes connected by pipes: the **runner**
   (:mod:`tito.grading_runner`, untrusted) imports the student's package and makes the calls it
   is asked to, answering with plain data only; the **judge** (:mod:`tito.grading_judge`,
   trusted, never imports student code) runs the checkpoint with pytest against a proxy of the
   package (:mod:`tito.grading_proxy`) and writes each test's outcome to a pipe that only the
   grader reads. The grader scores from that report alone.

Every box has its own user, PID, mount and network namespace, its own cgroup (process count,
memory), CPU-time, file-size and /tmp limits, and is torn down (checked) when it ends. A run that
crashes, falls silent, answers malformed or oversized data, or exceeds its time scores 0 for that
module with the reason. Every per-student failure is caught and recorded; the gradebook (CSV,
JSON, JUnit) is always written, atomically (:mod:`tito.grading_book`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import TitoError
from .grading_book import junit_xml, summary_table, write_gradebook  # noqa: F401 - re-exported
from .grading_submissions import find_students, load_notebook, scan
from .grading_session import ModuleOutcome, Session
from .sandbox import (Box, Limits, choose_jail, clean_env, make_workspace, mount_tmpfs,
                      remove_cgroup_parents, unmount)

SCORING_RULE = (
    "module points = manifest points x (checkpoint tests passed / checkpoint tests collected), "
    "the tests run by the trusted judge against the student's package in a sandbox; 0 when the "
    "module's main notebook is missing or not a valid notebook, when its export fails, when the "
    "checkpoint cannot be collected, or when the sandboxed runner crashes, exits early, answers "
    "malformed or oversized data, or the run exceeds its time. Another notebook of a module that "
    "has several, when missing or invalid, is replaced by its stripped release version (its "
    "exercises fail). Skipped tests do not count as passed.")
MAX_REPORT = 16 << 20            # bytes of a judge's or export's report read
MAX_LOG = 8_000                  # characters of a log kept
SHARED_MB = 256                  # the tmpfs a student's runs share with the judge (tmp_path)
OUTCOMES = ("passed", "failed", "error", "skipped")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass
class ModuleGrade:
    folder: str
    number: int
    max_points: float
    status: str = "pending"
    points: float = 0.0
    passed: int = 0
    total: int = 0
    message: str = ""
    duration_s: float = 0.0
    tests: list[dict] = field(default_factory=list)
    log_tail: str = ""
    notebooks: dict[str, str] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)
    leftover_processes: int = 0

    def stand_in_note(self) -> str:
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
                "leftover_processes": self.leftover_processes, "tests": self.tests,
                "log_tail": self.log_tail}


@dataclass
class StudentGrade:
    name: str
    path: str
    modules: dict[str, ModuleGrade] = field(default_factory=dict)
    notebooks: dict[str, str] = field(default_factory=dict)
    export: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def total(self) -> float:
        return round(sum(m.points for m in self.modules.values()), 2)

    @property
    def max_total(self) -> float:
        return round(sum(m.max_points for m in self.modules.values()), 2)

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "total": self.total,
                "max_total": self.max_total, "notebooks": self.notebooks,
                "export": self.export, "violations": self.notes, "error": self.error,
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
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".pytest_cache", ".hypothesis"))
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                if os.path.islink(p):
                    out[p] = "symlink:" + os.readlink(p)
                else:
                    with open(p, "rb") as fh:
                        out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


def diff_digest(before: dict, after: dict) -> list[str]:
    changed = [f"modified {p}" for p in before if p in after and before[p] != after[p]]
    changed += [f"deleted {p}" for p in before if p not in after]
    changed += [f"created {p}" for p in after if p not in before]
    return sorted(changed)


def _safe(name: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "student"


def _tail(path: Path) -> str:
    """The last :data:`MAX_LOG` characters of a log, read from its end (never the whole file)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * MAX_LOG))
            text = f.read(4 * MAX_LOG).decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = text.strip().splitlines()[-40:]
    return "\n".join(lines)[-MAX_LOG:]


def parse_report(raw: bytes | None) -> tuple[dict | None, str]:
    """The judge's report, checked field by field; (None, why) when it is not one."""
    if raw is None:
        return None, "no report"
    if len(raw) > MAX_REPORT:
        return None, f"report larger than {MAX_REPORT} bytes"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "report is not JSON" if raw else "no report"
    if not isinstance(data, dict):
        return None, "report is not a JSON object"
    tests = data.get("tests")
    errs = data.get("collect_errors", [])
    collected = data.get("collected")
    runner = data.get("runner")
    if not isinstance(tests, list) or not isinstance(errs, list) or not isinstance(runner, dict) \
            or not isinstance(collected, int) or isinstance(collected, bool) or collected < 0:
        return None, "report of the wrong shape"
    clean = []
    for t in tests + errs:
        if not (isinstance(t, dict) and isinstance(t.get("name", t.get("nodeid")), str)
                and t.get("outcome") in OUTCOMES):
            return None, "report with a test entry of the wrong shape"
        clean.append({"name": str(t.get("name") or t.get("nodeid"))[:300],
                      "outcome": t["outcome"], "when": str(t.get("when") or "")[:20],
                      "message": str(t.get("message") or "")[:2000],
                      "details": str(t.get("details") or "")[:6000],
                      "duration": float(t["duration"]) if isinstance(t.get("duration"), (int, float))
                      and not isinstance(t.get("duration"), bool) else 0.0})
    dead = runner.get("dead")
    return {"collected": collected, "tests": clean[:len(tests)], "collect_errors": clean[len(tests):],
            "dead": str(dead)[:2000] if dead else None,
            "error": str(data["error"])[:2000] if data.get("error") else None}, "ok"


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------

@dataclass
class _Job:
    run: "_StudentRun"
    kind: str                                 # export | module
    module: object = None
    boxes: list = field(default_factory=list)
    procs: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    report_fd: int | None = None
    report: bytearray = field(default_factory=bytearray)
    oversized: bool = False
    started: float = 0.0
    deadline: float = 0.0

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)


@dataclass
class _StudentRun:
    index: int
    src: Path
    grade: StudentGrade
    folder: Path
    todo: list = field(default_factory=list)
    exported: bool = False
    running: int = 0
    done: bool = False
    job: object = None                      # the export job while it runs
    session: object = None                  # the judge session while modules run


@dataclass(frozen=True)
class GradeSettings:
    """How ``tito grade`` runs: per-module time limit (s), memory per box (MB), students graded in
    parallel, whether a weaker sandbox is accepted, whether the workspace is kept, progress lines,
    and the function that prints them."""
    timeout: float = 120
    memory_mb: int = 2048
    jobs: int = 2
    allow_weak: bool = False
    keep_temp: bool = False
    progress: bool = True
    log: object = print


class Grader:
    def __init__(self, root: Path, manifest, modules, submissions: Path, out: Path,
                 settings: GradeSettings = GradeSettings()):
        self.root = Path(root).resolve()
        self.manifest = manifest
        self.modules = list(modules)
        self.submissions = Path(submissions).resolve()
        self.out = Path(out).resolve()
        self.timeout = float(settings.timeout)
        self.memory_mb = int(settings.memory_mb)
        self.jobs = max(1, int(settings.jobs))
        self.allow_weak = settings.allow_weak
        self.keep_temp = settings.keep_temp
        self.progress = settings.progress
        self.log = settings.log
        self.violations: list[dict] = []
        self.mounts: list[Path] = []
        self.mount_notes: list[str] = []
        self.started = datetime.now(timezone.utc)
        ds = self.root / "datasets"             # the course's shipped data (public), read-only
        self.datasets = ds.resolve() if ds.is_dir() and not ds.is_symlink() else None
        self.limits = Limits(memory_mb=self.memory_mb, pids=64, cpu_s=int(self.timeout * 2) + 10)

    # -- setup --------------------------------------------------------------------------------
    def _copy_inputs(self) -> None:
        """The checkpoints and a read-only copy of tito, read once before any student code runs."""
        ck = self.ws / "_checkpoints"
        ck.mkdir()
        for m in self.modules:
            if not m.checkpoint.is_file():
                raise TitoError(f"module {m.nn} has no checkpoint {m.checkpoint}", exit_code=2)
            shutil.copy(m.checkpoint, ck / m.checkpoint.name)
        self.tools = self.ws / "_tools"
        shutil.copytree(Path(__file__).resolve().parent, self.tools / "tito",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for d, _, files in os.walk(self.ws):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)

    def _stand_ins(self) -> dict[str, bytes]:
        """The stripped release version of every reference notebook (stem -> bytes)."""
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

    def _prepare_student(self, i: int, src: Path) -> _StudentRun:
        g = StudentGrade(src.name, str(src))
        sd = self.ws / f"s{i:03d}-{_safe(src.name)}"
        run = _StudentRun(i, src, g, sd)
        for m in self.modules:
            mg = ModuleGrade(m.folder, m.number, float(m.points))
            g.modules[m.folder] = mg
        sd.mkdir(mode=0o755)
        shutil.copy(self.root / "settings.ini", sd / "settings.ini")
        found = scan(src)
        g.notes += found.notes
        for m in self.manifest:
            for stem in m.stems:
                data, why = load_notebook(src, found, m.folder, stem)
                g.notebooks[stem] = why
                if data is None and stem in self.stand_ins:
                    data = self.stand_ins[stem]
                    g.stand_ins.append(stem)
                if data is not None:
                    dst = sd / "modules" / m.folder / f"{stem}.ipynb"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
        for d in ("tinytorch", "tmp"):
            (sd / d).mkdir(mode=0o755)
        if mount_tmpfs(sd / "tmp", SHARED_MB):
            self.mounts.append(sd / "tmp")
        elif not any("tmp_path" in n for n in self.mount_notes):
            self.mount_notes.append(f"no tmpfs for the folder runs share with the judge (pytest's "
                                    "tmp_path): it is not size-limited")
        for m in self.modules:
            mg = g.modules[m.folder]
            mg.notebooks = {stem: g.notebooks.get(stem, "missing") for stem in m.stems}
            mg.stand_ins = [stem for stem in m.stems if stem in g.stand_ins]
            state = mg.notebooks[m.folder]
            if state == "missing":
                mg.status, mg.message = "missing notebook", \
                    f"no notebook {m.folder}/{m.folder}.ipynb in the submission"
            elif state != "ok":
                mg.status, mg.message = "invalid notebook", state
            else:
                run.todo.append(m)
        return run

    # -- jobs ---------------------------------------------------------------------------------
    def _pipe_reader(self, job: _Job) -> int:
        r, w = os.pipe()
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_NONBLOCK)
        job.report_fd = r
        return w

    def _log(self, job: _Job, name: str):
        path = self.ws / "_logs" / f"s{job.run.index:03d}-{name}.log"
        job.logs.append(path)
        return open(path, "wb")

    def _spawn_export(self, job: _Job) -> None:
        sd = job.run.folder
        w = self._pipe_reader(job)
        box = Box(self.jail, f"s{job.run.index:03d}-export", Limits(
            memory_mb=max(self.memory_mb, 1024), pids=64, cpu_s=300))
        job.boxes.append(box)
        try:
            with self._log(job, "export") as log:
                env = clean_env(sd / "tmp", [self.tools], {"TITO_RESULTS_FD": str(w)})
                job.procs.append(box.spawn(
                    [sys.executable, "-P", "-s", "-m", "tito.grade_worker", str(sd)], env=env,
                    cwd=sd, ro=[self.tools, sd / "modules", sd / "settings.ini"],
                    rw=[sd / "tinytorch"], pass_fds=[w], stdout=log))
        finally:
            os.close(w)
        job.deadline = time.monotonic() + max(120.0, self.timeout)

    def _start(self, job: _Job) -> None:
        job.started = time.monotonic()
        job.run.running += 1
        try:
            self._spawn_export(job)
        except Exception as e:                       # noqa: BLE001 - recorded for the student
            job.kill_reason = f"could not start the sandbox: {type(e).__name__}: {e}"
            for b in job.boxes:
                b.kill()

    def _drain(self, job: _Job) -> None:
        if job.report_fd is None:
            return
        while True:
            try:
                b = os.read(job.report_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                b = b""
            if not b:
                os.close(job.report_fd)
                job.report_fd = None
                return
            if len(job.report) + len(b) > MAX_REPORT:
                job.oversized = True
                continue
            job.report += b

    def _finish(self, job: _Job, timed_out: bool) -> None:
        for b in job.boxes:
            if timed_out:
                b.kill()
        for b in job.boxes:
            b.teardown()
        self._drain(job)
        if job.report_fd is not None:
            os.close(job.report_fd)
            job.report_fd = None
        job.run.running -= 1
        dt = time.monotonic() - job.started
        tail = "\n".join(f"== {p.name} ==\n{_tail(p)}" for p in job.logs)[-MAX_LOG:]
        self._finish_export(job, timed_out, dt, tail, getattr(job, "kill_reason", None))

    def _finish_module(self, run: _StudentRun, out: ModuleOutcome) -> None:
        mg = run.grade.modules[out.module.folder]
        mg.duration_s, mg.leftover_processes = out.duration_s, out.leftover
        mg.log_tail = "\n".join(f"== {p.name} ==\n{_tail(p)}" for p in out.logs)[-MAX_LOG:]
        if out.leftover:
            run.grade.notes.append(f"{out.module.folder}: {out.leftover} process(es) still alive "
                                   "after the run were killed")
        self._score(mg, out)
        mg.message += mg.stand_in_note()

    def _finish_export(self, job, timed_out, dt, tail, why_not_started) -> None:
        run = job.run
        run.exported = True
        data = None
        if not job.oversized and job.report:
            try:
                data = json.loads(bytes(job.report).decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                data = None
        if not isinstance(data, dict):
            data = None
        nbs = data.get("notebooks") if data else None
        nbs = nbs if isinstance(nbs, dict) else {}
        error = (why_not_started or ("timed out" if timed_out else None)
                 or (str(data.get("error"))[:2000] if data and data.get("error") else None)
                 or (None if data else f"no report; log: {tail[-1500:]}"))
        run.grade.export = {"duration_s": round(dt, 2), "timed_out": timed_out, "error": error,
                            "notebooks": {str(k)[:200]: {"error": str(v.get("error"))[:2000]
                                                         if isinstance(v, dict) and v.get("error") else None}
                                          for k, v in list(nbs.items())[:200]}}
        if error:
            for m in run.todo:
                mg = run.grade.modules[m.folder]
                mg.status, mg.message = "export error", f"exporting the notebooks failed: {error}"
            run.todo = []

    def _score(self, mg: ModuleGrade, out: ModuleOutcome) -> None:
        m = out.module
        exported = getattr(out, "export_notebooks", None) or {}
        errs = [(stem, (exported.get(f"{m.folder}/{stem}.ipynb") or {}).get("error"))
                for stem in m.stems]
        note = "; ".join(f"{stem}.ipynb: {e}" for stem, e in errs if e)
        note = f" (export: {note})" if note else ""
        if out.timed_out:
            mg.status = "timeout"
            mg.message = f"timed out after {self.timeout:g} s: every process of the run was killed"
            return
        if out.why:
            mg.status, mg.message = "crashed", out.why
            return
        if out.report is not None and len(out.report) > MAX_REPORT:
            mg.status, mg.message = "crashed", "the judge's report was larger than the limit"
            return
        rep, why = parse_report(out.report)
        if rep is None:
            mg.status, mg.message = "crashed", f"the judge wrote no valid report ({why})"
            return
        mg.tests = rep["tests"]
        mg.total = rep["collected"]
        mg.passed = sum(t["outcome"] == "passed" for t in rep["tests"])
        if rep["dead"]:
            mg.status, mg.passed = "crashed", 0
            mg.message = f"{rep['dead']} (the whole module scores 0)" + note
            return
        if rep["error"]:
            mg.status, mg.passed = "crashed", 0
            mg.message = f"the judge failed: {rep['error']}"
            return
        if rep["collect_errors"]:
            mg.status, mg.passed = "collection error", 0
            mg.tests += rep["collect_errors"]
            mg.message = f"the checkpoint could not be loaded: {rep['collect_errors'][0]['message']}" + note
            return
        if mg.total == 0 or not rep["tests"]:
            mg.status, mg.message = "crashed", "no checkpoint test ran" + note
            return
        mg.status = "graded"
        mg.points = round(mg.max_points * min(mg.passed, mg.total) / mg.total, 2)
        failed = [t for t in rep["tests"] if t["outcome"] != "passed"]
        mg.message = (f"{mg.passed}/{mg.total} checkpoint tests passed"
                      + (f"; first failure: {failed[0]['name']}: {failed[0]['message'][:500]}"
                         if failed else "") + note)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        self.stand_ins = self._stand_ins()
        students = find_students(self.submissions)
        self.guarded = [self.root / self.manifest.settings.lib_name, self.root / "tests"]
        self.digest = tree_digest(self.guarded)
        self.ws = make_workspace()
        self.jail = None
        try:
            (self.ws / "_logs").mkdir()
            self._copy_inputs()
            self.jail = choose_jail(self.ws, self.root / "settings.ini", self.allow_weak,
                                    self.ws.name)
            if self.jail.kind != "bwrap" and self.jobs > 1:
                self.jobs = 1                # students run in parallel only when separated
                self.jail.notes.append("without namespaces students are graded one at a time")
            runs = self._loop(students)
            changes = diff_digest(self.digest, tree_digest(self.guarded))
            if changes:
                self.violations.append({"what": "the reference package or tests changed during "
                                                "grading", "changes": changes[:50]})
            return self._report(runs)
        finally:
            for m in list(self.mounts):
                unmount(m)
            self.mounts = []
            if self.jail is not None:
                remove_cgroup_parents(self.jail.cgroups)
            if self.keep_temp:
                self.log(f"temporary workspace kept: {self.ws}")
            else:
                shutil.rmtree(self.ws, ignore_errors=True)

    def _step(self, r: _StudentRun, bar) -> None:
        """Advance one active student: its export, then its modules one at a time."""
        if r.job is None and not r.exported:
            r.job = _Job(r, "export")
            self._start(r.job)
            return
        if r.job is not None:
            self._drain(r.job)
            timed_out = False
            if r.job.alive():
                if time.monotonic() < r.job.deadline:
                    return
                timed_out = True
            job, r.job = r.job, None
            self._finish(job, timed_out)
            bar.update(1 + len(self.modules) - len(r.todo) - sum(
                1 for m in r.grade.modules.values() if m.status in ("missing notebook", "invalid notebook")))
            return
        if r.session is None and r.todo:
            r.session = Session(self, r.index, r.folder)
        if r.session is not None and r.session.current is None:
            if r.todo:
                module = r.todo.pop(0)
                try:
                    r.session.start(module)
                except Exception as e:               # noqa: BLE001 - recorded for the student
                    mg = r.grade.modules[module.folder]
                    mg.status, mg.message = "crashed", f"could not start the sandbox: {type(e).__name__}: {e}"
                    r.session.close()
                    r.session = None
                    bar.update(1)
                return
            r.session.close()
            r.session = None
        if r.session is not None:
            out = r.session.poll()
            if out is not None:
                out.export_notebooks = r.grade.export.get("notebooks", {})
                self._finish_module(r, out)
                bar.update(1)
            return
        r.done = True

    def _loop(self, students: list[Path]) -> list[_StudentRun]:
        from tqdm import tqdm
        tqdm.monitor_interval = 0            # one thread: preexec_fn is not thread-safe
        bar = tqdm(total=len(students) * (1 + len(self.modules)), desc="grading", unit="run",
                   disable=not self.progress, file=sys.stderr, dynamic_ncols=True)
        pending = list(enumerate(students, 1))
        runs, active = [], []
        try:
            while pending or active:
                while pending and len(active) < self.jobs:
                    i, src = pending.pop(0)
                    r = self._prepare_safely(i, src)
                    runs.append(r)
                    bar.update(len(self.modules) - len(r.todo))
                    if not r.todo:
                        r.exported = True
                        r.done = True
                        bar.update(1)
                    else:
                        active.append(r)
                for r in active:
                    try:
                        self._step(r, bar)
                    except Exception:                # noqa: BLE001 - recorded, never fatal
                        self._record_failure(r, traceback.format_exc())
                        if r.session is not None:
                            r.session.close()
                            r.session = None
                        r.done = True
                for r in [r for r in active if r.done]:
                    self._remove(r.folder)
                active = [r for r in active if not r.done]
                time.sleep(0.01)
        finally:
            for r in active:
                if r.job is not None:
                    for b in r.job.boxes:
                        b.kill()
                        b.teardown()
                if r.session is not None:
                    r.session.close()
            bar.close()
        return runs

    def _remove(self, folder: Path) -> None:
        shared = folder / "tmp"
        if shared in self.mounts:
            unmount(shared)
            self.mounts.remove(shared)
        shutil.rmtree(folder, ignore_errors=True)

    def _prepare_safely(self, i: int, src: Path) -> _StudentRun:
        try:
            return self._prepare_student(i, src)
        except Exception:                            # noqa: BLE001 - recorded, never fatal
            g = StudentGrade(src.name, str(src))
            for m in self.modules:
                g.modules[m.folder] = ModuleGrade(m.folder, m.number, float(m.points),
                                                  status="grader error")
            run = _StudentRun(i, src, g, self.ws / f"s{i:03d}-failed")
            self._record_failure(run, traceback.format_exc())
            return run

    def _record_failure(self, run: _StudentRun, tb: str) -> None:
        run.grade.error = tb[-3000:]
        for mg in run.grade.modules.values():
            if mg.status == "pending":
                mg.status, mg.points = "grader error", 0.0
                mg.message = "grading this submission failed: " + tb.strip().splitlines()[-1][:500]
        run.todo = []

    # -- gradebook ----------------------------------------------------------------------------
    def _report(self, runs: list[_StudentRun]) -> dict:
        return {
            "version": 2, "tool": "tito grade",
            "created": self.started.isoformat(timespec="seconds"),
            "submissions": str(self.submissions), "scoring_rule": SCORING_RULE,
            "limits": {"timeout_s": self.timeout, "memory_mb": self.memory_mb,
                       "jobs": self.jobs, "pids": self.limits.pids, "cpu_s": self.limits.cpu_s,
                       "tmp_mb": self.limits.tmp_mb},
            "isolation": {**self.jail.as_dict(), "notes": self.jail.notes + self.mount_notes,
                          "shared_tmpfs_mb": SHARED_MB if not self.mount_notes else None}
            if self.jail else {},
            "modules": [{"number": m.number, "folder": m.folder, "title": m.title,
                         "points": m.points, "checkpoint": f"tests/checkpoints/{m.checkpoint.name}",
                         "question": _docstring(m.checkpoint)} for m in self.modules],
            "students": [r.grade.as_dict() for r in runs],
            "integrity": {"ok": not self.violations, "violations": self.violations},
        }


def _docstring(path: Path) -> str:
    import ast
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""


def empty_report(modules, submissions: Path, error: str) -> dict:
    """A gradebook that says grading could not run (so that one is always written)."""
    return {"version": 2, "tool": "tito grade", "submissions": str(submissions),
            "scoring_rule": SCORING_RULE, "error": error,
            "modules": [{"number": m.number, "folder": m.folder, "title": m.title,
                         "points": m.points, "checkpoint": f"tests/checkpoints/{m.checkpoint.name}",
                         "question": ""} for m in modules],
            "students": [], "isolation": {}, "integrity": {"ok": False, "violations": []}}
