"""Pieces of the subprocess probes that check an import reads no environment variable (modules 16 and 18):
RECORD_ENV defines a recorder of every os.environ key read; ENV_ON / ENV_OFF switch it around the imports
under test; the probe then reports the list `read`. `sandbox` gives the probe an empty HOME, working folder and
Numba cache to run in, and says whether anything was written there."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RECORD_ENV = r"""
import os
read = []
orig_getitem, orig_get = type(os.environ).__getitem__, type(os.environ).get
def getitem(self, key):
    read.append(key); return orig_getitem(self, key)
def get(self, key, default=None):
    read.append(key); return orig_get(self, key, default)
"""
ENV_ON = "type(os.environ).__getitem__, type(os.environ).get = getitem, get\n"
ENV_OFF = "type(os.environ).__getitem__, type(os.environ).get = orig_getitem, orig_get\n"


@dataclass
class Sandbox:
    "An empty HOME and working folder, a Numba cache folder of its own, and the environment that points at them."
    home: Path
    work: Path
    cache: Path
    env: dict

    def nothing_written(self) -> bool:
        "True while HOME, the working folder and the Numba cache are all still empty (the cache not even made)."
        return os.listdir(self.home) == [] and os.listdir(self.work) == [] and not self.cache.exists()

    def run(self, code: str, timeout: int = 300) -> subprocess.CompletedProcess:
        "`python -c code` in the working folder with this environment; fails the test when it exits non-zero."
        r = subprocess.run([sys.executable, "-c", code], cwd=self.work, env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r

    def probe(self, code: str) -> dict:
        "Run a probe that prints one JSON object, and return that object."
        return json.loads(self.run(code).stdout)


def sandbox(tmp_path: Path, set_vars: dict | None = None, unset_vars: tuple = ()) -> Sandbox:
    "A Sandbox under tmp_path, with `set_vars` added to and `unset_vars` removed from this process's environment."
    home, work, cache = tmp_path / "home", tmp_path / "work", tmp_path / "numba"
    for d in (home, work):
        d.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "NUMBA_CACHE_DIR": str(cache),
           **(set_vars or {})}
    for name in unset_vars:
        env.pop(name, None)
    return Sandbox(home, work, cache, env)
