"""Shared fixtures of the release tests: one student release of this checkout per session."""

import time
from pathlib import Path

import pytest

from tito.errors import TitoError
from tito.manifest import load_manifest
from tito.release import make_release

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def manifest():
    return load_manifest(ROOT)


def _notebooks(manifest):
    """``{"NN_name/stem.ipynb": text}`` of every notebook of every module (a module may have
    several), those that exist."""
    return {f"{m.folder}/{p.name}": p.read_text(encoding="utf-8") for m in manifest
            for p in m.notebooks if p.is_file()}


@pytest.fixture(scope="session")
def release(tmp_path_factory, manifest):
    """`tito release` of this checkout (the library call the command makes). The reference
    notebooks as they were released are kept in ``report.reference`` ("NN_name/stem.ipynb" ->
    text, every notebook of every module), so the tests compare the release with exactly what
    it was made from."""
    out = tmp_path_factory.mktemp("release") / "student"
    for attempt in range(3):          # a notebook saved while releasing: release again
        before = _notebooks(manifest)
        try:
            report = make_release(ROOT, out, manifest, force=attempt > 0)
        except TitoError:
            if attempt == 2 or _notebooks(manifest) == before:
                raise                 # a real error, not a notebook caught half-written
            time.sleep(1)
            continue
        if _notebooks(manifest) == before:
            break
        time.sleep(1)
    report.reference = before
    return out, report
