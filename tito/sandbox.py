"""Sandboxes for ``tito grade``: one identity, one set of limits and one teardown per run.

Each run (a student's export, a module's runner, a module's judge) is a :class:`Box`:

``bwrap`` (the default, and required unless the instructor accepts less)
    Debian's ``bubblewrap`` starts the command with ``--unshare-all`` (its own user, PID, mount,
    network, IPC, UTS and cgroup namespaces: it runs as uid 65534 of a user namespace of its own,
    sees only its own processes, has no network), ``--die-with-parent`` and ``--new-session``,
    ``--cap-drop ALL``, on an allow-list filesystem: the Python installation read-only, the
    folders the run needs (bound at their own paths, read-only unless said otherwise), a private
    ``/tmp`` of :attr:`Limits.tmp_mb`, ``/proc`` of its own PID namespace and a minimal ``/dev``.
    Nothing else of the machine exists in it: not the course checkout nor its ``.git``, not the
    submissions, not other students' folders, not ``/etc``, not ``/root``.
``weak`` (only with ``tito grade --allow-weak-sandbox``)
    The same command without namespaces: same uid as the grader, the whole filesystem visible,
    network open. It gives up (printed and written into the gradebook): hiding the reference
    solutions, ``.git`` and other students' files from student code; separating students from
    each other and from the judge (a student's code could read or signal them); and with that
    the guarantee that no submission can forge its score.

Limits, every level: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE`` 0,
``RLIMIT_NPROC``; and where cgroup v1 controllers are mounted and writable (root), a ``pids``
cgroup (``pids.max``) and a ``memory`` cgroup (``memory.limit_in_bytes``) per box, which the box
enters before it executes anything. :meth:`Box.teardown` kills whatever is left in the box's
cgroup, checks that nothing is left, and removes the cgroup.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_UID = 65534


@dataclass
class Limits:
    memory_mb: int = 2048
    pids: int = 64
    cpu_s: int = 300
    tmp_mb: int = 64
    fsize_mb: int = 64


@dataclass
class Jail:
    kind: str                                  # bwrap | weak
    bwrap: str | None = None
    cgroups: dict = field(default_factory=dict)   # controller -> parent cgroup dir
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"mode": self.kind, "bwrap": self.bwrap,
                "cgroups": {k: str(v) for k, v in self.cgroups.items()},
                "notes": list(self.notes)}


WEAK_GIVES_UP = (
    "--allow-weak-sandbox: student code runs without namespaces, as the grader's own user, "
    "seeing the whole filesystem (the course checkout, its .git and reference solutions, other "
    "students' submissions) with network access; students are not separated from each other or "
    "from the judge, so a hostile submission could read solutions or forge or spoil grades")


def python_paths() -> list[Path]:
    """What Python needs to read: the interpreter, its prefixes, site-packages (real paths and the
    venv's symlinked ones)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(os.path.realpath(sys.prefix)), Path(os.path.realpath(sys.base_prefix)),
             Path(os.path.realpath(sys.executable)).parent, Path(sys.executable).parent}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.update({Path(p), Path(os.path.realpath(p))})
    return _minimal([p for p in paths if p.exists()])


def _minimal(paths: list[Path]) -> list[Path]:
    """Drop paths that lie inside another path of the list."""
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out


def _system_binds() -> list[str]:
    args = []
    for d in ("/usr", "/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    return args


# ---------------------------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------------------------

def _own_cgroup(controller: str) -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return CGROUP_ROOT / controller / path.lstrip("/")
    except OSError:
        return None
    return None


def cgroup_parents(tag: str) -> dict[str, Path]:
    """A writable cgroup v1 directory for this grading run, per controller (pids, memory)."""
    out = {}
    for ctrl in ("pids", "memory"):
        for base in (_own_cgroup(ctrl), CGROUP_ROOT / ctrl):
            if base is None or not (base / "cgroup.procs").exists():
                continue
            d = base / tag
            try:
                d.mkdir(exist_ok=True)
            except OSError:
                continue
            out[ctrl] = d
            break
    return out


def remove_cgroup_parents(parents: dict[str, Path]) -> None:
    for d in parents.values():
        for child in d.iterdir() if d.is_dir() else []:
            if child.is_dir():
                _kill_cgroup(child)
                try:
                    child.rmdir()
                except OSError:
                    pass
        try:
            d.rmdir()
        except OSError:
            pass


def _procs(cg: Path) -> list[int]:
    try:
        return [int(x) for x in (cg / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_cgroup(cg: Path, rounds: int = 50) -> int:
    """SIGKILL every process of the cgroup until none is left; the number found at first."""
    first = len(_procs(cg))
    for _ in range(rounds):
        pids = _procs(cg)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return first


# ---------------------------------------------------------------------------------------------
# one box
# ---------------------------------------------------------------------------------------------

class Box:
    """One sandboxed process tree: spawn it, kill it, tear it down (checked)."""

    def __init__(self, jail: Jail, tag: str, limits: Limits):
        self.jail, self.tag, self.limits = jail, tag, limits
        self.cgroups: list[Path] = []
        self.proc: subprocess.Popen | None = None
        for ctrl, parent in jail.cgroups.items():
            d = parent / tag
            try:
                d.mkdir()
                if ctrl == "pids":
                    (d / "pids.max").write_text(str(limits.pids))
                else:
                    mem = str(limits.memory_mb << 20)
                    (d / "memory.limit_in_bytes").write_text(mem)
                    if (d / "memory.memsw.limit_in_bytes").exists():
                        try:
                            (d / "memory.memsw.limit_in_bytes").write_text(mem)
                        except OSError:
                            pass
                self.cgroups.append(d)
            except OSError:
                continue

    def command(self, cmd: list[str], ro: list[Path], rw: list[Path], cwd: Path) -> list[str]:
        if self.jail.kind != "bwrap":
            return list(cmd)
        args = [self.jail.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1",
                "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--hostname", "tito-sandbox", *_system_binds(),
                "--proc", "/proc", "--dev", "/dev",
                "--size", str(self.limits.tmp_mb << 20), "--tmpfs", "/tmp"]
        for p in python_paths():
            args += ["--ro-bind", str(p), str(p)]
        for p in ro:
            args += ["--ro-bind", str(p), str(p)]
        for p in rw:
            args += ["--bind", str(p), str(p)]
        args += ["--chdir", str(cwd), "--", *cmd]
        return args

    def _preexec(self):
        lim, cgroups = self.limits, [str(c / "cgroup.procs") for c in self.cgroups]
        mem = lim.memory_mb << 20

        def preexec():                               # in the child, before exec
            for path in cgroups:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (lim.fsize_mb << 20, lim.fsize_mb << 20))
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 5))
            resource.setrlimit(resource.RLIMIT_NPROC, (lim.pids * 4, lim.pids * 4))
            os.umask(0o077)
        return preexec

    def spawn(self, cmd: list[str], env: dict, cwd: Path, ro=(), rw=(), pass_fds=(),
              stdout=None) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            self.command(cmd, list(ro), list(rw), cwd), cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds), close_fds=True, start_new_session=True,
            preexec_fn=self._preexec())
        return self.proc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for cg in self.cgroups:
            if cg.name and "pids" in cg.parts:
                _kill_cgroup(cg, rounds=3)

    def teardown(self) -> int:
        """Kill everything the box started; the number of processes that were still alive
        (after its main process ended). Removes the box's cgroups."""
        left = 0
        if self.proc is not None:
            if self.proc.poll() is None:
                self.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for cg in self.cgroups:
            for _ in range(100):                 # the kernel is still reaping the namespace
                if not _procs(cg):
                    break
                time.sleep(0.01)
            n = _kill_cgroup(cg)
            if "pids" in cg.parts:
                left = max(left, n)
            for _ in range(50):
                try:
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)
        self.cgroups = []
        return left


# ---------------------------------------------------------------------------------------------
# what the machine provides
# ---------------------------------------------------------------------------------------------

_PROBE = r"""
import json, os, socket, sys
out = {"uid": os.getuid(), "pid": os.getpid(), "root_visible": os.path.exists(sys.argv[1]),
       "procs": len([p for p in os.listdir("/proc") if p.isdigit()])}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1).close()
    out["network"] = True
except OSError:
    out["network"] = False
try:
    open(sys.argv[2] + "/x", "w").write("x")
    out["rw"] = True
except OSError:
    out["rw"] = False
print("@@" + json.dumps(out))
"""


def probe_bwrap(bwrap: str, workspace: Path, secret: Path) -> str | None:
    """None when a bwrap box behaves as promised here, else why not."""
    import json
    d = Path(tempfile.mkdtemp(dir=workspace, prefix="_probe-"))
    try:
        box = Box(Jail("bwrap", bwrap), "probe", Limits(memory_mb=512, pids=16, cpu_s=30))
        out = d / "out"
        with open(out, "wb") as f:
            p = box.spawn([sys.executable, "-P", "-s", "-c", _PROBE, str(secret), str(d)],
                          env=clean_env(d, []), cwd=d, rw=[d], stdout=f)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                box.kill()
                return "the probe timed out"
            finally:
                box.teardown()
        text = out.read_text(errors="replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("@@")), None)
        if line is None:
            return f"bwrap failed (exit {p.returncode}): " + " | ".join(text.strip().splitlines()[-3:])
        r = json.loads(line[2:])
        if r["uid"] == 0:
            return "the sandbox still runs as root"
        if r["root_visible"]:
            return f"the sandbox sees {secret}"
        if r["network"]:
            return "the sandbox has network access"
        if r["procs"] > 3:
            return "the sandbox sees other processes"
        if not r["rw"]:
            return "the sandbox cannot write its own folder"
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def choose_jail(workspace: Path, secret: Path, allow_weak: bool, tag: str) -> Jail:
    """The bwrap jail when it works here; else a TitoError, or the weak jail when allowed."""
    bwrap = shutil.which("bwrap")
    why = "bwrap (Debian package bubblewrap) is not installed" if bwrap is None else \
        probe_bwrap(bwrap, workspace, secret)
    cg = cgroup_parents(tag)
    notes = []
    if "pids" not in cg:
        notes.append("no writable pids cgroup: the process limit is RLIMIT_NPROC only")
    if "memory" not in cg:
        notes.append("no writable memory cgroup: the memory limit is RLIMIT_AS only")
    if why is None:
        return Jail("bwrap", bwrap, cg, notes)
    if not allow_weak:
        remove_cgroup_parents(cg)
        raise TitoError(
            f"tito grade: no sandbox here: {why}. Install bubblewrap (bash scripts/system-deps.sh) "
            "and run as root, or pass --allow-weak-sandbox, which gives up: "
            + WEAK_GIVES_UP.split(": ", 1)[1], exit_code=2)
    return Jail("weak", None, cg, [f"strong sandbox unavailable: {why}", WEAK_GIVES_UP, *notes])


def mount_tmpfs(path: Path, size_mb: int) -> bool:
    """Mount a tmpfs of ``size_mb`` on ``path`` (root only): the folder a student's runs share
    with the judge (pytest's tmp_path) then cannot fill the machine's disk. False when it cannot."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755,nosuid,nodev",
                        "tito-grade", str(path)], capture_output=True)
    return r.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def clean_env(home: Path, pythonpath: list[Path], extra: dict | None = None) -> dict:
    """A child's environment, built from nothing: a minimal PATH, locale, one thread per library."""
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home), "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1", "NUMBA_CACHE_DIR": "/tmp/.numba_cache",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
    }
    env.update(extra or {})
    return env


def make_workspace(prefix: str = "tito-grade-") -> Path:
    ws = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    os.chmod(ws, 0o700)
    return ws
