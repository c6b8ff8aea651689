"""The trusted step of ``tito grade``: run one checkpoint file with pytest in this process, against
a proxy of the student's package whose every call runs in the sandboxed runner::

    python -P -s -m tito.grading_judge IN_FD OUT_FD REPORT_FD CHECKPOINT BASETEMP

The judge never imports the student's code (``tinytorch`` resolves to
:class:`tito.grading_proxy.RemotePackageFinder`); the checkpoint's asserts, expected values and
tolerances are computed here. Writes one JSON report to ``REPORT_FD``: ``{"collected": N,
"tests": [{"name", "outcome", "message", ...}], "collect_errors": [...], "runner": {"dead":
reason or null, "requests": n}, "exitstatus": n}``. The grader reads it through a size-capped pipe
and computes the points from it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    fd_in, fd_out, fd_report = int(argv[0]), int(argv[1]), int(argv[2])
    checkpoint, basetemp = Path(argv[3]).resolve(), Path(argv[4]).resolve()
    report: dict = {"collected": 0, "tests": [], "collect_errors": [], "exitstatus": None,
                    "runner": {"dead": None, "requests": 0}, "error": None}
    from tito.grading_proxy import Connection, RunnerDied, install
    conn = Connection(fd_in, fd_out)
    try:
        try:
            conn.hello()
        except Exception as e:                       # noqa: BLE001 - reported
            report["runner"]["dead"] = conn.dead or f"the runner did not start: {type(e).__name__}: {e}"
            raise SystemExit(0)
        install(conn)
        import pytest

        from tito import pytest_plugin as plugin
        ini = Path(os.environ.get("TITO_JUDGE_PRIVATE") or basetemp.parent) / "judge-pytest.ini"
        ini.write_text("[pytest]\npython_files = checkpoint_*.py test_*.py\n")
        status = pytest.main(
            [str(checkpoint), "-c", str(ini), "--rootdir", str(checkpoint.parent),
             "--noconftest", "-p", "no:cacheprovider", "-p", "no:stepwise", "-q",
             "--no-header", "-rN", "--tb=short", "--import-mode=importlib",
             "--basetemp", str(basetemp), "-W", "ignore::pytest.PytestUnraisableExceptionWarning"],
            plugins=[plugin])
        report.update(collected=plugin._collected, tests=[plugin._tests[n] for n in plugin._order],
                      collect_errors=plugin._collect_errors, exitstatus=int(status))
    except SystemExit:
        pass
    except RunnerDied as e:
        report["runner"]["dead"] = str(e)
    except BaseException as e:                      # noqa: BLE001 - reported to the grader
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        report["runner"]["dead"] = report["runner"]["dead"] or conn.dead
        report["runner"]["requests"] = conn.requests
        conn.close()
        data = json.dumps(report).encode("utf-8")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd_report, view):]
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
