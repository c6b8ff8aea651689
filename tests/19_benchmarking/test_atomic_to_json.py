"""Module 19, BenchmarkResult.to_json(path): written with module 07's atomic writer. Made to fail in the middle of a write (os.fsync,
os.replace), the old file is left byte for byte and no temporary file is left behind; a killed writer's
stale temporary file is removed by the next save."""
import os

import pytest

from tinytorch.optimization.benchmarking import BenchmarkResult
from tinytorch.core import files

DEAD_PID = 2 ** 22 + 12345          # above Linux's largest pid_max: no process has it


class Boom(OSError):
    pass


def _boom(*a, **k):
    raise Boom("disk full")


def write(path):
    BenchmarkResult(name="b", cases=[], baseline="x", settings={}).to_json(path)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "bench.json"
    write(path)
    assert path.stat().st_size > 0
    path.write_bytes(b"the old file")
    monkeypatch.setattr(files.os, where, _boom)
    with pytest.raises(Boom):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old file" and sorted(os.listdir(tmp_path)) == ["bench.json"]


def test_the_next_save_removes_a_killed_writers_temp_file(tmp_path):
    path = tmp_path / "bench.json"
    stale = tmp_path / f".bench.json.{DEAD_PID}.k1ll3d.tmp"
    live = tmp_path / f".bench.json.{os.getpid()}.l1ve.tmp"
    for f in (stale, live):
        f.write_bytes(b"half a file")
    write(path)
    assert not stale.exists() and live.exists() and path.exists()
