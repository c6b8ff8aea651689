"""Run untrusted code (a student's exported package under test) in a child process that cannot
write outside its own folders, with a memory limit and a wall-clock limit.

Three levels, the strongest that works on this machine is chosen by :func:`choose_isolation`
(a probe child is started at each level and must pass before the level is used):

``namespace`` (running as root, mount namespaces available)
    The child gets a private mount namespace in which every mount is read-only except the
    folders it may write (its package and its home), the reference package and notebooks, the
    submissions and other students' folders are hidden under empty read-only tmpfs mounts, and
    it has no network (a private network namespace). Directories that the unprivileged user
    could not traverse on the way to the Python installation (e.g. ``/root`` of a pyenv
    install) are replaced by a tmpfs holding only read-only bind mounts of what Python needs.
    Then it drops privileges (below).
``nobody`` (running as root)
    Only the privilege drop: supplementary groups cleared, ``os.setgid``/``os.setuid`` to
    nobody (65534), ``PR_SET_NO_NEW_PRIVS``. The child's folders are chowned to that user, so
    the reference checkout, the tests and other students' folders are not writable to it. When
    the Python installation is not readable by nobody (pyenv under ``/root``), the child keeps
    the single capability ``CAP_DAC_READ_SEARCH`` (read and search any file; writes are still
    checked as nobody). ``/tmp`` stays writable: the grader removes what the child left there.
``none`` (not root)
    No privilege drop. The grader hashes the reference package and tests before and after every
    child and fails loudly when they changed.

Every level sets, in ``preexec_fn``: ``RLIMIT_AS`` (the memory limit), ``RLIMIT_CORE`` 0,
``RLIMIT_FSIZE``, ``RLIMIT_CPU`` (and ``RLIMIT_NPROC`` for the unprivileged user), and the child leads a new session (process group) that the
wall-clock timeout kills as a whole. The environment is built from scratch (no inherited
PYTHONPATH). Children are spawned from one thread only (``preexec_fn`` is not thread-safe).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_MOVE, MS_REC, MS_PRIVATE, MS_RELATIME = 8192, 16384, 1 << 18, 1 << 21
PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 8, 38, 47, 2
CAP_DAC_READ_SEARCH = 2
NPROC = 512                    # processes and threads of the sandbox user, all children together
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_OPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
              "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _unescape(s: str) -> str:
    """Mount points in /proc/self/mountinfo escape space, tab, newline and backslash in octal."""
    return (s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def read_mounts() -> list[tuple[str, int]]:
    """(mount point, flags to keep) of every mount, parents before children."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                flags = 0
                for opt in parts[5].split(","):
                    flags |= _OPT_FLAGS.get(opt, 0)
                out.append((_unescape(parts[4]), flags))
    except OSError:
        return []
    return out


def _traversable_by_others(d: Path) -> bool:
    try:
        return bool(os.stat(d).st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _blocking_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that other users cannot traverse."""
    for anc in reversed(path.parents):          # "/" first
        if anc != Path("/") and not _traversable_by_others(anc):
            return anc
    return None


def python_paths() -> list[Path]:
    """What the child's Python needs to read: the interpreter, its prefixes, site-packages."""
    paths = {Path(os.path.realpath(sys.executable)).parent, Path(os.path.realpath(sys.prefix)),
             Path(os.path.realpath(sys.base_prefix)), Path(os.path.realpath(sys.exec_prefix))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(Path(os.path.realpath(p)))
    # the venv's bin/python may be a symlink chain: every hop must be reachable
    p = Path(sys.executable)
    for _ in range(10):
        paths.add(p.parent.resolve() if p.parent.exists() else p.parent)
        if not p.is_symlink():
            break
        p = (p.parent / os.readlink(p))
    return sorted(paths)


def _minimal(paths: list[Path]) -> list[Path]:
    """Drop paths that lie inside another path of the list."""
    paths = sorted(set(paths), key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in paths:
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out


@dataclass
class Isolation:
    mode: str = "none"                         # namespace | nobody | none
    uid: int | None = None
    gid: int | None = None
    keep_read_cap: bool = False
    network_isolated: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"mode": self.mode, "uid": self.uid, "gid": self.gid,
                "keeps_cap_dac_read_search": self.keep_read_cap,
                "network_isolated": self.network_isolated, "notes": list(self.notes)}


def nobody_ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


class Sandbox:
    """Spawns children at one isolation level. ``workspace`` is a root-owned directory (mode
    0711) holding every child's folders; ``hide`` lists paths to hide in the namespace level."""

    def __init__(self, workspace: Path, isolation: Isolation, memory_mb: int,
                 hide: list[Path] = (), fsize_mb: int = 512):
        self.workspace = Path(workspace)
        self.iso = isolation
        self.memory = int(memory_mb) * 1024 * 1024
        self.fsize = int(fsize_mb) * 1024 * 1024
        self.hide = [Path(h) for h in hide if Path(h).exists()]
        self._cover: list[tuple[str, list[tuple[str, str]]]] = []   # blocker, [(src, stage)]
        if isolation.mode == "namespace":
            self._plan_cover()

    # -- the namespace's view of the Python installation -------------------------------------
    def _plan_cover(self) -> None:
        needed = _minimal(python_paths() + [self.workspace])
        by_blocker: dict[Path, list[Path]] = {}
        for p in needed:
            b = _blocking_ancestor(p)
            if b is not None:
                by_blocker.setdefault(b, []).append(p)
        blockers = _minimal(list(by_blocker))
        stage_root = self.workspace / "_stage"
        n = 0
        for b in blockers:
            srcs = _minimal([p for bb, ps in by_blocker.items() if bb == b or b in bb.parents
                             for p in ps])
            pairs = []
            for src in srcs:
                stage = stage_root / str(n)
                n += 1
                stage.mkdir(parents=True, exist_ok=True)
                os.chmod(stage_root, 0o755)
                pairs.append((str(src), str(stage)))
            self._cover.append((str(b), pairs))

    # -- spawning -------------------------------------------------------------------------------
    def chown(self, path: Path) -> None:
        """Give ``path`` (recursively) to the sandbox user, when there is one."""
        if self.iso.uid is None:
            return
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, self.iso.uid, self.iso.gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), self.iso.uid, self.iso.gid, follow_symlinks=False)

    def reclaim(self, path: Path) -> None:
        """Take ``path`` back (owner: this process; other users: no access)."""
        if self.iso.uid is None:
            return
        me, grp = os.getuid(), os.getgid()
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, me, grp, follow_symlinks=False)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), me, grp, follow_symlinks=False)
        os.chmod(path, 0o700)

    def _preexec(self, writable: list[str], hide: list[str], cpu_s: int | None):
        iso, mem, fsize = self.iso, self.memory, self.fsize
        mounts = read_mounts() if iso.mode == "namespace" else []
        cover = self._cover
        libc = _lib() if iso.mode in ("namespace", "nobody") else None
        writable_b = [w.encode() for w in writable]

        def preexec():                                     # runs in the child, before exec
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            if cpu_s:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
            os.umask(0o022)
            if iso.mode == "namespace":
                flags = CLONE_NEWNS | (CLONE_NEWNET if iso.network_isolated else 0)
                _check(libc.unshare(flags), "unshare")
                _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None),
                       "make / private")
                for blocker, pairs in cover:
                    for src, stage in pairs:
                        _check(libc.mount(src.encode(), stage.encode(), None,
                                          MS_BIND | MS_REC, None), f"bind {src}")
                for w in writable_b:
                    _check(libc.mount(w, w, None, MS_BIND | MS_REC, None), "bind writable")
                for mp, keep in mounts:
                    rc = libc.mount(b"none", mp.encode(), None,
                                    MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)
                    if rc != 0 and mp == "/":
                        _check(rc, "remount / read-only")
                for blocker, pairs in cover:
                    _check(libc.mount(b"tmpfs", blocker.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                      b"mode=0755,size=64k"), f"cover {blocker}")
                    for src, stage in pairs:
                        dst = blocker + "/" + os.path.relpath(src, blocker)
                        os.makedirs(dst, exist_ok=True)
                        _check(libc.mount(stage.encode(), dst.encode(), None, MS_MOVE, None),
                               f"move {src}")
                        _check(libc.mount(b"none", dst.encode(), None,
                                          MS_REMOUNT | MS_BIND | MS_RDONLY, None),
                               f"read-only {src}")
                    _check(libc.mount(b"none", blocker.encode(), None,
                                      MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
                           f"read-only cover {blocker}")
                for h in hide:
                    if libc.mount(b"tmpfs", h.encode(), b"tmpfs",
                                  MS_RDONLY | MS_NOSUID | MS_NODEV, b"mode=0755,size=4k") != 0:
                        _check(-1, f"hide {h}")
                for w in writable_b:
                    os.stat(w)
            os.umask(0o077)
            if iso.mode in ("namespace", "nobody"):
                # a fork bomb stops here (the count is per user: every sandboxed child's)
                resource.setrlimit(resource.RLIMIT_NPROC, (NPROC, NPROC))
                os.setgroups([])
                os.setgid(iso.gid)
                if iso.keep_read_cap:
                    _check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps")
                os.setuid(iso.uid)
                if iso.keep_read_cap:
                    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
                    data = (_CapData * 2)()
                    bit = 1 << CAP_DAC_READ_SEARCH
                    data[0].effective = data[0].permitted = data[0].inheritable = bit
                    _check(libc.capset(ctypes.byref(hdr), data), "capset")
                    _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE,
                                      CAP_DAC_READ_SEARCH, 0, 0), "ambient capability")
                _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
                if os.getuid() == 0 or os.geteuid() == 0:
                    raise OSError("privileges were not dropped")
        return preexec

    def spawn(self, cmd: list[str], cwd: Path, env: dict, writable: list[Path],
              stdout, pass_fds=(), cpu_s: int | None = None,
              hide_extra: list[Path] = ()) -> subprocess.Popen:
        hide = [str(h) for h in [*self.hide, *hide_extra] if Path(h).exists()]
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds), start_new_session=True,
            close_fds=True,
            preexec_fn=self._preexec([str(w) for w in writable], hide, cpu_s))


def child_env(home: Path, pythonpath: list[Path], extra: dict | None = None) -> dict:
    """A clean environment for a child: nothing inherited but a minimal PATH and locale."""
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home), "TMPDIR": str(Path(home) / "tmp"), "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(Path(home) / ".numba_cache"),
        "MPLCONFIGDIR": str(Path(home) / ".matplotlib"),
    }
    env.update(extra or {})
    return env


def make_workspace(prefix: str = "tito-grade-") -> Path:
    ws = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    os.chmod(ws, 0o711)          # others may traverse (to their own folder), not list
    return ws


# ---------------------------------------------------------------------------------------------
# Choosing the level: probe children
# ---------------------------------------------------------------------------------------------

_PROBE = r"""
import json, os, sys, tempfile
import numpy, pytest, nbdev.export, fastcore
res = {"uid": os.getuid(), "euid": os.geteuid()}
def can_write(p):
    try:
        with open(p, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
res["own"] = can_write(sys.argv[1])
res["target"] = can_write(sys.argv[2])
res["tmp"] = can_write(sys.argv[3])
res["hidden_visible"] = os.path.exists(sys.argv[4])
print("@@PROBE@@" + json.dumps(res))
"""


def _readable_by_others(p: Path) -> bool:
    if _blocking_ancestor(p) is not None:
        return False
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def probe(workspace: Path, iso: Isolation, memory_mb: int, timeout: float = 120) -> str | None:
    """Start one child at level ``iso``; None if it behaves as the level promises, else why not."""
    import json
    import secrets
    base = Path(workspace) / f"_probe-{secrets.token_hex(4)}"
    own, target, hidden = base / "own", base / "target", base / "hidden"
    for d in (base, own, target, hidden):
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
    (hidden / "secret").write_text("x")
    tmp_file = Path(tempfile.gettempdir()) / f"tito-probe-{secrets.token_hex(6)}"
    sb = Sandbox(workspace, iso, memory_mb, hide=[hidden])
    sb.chown(own)
    log = base / "log"
    try:
        with open(log, "wb") as out:
            try:
                proc = sb.spawn([sys.executable, "-P", "-s", "-c", _PROBE, str(own / "ok"),
                                 str(target / "x"), str(tmp_file), str(hidden / "secret")],
                                cwd=own, env=child_env(own, []), writable=[own], stdout=out)
            except (OSError, subprocess.SubprocessError) as e:
                return f"cannot start: {e}"
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                return "timed out"
        text = log.read_text(errors="replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("@@PROBE@@")), None)
        if line is None:
            return f"exit {proc.returncode}: " + " | ".join(text.strip().splitlines()[-3:])
        r = json.loads(line[len("@@PROBE@@"):])
        if iso.mode != "none" and (r["uid"] == 0 or r["euid"] == 0):
            return "still root"
        if not r["own"]:
            return "cannot write its own folder"
        if iso.mode != "none" and r["target"]:
            return "could write a folder it must not"
        if iso.mode == "namespace" and r["tmp"]:
            return "could write /tmp"
        if iso.mode == "namespace" and r["hidden_visible"]:
            return "hidden paths stay visible"
        return None
    finally:
        try:
            if tmp_file.exists():
                tmp_file.unlink()
        except OSError:
            pass
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def choose_isolation(workspace: Path, memory_mb: int, want: str = "auto") -> Isolation:
    """The strongest level (``want``: auto, namespace, nobody or none) whose probe passes."""
    if os.geteuid() != 0 or want == "none":
        return Isolation("none", notes=[
            ("not running as root" if os.geteuid() != 0 else "isolation 'none' requested")
            + ": no privilege drop; the reference package and tests are hashed before and "
              "after every run and grading fails loudly if they changed"])
    uid, gid = nobody_ids()
    need_cap = not all(_readable_by_others(p) for p in python_paths())
    candidates = []
    if want in ("auto", "namespace"):
        candidates += [Isolation("namespace", uid, gid, False, True),
                       Isolation("namespace", uid, gid, False, False)]
    if want in ("auto", "nobody"):
        candidates.append(Isolation("nobody", uid, gid, need_cap, False))
    notes = []
    for iso in candidates:
        why = probe(workspace, iso, memory_mb)
        if why is None:
            iso.notes = notes + iso.notes
            if iso.keep_read_cap:
                iso.notes.append("the Python installation is not readable by the unprivileged "
                                 "user: children keep CAP_DAC_READ_SEARCH (read-only access)")
            if iso.mode == "nobody":
                iso.notes.append("no mount namespace: /tmp stays writable; files the child "
                                 "leaves there are removed and reported")
            return iso
        notes.append(f"level {iso.mode}{' (network isolated)' if iso.network_isolated else ''} "
                     f"unavailable: {why}")
    return Isolation("none", notes=notes + [
        "no privilege drop possible: the reference package and tests are hashed before and "
        "after every run and grading fails loudly if they changed"])
