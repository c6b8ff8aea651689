"""Module 07's one atomic writer (`atomic_write`, tinytorch.core.files) and the files module 07 writes: each
writer is made to fail in the middle of a write (the serializer after writing part of the file, os.fsync,
os.replace), and the old file must be left byte for byte, with no temporary file behind. A killed writer's
stale temporary file is removed by the next save; a live process's is not. (The later modules' writers —
Tokenizer.save, plot_quantization_error, CompressionAnalyzer, BenchmarkResult.to_json — are checked the
same way in their own test folders.)"""
import json
import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from tinytorch.core import training
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.training import (atomic_write, load_checkpoint, remove_stale_temps, save_checkpoint,
                                     save_figure_atomic, write_json_atomic, write_text_atomic)

DEAD_PID = 2 ** 22 + 12345          # above Linux's largest pid_max: no process has it


class Boom(OSError):
    pass


def _boom(*a, **k):
    raise Boom("disk full")


def _half_savefig(self, fname, *a, **k):
    fname.write(b"\x89PNG half a picture")
    raise Boom("disk full")


def _mlp():
    return Sequential(Linear(4, 8, rng=np.random.default_rng(0)), ReLU(), Linear(8, 3, rng=np.random.default_rng(1)))


def _old_file(path, content=b"the old file\n"):
    path.write_bytes(content)
    return content


def _writers(tmp_path):
    "(name, path, write()) for every writer of the package."
    mlp = _mlp()
    fig = Figure()
    fig.add_subplot(1, 1, 1).plot([1, 2])
    return [
        ("atomic_write", tmp_path / "a.bin", lambda p: _write_block(p)),
        ("write_text_atomic", tmp_path / "t.txt", lambda p: write_text_atomic(p, "new text " * 1000)),
        ("write_json_atomic", tmp_path / "j.json", lambda p: write_json_atomic(p, {"x": list(range(1000))})),
        ("save_figure_atomic", tmp_path / "f.png", lambda p: save_figure_atomic(fig, p)),
        ("save_checkpoint", tmp_path / "m.npz", lambda p: save_checkpoint(p, mlp, epoch=1)),
    ]


def _write_block(p):
    with atomic_write(p, "wb") as f:
        f.write(b"new " * 10000)


WRITERS = [
    "atomic_write", "write_text_atomic", "write_json_atomic", "save_figure_atomic", "save_checkpoint"]


def _pick(tmp_path, name):
    return next((p, w) for n, p, w in _writers(tmp_path) if n == name)


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, name, where):
    path, write = _pick(tmp_path, name)
    write(path)                                             # the writer works ...
    assert path.stat().st_size > 0
    old = _old_file(path)
    monkeypatch.setattr(training.os, where, _boom)          # ... and now the disk fails part-way
    with pytest.raises(Boom):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_a_figure_that_fails_half_written_leaves_the_old_file(tmp_path, monkeypatch):
    path, write = _pick(tmp_path, "save_figure_atomic")
    old = _old_file(path)
    monkeypatch.setattr(Figure, "savefig", _half_savefig)
    with pytest.raises(Boom):
        write(path)
    assert path.read_bytes() == old and sorted(os.listdir(tmp_path)) == [path.name]


def test_a_serializer_that_fails_after_part_of_the_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    old = _old_file(path)

    def half_dump(obj, f, **k):
        f.write('{"stages": [')
        raise Boom("disk full")
    monkeypatch.setattr(json, "dump", half_dump)
    with pytest.raises(Boom):
        write_json_atomic(path, {"stages": []})
    assert path.read_bytes() == old and sorted(os.listdir(tmp_path)) == [path.name]


def test_a_failing_checkpoint_keeps_the_old_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    mlp = _mlp()
    save_checkpoint(path, mlp, epoch=1)

    def half_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise Boom("disk full")
    monkeypatch.setattr(training.np, "savez", half_savez)
    with pytest.raises(Boom):
        save_checkpoint(path, mlp, epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path, _mlp())["epoch"] == 1 and sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_an_interrupt_inside_the_block_is_not_swallowed(tmp_path):
    path = tmp_path / "x.txt"
    old = _old_file(path)
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert path.read_bytes() == old and sorted(os.listdir(tmp_path)) == ["x.txt"]


@pytest.mark.parametrize("name", WRITERS)
def test_the_next_save_removes_a_killed_writers_temp_file(tmp_path, name):
    path, write = _pick(tmp_path, name)
    stale = tmp_path / f".{path.name}.{DEAD_PID}.k1ll3d.tmp"
    live = tmp_path / f".{path.name}.{os.getpid()}.l1ve.tmp"         # this process: still writing it
    other = tmp_path / f".other.{DEAD_PID}.x.tmp"                     # another file's: not ours to touch
    for f in (stale, live, other):
        f.write_bytes(b"half a file")
    write(path)
    assert not stale.exists() and live.exists() and other.exists() and path.exists()


def test_remove_stale_temps_returns_what_it_removed(tmp_path):
    path = tmp_path / "m.npz"
    stale = tmp_path / f".m.npz.{DEAD_PID}.abc.tmp"
    stale.write_bytes(b"x")
    assert remove_stale_temps(path) == [stale] and remove_stale_temps(path) == []


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(FileNotFoundError, match="nowhere"):
        with atomic_write(tmp_path / "nowhere" / "x", "w"):
            pass
    assert os.listdir(tmp_path) == []
