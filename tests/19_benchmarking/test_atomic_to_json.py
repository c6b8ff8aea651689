"""Module 19, BenchmarkResult.to_json(path): written with module 07's atomic writer. Made to fail in the middle of a write (os.fsync,
os.replace), the old file is left byte for byte and no temporary file is left behind; a killed writer's
stale temporary file is removed by the next save."""
import pytest

from tinytorch.measurement.benchmarking import BenchmarkResult
from atomic_checks import failing_write_keeps_the_old_file, next_save_removes_a_dead_writers_temp


def write(path):
    BenchmarkResult(name="b", cases=[], baseline="x", settings={}).to_json(path)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, where):
    failing_write_keeps_the_old_file(write, tmp_path / "bench.json", monkeypatch, where)


def test_the_next_save_removes_a_killed_writers_temp_file(tmp_path):
    next_save_removes_a_dead_writers_temp(write, tmp_path / "bench.json")
