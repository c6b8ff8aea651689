"""The backward engine: deep graphs, shared sub-expressions, accumulation, grad modes, detach,
error messages of backward, gradcheck itself, custom Functions, and integer / comparison tensors."""
import re
import sys

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import (Function, GradcheckError, enable_grad, gradcheck, is_grad_enabled,
                                     no_grad, set_grad_enabled, unbroadcast)
from tinytorch.core.layers import Linear, Parameter


def f64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# graph shapes
# --------------------------------------------------------------------------------------------------
def test_chain_of_5000_ops_backpropagates_without_recursion_error():
    assert sys.getrecursionlimit() < 5000 * 2        # a recursive topological sort would overflow
    x = f64([0.5, -1.0])
    y = x
    for _ in range(2500):                            # 5000 ops: y <- y * 1.0002 + 0.001
        y = y * 1.0002
        y = y + 0.001
    c, n = 1.0002, 2500
    expected = x.data * c ** n + 0.001 * (c ** n - 1) / (c - 1)       # geometric series
    np.testing.assert_allclose(y.data, expected, rtol=1e-10)
    G = np.array([1.0, -2.0])
    y.backward(G)
    np.testing.assert_allclose(x.grad.data, G * c ** n, rtol=1e-10)


def test_deep_chain_of_unary_ops():
    x = f64(0.3)
    y = x
    for _ in range(5000):
        y = y.tanh()
    y.backward()
    # d/dx of tanh^n(x) = prod over the chain of (1 - tanh(y_k)^2), computed here directly
    v, d = 0.3, 1.0
    for _ in range(5000):
        v = np.tanh(v)
        d *= 1 - v * v
    np.testing.assert_allclose(y.data, v, rtol=1e-12)
    np.testing.assert_allclose(x.grad.data, d, rtol=1e-9)


def test_diamond_graph_sums_gradients_of_both_paths():
    a = f64([1.0, 2.0, 3.0])
    b = a * 2.0              # path 1
    c = a.exp()              # path 2
    d = b * c                # a used twice through two branches: d = 2a e^a
    G = np.array([0.5, -1.0, 2.0])
    d.backward(G)
    np.testing.assert_allclose(a.grad.data, G * (2 * np.exp(a.data) + 2 * a.data * np.exp(a.data)), rtol=1e-12)


def test_same_tensor_in_both_operands_and_reused_intermediate():
    a = f64([1.5, -2.0])
    (a * a).backward(np.array([1.0, 1.0]))
    np.testing.assert_allclose(a.grad.data, 2 * a.data)

    x = f64([[1.0, 2.0], [3.0, 4.0]])
    h = x.tanh()                                     # intermediate used three times
    out = h * h + h @ h.T
    G = np.array([[1.0, -1.0], [0.5, 2.0]])
    out.backward(G)
    t = np.tanh(x.data)
    dh = 2 * t * G + (G + G.T) @ t                    # d/dh of <G, h*h + h h^T>
    np.testing.assert_allclose(x.grad.data, dh * (1 - t * t), rtol=1e-12)


def test_gradients_accumulate_across_backward_calls():
    w = f64([1.0, -2.0, 3.0])
    (w * w).sum().backward()
    first = w.grad.data.copy()
    np.testing.assert_allclose(first, 2 * w.data)
    (w * 3.0).sum().backward()
    np.testing.assert_allclose(w.grad.data, 2 * w.data + 3.0)
    # the same graph twice also accumulates
    y = (w ** 3).sum()
    w.grad = None
    y.backward()
    y.backward()
    np.testing.assert_allclose(w.grad.data, 2 * 3 * w.data ** 2)


def test_grad_is_not_aliased_between_leaves_or_with_the_cotangent():
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    G = np.array([1.0, 1.0])
    (a + b).backward(G)
    a.grad.data[0] = 100.0                          # editing one grad must not change the other or G
    assert b.grad.data[0] == 1.0
    assert G[0] == 1.0


def test_backward_on_a_leaf_sets_its_grad():
    x = f64([1.0, 2.0])
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_allclose(x.grad.data, [3.0, 4.0])


def test_only_leaves_requiring_grad_get_grad():
    a = f64([1.0, 2.0])
    b = f64([3.0, 4.0], requires_grad=False)
    c = a * b
    c.backward(np.ones(2))
    assert b.grad is None
    assert c.grad is None                            # non-leaf grads are not retained
    np.testing.assert_allclose(a.grad.data, b.data)


# --------------------------------------------------------------------------------------------------
# grad modes and detach
# --------------------------------------------------------------------------------------------------
def test_no_grad_context():
    x = f64([1.0, 2.0])
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0 + 1.0
        z = y.exp().sum()
    assert is_grad_enabled()
    for t in (y, z):
        assert t.requires_grad is False
        assert t.grad_fn is None and t.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.backward()


def test_no_grad_as_decorator_with_parentheses():
    @no_grad()
    def f(t):
        assert not is_grad_enabled()
        return t * 3.0

    x = f64([1.0])
    y = f(x)
    assert y.requires_grad is False and y.grad_fn is None
    assert is_grad_enabled()
    assert (x * 3.0).requires_grad is True             # mode restored after the call


def test_no_grad_as_bare_decorator_like_torch():
    "torch.no_grad may decorate without parentheses (`@torch.no_grad`); so should tinytorch's."
    def g(t):
        assert not is_grad_enabled()
        return t * 3.0

    f = no_grad(g)
    y = f(f64([1.0]))
    assert y.requires_grad is False
    assert is_grad_enabled()


def test_grad_mode_is_restored_after_an_exception_and_nesting():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()
    x = f64([2.0])
    with no_grad():
        with enable_grad():
            assert is_grad_enabled()
            y = x * x
        z = x * x
        with set_grad_enabled(True):
            w = x * x
    assert y.requires_grad and not z.requires_grad and w.requires_grad
    with set_grad_enabled(False):
        assert (x * x).requires_grad is False
    assert is_grad_enabled()

    @set_grad_enabled(False)
    def h(t):
        return t + 1.0
    assert h(x).requires_grad is False


def test_detach_shares_memory_and_has_no_graph():
    x = f64([1.0, 2.0, 3.0])
    y = x * 2.0
    d = y.detach()
    assert d.requires_grad is False and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.data, y.data)
    d.data[0] = 42.0                                  # in-place edit seen through y
    assert y.data[0] == 42.0
    e = d * x                                         # d is a constant in a new graph
    e.backward(np.ones(3))
    np.testing.assert_allclose(x.grad.data, d.data)
    dx = x.detach()
    assert np.shares_memory(dx.data, x.data) and not dx.requires_grad


# --------------------------------------------------------------------------------------------------
# errors of backward
# --------------------------------------------------------------------------------------------------
def test_backward_of_non_scalar_without_grad_names_the_shape():
    y = f64(np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=re.escape("(2, 3)")):
        y.backward()


def test_backward_with_wrong_grad_shape_names_both_shapes():
    y = f64(np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError) as ei:
        y.backward(np.ones((3, 2)))
    msg = str(ei.value)
    assert "(3, 2)" in msg and "(2, 3)" in msg
    with pytest.raises(RuntimeError, match=re.escape("(6,)")):
        y.backward(np.ones(6))


def test_backward_on_tensor_without_grad_raises():
    t = f64([1.0, 2.0], requires_grad=False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        t.sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        t.backward(np.ones(2))


def test_single_element_non_scalar_backward_implies_ones():
    x = f64([[2.0]])
    y = x * 3.0
    y.backward()
    np.testing.assert_allclose(x.grad.data, [[3.0]])


# --------------------------------------------------------------------------------------------------
# gradcheck itself
# --------------------------------------------------------------------------------------------------
class BadTranspose(Function):
    "forward is a transpose, but backward forgets to transpose the gradient back (a real mistake)."
    @staticmethod
    def forward(ctx, a):
        return a.T.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad                                   # should be grad.T


class GoodTranspose(Function):
    @staticmethod
    def forward(ctx, a):
        return a.T.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad.T


def test_gradcheck_random_projection_catches_a_transpose_mistake_that_a_sum_misses():
    x = f64(np.random.default_rng(0).standard_normal((3, 3)))
    # the sum-projection (cotangent of ones) cannot see the bug: the gradient is all ones either way
    BadTranspose.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, np.ones((3, 3)))
    x.grad = None
    # the random projection gradcheck uses does see it
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3, 3\)\) element"):
        gradcheck(lambda t: BadTranspose.apply(t), [x])
    assert gradcheck(lambda t: GoodTranspose.apply(t), [x]) is True
    assert x.grad is None                             # gradcheck leaves the inputs' grads as they were


def test_gradcheck_catches_a_wrong_scale_and_names_values():
    class BadSquare(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return grad * a                           # missing the factor 2

    x = f64([1.0, -2.0, 0.5])
    with pytest.raises(GradcheckError, match="analytic .* vs numeric"):
        gradcheck(lambda t: BadSquare.apply(t), [x])


def test_gradcheck_refuses_float32_inputs():
    x = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="float32") as ei:
        gradcheck(lambda t: t * t, [x])
    assert "float64" in str(ei.value)


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda t: t * t, [f64([1.0], requires_grad=False)])


def test_gradcheck_passes_on_correct_multi_input_graph():
    rng = np.random.default_rng(1)
    a, b = f64(rng.standard_normal((2, 3))), f64(rng.standard_normal((3, 4)))
    c = f64(rng.standard_normal(4))
    assert gradcheck(lambda a, b, c: ((a @ b) * c).tanh().sum(axis=0) / (c * c + 1.0), [a, b, c])


# --------------------------------------------------------------------------------------------------
# custom Functions
# --------------------------------------------------------------------------------------------------
def test_custom_function_apply_and_needs_input_grad():
    seen = {}

    class ScaledMul(Function):
        @staticmethod
        def forward(ctx, a, b, scale=1.0):
            ctx.save_for_backward(a, b)
            ctx.scale = scale
            return a * b * scale

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            seen["needs"] = ctx.needs_input_grad
            ga = grad * b * ctx.scale if ctx.needs_input_grad[0] else None
            gb = grad * a * ctx.scale if ctx.needs_input_grad[1] else None
            return ga, gb

    a = f64([1.0, 2.0])
    b = f64([3.0, 5.0], requires_grad=False)
    out = ScaledMul.apply(a, b, scale=2.0)
    assert type(out) is Tensor and out.requires_grad
    assert repr(out.grad_fn) == "<ScaledMulBackward>"
    np.testing.assert_allclose(out.data, [6.0, 20.0])
    out.backward(np.array([1.0, -1.0]))
    assert seen["needs"] == (True, False)
    np.testing.assert_allclose(a.grad.data, [6.0, -10.0])
    assert b.grad is None

    b2 = f64([3.0, 5.0])
    ScaledMul.apply(f64([1.0, 2.0], requires_grad=False), b2).backward(np.ones(2))
    assert seen["needs"] == (False, True)
    np.testing.assert_allclose(b2.grad.data, [1.0, 2.0])


def test_custom_function_broadcast_gradient_is_reduced_by_the_engine():
    class AddBias(Function):
        @staticmethod
        def forward(ctx, x, b):
            return x + b

        @staticmethod
        def backward(ctx, grad):
            return grad, grad                         # full-size; the engine unbroadcasts

    x, b = f64(np.ones((4, 3))), f64(np.zeros(3))
    AddBias.apply(x, b).backward(np.arange(12.0).reshape(4, 3))
    np.testing.assert_allclose(b.grad.data, np.arange(12.0).reshape(4, 3).sum(0))


def test_custom_function_under_no_grad_records_nothing():
    class Double(Function):
        @staticmethod
        def forward(ctx, a):
            return 2 * a

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    x = f64([1.0])
    with no_grad():
        y = Double.apply(x)
    assert not y.requires_grad and y.grad_fn is None


def test_unbroadcast():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(unbroadcast(g, (4,)), g.sum((0, 1)))
    np.testing.assert_allclose(unbroadcast(g, (3, 1)), g.sum(0).sum(1, keepdims=True))
    np.testing.assert_allclose(unbroadcast(g, (1, 3, 4)), g.sum(0, keepdims=True))
    assert unbroadcast(g, ()).shape == () and unbroadcast(g, ()) == g.sum()
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4)")):
        unbroadcast(g, (5, 2, 3, 4))


# --------------------------------------------------------------------------------------------------
# dtypes, integers and comparisons; Parameters
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,dtype_name", [([1, 2, 3], "int64"), (np.array([1, 2], dtype=np.int8), "int8"),
                                             ([True, False], "bool")])
def test_requires_grad_on_non_float_tensor_raises_naming_dtype(data, dtype_name):
    with pytest.raises(ValueError, match=dtype_name):
        Tensor(data, requires_grad=True)
    t = Tensor(data)
    with pytest.raises(ValueError, match=dtype_name):
        t.requires_grad = True


def test_integer_tensors_and_comparisons_carry_no_gradient():
    i = Tensor([1, 2, 3])
    assert i.dtype.kind == "i"
    assert not (i + i).requires_grad and not (i * 2).requires_grad

    x = f64([-1.0, 0.5, 2.0])
    for mask in (x > 0, x >= 0.5, x < 1, x <= 0, x == 2.0, x != 0.5):
        assert mask.dtype == np.bool_
        assert mask.requires_grad is False and mask.grad_fn is None
    # a comparison used as a mask is a constant: the gradient is the mask itself
    y = x * (x > 0)
    y.backward(np.array([5.0, 6.0, 7.0]))
    np.testing.assert_allclose(x.grad.data, [0.0, 6.0, 7.0])
    am = x.argmax()
    assert am.requires_grad is False and am.item() == 2


def test_float32_leaf_gets_float32_grad_even_with_float64_cotangent():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    (x * 3.0).backward(np.array([1.0, 1.0], dtype=np.float64))
    assert x.grad.dtype == np.float32


def test_parameter_in_an_op_gives_plain_tensor():
    p = Parameter(np.ones((2, 2), dtype=np.float32))
    assert p.requires_grad
    for out in (p * 2.0, p + p, p @ p, p.sum(), p.T, p[0], -p, p.exp()):
        assert type(out) is Tensor, type(out)
    layer = Linear(2, 3)
    y = layer(Tensor(np.ones((1, 2), dtype=np.float32)))
    assert type(y) is Tensor
    y.sum().backward()
    assert type(layer.weight.grad) is Tensor
    assert type(layer.weight) is Parameter            # the leaf itself stays a Parameter


def test_setitem_on_tensor_requiring_grad_is_refused_outside_no_grad():
    x = f64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="in-place"):
        x[0] = 5.0
    with no_grad():
        x[0] = 5.0
    assert x.data[0] == 5.0
