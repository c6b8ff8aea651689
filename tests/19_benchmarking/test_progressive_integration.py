"""Module 19 (Benchmarking): progressive integration tests.

  A. TestStackBelow             -- layers, module 17's sparse layers and module 18's kernels still work.
  B. TestBenchmarkingCore       -- the statistics against NumPy, Benchmark with a controlled clock
                                   (warm-up, calibration, rotation of the order, per-round ratios), thread
                                   pinning and its report, table and JSON, bad input.
  C. TestBenchmarkingInTheStack -- real measurements of tinytorch kernels with wide-margin ratios, a JSON
                                   file written and read back, the module imports alone without numba.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear
from tinytorch.core.tensor import Tensor
from tinytorch.measurement import benchmarking as bm
from tinytorch.measurement.benchmarking import (Benchmark, bootstrap_ci, compare, median, pin_threads,
                                                 pinned_threads, quantile, ratio_summary, summarize, thread_state)


class Clock:
    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self):
        return self.now

    def costing(self, name, ticks):
        def fn():
            self.log.append(name)
            self.now += ticks
        return fn


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_linear_and_sparse_linear(self):
        from tinytorch.optimization.sparse import SparseLinear
        rng = np.random.default_rng(0)
        lin = Linear(32, 16, rng=rng)
        lin.weight.data[rng.random((16, 32)) < 0.9] = 0
        x = Tensor(rng.standard_normal((3, 32)).astype(np.float32))
        np.testing.assert_allclose(SparseLinear.from_linear(lin)(x).data, lin(x).data, rtol=1e-5, atol=1e-6)

    def test_module_18_kernels(self):
        from tinytorch.optimization.acceleration import gelu_fused
        x = np.linspace(-2, 2, 9).astype(np.float32)
        ref = 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))
        np.testing.assert_allclose(gelu_fused(x), ref, rtol=1e-5, atol=1e-6)


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestBenchmarkingCore:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0, 1))
    def test_statistics_equal_numpy(self, xs, q):
        assert np.isclose(median(xs), np.median(xs), rtol=1e-12, atol=1e-9)
        assert np.isclose(quantile(xs, q), np.quantile(xs, q), rtol=1e-9, atol=1e-6)
        s = summarize(xs)
        assert s["n"] == len(xs) and s["min"] == min(xs) and s["max"] == max(xs)
        assert np.isclose(s["iqr"], np.quantile(xs, 0.75) - np.quantile(xs, 0.25), rtol=1e-9, atol=1e-6)

    def test_statistics_refuse_bad_input(self):
        for fn in (median, summarize, lambda xs: quantile(xs, 0.5)):
            with pytest.raises(ValueError, match="no values"):
                fn([])
        with pytest.raises(ValueError, match=r"q must be a finite number in \[0, 1\], got 1.5"):
            quantile([1, 2], 1.5)
        with pytest.raises(ValueError, match="same number .* got 2 and 3"):
            ratio_summary([1, 2], [1, 2, 3])

    def test_the_one_median_and_quantile_are_module_14s(self):
        from tinytorch.measurement import profiling
        assert median is profiling.median and quantile is profiling.quantile

    def test_summarize_is_the_five_number_summary(self):
        s = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
        assert s == {"n": 5, "min": 1.0, "q1": 2.0, "median": 3.0, "q3": 4.0, "max": 100.0, "iqr": 2.0,
                     "spread": 2.0 / 3.0}
        assert summarize([0.0, 0.0])["spread"] == float("inf")

    @pytest.mark.parametrize("n, level, resamples, seed", [(15, 0.95, 1000, 0), (4, 0.5, 200, 7), (1, 0.9, 50, 3)])
    def test_bootstrap_ci_is_the_percentile_interval_of_resampled_medians(self, n, level, resamples, seed):
        xs = np.random.default_rng(n).lognormal(0.0, 0.3, n)
        idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
        meds = np.median(xs[idx], axis=1)
        ref = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
        low, high = bootstrap_ci(xs, level=level, resamples=resamples, seed=seed)
        assert np.allclose((low, high), ref, rtol=1e-12) and low <= high
        assert bootstrap_ci([3.0] * 5) == (3.0, 3.0)
        with pytest.raises(ValueError, match="bootstrap_ci: no values"):
            bootstrap_ci([])
        with pytest.raises(ValueError, match="level must be a finite number"):
            bootstrap_ci([1.0, 2.0], level=1.0)

    def test_ratio_summary_carries_the_interval_of_the_median_ratio(self):
        base = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.95]
        times = [2.0 * b * f for b, f in zip(base, [1.0, 1.1, 0.9, 1.05, 0.97, 1.2, 1.0])]
        r = ratio_summary(times, base)
        ratios = [t / b for t, b in zip(times, base)]
        assert r["median"] == float(np.median(ratios))
        assert (r["ci_low"], r["ci_high"]) == bootstrap_ci(ratios)
        assert r["ci_low"] <= r["median"] <= r["ci_high"] and r["ci_low"] < r["ci_high"]

    def test_rounds_rotate_the_order_and_warm_up_is_not_timed(self):
        clock = Clock()
        res = Benchmark("rot", repeats=3, warmup=1, min_time=1.0, threads=None, timer=clock) \
            .add("a", clock.costing("a", 1.0)).add("b", clock.costing("b", 2.0)) \
            .add("c", clock.costing("c", 3.0)).run()
        assert clock.log[:3] == ["a", "b", "c"]                        # warm-up
        assert clock.log[3:6] == ["a", "b", "c"]                       # calibration (one call each suffices)
        assert clock.log[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
        assert [res[n].median for n in "abc"] == [1.0, 2.0, 3.0]
        assert res.baseline == "a" and res.ratio("c") == 3.0 and res.ratio("a") == 1.0
        assert res["a"].ratio is None and res["a"].baseline

    def test_a_fixed_number_of_calls_and_the_baseline_flag(self):
        clock = Clock()
        res = Benchmark("fixed", repeats=4, warmup=0, number=5, threads=None, timer=clock) \
            .add("x", clock.costing("x", 2.0)).add("y", clock.costing("y", 1.0), baseline=True).run()
        assert res["x"].number == 5 and len(clock.log) == 4 * 5 * 2   # no warm-up, no calibration
        assert res.baseline == "y" and res.ratio("x") == 2.0

    def test_table_json_and_lookup(self, tmp_path):
        clock = Clock()
        res = Benchmark("report", repeats=3, warmup=0, min_time=1.0, threads=None, timer=clock) \
            .add("base", clock.costing("base", 0.002)).add("other", clock.costing("other", 0.001)).run()
        text = res.table()
        assert "report" in text and "base" in text and "0.500x" in text and "ms" in text
        assert "95% CI 0.500 - 0.500" in text                           # no noise: the interval is a point
        assert res["other"].ratio["ci_low"] == pytest.approx(0.5) == res["other"].ratio["ci_high"]
        path = tmp_path / "r.json"
        res.to_json(path)
        data = json.loads(path.read_text())
        assert data["cases"][1]["summary_s"]["median"] == pytest.approx(0.001)
        assert data["cases"][1]["times_s"] == pytest.approx([0.001] * 3)
        assert data["settings"]["repeats"] == 3 and data["machine"]["cores"] == os.cpu_count()
        with pytest.raises(KeyError, match="no case 'missing'"):
            res["missing"]

    def test_thread_pinning_reports_and_restores(self):
        before = thread_state()
        with pinned_threads(1) as report:
            assert report["threads"] == 1
            assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
            assert all(n == 1 for n in thread_state()["openblas"].values())
            if "numba" in sys.modules:
                assert sys.modules["numba"].get_num_threads() == 1
        assert thread_state()["openblas"] == before["openblas"]
        assert thread_state()["env"]["OPENBLAS_NUM_THREADS"] == before["env"]["OPENBLAS_NUM_THREADS"]

    def test_bad_settings_are_refused_with_the_value(self):
        with pytest.raises(ValueError, match=r"repeats must be a positive integer \(>= 1\), got 0"):
            Benchmark(repeats=0)
        with pytest.raises(ValueError, match="warmup must be an integer >= 0, got -1"):
            Benchmark(warmup=-1)
        with pytest.raises(ValueError, match="min_time must be a finite number > 0, got 0"):
            Benchmark(min_time=0)
        with pytest.raises(ValueError, match=r"number must be a positive integer \(>= 1\), got 0"):
            Benchmark(number=0)
        with pytest.raises(TypeError, match="'f' needs a callable, got int"):
            Benchmark().add("f", 3)
        with pytest.raises(ValueError, match="a case named 'f' already exists"):
            Benchmark().add("f", len).add("f", len)
        with pytest.raises(ValueError, match="no cases"):
            Benchmark("empty").run()
        with pytest.raises(ValueError, match=r"pin_threads: n must be a positive integer \(>= 1\), got 0"):
            pin_threads(0)


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestBenchmarkingInTheStack:
    def test_a_sparse_layer_against_its_dense_original(self):
        from tinytorch.optimization.sparse import SparseLinear
        rng = np.random.default_rng(1)
        lin = Linear(512, 512, rng=rng)
        lin.weight.data[rng.random((512, 512)) < 0.99] = 0
        sp = SparseLinear.from_linear(lin)
        x = Tensor(rng.standard_normal((64, 512)).astype(np.float32))

        def dense():
            with no_grad():
                return lin(x)

        def sparse():
            with no_grad():
                return sp(x)

        # process CPU time (every thread of this process, none of the others'): a loaded machine
        # slows both sides alike instead of flipping the ratio
        res = compare(sparse, dense, repeats=7, min_time=0.002, timer=time.process_time)
        assert res.ratio("candidate") < 0.5, res.table()              # 99 % sparse: far less work
        assert res.threads is not None

    def test_cpu_time_and_wall_time_agree_on_a_large_difference(self):
        small, big = np.ones(10_000), np.ones(1_000_000)
        for timer in (time.perf_counter, time.thread_time):
            res = Benchmark("sums", repeats=5, min_time=0.003, timer=timer) \
                .add("small", small.sum).add("big", big.sum).run()
            assert res.ratio("big") > 5, res.table()

    def test_the_module_imports_alone_without_numba(self):
        r = subprocess.run([sys.executable, "-c", "import sys, tinytorch.measurement.benchmarking; "
                            "print('numba' in sys.modules)"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "False"
