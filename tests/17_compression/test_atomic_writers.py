"""Module 17, CompressionAnalyzer.plot_sparsity(path) and the compress_model report: written with module 07's atomic writer. Made to fail in the middle of a write (os.fsync,
os.replace, savefig after half a picture), the old file is left byte for byte and no temporary file is left behind; a killed writer's
stale temporary file is removed by the next save."""
import json
import os

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Sequential
from tinytorch.optimization.compression import CompressionAnalyzer, write_json_atomic
from tinytorch.core import files
from atomic_checks import (Boom, boom, failing_write_keeps_the_old_file, half_saved_figure_keeps_the_old_file,
                           next_save_removes_a_dead_writers_temp)


def write(path):
    mlp = Sequential(Linear(4, 8, rng=np.random.default_rng(0)), ReLU(), Linear(8, 3, rng=np.random.default_rng(1)))
    CompressionAnalyzer(mlp).plot_sparsity(path)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, where):
    failing_write_keeps_the_old_file(write, tmp_path / "sparsity.png", monkeypatch, where)


def test_a_figure_that_fails_half_written_leaves_the_old_file(tmp_path, monkeypatch):
    half_saved_figure_keeps_the_old_file(write, tmp_path / "sparsity.png", monkeypatch)


def test_the_next_save_removes_a_killed_writers_temp_file(tmp_path):
    next_save_removes_a_dead_writers_temp(write, tmp_path / "sparsity.png")


def test_the_report_writer_is_module_07s(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"stages": [1]})
    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(Boom):
        write_json_atomic(path, {"stages": [1, 2]})
    assert json.loads(path.read_text()) == {"stages": [1]} and sorted(os.listdir(tmp_path)) == ["report.json"]
