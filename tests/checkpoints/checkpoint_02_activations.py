"""Can I apply non-linearities that stay finite at extreme inputs?"""
import math

import numpy as np
import pytest

from tinytorch.core.activations import (GELU, GELUFunction, ReLU, ReLUFunction, Sigmoid, SigmoidFunction, Softmax,
                                        SoftmaxFunction, Tanh)
from tinytorch.core.tensor import Tensor, check_backward

# Overflow, invalid operations (NaN) and division by zero raise; underflow of e^(-huge) to 0 is correct.
TRAP = dict(all="raise", under="ignore")


def test_values_match_their_definitions():
    x = np.linspace(-6, 6, 49).astype(np.float32)
    x64 = x.astype(np.float64)
    t = Tensor(x)
    np.testing.assert_array_equal(ReLU()(t).data, np.maximum(x, 0))
    np.testing.assert_allclose(Sigmoid()(t).data, 1 / (1 + np.exp(-x64)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(Tanh()(t).data, np.tanh(x64), rtol=1e-6, atol=1e-7)
    gelu = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x64])
    np.testing.assert_allclose(GELU()(t).data, gelu, rtol=1e-5, atol=1e-6)
    e = np.exp(x64 - x64.max())
    np.testing.assert_allclose(Softmax()(t).data, e / e.sum(), rtol=1e-5, atol=1e-7)
    for act in (ReLU(), Sigmoid(), Tanh(), GELU(), Softmax()):
        assert act(t).dtype == np.float32 and act(t).shape == (49,)


def test_finite_at_extreme_inputs():
    big = Tensor([[1e4, -1e4, 0.0]])
    with np.errstate(**TRAP):
        sig = Sigmoid()(big).data
        soft = Softmax()(big).data
        tie = Softmax()(Tensor([[1e4, 1e4]])).data
        low = Softmax()(Tensor([[-1e4, -1e4 + 1]])).data
        relu = ReLU()(big).data
        tanh = Tanh()(big).data
    for out in (sig, soft, tie, low, relu, tanh):
        assert np.all(np.isfinite(out))
    assert sig.tolist() == [[1.0, 0.0, 0.5]]
    assert soft.tolist() == [[1.0, 0.0, 0.0]]
    assert tie.tolist() == [[0.5, 0.5]]
    np.testing.assert_allclose(low, [[1 / (1 + math.e), math.e / (1 + math.e)]], rtol=1e-6)
    assert relu.tolist() == [[1e4, 0.0, 0.0]] and tanh.tolist() == [[1.0, -1.0, 0.0]]
    with np.errstate(**TRAP):
        tail = Sigmoid()(Tensor([-30.0], dtype=np.float64)).item()
    assert tail == pytest.approx(1 / (1 + math.exp(30)), rel=1e-9)   # not rounded to 0


def test_softmax_is_a_distribution_along_its_dim():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 5
    for dim in (0, 1, 2, -1):
        s = Softmax(dim=dim)(Tensor(x)).data
        assert s.shape == x.shape and np.all(s > 0)
        np.testing.assert_allclose(s.sum(axis=dim), 1.0, rtol=1e-5)
        np.testing.assert_allclose(Softmax(dim=dim)(Tensor(x + 50.0)).data, s, rtol=1e-4, atol=1e-7)


def test_local_derivatives_handed_to_the_engine():
    # Each op is a Function: forward(ctx, x) then backward(ctx, grad) on the same context.
    x = np.array([-2.0, -0.5, 0.5, 3.0], dtype=np.float32)
    g = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    ctx = ReLUFunction()
    np.testing.assert_array_equal(ReLUFunction.forward(ctx, x), [0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(ReLUFunction.backward(ctx, g), [0.0, 0.0, 3.0, 4.0])

    ctx = SigmoidFunction()
    with np.errstate(**TRAP):
        s = SigmoidFunction.forward(ctx, np.array([-1e4, 0.0, 1e4], dtype=np.float32))
        ds = SigmoidFunction.backward(ctx, np.ones(3, dtype=np.float32))
    assert s.tolist() == [0.0, 0.5, 1.0] and ds.tolist() == [0.0, 0.25, 0.0]

    z = np.array([[1.0, 2.0, 0.5]])
    ctx = SoftmaxFunction()
    s = SoftmaxFunction.forward(ctx, z, dim=-1)
    v = np.array([[0.3, -1.0, 2.0]])
    jac = np.diag(s[0]) - np.outer(s[0], s[0])
    np.testing.assert_allclose(SoftmaxFunction.backward(ctx, v)[0], jac @ v[0], rtol=1e-10)


@pytest.mark.parametrize("fn, params", [(ReLUFunction, {}), (SigmoidFunction, {}), (GELUFunction, {}),
                                        (GELUFunction, {"approximate": "tanh"}), (SoftmaxFunction, {"dim": 0})],
                         ids=["relu", "sigmoid", "gelu", "gelu-tanh", "softmax"])
def test_every_activation_passes_the_gradient_check(fn, params):
    # module 01's check_backward: central differences with a random cotangent, float64, no engine
    assert check_backward(fn, np.random.default_rng(1).standard_normal((3, 4)), **params)


def test_modules_find_their_parts_and_save_them():
    from tinytorch.core.activations import Module, Parameter

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.w = Parameter(np.ones((2, 2)))
            self.acts = [ReLU(), Tanh()]
            self.acts[1].w = self.w                # shared: one parameter, saved under both names

    net = Net()
    assert [n for n, _ in net.named_modules()] == ["", "acts.0", "acts.1"]
    assert [n for n, _ in net.named_parameters()] == ["w"]
    assert list(net.state_dict()) == ["w", "acts.1.w"]
    net.load_state_dict({"w": np.zeros((2, 2)), "acts.1.w": np.zeros((2, 2))})
    assert (net.w.data == 0).all()
    assert not net.eval().acts[1].training
