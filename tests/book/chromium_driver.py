"""Debian's headless Chromium over its DevTools pipe, for tests/book/test_book.py (one browser, one tab
per page; the DOM, the page's errors, the images of its cell outputs and screenshots)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

WINDOW = (1280, 1600)


# every image inside a notebook cell's output, with the size the browser decoded (0 if it failed)
FIGURES_JS = """Array.from(document.querySelectorAll('.cell_output img')).map(i => ({
    src: i.getAttribute('src'), width: i.naturalWidth, height: i.naturalHeight,
    top: i.getBoundingClientRect().top + window.scrollY}))"""


class Chromium:
    """Debian's headless Chromium, driven over its DevTools pipe (``--remote-debugging-pipe``):
    one browser for every page, so a page costs a tab instead of a browser start (3-4 times
    faster on two busy cores than one ``chromium --dump-dom --screenshot`` per page). A page is
    rendered as ``--virtual-time-budget=10000 --window-size=1280,1600 --dump-dom --screenshot``
    would: virtual time runs until the budget is spent with no fetch pending, then the DOM is
    serialised and the viewport captured. JavaScript exceptions, console errors and resources
    that fail to load are collected too."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe",
             "--host-resolver-rules=MAP * ~NOTFOUND",     # no DNS: a page must work offline
             f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    TIMEOUT = 60.0

    def __init__(self, profile: Path, log: Path):
        exe = shutil.which("chromium")
        assert exe, "chromium is not installed: run `bash scripts/system-deps.sh`"
        cmd_r, cmd_w = os.pipe()          # we write commands, Chromium reads them on fd 3
        res_r, res_w = os.pipe()          # Chromium writes replies and events on fd 4
        # the child's ends, moved to fds >= 10 so that bash's `3<&N 4>&M` never clobbers them
        child_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(res_w)
        self.log = log
        with open(log, "wb") as logf:
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-',
                 exe, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(res_r, "rb", buffering=0)
        self._lock = threading.Lock()
        self._id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: dict[tuple, queue.Queue] = {}
        self._alive = True
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while chunk := self._in.read(1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    self._replies.pop(msg["id"], queue.Queue()).put(msg)
                else:
                    self._queue(msg.get("sessionId"), msg.get("method")).put(msg)
        self._alive = False

    def _queue(self, session, method) -> queue.Queue:
        with self._lock:
            return self._events.setdefault((session, method), queue.Queue())

    def _get(self, q: queue.Queue, what: str) -> dict:
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            try:
                return q.get(timeout=0.25)
            except queue.Empty:
                if not self._alive:
                    raise RuntimeError(f"chromium exited while waiting for {what}; its log: "
                                       f"{self.log.read_text(errors='replace')[-1500:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chromium: no {what} within {self.TIMEOUT} s")

    def send(self, method: str, params: dict | None = None, session: str | None = None):
        reply: queue.Queue = queue.Queue()
        with self._lock:
            self._id += 1
            msg = {"id": self._id, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            self._replies[self._id] = reply
            self._out.write(json.dumps(msg).encode() + b"\0")
        res = self._get(reply, f"reply to {method}")
        if "error" in res:
            raise RuntimeError(f"chromium: {method} failed: {res['error']}")
        return res["result"]

    def render(self, url: str, png: Path, budget_ms: int = 10_000) -> tuple[str, list[str], list]:
        """(the DOM after the virtual-time budget, the page's errors, the images of its cell outputs
        as {src, width, height} with the size the browser decoded); writes the screenshot, and
        ``<png stem>-figure.png`` around the first output image when there is one."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=s)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1,
                       "mobile": False}, session=s)
            expired = self._queue(s, "Emulation.virtualTimeBudgetExpired")
            self.send("Emulation.setVirtualTimePolicy", {"policy": "pause"}, session=s)
            self.send("Page.navigate", {"url": url}, session=s)
            self.send("Emulation.setVirtualTimePolicy",
                      {"policy": "pauseIfNetworkFetchesPending", "budget": budget_ms}, session=s)
            self._get(expired, f"end of the virtual-time budget of {url}")
            dom = self.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                 "returnByValue": True}, session=s)
            shot = self.send("Page.captureScreenshot", {"format": "png"}, session=s)
            png.write_bytes(base64.b64decode(shot["data"]))
            images = self.send("Runtime.evaluate", {"expression": FIGURES_JS, "returnByValue": True},
                               session=s)["result"]["value"]
            if images:
                top = max(0, images[0]["top"] - 120)
                shot = self.send("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": top, "width": WINDOW[0], "height": 1000, "scale": 1}},
                    session=s)
                png.with_name(f"{png.stem}-figure.png").write_bytes(base64.b64decode(shot["data"]))
        finally:
            self.send("Target.closeTarget", {"targetId": target})
        errors = []
        for method in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded"):
            q = self._queue(s, method)
            while not q.empty():
                p = q.get()["params"]
                if method == "Runtime.exceptionThrown":
                    errors.append(f"JavaScript exception: {p['exceptionDetails'].get('text')} "
                                  f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
                elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                    errors.append("console error: " + " ".join(
                        str(a.get("value", a.get("description", ""))) for a in p["args"]))
                elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                    errors.append(f"browser error: {p['entry'].get('text')} "
                                  f"{p['entry'].get('url', '')}")
        return dom["result"]["value"], errors, images

    def close(self):
        with self._lock:
            self._out.close()                 # Chromium exits when its pipe closes
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
