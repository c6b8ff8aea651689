"""Can I measure where a model's parameters, FLOPs, memory and time go?"""
import time

import numpy as np

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Module, Sequential
from tinytorch.core.spatial import Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor
from tinytorch.measurement.profiling import (Profiler, attention_flops, conv2d_flops, count_parameters,
                                              linear_flops, measure_latency, measure_memory)


def small_cnn(rng):
    return Sequential(Conv2d(1, 4, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(4 * 4 * 4, 10, rng=rng))


def test_parameters_and_nonzeros_are_counted_once():
    rng = np.random.default_rng(0)
    a, b = Linear(6, 6, bias=False, rng=rng), Linear(6, 3, rng=rng)
    model = Sequential(a, ReLU(), b, a.__class__(3, 6, bias=False, rng=rng))
    model.layers[3].weight.data[:2] = 0.0
    c = count_parameters(model)
    assert c["total"] == 36 + 18 + 3 + 18 and c["bytes"] == 4 * c["total"]
    assert c["nonzero"] == c["total"] - 2 * 3
    tied = Sequential(a, ReLU(), a)
    assert count_parameters(tied)["total"] == 36


def test_flops_follow_the_formulas_and_the_shapes_a_model_sees():
    assert linear_flops(128, 64, n=10) == 2 * 128 * 64 * 10
    assert conv2d_flops(3, 8, (5, 3), (10, 12), n=2) == 2 * 3 * 5 * 3 * 8 * 10 * 12 * 2
    assert attention_flops(2, 4, 10, 7, 16) == 4 * 2 * 4 * 10 * 7 * 16
    model = small_cnn(np.random.default_rng(1))
    n = 5
    expected = 2 * 1 * 3 * 3 * 4 * 8 * 8 * n + 2 * 64 * 10 * n
    assert Profiler().count_flops(model, Tensor(np.zeros((n, 1, 8, 8), dtype=np.float32))) == expected


def test_memory_counts_every_layer_output_and_the_weights():
    model = small_cnn(np.random.default_rng(2))
    x = Tensor(np.ones((3, 1, 8, 8), dtype=np.float32))
    mem = measure_memory(model, x)
    outputs = 4 * (3 * 4 * 8 * 8 * 2 + 3 * 4 * 4 * 4 * 2 + 3 * 10)   # conv, relu, pool, flatten, linear
    assert mem["activation_bytes"] == outputs
    assert mem["parameter_bytes"] == 4 * (4 * 9 + 4 + 64 * 10 + 10)
    assert mem["peak_forward_bytes"] > 0


def test_latency_is_the_median_of_real_repeats():
    class Sleeper(Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            time.sleep(0.02 if self.calls == 3 else 0.002)       # one slow call among the timed ones
            return x

    m = Sleeper()
    lat = measure_latency(m, Tensor([1.0]), warmup=1, repeats=5)
    assert m.calls == 6 and len(lat.times) == 5
    assert lat.median == float(np.median(lat.times)) and 0.002 <= lat.median < 0.02 <= lat.max


def test_a_profile_changes_nothing_and_invents_nothing():
    model = small_cnn(np.random.default_rng(3))
    report = Profiler(warmup=1, repeats=3).profile(model, (2, 1, 8, 8))
    assert report.accuracy is None
    assert report.flops == 2 * 9 * 4 * 64 * 2 + 2 * 64 * 10 * 2
    assert [r.kind for r in report.layers] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert all(len(r.times) == 3 for r in report.layers) and report.latency.repeats == 3
    assert all("forward" not in vars(m) for m in model.modules()) and model.training
