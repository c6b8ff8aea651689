"""Jupyter in the box (issue 13, point 2): `jupyter lab` of both environments (the repository's
.venv and the student .venv-student) serves the course, and a notebook runs on its kernel.

Each server is started headless on a free loopback port with a random token, in its own process
group, and stopped by its PID at the end (its kernels with it: the test checks the kernel's
process is gone). Everything goes through the server:

- the contents API (`GET /api/contents/...`) returns the course's module 01 notebook,
- the sessions API starts the notebook's kernel (`python3`, the environment's own Python: the
  course kernel),
- every code cell runs on that kernel over the kernel's websocket (`/api/kernels/ID/channels`),
  in order, and must finish with status ok,
- headless Debian chromium (installed by scripts/system-deps.sh) loads JupyterLab's page with
  the notebook open; the rendered DOM must be JupyterLab's with the notebook in it, and the
  screenshot (build/screenshots/jupyterlab-<env>.png) a real picture, not a blank page.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from student_env import outside_env, student_python

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "modules/01_tensor/01_tensor.ipynb"
SCREENSHOTS = ROOT / "build" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A `jupyter lab` server of one environment, serving a copy of the course's first module."""

    def __init__(self, python: Path, root_dir: Path, log: Path):
        self.python, self.root_dir, self.log = Path(python), root_dir, log
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [str(self.python), "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root_dir}", "--LabApp.check_for_updates_class="
               "jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
               "--LabApp.news_url="] + (["--allow-root"] if os.geteuid() == 0 else [])
        env = outside_env(JUPYTER_CONFIG_DIR=str(root_dir.parent / "jupyter-config"),
                          JUPYTER_RUNTIME_DIR=str(root_dir.parent / "jupyter-runtime"),
                          MPLBACKEND="Agg")
        env["PATH"] = str(self.python.parent) + os.pathsep + env["PATH"]
        self.out = open(log, "w")
        self.proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.api("GET", "/api/status"):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"jupyter lab did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)

    def api(self, method: str, path: str, body=None, raw=False):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
        if raw:
            return data.decode()
        return json.loads(data) if data else {}

    def stop(self) -> None:
        """SIGTERM to the server's PID (it shuts its kernels down), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.out.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                     # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def execute(ws, session: str, code: str, timeout: float = 300) -> dict:
    """Run ``code`` on the kernel behind websocket ``ws``; its reply and outputs."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    reply, outputs, idle = None, [], False
    deadline = time.monotonic() + timeout
    while reply is None or not idle:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply within {timeout} s to: {code[:200]}")
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if msg["channel"] == "shell" and kind == "execute_reply":
            reply = msg["content"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
        elif kind in ("stream", "execute_result", "display_data", "error"):
            outputs.append(msg["content"] | {"type": kind})
    return {"reply": reply, "outputs": outputs}


def text_of(outputs) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


@pytest.fixture(scope="module", params=["dev", "student"])
def lab(request, tmp_path_factory):
    python = Path(sys.executable) if request.param == "dev" else student_python()
    tmp = tmp_path_factory.mktemp(f"lab-{request.param}")
    root_dir = tmp / "course"
    (root_dir / "modules").mkdir(parents=True)
    shutil.copytree(ROOT / "modules" / "01_tensor", root_dir / "modules" / "01_tensor",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    server = Lab(python, root_dir, tmp / "jupyter.log")
    server.env_name = request.param
    yield server
    server.stop()


def test_a_course_notebook_runs_on_the_course_kernel_through_the_server(lab):
    import websocket                       # websocket-client, in both environments' locks

    nb = lab.api("GET", f"/api/contents/{NOTEBOOK}?content=1")
    assert nb["type"] == "notebook" and nb["path"] == NOTEBOOK
    cells = [c for c in nb["content"]["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 5
    specs = lab.api("GET", "/api/kernelspecs")
    assert "python3" in specs["kernelspecs"]
    sess = lab.api("POST", "/api/sessions", {"path": NOTEBOOK, "type": "notebook",
                                             "name": "01_tensor.ipynb",
                                             "kernel": {"name": "python3"}})
    kid = sess["kernel"]["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.port}/api/kernels/{kid}/channels?session_id={sess['id']}",
        header=[f"Authorization: token {lab.token}"], timeout=300)
    try:
        who = execute(ws, sess["id"], "import os, sys, tinytorch\n"
                                      "print(sys.executable, os.getpid(), tinytorch.__file__)")
        assert who["reply"]["status"] == "ok", who
        exe, pid, pkg = text_of(who["outputs"]).split()
        # the course kernel: this environment's own Python, importing the checkout's package
        assert Path(exe).parent == lab.python.parent, exe
        assert Path(pkg).resolve().is_relative_to(ROOT / "tinytorch"), pkg
        shown = 0
        for i, cell in enumerate(cells):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            res = execute(ws, sess["id"], src)
            assert res["reply"]["status"] == "ok", (i, src[:300], res)
            shown += len(res["outputs"])
        assert shown > 0                       # the notebook printed or displayed something
    finally:
        ws.close()
    lab.api("DELETE", f"/api/sessions/{sess['id']}")
    assert kid not in {k["id"] for k in lab.api("GET", "/api/kernels")}
    lab.stop()
    assert lab.proc.returncode is not None
    deadline = time.monotonic() + 30
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(int(pid)), "the kernel outlived its server"


def test_chromium_shows_jupyterlab_with_the_notebook(tmp_path_factory):
    """A fresh server (the module-scoped one is stopped by the test above): chromium headless
    renders JupyterLab with the first notebook open and takes a screenshot."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: run `bash scripts/system-deps.sh`"
    from PIL import Image

    tmp = tmp_path_factory.mktemp("lab-browser")
    root_dir = tmp / "course"
    shutil.copytree(ROOT / "modules" / "01_tensor", root_dir / "modules" / "01_tensor")
    server = Lab(Path(sys.executable), root_dir, tmp / "jupyter.log")
    try:
        page = server.api("GET", "/lab", raw=True)
        assert "<title>JupyterLab</title>" in page and "jupyter-config-data" in page
        url = f"{server.base}/lab/tree/{NOTEBOOK}?token={server.token}"
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,800",
                 "--virtual-time-budget=30000"]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "jupyterlab.png"
        shot.unlink(missing_ok=True)
        r = subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True,
                           text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert shot.is_file(), r.stderr[-3000:]
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=180, stdin=subprocess.DEVNULL).stdout
    finally:
        server.stop()
    assert "jp-LabShell" in dom, dom[-2000:]                   # JupyterLab's shell rendered
    assert "jp-Notebook" in dom and "01_tensor.ipynb" in dom   # with the notebook open
    # scripts/env.sh installs scripts/jupyterlab-overrides.json: no "official Jupyter news?" toast
    assert "Jupyter news" not in dom, "JupyterLab asks about news: the course's overrides.json is missing"
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 800)
        small = im.convert("RGB").resize((128, 80))
        colours = len(small.getcolors(maxcolors=128 * 80))
        extrema = small.convert("L").getextrema()
    assert colours > 20 and extrema[1] - extrema[0] > 100, (colours, extrema)
    print(f"\nJupyterLab screenshot: {shot}")
