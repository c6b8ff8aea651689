"""Fault injection for the package's writers, shared by the atomicity tests of each chapter that writes a
file (module 07's atomic writer, tinytorch.core.files): a write made to fail in the middle (os.fsync,
os.replace, a figure half saved) leaves the old file byte for byte and no temporary file behind, and a
killed writer's stale temporary file is removed by the next save."""
import os

import pytest

from tinytorch.core import files

DEAD_PID = 2 ** 22 + 12345          # above Linux's largest pid_max: no process has it


class Boom(OSError):
    pass


def boom(*a, **k):
    raise Boom("disk full")


def failing_write_keeps_the_old_file(write, path, monkeypatch, where):
    """`write(path)` with os.<where> failing inside module 07's writer: the old file stays, no temp is left."""
    write(path)
    assert path.stat().st_size > 0
    path.write_bytes(b"the old file")
    monkeypatch.setattr(files.os, where, boom)
    with pytest.raises(Boom):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old file" and sorted(os.listdir(path.parent)) == [path.name]


def half_saved_figure_keeps_the_old_file(write, path, monkeypatch):
    """`write(path)` with Figure.savefig writing half a picture, then failing: the old file stays."""
    from matplotlib.figure import Figure

    def half_savefig(self, fname, *a, **k):
        fname.write(b"\x89PNG half a picture")
        raise Boom("disk full")
    path.write_bytes(b"the old file")
    monkeypatch.setattr(Figure, "savefig", half_savefig)
    with pytest.raises(Boom):
        write(path)
    assert path.read_bytes() == b"the old file" and sorted(os.listdir(path.parent)) == [path.name]


def next_save_removes_a_dead_writers_temp(write, path):
    """A dead process's temp file beside `path` is removed by the next `write(path)`; a live one's stays."""
    stale = path.parent / f".{path.name}.{DEAD_PID}.k1ll3d.tmp"
    live = path.parent / f".{path.name}.{os.getpid()}.l1ve.tmp"
    for f in (stale, live):
        f.write_bytes(b"half a file")
    write(path)
    assert not stale.exists() and live.exists() and path.exists()
