"""Module 03's `nn.init` formulas, with NumPy only (this file ships with the student copy): fans of
Linear and convolution weights, the gains, the bound or spread of Xavier and Kaiming (both modes), the
truncated normal's range, and `Linear` itself (its forward through `linear`, its checked sizes)."""
import math

import numpy as np
import pytest

from tinytorch.core.layers import (Linear, calculate_gain, kaiming_normal_, kaiming_uniform_, linear, trunc_normal_,
                                   xavier_normal_, xavier_uniform_)
from tinytorch.core.layers import _fans
from tinytorch.core.tensor import Tensor
from tinytorch.core.tensor_kit import Generator


def _gen(seed):
    return Generator().manual_seed(seed)


@pytest.mark.parametrize("shape,fans", [((5, 3), (3, 5)), ((64, 16, 3, 3), (144, 576)), ((8, 2, 5), (10, 40))])
def test_fans_count_the_receptive_field(shape, fans):
    assert _fans(Tensor(np.zeros(shape)), "test") == fans


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        xavier_uniform_(Tensor(np.zeros(4)))


@pytest.mark.parametrize("name,param,gain", [("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0),
                                             ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)), ("selu", None, 0.75),
                                             ("leaky_relu", None, math.sqrt(2 / (1 + 1e-4))),
                                             ("leaky_relu", 0.2, math.sqrt(2 / 1.04))])
def test_gains(name, param, gain):
    assert math.isclose(calculate_gain(name, param), gain, rel_tol=1e-12)


def test_unknown_gain_names_it():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        calculate_gain("swish")


def _filled(fn, shape=(300, 500), **kwargs):
    w = Tensor(np.zeros(shape))
    array = w.data
    assert fn(w, generator=_gen(7), **kwargs) is w and w.data is array      # in place, returns the tensor
    return w.data


@pytest.mark.parametrize("fn,kwargs,bound", [
    (xavier_uniform_, {}, math.sqrt(6 / 800)),
    (xavier_uniform_, {"gain": 2.0}, 2 * math.sqrt(6 / 800)),
    (kaiming_uniform_, {"nonlinearity": "relu"}, math.sqrt(3) * math.sqrt(2) / math.sqrt(500)),
    (kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(3) * math.sqrt(2) / math.sqrt(300)),
    (kaiming_uniform_, {"a": math.sqrt(5)}, math.sqrt(3) * math.sqrt(2 / 6) / math.sqrt(500)),
])
def test_uniform_initialisers_fill_the_whole_bound(fn, kwargs, bound):
    w = _filled(fn, **kwargs)
    assert 0.99 * bound < np.abs(w).max() <= bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02


@pytest.mark.parametrize("fn,kwargs,std", [
    (xavier_normal_, {}, math.sqrt(2 / 800)),
    (xavier_normal_, {"gain": 5 / 3}, 5 / 3 * math.sqrt(2 / 800)),
    (kaiming_normal_, {"nonlinearity": "relu"}, math.sqrt(2 / 500)),
    (kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / 300)),
])
def test_normal_initialisers_have_the_formula_std(fn, kwargs, std):
    w = _filled(fn, **kwargs)
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 0.05 * std


def test_kaiming_mode_is_checked():
    with pytest.raises(ValueError, match="'fan_avg'"):
        kaiming_normal_(Tensor(np.zeros((3, 3))), mode="fan_avg")


def test_trunc_normal_stays_inside_its_range_and_keeps_the_normal_shape():
    w = _filled(trunc_normal_, std=1.0, a=-0.5, b=0.5)
    assert w.min() >= -0.5 and w.max() <= 0.5 and w.min() < -0.49 and w.max() > 0.49
    assert 0.27 < w.std() < 0.3                    # a normal cut at ±0.5 sd: std ≈ 0.2859, not uniform's 0.2887
    wide = _filled(trunc_normal_, std=0.02)        # the default range [-2, 2] is 100 sd: nothing redrawn
    assert abs(wide.std() / 0.02 - 1) < 0.02


def test_linear_forward_runs_the_functional_linear_with_and_without_bias():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 2, 3)).astype(np.float32))
    for bias in (True, False):
        layer = Linear(3, 5, bias=bias, rng=np.random.default_rng(1))
        expected = x.data @ layer.weight.data.T + (layer.bias.data if bias else 0)
        np.testing.assert_allclose(layer(x).data, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(linear(x, layer.weight, layer.bias).data, expected, rtol=1e-5, atol=1e-6)
        assert layer(x).grad_fn is not None and len(layer(x).grad_fn.inputs) == (3 if bias else 2)


@pytest.mark.parametrize("args,words", [((0, 3), "in_features must be a positive integer (>= 1), got 0"),
                                        ((3, -1), "out_features must be a positive integer (>= 1), got -1")])
def test_linear_sizes_are_checked_with_the_shared_validator(args, words):
    with pytest.raises(ValueError) as e:
        Linear(*args)
    assert words in str(e.value)
