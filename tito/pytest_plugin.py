"""A pytest plugin for running tests against one given copy of the package (a student's export,
a release) and recording every test's outcome. Self-contained (only the standard library), so
the grader can copy this file into a sandbox and load it with ``-p``.

Environment:

``TITO_EXPECT_LIB``   the package directory under test (e.g. ``/tmp/x/tinytorch``). When set, the
                      plugin removes setuptools' editable-install finders for that package name
                      (they would otherwise resolve a submodule missing from the package under
                      test to the installed checkout, i.e. the reference solution), and at the
                      end fails the session when any ``tinytorch*`` module was imported from
                      anywhere else.
``TITO_LIB_NAME``     the package name (default ``tinytorch``).
``TITO_RESULTS_FILE`` write a JSON report there at the end (or ``TITO_RESULTS_FD``: an open file
                      descriptor to write it to).

The JSON report: ``{"collected": N, "tests": [{"nodeid", "name", "outcome", "when", "message",
"location", "details", "duration"}], "collect_errors": [...], "lib_file": ..., "foreign": [...],
"exitstatus": N}``; outcome is passed / failed / error / skipped.
"""

from __future__ import annotations

import json
import os
import re
import sys

LIB_NAME = os.environ.get("TITO_LIB_NAME", "tinytorch")
EXPECT = os.environ.get("TITO_EXPECT_LIB")

MAX_DETAILS = 6000


def purge_editable_finders(lib_name: str = LIB_NAME) -> list[str]:
    """Remove import hooks of editable installs that map ``lib_name`` somewhere: setuptools'
    ``__editable___*_finder`` meta-path finders and their ``__path_hook__`` path entries."""
    removed = []
    keep = []
    for f in sys.meta_path:
        mod = getattr(f, "__module__", "") or ""
        mapping = getattr(sys.modules.get(mod), "MAPPING", None)
        if mod.startswith("__editable__") and isinstance(mapping, dict) and lib_name in mapping:
            removed.append(f"{mod} ({mapping[lib_name]})")
            continue
        keep.append(f)
    sys.meta_path[:] = keep
    hooks = [p for p in sys.path if isinstance(p, str) and p.startswith("__editable__")]
    for p in hooks:
        sys.path.remove(p)
        sys.path_importer_cache.pop(p, None)
    return removed


def _real(p: str) -> str:
    return os.path.realpath(p)


def foreign_modules(lib_name: str = LIB_NAME, expect: str | None = EXPECT) -> list[str]:
    """``name (file)`` of every imported ``lib_name`` module that is not inside ``expect``."""
    if not expect:
        return []
    base = _real(expect)
    bad = []
    for name, mod in list(sys.modules.items()):
        if name != lib_name and not name.startswith(lib_name + "."):
            continue
        files = [getattr(mod, "__file__", None)] + list(getattr(mod, "__path__", None) or [])
        for f in files:
            if f and not (_real(f) == base or _real(f).startswith(base + os.sep)):
                bad.append(f"{name} ({f})")
                break
    return sorted(bad)


_REMOVED = purge_editable_finders() if EXPECT else []
_tests: dict[str, dict] = {}
_order: list[str] = []
_collect_errors: list[dict] = []
_collected = 0


def _message(report) -> tuple[str, str | None]:
    """(one-line message, 'path:line') of a failed report."""
    lr = report.longrepr
    crash = getattr(lr, "reprcrash", None)
    if crash is not None:
        return crash.message, f"{crash.path}:{crash.lineno}"
    if isinstance(lr, tuple) and len(lr) == 3:          # skips: (path, line, reason)
        return str(lr[2]), f"{lr[0]}:{lr[1]}"
    text = str(lr or "")
    errs = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    if errs:
        return " ".join(errs[:3]), None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1].strip() if lines else ""), None


def _details(report) -> str:
    try:
        text = report.longreprtext
    except Exception:                  # pragma: no cover - depends on pytest internals
        text = str(report.longrepr or "")
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS] + "\n[... truncated]"


def pytest_collection_modifyitems(session, config, items):
    global _collected
    _collected = len(items)


_EXC_LINE = re.compile(r"^E\s+([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*)$")


def pytest_collectreport(report):
    if report.failed:
        msg, loc = _message(report)
        # a module that cannot be imported: the exception line pytest shows ("E   SyntaxError:
        # invalid syntax") says more than the crash location
        exc = [m.group(1) for m in map(_EXC_LINE.match, _details(report).splitlines()) if m]
        if exc:
            where = " ".join(msg.split())
            msg = exc[-1].strip() + (f" ({where[:300]})" if where and where not in exc[-1]
                                     and where.startswith("File ") else "")
        _collect_errors.append({"nodeid": report.nodeid, "outcome": "error", "when": "collect",
                                "message": msg, "location": loc, "details": _details(report)})


def pytest_runtest_logreport(report):
    nid = report.nodeid
    if nid not in _tests:
        _order.append(nid)
        _tests[nid] = {"nodeid": nid, "name": nid.split("::", 1)[-1], "outcome": "passed",
                       "when": None, "message": "", "location": None, "details": "",
                       "duration": 0.0}
    t = _tests[nid]
    t["duration"] = round(t["duration"] + float(getattr(report, "duration", 0.0) or 0.0), 4)
    if t["outcome"] != "passed":
        return                                   # keep the first problem
    if report.failed:
        msg, loc = _message(report)
        t.update(outcome="failed" if report.when == "call" else "error", when=report.when,
                 message=msg, location=loc, details=_details(report))
    elif report.skipped:
        msg, loc = _message(report)
        t.update(outcome="skipped", when=report.when, message=msg, location=loc)
    elif report.when == "call":
        t["when"] = "call"


def _lib_file():
    mod = sys.modules.get(LIB_NAME)
    return getattr(mod, "__file__", None) if mod else None


def pytest_sessionfinish(session, exitstatus):
    foreign = foreign_modules()
    if foreign:
        sys.stderr.write("\n" + "!" * 78 + "\nTITO: modules of the package were imported from "
                         f"outside the package under test ({EXPECT}):\n  "
                         + "\n  ".join(foreign) + "\n" + "!" * 78 + "\n")
        session.exitstatus = 1
    data = {"collected": _collected, "tests": [_tests[n] for n in _order],
            "collect_errors": _collect_errors, "lib_file": _lib_file(), "expect": EXPECT,
            "foreign": foreign, "removed_finders": _REMOVED,
            "exitstatus": int(session.exitstatus)}
    text = json.dumps(data, indent=1)
    fd = os.environ.get("TITO_RESULTS_FD")
    path = os.environ.get("TITO_RESULTS_FILE")
    if fd:
        try:
            with os.fdopen(int(fd), "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:                    # the grader then reports "no results"
            sys.stderr.write(f"TITO: cannot write results to fd {fd}: {e}\n")
    elif path:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
