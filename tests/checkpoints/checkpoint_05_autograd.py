"""Can I compute gradients of any composition of ops?"""
import numpy as np
import pytest

from tinytorch.core.activations import Tanh
from tinytorch.core.autograd import Function, GradcheckError, enable_grad, gradcheck, no_grad, unbroadcast
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.tensor import Tensor


def _numeric_grads(f, arrays, v, eps=1e-6):
    "Central differences of sum(f(*arrays) * v) with respect to every element of every array (float64)."
    grads = []
    for arr in arrays:
        g = np.zeros_like(arr)
        for k in np.ndindex(arr.shape):
            orig = arr[k]
            arr[k] = orig + eps
            up = np.sum(f(*[Tensor(a, dtype=np.float64) for a in arrays]).data * v)
            arr[k] = orig - eps
            down = np.sum(f(*[Tensor(a, dtype=np.float64) for a in arrays]).data * v)
            arr[k] = orig
            g[k] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def test_gradient_of_a_composition_matches_central_differences():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2),
              np.abs(rng.standard_normal((3, 1))) + 0.5]

    def f(a, b, c, d):
        h = (a @ b).tanh() * c - a.sum(axis=1, keepdims=True) / d      # broadcasting both ways
        return (h.exp() + h * h).permute(1, 0)[:, 1:] ** 2 + h.mean(axis=0).reshape(2, 1)

    tensors = [Tensor(a.copy(), requires_grad=True, dtype=np.float64) for a in arrays]
    out = f(*tensors)
    v = rng.standard_normal(out.shape)                    # random projection, not .sum()
    out.backward(v)
    for i, (t, want) in enumerate(zip(tensors, _numeric_grads(f, arrays, v))):
        assert t.grad is not None and t.grad.shape == t.shape, i
        np.testing.assert_allclose(t.grad.data, want, rtol=1e-5, atol=1e-7, err_msg=f"input {i}")


def test_broadcast_operands_get_gradients_of_their_own_shape():
    x = Tensor(np.ones((4, 3)), requires_grad=True)
    b = Tensor(np.zeros(3), requires_grad=True)
    s = Tensor(np.full((4, 1), 2.0), requires_grad=True)
    ((x + b) * s).sum().backward()
    assert b.grad.shape == (3,) and b.grad.data.tolist() == [8.0, 8.0, 8.0]
    assert s.grad.shape == (4, 1) and s.grad.data.tolist() == [[3.0]] * 4
    assert x.grad.shape == (4, 3) and np.all(x.grad.data == 2.0)
    assert unbroadcast(np.ones((2, 4, 3)), (4, 1)).tolist() == [[6.0]] * 4
    assert unbroadcast(np.ones((5,)), ()).item() == 5.0


def test_shared_subexpressions_and_deep_chains():
    x = Tensor([3.0], requires_grad=True)
    a = x * 2
    d = (a + a * a) * a                      # a is used four times: d = 4x^2 + 8x^3
    d.backward()
    assert x.grad.item() == pytest.approx(8 * 3 + 24 * 9)
    (x * x).sum().backward()                 # a second backward adds into .grad
    assert x.grad.item() == pytest.approx(8 * 3 + 24 * 9 + 6)
    y = Tensor([1.0], requires_grad=True)
    z = y
    for _ in range(3000):                    # deeper than Python's recursion limit
        z = z * 1.0001
    z.backward()
    assert y.grad.item() == pytest.approx(1.0001 ** 3000, rel=1e-4)


def test_no_grad_stops_recording_and_enable_grad_restarts_it():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with no_grad():
        frozen = w * 2
        with enable_grad():
            live = w * 2
        frozen2 = w * 3
    assert not frozen.requires_grad and frozen.grad_fn is None and not frozen2.requires_grad
    assert live.requires_grad and live.grad_fn is not None
    after = w * 2
    assert after.requires_grad                          # restored on exit

    @no_grad()
    def evaluate(t):
        return t * 2

    assert not evaluate(w).requires_grad and (w * 2).requires_grad


class _WrongSquare(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * a                                  # missing the factor 2


def test_gradcheck_accepts_right_and_rejects_wrong_gradients():
    rng = np.random.default_rng(1)
    a = Tensor(rng.standard_normal((3, 4)), requires_grad=True, dtype=np.float64)
    b = Tensor(rng.standard_normal((4, 2)), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda p, q: (p @ q).tanh(), [a, b]) is True
    with pytest.raises(GradcheckError, match=r"(?i)input"):       # names the input that is wrong
        gradcheck(lambda p: _WrongSquare.apply(p), [Tensor(rng.standard_normal(3), requires_grad=True,
                                                           dtype=np.float64)])


def test_gradients_reach_every_parameter_of_a_model():
    rng = np.random.default_rng(2)
    model = Sequential(Linear(3, 4, rng=rng), Tanh(), Linear(4, 2, rng=rng))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    x = Tensor(rng.standard_normal((5, 3)), dtype=np.float64)
    y = Tensor([0, 1, 1, 0, 1])
    loss = CrossEntropyLoss()(model(x), y)
    model.zero_grad()
    loss.backward()
    eps = 1e-6
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        numeric = np.zeros_like(p.data)
        for k in np.ndindex(p.shape):
            orig = p.data[k]
            p.data[k] = orig + eps
            up = CrossEntropyLoss()(model(x), y).item()
            p.data[k] = orig - eps
            down = CrossEntropyLoss()(model(x), y).item()
            p.data[k] = orig
            numeric[k] = (up - down) / (2 * eps)
        np.testing.assert_allclose(p.grad.data, numeric, rtol=1e-5, atol=1e-8, err_msg=name)
