"""Module 18 (sparse kernels, moved from module 17), the dense/sparse dispatcher: a crossover measured on this machine (once, cached in a JSON
file keyed by machine and shape class), the override variable, and the choice it leads to."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tinytorch.optimization import profiling, sparse


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty measurement cache; no override; no crossover remembered in memory; BLAS on one
    thread while measuring (as in benchmarks/), restored afterwards."""
    monkeypatch.setenv("TINYTORCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TINYTORCH_SPARSE_CROSSOVER", raising=False)
    monkeypatch.setattr(sparse, "_crossovers", {})
    handles = profiling.openblas_handles()
    before = [get() for _, get, _ in handles]
    profiling.set_blas_threads(1)
    yield tmp_path
    for (_, _, put), n in zip(handles, before):
        put(n)


@pytest.mark.parametrize("size,batch", [(256, 64), (1024, 1)])
def test_the_dispatcher_picks_dense_when_dense_and_sparse_when_very_sparse(cache, size, batch):
    # (a matrix-vector product of a small layer is a few microseconds either way: batch 1 uses 1024x1024)
    assert sparse.choose_format(0.95, size, size, batch) == "dense"
    assert sparse.choose_format(0.004, size, size, batch) == "sparse"
    c = sparse.crossover_density(size, size, batch)
    assert 0.004 / sparse.SAFETY < c < 0.95


def test_the_crossover_is_measured_once_and_cached_on_disk(cache, monkeypatch):
    first = sparse.crossover_density(128, 256, 64)
    data = json.loads((cache / "sparse_crossover.json").read_text())
    (key, entry), = data.items()
    assert sparse.machine_key() in key and key.endswith("|batch64|in128|out256")
    assert entry["density"] == first and len(entry["points"]) == len(sparse.DENSITIES)
    assert all(p["dense_s"] > 0 and p["sparse_s"] > 0 for p in entry["points"])

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the crossover is cached")

    monkeypatch.setattr(sparse, "measure_crossover", no_measuring)
    monkeypatch.setattr(sparse, "_crossovers", {})               # forget the in-memory copy: read the file
    assert sparse.crossover_density(128, 256, 64) == first
    assert sparse.crossover_density(100, 300, 50) == first       # the same shape class
    with pytest.raises(AssertionError, match="measured again"):
        sparse.crossover_density(128, 256, 1)                    # another class is measured

    code = ("from tinytorch.optimization import sparse\n"
            "sparse.measure_crossover = None\n"                  # a fresh process must read, not measure
                                                                  # (one BLAS thread: the same machine key)
            "print(sparse.crossover_density(128, 256, 64))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TINYTORCH_CACHE_DIR": str(cache), "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == first


def test_the_crossover_is_interpolated_where_the_timings_cross(cache, monkeypatch):
    # sparse time proportional to density, dense fixed: they cross at 0.15 exactly
    times = iter([])

    def fake_pair(f_dense, f_sparse, repeats):
        return 1.0, next(times)

    monkeypatch.setattr(sparse, "_time_pair", fake_pair)
    ds = sorted(sparse.DENSITIES, reverse=True)
    times = iter([d / 0.15 for d in ds])
    r = sparse.measure_crossover(64, 64, 8)
    assert r["density"] == pytest.approx(0.15, rel=1e-6)
    times = iter([0.5] * len(ds))                                 # sparse always faster
    assert sparse.measure_crossover(64, 64, 8)["density"] == max(ds)
    times = iter([2.0] * len(ds))                                 # sparse never faster
    assert sparse.measure_crossover(64, 64, 8)["density"] == 0.0
    times = iter([0.5] + [2.0] * (len(ds) - 1))                   # one noisy "win" at the highest density only
    assert sparse.measure_crossover(64, 64, 8)["density"] == 0.0
    times = iter([2.0] * 3 + [0.5] + [2.0] + [0.5] * (len(ds) - 5))   # wins below 0.1 (and a fluke at 0.2)
    assert sparse.measure_crossover(64, 64, 8)["density"] == pytest.approx(
        math.exp(math.log(0.1) + math.log(2) / (math.log(4)) * (math.log(0.14) - math.log(0.1))))


def test_the_override_variable_fixes_the_crossover(cache, monkeypatch):
    monkeypatch.setenv("TINYTORCH_SPARSE_CROSSOVER", "0.25")
    monkeypatch.setattr(sparse, "measure_crossover", None)        # never measured
    assert sparse.crossover_density(4096, 4096, 1) == 0.25
    assert sparse.choose_format(0.2, 10, 10) == "sparse" and sparse.choose_format(0.24, 10, 10) == "dense"
    monkeypatch.setenv("TINYTORCH_SPARSE_CROSSOVER", "lots")
    with pytest.raises(ValueError, match="must be a density in \\[0, 1\\], got 'lots'"):
        sparse.crossover_density(8, 8)
    monkeypatch.setenv("TINYTORCH_SPARSE_CROSSOVER", "1.5")
    with pytest.raises(ValueError, match="got 1.5"):
        sparse.crossover_density(8, 8)


def test_shape_classes_and_cache_location(monkeypatch, tmp_path):
    assert sparse.shape_class(1024, 1024, 1) == (1, 1024, 1024)
    assert sparse.shape_class(1000, 300, 5) == (8, 1024, 256)
    assert sparse.shape_class(10, 100000, 64) == (64, 8, 2048)
    assert sparse.shape_class(3, 128, 64) == (64, 8, 128)
    assert sparse.shape_class(700, 10, 1000) == (256, 512, 8)
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        sparse.shape_class(8, 8, 0)
    monkeypatch.delenv("TINYTORCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sparse.cache_dir() == tmp_path / "tinytorch"
    monkeypatch.setenv("TINYTORCH_CACHE_DIR", str(tmp_path / "x"))
    assert sparse.cache_dir() == tmp_path / "x"


def test_a_corrupt_cache_file_is_measured_again(cache, monkeypatch):
    (cache / "sparse_crossover.json").write_text("{ not json")
    calls = []

    def fake_measure(i, o, b):
        calls.append((i, o, b))
        return {"density": 0.123, "points": []}

    monkeypatch.setattr(sparse, "measure_crossover", fake_measure)
    assert sparse.crossover_density(128, 128, 64) == 0.123 and calls == [(128, 128, 64)]
    data = json.loads((cache / "sparse_crossover.json").read_text())       # rewritten, valid
    assert [e["density"] for e in data.values()] == [0.123]
