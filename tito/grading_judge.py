"""The trusted step of ``tito grade``: one judge process per student runs each checkpoint file
with pytest, in this process, against a proxy of the student's package whose every call runs in
that module's sandboxed runner::

    python -P -s -m tito.grading_judge CONTROL_FD

The grader sends, over the ``CONTROL_FD`` Unix socket, one request per module: a JSON header
``{"checkpoint": path, "basetemp": path}`` with the two pipe ends of that module's runner attached
(``SCM_RIGHTS``). The judge answers each with one JSON report ``{"collected": N, "tests":
[{"name", "outcome", "message", ...}], "collect_errors": [...], "runner": {"dead": reason or null,
"requests": n}, "error": ...}``. It never imports the student's code (``tinytorch`` resolves to
:class:`tito.grading_proxy.RemotePackageFinder`); the checkpoint's asserts, expected values and
tolerances are computed here. Starting pytest once per student instead of once per module is
most of what makes grading fast.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

MAX_CONTROL = 1 << 20


def send_msg(sock: socket.socket, obj: dict, fds: list[int] = ()) -> None:
    data = json.dumps(obj).encode("utf-8")
    head = struct.pack(">I", len(data))
    if fds:
        socket.send_fds(sock, [head], list(fds))
        sock.sendall(data)
    else:
        sock.sendall(head + data)


def recv_msg(sock: socket.socket, limit: int = MAX_CONTROL) -> tuple[dict | None, list[int]]:
    """(message, fds) or (None, []) at the end of the stream."""
    head, fds, _, _ = socket.recv_fds(sock, 4, 4)
    if not head:
        return None, []
    while len(head) < 4:
        more = sock.recv(4 - len(head))
        if not more:
            return None, fds
        head += more
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise ValueError("control message too large")
    data = b""
    while len(data) < n:
        more = sock.recv(min(1 << 20, n - len(data)))
        if not more:
            return None, fds
        data += more
    return json.loads(data.decode("utf-8")), fds


def run_module(fd_in: int, fd_out: int, checkpoint: Path, basetemp: Path, private: Path) -> dict:
    from tito.grading_proxy import Connection, RunnerDied, install
    report: dict = {"collected": 0, "tests": [], "collect_errors": [], "exitstatus": None,
                    "runner": {"dead": None, "requests": 0}, "error": None}
    conn = Connection(fd_in, fd_out)
    try:
        try:
            conn.hello()
        except Exception as e:                       # noqa: BLE001 - reported
            report["runner"]["dead"] = conn.dead or f"the runner did not start: {type(e).__name__}: {e}"
            return report
        install(conn)
        import pytest

        from tito import pytest_plugin as plugin
        plugin._tests, plugin._order, plugin._collect_errors, plugin._collected = {}, [], [], 0
        for name in [n for n in sys.modules if n.startswith("checkpoint_")]:
            del sys.modules[name]
        ini = private / "judge-pytest.ini"
        ini.write_text("[pytest]\npython_files = checkpoint_*.py test_*.py\n")
        status = pytest.main(
            [str(checkpoint), "-c", str(ini), "--rootdir", str(checkpoint.parent),
             "--noconftest", "-p", "no:cacheprovider", "-p", "no:stepwise", "-q",
             "--no-header", "-rN", "--tb=short", "--import-mode=importlib",
             "--basetemp", str(basetemp), "-W", "ignore::pytest.PytestUnraisableExceptionWarning"],
            plugins=[plugin])
        report.update(collected=plugin._collected, tests=[plugin._tests[n] for n in plugin._order],
                      collect_errors=plugin._collect_errors, exitstatus=int(status))
    except RunnerDied as e:
        report["runner"]["dead"] = str(e)
    except BaseException as e:                      # noqa: BLE001 - reported to the grader
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        report["runner"]["dead"] = report["runner"]["dead"] or conn.dead
        report["runner"]["requests"] = conn.requests
        conn.close()
        for fd in (fd_in, fd_out):
            try:
                os.close(fd)
            except OSError:
                pass
    return report


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    private = Path(os.environ.get("TITO_JUDGE_PRIVATE") or ".").resolve()
    while True:
        msg, fds = recv_msg(sock)
        if msg is None:
            return 0
        if len(fds) != 2:
            send_msg(sock, {"error": "the grader sent no runner pipes"})
            continue
        report = run_module(fds[0], fds[1], Path(msg["checkpoint"]), Path(msg["basetemp"]), private)
        sys.stdout.flush()
        send_msg(sock, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
