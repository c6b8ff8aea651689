"""Module 17, CompressionAnalyzer.plot_sparsity(path) and the compress_model report: written with module 07's atomic writer. Made to fail in the middle of a write (os.fsync,
os.replace, savefig after half a picture), the old file is left byte for byte and no temporary file is left behind; a killed writer's
stale temporary file is removed by the next save."""
import os

import pytest

import json

import numpy as np

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Sequential
from tinytorch.optimization.compression import CompressionAnalyzer, write_json_atomic
from tinytorch.core import files

DEAD_PID = 2 ** 22 + 12345          # above Linux's largest pid_max: no process has it


class Boom(OSError):
    pass


def _boom(*a, **k):
    raise Boom("disk full")


def write(path):
    mlp = Sequential(Linear(4, 8, rng=np.random.default_rng(0)), ReLU(), Linear(8, 3, rng=np.random.default_rng(1)))
    CompressionAnalyzer(mlp).plot_sparsity(path)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "sparsity.png"
    write(path)
    assert path.stat().st_size > 0
    path.write_bytes(b"the old file")
    monkeypatch.setattr(files.os, where, _boom)
    with pytest.raises(Boom):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old file" and sorted(os.listdir(tmp_path)) == ["sparsity.png"]


def test_a_figure_that_fails_half_written_leaves_the_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def half_savefig(self, fname, *a, **k):
        fname.write(b"\x89PNG half a picture")
        raise Boom("disk full")
    path = tmp_path / "sparsity.png"
    path.write_bytes(b"the old file")
    monkeypatch.setattr(Figure, "savefig", half_savefig)
    with pytest.raises(Boom):
        write(path)
    assert path.read_bytes() == b"the old file" and sorted(os.listdir(tmp_path)) == ["sparsity.png"]


def test_the_report_writer_is_module_07s(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"stages": [1]})
    monkeypatch.setattr(files.os, "replace", _boom)
    with pytest.raises(Boom):
        write_json_atomic(path, {"stages": [1, 2]})
    assert json.loads(path.read_text()) == {"stages": [1]} and sorted(os.listdir(tmp_path)) == ["report.json"]


def test_the_next_save_removes_a_killed_writers_temp_file(tmp_path):
    path = tmp_path / "sparsity.png"
    stale = tmp_path / f".sparsity.png.{DEAD_PID}.k1ll3d.tmp"
    live = tmp_path / f".sparsity.png.{os.getpid()}.l1ve.tmp"
    for f in (stale, live):
        f.write_bytes(b"half a file")
    write(path)
    assert not stale.exists() and live.exists() and path.exists()
