"""Module 18 (sparse kernels), the dense/sparse dispatcher: a crossover measured on this machine only when asked
(`calibrate`), kept in a file the user names (keyed by machine and shape class) and nowhere else, the override
variable, and the choice it leads to. Importing the module compiles nothing, measures nothing, writes nothing
and leaves every module global as it was."""
import json
import math
import os
import subprocess
import sys

import pytest

from tinytorch.optimization import profiling, sparse
from import_probe import ENV_OFF, ENV_ON, RECORD_ENV, sandbox


@pytest.fixture
def one_thread(monkeypatch):
    "No override; BLAS on one thread while measuring (as in benchmarks/), restored afterwards."
    monkeypatch.delenv("TINYTORCH_SPARSE_CROSSOVER", raising=False)
    handles = profiling.openblas_handles()
    before = [get() for _, get, _ in handles]
    profiling.set_blas_threads(1)
    yield
    for (_, _, put), n in zip(handles, before):
        put(n)


@pytest.mark.parametrize("size,batch", [(256, 64), (1024, 1)])
def test_the_dispatcher_picks_dense_when_dense_and_sparse_when_very_sparse(one_thread, size, batch):
    # (a matrix-vector product of a small layer is a few microseconds either way: batch 1 uses 1024x1024)
    cal = sparse.calibrate([(size, size, batch)])
    assert sparse.choose_format(0.95, size, size, batch, cal) == "dense"
    assert sparse.choose_format(0.004, size, size, batch, cal) == "sparse"
    c = sparse.crossover_density(size, size, batch, cal)
    assert 0.004 / sparse.SAFETY < c < 0.95


def test_nothing_is_measured_unless_asked(one_thread, monkeypatch, tmp_path):
    from tinytorch.core.layers import Linear
    monkeypatch.setattr(sparse, "measure_crossover", None)       # any measurement would fail
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lin = Linear(64, 64)
    lin.weight.data[:, :60] = 0
    with pytest.raises(LookupError, match=r"sparse.calibrate\(\[\(64, 64, 64\)\]"):
        sparse.sparse_plan(lin, batch_size=64)
    with pytest.raises(LookupError, match="64->64 layer at batch 64"):
        sparse.choose_format(0.1, 64, 64, 64)
    assert sparse.to_sparse(lin, mode="always") is not lin             # 'always' needs no measurement
    assert os.listdir(tmp_path) == []                                 # and nothing was written anywhere


def test_a_calibration_is_saved_where_asked_and_read_back(one_thread, monkeypatch, tmp_path):
    path = tmp_path / "cal.json"
    cal = sparse.calibrate([(128, 256, 64)], path=path)
    first = cal.density(128, 256, 64)
    data = json.loads(path.read_text())
    (key, entry), = data.items()
    assert sparse.machine_key() in key and key.endswith("|batch64|in128|out256")
    assert entry["density"] == first and len(entry["points"]) == len(sparse.DENSITIES)
    assert all(p["dense_s"] > 0 and p["sparse_s"] > 0 for p in entry["points"])
    assert sorted(os.listdir(tmp_path)) == ["cal.json"]

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the calibration has it")

    monkeypatch.setattr(sparse, "measure_crossover", no_measuring)
    loaded = sparse.SparseCalibration.load(path)
    assert sparse.crossover_density(128, 256, 64, loaded) == first
    assert sparse.crossover_density(100, 300, 50, loaded) == first      # the same shape class
    assert sparse.calibrate([(100, 300, 50)], path=path).entries == loaded.entries
    with pytest.raises(AssertionError, match="measured again"):
        sparse.calibrate([(128, 256, 1)], path=path)                    # another class is measured
    with pytest.raises(LookupError):
        sparse.crossover_density(128, 256, 1, loaded)

    code = ("from tinytorch.optimization import sparse\n"
            "sparse.measure_crossover = None\n"                         # a fresh process reads, not measures
            f"print(sparse.crossover_density(128, 256, 64, sparse.SparseCalibration.load({str(path)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == first


def test_the_crossover_is_interpolated_where_the_timings_cross(monkeypatch):
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


def test_the_override_variable_fixes_the_crossover(monkeypatch):
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


def test_shape_classes():
    assert sparse.shape_class(1024, 1024, 1) == (1, 1024, 1024)
    assert sparse.shape_class(1000, 300, 5) == (8, 1024, 256)
    assert sparse.shape_class(10, 100000, 64) == (64, 8, 2048)
    assert sparse.shape_class(3, 128, 64) == (64, 8, 128)
    assert sparse.shape_class(700, 10, 1000) == (256, 512, 8)
    with pytest.raises(ValueError, match=r"batch must be a positive integer \(>= 1\), got 0"):
        sparse.shape_class(8, 8, 0)


def test_a_corrupt_calibration_file_is_an_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "cal.json"
    path.write_text("{ not json")
    monkeypatch.setattr(sparse, "measure_crossover", None)
    with pytest.raises(ValueError, match="cal.json is not a calibration file"):
        sparse.SparseCalibration.load(path)
    with pytest.raises(ValueError, match="cal.json is not a calibration file"):
        sparse.calibrate([(8, 8, 8)], path=path)
    path.write_text(json.dumps({"k": {"density": "high"}}))
    with pytest.raises(ValueError, match="bad entries \\['k'\\]"):
        sparse.SparseCalibration.load(path)
    with pytest.raises(ValueError, match=r"\(in_features, out_features, batch\), got \(8, 8\)"):
        sparse.calibrate([(8, 8)])


IMPORT_PROBE = (r"""
import json, os, sys, types
import numpy, tinytorch.core.autograd, tinytorch.core.layers, tinytorch.core.tensor, tinytorch.core.training
import tinytorch.core.spatial, tinytorch.optimization.pruning, tinytorch.measurement.profiling
""" + RECORD_ENV + ENV_ON + r"""import tinytorch.optimization.sparse as sp
import tinytorch.optimization.acceleration as acc
""" + ENV_OFF + r"""from tinytorch.optimization.kernels import Kernel
numba_after_import = "numba" in sys.modules
def snapshot():
    return {(m.__name__, k): id(v) for m in (sp, acc) for k, v in vars(m).items() if not k.startswith("__")}
before = snapshot()
import numpy as np
c = sp.CSRMatrix.from_dense(np.eye(4, dtype=np.float32))
y, _ = sp.csr_linear_forward(c.indptr, c.indices, c.data, np.ones((3, 4), np.float32))
assert np.allclose(y, np.ones((3, 4)))
sp.use_parallel(True); sp.use_parallel(False)
assert np.allclose(acc.gelu_fused(np.zeros((2, 3), np.float32)), 0)
after = snapshot()
kernel_names = [(m, n) for m in (sp, acc) for n in m.KERNELS._specs]
print(json.dumps({"changed": sorted(map(str, (k for k in before if after.get(k) != before[k]))),
                  "added": sorted(map(str, set(after) - set(before))),
                  "kernels": len(kernel_names),
                  "python_kernels": all(isinstance(getattr(m, n), Kernel) and
                                        isinstance(getattr(m, n).py_func, types.FunctionType) for m, n in kernel_names),
                  "prange_is_range": sp.prange is range and acc.prange is range,
                  "numba_after_import": numba_after_import, "env_read": read,
                  "numba_after_use": "numba" in sys.modules}))
""")


def test_import_and_use_leave_the_module_globals_and_write_nothing(tmp_path):
    box = sandbox(tmp_path, {"TINYTORCH_SPARSE_PARALLEL": "1"}, unset_vars=("TINYTORCH_SPARSE_CROSSOVER",))
    box.run("import tinytorch.optimization.sparse, tinytorch.optimization.acceleration", timeout=120)
    assert box.nothing_written()
    r = box.probe(IMPORT_PROBE)
    assert r["changed"] == [] and r["added"] == [], r              # compiling rewrote no global
    assert r["kernels"] >= 10 and r["python_kernels"] and r["prange_is_range"]
    assert not r["numba_after_import"] and r["numba_after_use"]     # Numba is imported on first use only
    assert r["env_read"] == []                                      # importing reads no environment variable
    assert os.listdir(box.home) == [] and os.listdir(box.work) == []   # only Numba's own cache (its folder) was written


def test_break_even_density_interpolates_in_log_log_and_stops_at_the_first_loss():
    assert sparse.break_even_density([(0.1, 0.5), (0.4, 2.0)]) == pytest.approx(0.2)   # log-midpoint of 0.1, 0.4
    assert sparse.break_even_density([(0.1, 0.0), (0.4, 2.0)]) == pytest.approx(0.1)    # a free sparse run
    assert sparse.break_even_density([(0.1, 0.9), (0.5, 0.99)]) == 0.5                  # never loses
    assert sparse.break_even_density([(0.1, 1.5), (0.5, 0.5)]) == 0.0                   # loses first
    assert sparse.break_even_density([(0.1, 0.5), (0.2, 0.5), (0.4, 2.0), (0.8, 0.1)]) == pytest.approx(
        math.exp(math.log(0.2) + 0.5 * (math.log(0.4) - math.log(0.2))))              # the late "win" is ignored
