"""Profiler details: per-instance wrapping (never the class), shared modules, unknown layers, layers with
their own flops(), per-layer times, and the report's derived figures computed from what was measured."""
import json
import threading
import warnings

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Module, Sequential
from tinytorch.core.spatial import Conv2d
from tinytorch.core.tensor import Tensor
from tinytorch.measurement.profiling import (LatencyResult, Profiler, count_parameters, flops_of_call,
                                              forward_bytes, median, quantile, trace_forward)


def test_only_the_instances_of_this_model_are_wrapped():
    rng = np.random.default_rng(0)
    model = Sequential(Linear(3, 4, rng=rng), ReLU(), Linear(4, 2, rng=rng))
    other = Linear(3, 4, rng=rng)                       # another instance of the same class
    seen_inside = {}

    class Probe(Module):
        "Checks, during the traced forward pass, what is wrapped and what is not."
        def forward(self, x):
            seen_inside["model layer wrapped"] = "forward" in vars(model.layers[0])
            seen_inside["other instance wrapped"] = "forward" in vars(other)
            seen_inside["class method"] = Linear.__dict__["forward"]
            return x

    model.layers.append(Probe())
    class_forward = Linear.__dict__["forward"]
    trace_forward(model, Tensor(np.ones((2, 3), dtype=np.float32)))
    assert seen_inside == {"model layer wrapped": True, "other instance wrapped": False,
                           "class method": class_forward}
    assert all("forward" not in vars(m) for m in model.modules())


def test_an_instance_forward_set_by_the_user_is_restored():
    rng = np.random.default_rng(1)
    lin = Linear(2, 2, rng=rng)
    custom = lambda x: x * 2.0                         # noqa: E731  an instance-level override
    lin.forward = custom
    records, out = trace_forward(lin, Tensor(np.ones((1, 2), dtype=np.float32)))
    assert lin.forward is custom
    np.testing.assert_array_equal(out.data, [[2.0, 2.0]])


def test_a_shared_module_records_every_call():
    rng = np.random.default_rng(2)
    shared = Linear(5, 5, rng=rng)
    model = Sequential(shared, ReLU(), shared)
    records, _ = trace_forward(model, Tensor(np.ones((3, 5), dtype=np.float32)))
    rec = [r for r in records if r.kind == "Linear"]
    assert len(rec) == 1 and rec[0].calls == 2 and rec[0].flops == 2 * (2 * 5 * 5 * 3)
    assert count_parameters(model)["total"] == 30


def test_unknown_layers_are_reported_not_guessed():
    class Mystery(Module):
        def forward(self, x):
            return x @ x.T

    model = Sequential(Linear(4, 4), Mystery())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        total = Profiler().count_flops(model, (3, 4))
    assert total == 2 * 4 * 4 * 3
    assert any("no FLOP rule" in str(w.message) and "'1'" in str(w.message) for w in caught)
    report = Profiler(warmup=0, repeats=1).profile(model, (3, 4))
    assert report.uncounted == ["1"] and "not counted: 1" in report.summary()
    mystery_row = [r for r in report.layers if r.kind == "Mystery"][0]
    assert mystery_row.flops is None and "no FLOP rule for Mystery" in mystery_row.flop_rule


def test_a_layer_can_count_its_own_flops():
    class Scaled(Module):
        def forward(self, x):
            return x * 3.0

        def flops(self, input_shape, output_shape):
            return int(np.prod(output_shape))

    flops, rule = flops_of_call(Scaled(), (Tensor(np.ones((2, 7))),), {}, Tensor(np.ones((2, 7))))
    assert flops == 14 and rule == "Scaled.flops"


def test_per_layer_times_are_one_per_repeat_and_sum_below_the_total():
    rng = np.random.default_rng(3)
    model = Sequential(Conv2d(3, 16, 3, padding=1, rng=rng), ReLU(), Conv2d(16, 16, 3, padding=1, rng=rng))
    x = Tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    records = Profiler(warmup=1, repeats=4).layer_profiles(model, x)
    assert all(len(r.times) == 4 and all(t > 0 for t in r.times) for r in records)
    assert all(r.time == pytest.approx(float(np.median(r.times))) for r in records)


def test_report_figures_are_derived_from_measurements():
    rng = np.random.default_rng(4)
    model = Sequential(Linear(64, 64, rng=rng), ReLU(), Linear(64, 10, rng=rng))
    report = Profiler(warmup=1, repeats=3).profile(model, (16, 64))
    assert report.gflops_per_second == pytest.approx(report.flops / report.latency.median / 1e9)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["flops"] == 2 * 64 * 64 * 16 + 2 * 64 * 10 * 16
    assert d["latency"]["repeats"] == 3 and len(d["layers"]) == 3
    assert d["parameters"]["total"] == 64 * 64 + 64 + 64 * 10 + 10


def test_latency_result_statistics():
    r = LatencyResult(times=[0.004, 0.001, 0.002, 0.003, 0.100], warmup=2)
    assert r.median == 0.003 and r.min == 0.001 and r.max == 0.100 and r.repeats == 5
    assert r.iqr == pytest.approx(0.004 - 0.002)
    assert "median 3.000 ms" in str(r)


def test_median_and_quantile_are_numpys_definitions():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 8, 33):
        xs = rng.standard_normal(n)
        assert median(xs) == pytest.approx(float(np.median(xs)), abs=1e-15)
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
            assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)), rel=1e-12, abs=1e-15)
    assert median([4, 1, 3, 2]) == 2.5 and quantile([10, 0, 20], 0.25) == 5.0
    with pytest.raises(ValueError, match="median: no values"):
        median([])
    with pytest.raises(ValueError, match="quantile: no values"):
        quantile([], 0.5)
    with pytest.raises(ValueError, match="q must be a finite number in"):
        quantile([1.0, 2.0], 1.5)


def test_forward_bytes_measures_the_peak_and_what_the_graph_keeps():
    import tracemalloc
    model = Sequential(Linear(256, 512, rng=np.random.default_rng(0)), ReLU())
    x = Tensor(np.ones((64, 256), dtype=np.float32))
    peak, retained = forward_bytes(model, (x,), {}, retain=True)
    out_bytes = 64 * 512 * 4
    assert out_bytes <= peak < 20 * out_bytes            # at least the Linear's output existed at once
    assert retained >= out_bytes                          # the graph keeps the activations for backward
    assert forward_bytes(model, (x,), {}, retain=False)[1] is None
    assert not tracemalloc.is_tracing()                   # it stopped the tracing it started
    model.train()
    forward_bytes(model, (x,), {})
    assert model.training                                 # modes restored


def test_a_failing_forward_pass_leaves_nothing_behind():
    rng = np.random.default_rng(5)
    model = Sequential(Linear(3, 3, rng=rng), Linear(4, 2, rng=rng))     # mismatched: the second raises
    with pytest.raises(ValueError, match="expected input with last dimension 4"):
        Profiler(warmup=0, repeats=1).profile(model, (2, 3))
    assert all("forward" not in vars(m) for m in model.modules())
    assert all(m.training for m in model.modules())


def test_other_threads_see_the_unwrapped_class():
    rng = np.random.default_rng(6)
    model = Sequential(Linear(8, 8, rng=rng))
    other = Linear(8, 8, rng=rng)
    x = Tensor(np.ones((1, 8), dtype=np.float32))
    results = []

    class Slow(Module):
        def forward(self, inp):
            t = threading.Thread(target=lambda: results.append("forward" in vars(other)))
            t.start()
            t.join()
            return inp

    model.layers.append(Slow())
    trace_forward(model, x)
    assert results == [False]
