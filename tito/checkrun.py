"""Run pytest files against one given copy of the package, in a subprocess, and read back every
test's outcome (through :mod:`tito.pytest_plugin`).

The package under test is ``lib_path`` (a directory named ``tinytorch``): Python runs with
``-P -s`` (neither the cwd nor the user site on ``sys.path``), ``PYTHONPATH`` is exactly the
package's parent, and the plugin removes editable-install finders that would resolve a missing
submodule to the installed checkout. The imported package's location is reported, and a run
that imported the package from anywhere else fails.

Used by ``tito module complete``, ``tito test --lib-path`` and the release tests; ``tito grade``
runs the same plugin in its sandbox (:mod:`tito.grading`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_FILE = Path(__file__).resolve().parent / "pytest_plugin.py"
PLUGIN_MODULE = "_tito_pytest_plugin"


@dataclass
class PytestRun:
    exit_code: int | None
    timed_out: bool
    duration_s: float
    output: str
    collected: int = 0
    tests: list[dict] = field(default_factory=list)
    collect_errors: list[dict] = field(default_factory=list)
    lib_file: str | None = None
    foreign: list[str] = field(default_factory=list)
    has_results: bool = False

    @property
    def passed(self) -> list[dict]:
        return [t for t in self.tests if t["outcome"] == "passed"]

    @property
    def failed(self) -> list[dict]:
        return [t for t in self.tests if t["outcome"] != "passed"]

    @property
    def all_passed(self) -> bool:
        return (self.exit_code == 0 and not self.timed_out and not self.collect_errors
                and not self.foreign and bool(self.tests) and not self.failed)

    def load(self, data: dict) -> None:
        self.has_results = True
        self.collected = int(data.get("collected", 0))
        self.tests = list(data.get("tests", []))
        self.collect_errors = list(data.get("collect_errors", []))
        self.lib_file = data.get("lib_file")
        self.foreign = list(data.get("foreign", []))


def clean_env(lib_path: Path, extra: dict | None = None) -> dict:
    """The environment of a run against ``lib_path``: the current one minus anything that would
    put another package or plugin on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTEST_ADDOPTS",
                        "PYTEST_PLUGINS", "TITO_RESULTS_FD", "TITO_RESULTS_FILE")}
    lib_path = Path(lib_path).resolve()
    env.update({"PYTHONPATH": str(lib_path.parent), "TITO_EXPECT_LIB": str(lib_path),
                "TITO_LIB_NAME": lib_path.name, "TINYTORCH_UNDER_TEST": str(lib_path),
                "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"})
    env.update(extra or {})
    return env


@contextlib.contextmanager
def isolated_pytest(paths, lib_path: Path, extra_args=(), env_extra: dict | None = None):
    """The command line and environment of a pytest run against exactly the package at
    ``lib_path``, valid inside the ``with`` block: yields ``(cmd, env, results_file)``.

    Python runs with ``-P -s``, ``PYTHONPATH`` is the package's parent plus a temporary folder
    holding only the results plugin (:mod:`tito.pytest_plugin`, loaded with ``-p``), which
    removes editable-install finders and fails the session when a ``tinytorch`` module was
    imported from anywhere else; it writes its JSON report to ``results_file``
    (see :meth:`PytestRun.load`). Used by :func:`run_pytest` and by ``tito test --lib-path``."""
    lib_path = Path(lib_path).resolve()
    with tempfile.TemporaryDirectory(prefix="tito-run-") as td:
        results = Path(td) / "results.json"
        # the plugin is loaded from a copy next to nothing else: no other module on the path
        plugdir = Path(td) / "plugin"
        plugdir.mkdir()
        (plugdir / f"{PLUGIN_MODULE}.py").write_bytes(PLUGIN_FILE.read_bytes())
        env = clean_env(lib_path, {"TITO_RESULTS_FILE": str(results), **(env_extra or {})})
        env["PYTHONPATH"] = os.pathsep.join([str(lib_path.parent), str(plugdir)])
        cmd = [sys.executable, "-P", "-s", "-m", "pytest", "-p", PLUGIN_MODULE,
               "-p", "no:cacheprovider", *map(str, paths), *extra_args]
        yield cmd, env, results


def read_results(results: Path) -> dict | None:
    """The plugin's JSON report, or None when the run wrote none (or an unreadable one)."""
    if not Path(results).is_file():
        return None
    try:
        data = json.loads(Path(results).read_text(encoding="utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def run_pytest(paths, lib_path: Path, cwd: Path, timeout: float | None = None,
               extra_args=(), env_extra: dict | None = None, echo=None) -> PytestRun:
    """Run pytest on ``paths`` against the package at ``lib_path``; kill the process group on
    timeout. ``echo`` (a file) receives the output as it comes."""
    with isolated_pytest(paths, lib_path, extra_args, env_extra) as (cmd, env, results):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        output, timed_out = _pump(proc, timeout, echo)
        run = PytestRun(None if timed_out else proc.returncode, timed_out,
                        time.perf_counter() - t0, output)
        data = read_results(results)
        if data is not None:
            run.load(data)
        return run


def _pump(proc: subprocess.Popen, timeout: float | None, echo=None) -> tuple[str, bool]:
    """Read ``proc``'s output until it exits (echoing it), or kill its process group when
    ``timeout`` seconds pass. Returns (output, timed_out). Reads raw chunks, so output without
    a newline (pytest's progress dots before an endless loop) never blocks the timeout."""
    import codecs
    import selectors
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks: list[str] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    timed_out = False
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            if not sel.select(timeout=0.5 if left is None else min(left, 0.5)):
                if proc.poll() is not None:      # exited; a leftover child may hold the pipe
                    break
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            text = dec.decode(data)
            chunks.append(text)
            if echo is not None:
                echo.write(text)
                echo.flush()
    finally:
        sel.close()
        if timed_out:
            kill_group(proc)
        else:
            try:
                proc.wait(timeout=None if deadline is None
                          else max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
            kill_group(proc)         # whatever the run left behind in its group
        proc.stdout.close()
    chunks.append(dec.decode(b"", final=True))
    return "".join(chunks), timed_out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group led by ``proc`` (started with ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def first_lines(details: str, n: int = 8) -> list[str]:
    """The most useful lines of a pytest failure: the failing source line (``>``) and the
    ``E`` lines of pytest's own format, else the end of a native traceback (the innermost
    frame and the exception)."""
    lines = [ln.rstrip() for ln in (details or "").splitlines()]
    marks = [i for i, ln in enumerate(lines) if ln.startswith(">")]
    if marks:
        i = marks[-1]
        picked = [lines[i]] + [ln for ln in lines[i + 1:] if ln.startswith("E ")]
        return picked[:n]
    errs = [ln for ln in lines if ln.startswith("E ")]
    if errs:
        return errs[:n]
    frames = [i for i, ln in enumerate(lines) if ln.lstrip().startswith('File "')]
    if frames:
        # a native traceback: the innermost frame in the tests or the package, not in a
        # library (NumPy's assert_allclose, pytest)
        def own(i):
            path = lines[i].split('"')[1] if '"' in lines[i] else ""
            return not re.search(r"[/\\](site-packages|lib[/\\]python3\.\d+)[/\\]", path)
        mine = [i for i in frames if own(i)] or frames
        i = mine[-1]
        out = [lines[i].strip()]
        if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith('File "'):
            out.append("  " + lines[i + 1].strip())
        return out[:n]
    return [ln for ln in lines if ln.strip()][-n:]


def short_message(message: str, n: int = 6) -> list[str]:
    """The first ``n`` non-blank lines of a failure message."""
    lines = [ln.rstrip() for ln in (message or "").splitlines() if ln.strip()]
    return lines[:n] + (["..."] if len(lines) > n else [])
