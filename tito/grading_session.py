"""One student's module runs in ``tito grade``: a judge box for the student (trusted, started once,
:mod:`tito.grading_judge`) and, per module, a fresh runner box (untrusted,
:mod:`tito.grading_runner`), connected by two pipes the grader creates and hands to the judge
over a Unix socket. The session is polled by the grader's loop, never blocks it, and returns
each module's outcome: the judge's report bytes, or why there is none (timeout, judge died).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import Box, Limits, clean_env

MAX_REPORT = 16 << 20
GRACE_S = 10.0                 # how long the judge may take to report after its runner was killed


@dataclass
class ModuleOutcome:
    module: object
    report: bytes | None
    timed_out: bool
    why: str | None              # why there is no report (judge crashed, could not start, ...)
    duration_s: float
    leftover: int
    logs: list[Path]


@dataclass
class _Current:
    module: object
    runner: Box
    started: float
    deadline: float
    logs: list[Path]
    killed_at: float | None = None


@dataclass
class Session:
    grader: object                 # the Grader: jail, limits, paths, timeout
    index: int
    folder: Path                   # the student's folder in the workspace
    judge: Box | None = None
    sock: socket.socket | None = None
    buf: bytearray = field(default_factory=bytearray)
    current: _Current | None = None
    judge_log: Path | None = None

    # -- the judge ----------------------------------------------------------------------------
    def _start_judge(self) -> None:
        g = self.grader
        private = g.ws / "_judge" / f"s{self.index:03d}-{len(list((g.ws / '_judge').glob(f's{self.index:03d}-*')))}"
        private.mkdir(parents=True, mode=0o700)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.judge = Box(g.jail, f"s{self.index:03d}-judge-{private.name[-1]}",
                         Limits(memory_mb=max(1536, g.memory_mb), pids=16, cpu_s=100_000))
        self.judge_log = g.ws / "_logs" / f"{private.name}-judge.log"
        try:
            with open(self.judge_log, "ab") as log:
                self.judge.spawn(
                    [sys.executable, "-P", "-s", "-m", "tito.grading_judge", str(theirs.fileno())],
                    env=clean_env(private, [g.tools], {"TITO_JUDGE_PRIVATE": str(private)}),
                    cwd=private, ro=[g.tools, g.ws / "_checkpoints"],
                    rw=[self.folder / "tmp", private], pass_fds=[theirs.fileno()], stdout=log)
        finally:
            theirs.close()
        mine.setblocking(False)
        self.sock, self.buf = mine, bytearray()

    def _stop_judge(self) -> int:
        left = 0
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.judge is not None:
            deadline = time.monotonic() + 5
            while self.judge.proc is not None and self.judge.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            left = self.judge.teardown()
            self.judge = None
        return left

    # -- one module ---------------------------------------------------------------------------
    def start(self, module) -> None:
        g = self.grader
        if self.judge is None or self.judge.proc.poll() is not None:
            self._stop_judge()
            self._start_judge()
        shared = self.folder / "tmp" / module.folder
        shared.mkdir(mode=0o755)
        tag = f"s{self.index:03d}-{module.folder}"
        runner = Box(g.jail, tag + "-runner", g.limits)
        log_path = g.ws / "_logs" / f"{tag}-runner.log"
        j2r_r, j2r_w = os.pipe()
        r2j_r, r2j_w = os.pipe()
        now = time.monotonic()
        self.current = _Current(module, runner, now, now + g.timeout, [log_path, self.judge_log])
        try:
            with open(log_path, "wb") as log:
                extra = {"TINYTORCH_UNDER_TEST": str(self.folder / "tinytorch")}
                ro = [g.tools, self.folder / "tinytorch"]
                if g.datasets:
                    extra["TINYTORCH_DATASETS"] = str(g.datasets)
                    ro.append(g.datasets)
                runner.spawn([sys.executable, "-P", "-s", "-m", "tito.grading_runner", str(j2r_r), str(r2j_w)],
                             env=clean_env(shared, [g.tools, self.folder], extra), cwd=shared,
                             ro=ro, rw=[shared], pass_fds=[j2r_r, r2j_w], stdout=log)
            head = json.dumps({"checkpoint": str(g.ws / "_checkpoints" / module.checkpoint.name),
                               "basetemp": str(shared / "pytest")}).encode()
            self.sock.setblocking(True)
            socket.send_fds(self.sock, [struct.pack(">I", len(head))], [r2j_r, j2r_w])
            self.sock.sendall(head)
            self.sock.setblocking(False)
        finally:
            for fd in (j2r_r, j2r_w, r2j_r, r2j_w):
                os.close(fd)

    def _read(self) -> bytes | None:
        """A complete report from the judge, if one has arrived."""
        while True:
            try:
                b = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                b = b""
            if not b:
                return None
            self.buf += b
            if len(self.buf) > MAX_REPORT + 4:
                return b"x" * (MAX_REPORT + 1)
        if len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if n > MAX_REPORT:
                return b"x" * (MAX_REPORT + 1)
            if len(self.buf) >= 4 + n:
                out = bytes(self.buf[4:4 + n])
                del self.buf[:4 + n]
                return out
        return None

    def poll(self) -> ModuleOutcome | None:
        """The outcome of the current module once it is known, else None."""
        cur = self.current
        if cur is None:
            return None
        now = time.monotonic()
        report = self._read()
        judge_dead = self.judge.proc.poll() is not None
        if report is None and not judge_dead:
            if cur.killed_at is None and now >= cur.deadline:
                cur.killed_at = now               # the runner's time is up: the judge then reports
                cur.runner.kill()
                return None
            if cur.killed_at is None or now < cur.killed_at + GRACE_S:
                return None
        timed_out = cur.killed_at is not None
        why = None
        if report is None:
            why = "the judge did not answer" if not judge_dead else \
                f"the judge process ended (exit code {self.judge.proc.returncode})"
            self._stop_judge()                    # a fresh judge for the next module
        left = cur.runner.teardown()
        self.current = None
        return ModuleOutcome(cur.module, report, timed_out, why, now - cur.started, left, cur.logs)

    def close(self) -> int:
        left = 0
        if self.current is not None:
            self.current.runner.kill()
            left = self.current.runner.teardown()
            self.current = None
        return max(left, self._stop_judge())
