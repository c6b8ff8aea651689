"""Run a module's tests (``tests/NN_name/``) and checkpoint
(``tests/checkpoints/checkpoint_NN_name.py``) with pytest in a subprocess.

One definition of "complete": :func:`module_test_paths` is what ``tito test NN`` and ``tito module
complete NN`` both run, and both run it the same way, against one package: the project's own
``tinytorch/`` (its settings' ``lib_path``) unless ``lib_path`` names another (e.g. a student's export
in a temporary directory). The run is :func:`tito.checkrun.isolated_pytest`: ``python -P -s``, the
package's parent the only ``PYTHONPATH`` entry, the editable install's import hook removed, so a piece
missing from that package (say ``tinytorch/core/``) is an import error and not silently another
copy's; a run that still imported any ``tinytorch`` module from elsewhere fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import ModuleInfo

# pytest exit codes: 0 ok, 1 tests failed, 2 interrupted, 3 internal error, 4 usage error,
# 5 no tests collected.
_STATUS = {0: "passed", 1: "failed", 2: "interrupted", 3: "error", 4: "error", 5: "no tests"}
_SUMMARY_RE = re.compile(r"\b\d+ (passed|failed|error|errors|skipped|xfailed|xpassed|deselected"
                         r"|warnings?)\b.* in [0-9.]+s")


@dataclass
class TestRun:
    __test__ = False                 # not a pytest test class
    module: ModuleInfo
    status: str                      # passed | failed | no tests | interrupted | error
    exit_code: int | None
    summary: str
    duration_s: float
    paths: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_record(self, root: Path) -> dict:
        return {"number": self.module.number, "status": self.status,
                "exit_code": self.exit_code, "summary": self.summary,
                "duration_s": round(self.duration_s, 2),
                "paths": [str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                          for p in self.paths]}


def pytest_command(paths, extra_args=()) -> tuple[list[str], dict]:
    """The command line and environment that run pytest on ``paths`` against the project's own
    package (the cwd, the project root, is on ``sys.path``). Runs against another package go
    through :func:`tito.checkrun.isolated_pytest`."""
    return [sys.executable, "-m", "pytest", *map(str, paths), *extra_args], os.environ.copy()


def module_test_paths(mod: ModuleInfo, skipped: dict | None = None) -> list[Path]:
    """What "complete" means for a module: its test files and its checkpoint, those that exist.
    ``tito test NN`` and ``tito module complete NN`` both run exactly these. A test file that imports
    a repository-only oracle this environment lacks (PyTorch in the student environment) is left out
    of both, and recorded in ``skipped`` (path -> the packages it needs) when a dict is given."""
    from .studentcheck import split_runnable
    files = []
    for p in mod.test_paths():
        files.extend(sorted(p.rglob("test*.py")) if p.is_dir() else [p])
    runnable, not_here = split_runnable(files)
    if skipped is not None:
        skipped.update(not_here)
    return runnable


def run_module_tests(mod: ModuleInfo, root: Path, lib_path: Path | None = None,
                     extra_args=(), out=None) -> TestRun:
    """Run pytest for one module against the package at ``lib_path`` (isolated, as ``tito module
    complete`` runs it; ``None``: the project's own package, its settings' ``lib_path``), echoing the
    output to ``out`` (default stdout)."""
    out = out or sys.stdout
    if lib_path is None:
        from .manifest import Settings
        lib_path = Settings.load(root).lib_path
    paths = module_test_paths(mod)
    if not paths:
        return TestRun(mod, "no tests", None,
                       f"no tests found: neither {mod.tests_dir.relative_to(root)}/ nor "
                       f"{mod.checkpoint.relative_to(root)} exists", 0.0, [])
    with contextlib.ExitStack() as stack:
        from .checkrun import isolated_pytest
        cmd, env, results = stack.enter_context(isolated_pytest(paths, lib_path, extra_args))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                encoding="utf-8", errors="replace", bufsize=1)
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            lines.append(line.rstrip("\n"))
        rc = proc.wait()
        dt = time.perf_counter() - t0
        report = None
        if results is not None:
            from .checkrun import read_results
            report = read_results(results)
    summary = next((ln.strip().strip("= ") for ln in reversed(lines) if _SUMMARY_RE.search(ln)), "")
    status = _STATUS.get(rc, "error")
    if rc == 5:
        summary = "pytest collected no tests in " + ", ".join(
            str(p.relative_to(root)) for p in paths)
    elif not summary:
        summary = f"pytest exited with code {rc}"
    if report is None:
        status = "error" if status == "passed" else status
        summary += "; the run wrote no report, so the package it imported is unknown"
    elif report.get("foreign"):
        status = "failed"
        summary = (f"tinytorch imported from outside {Path(lib_path).resolve()}: "
                   + ", ".join(report["foreign"]) + f" ({summary})")
    return TestRun(mod, status, rc, summary, dt, paths)
