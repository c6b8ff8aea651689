"""Property tests (Hypothesis): random broadcastable shapes for the arithmetic ops, random shapes /
axes / keepdims for the reductions, random matmul shapes, all against PyTorch with a random
cotangent; and tinytorch's own gradcheck (float64) on random compositions of ops."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import gradcheck, no_grad
from tinytorch.core.activations import Sigmoid, GELU, Softmax
from tinytorch.core.losses import log_softmax

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = dict(rtol=1e-6, atol=1e-8)


def _layout(a: np.ndarray, transposed: bool) -> np.ndarray:
    "Same values; with transposed=True stored with reversed strides (non-contiguous when ndim >= 2)."
    return np.ascontiguousarray(a.transpose()).transpose() if transposed and a.ndim >= 2 else a


def _compare(tt_out, th_out, tt_leaves, th_leaves, seed):
    expected = th_out.detach().numpy()
    assert tt_out.shape == tuple(expected.shape)
    assert tt_out.dtype == np.float64
    np.testing.assert_allclose(tt_out.data, expected, **TOL)
    G = np.asarray(np.random.default_rng(seed).standard_normal(expected.shape))
    tt_out.backward(G)
    th_out.backward(torch.from_numpy(G.copy()))
    for i, (t, th) in enumerate(zip(tt_leaves, th_leaves)):
        assert t.grad is not None and t.grad.shape == t.shape and t.grad.dtype == np.float64
        np.testing.assert_allclose(t.grad.data, th.grad.numpy(), err_msg=f"gradient of input {i}", **TOL)


def _pair(arrays):
    tt = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    th = [torch.tensor(np.array(a), requires_grad=True) for a in arrays]
    return tt, th


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       op=st.sampled_from(sorted(BINARY)), transposed=st.tuples(st.booleans(), st.booleans()),
       seed=st.integers(0, 2**31 - 1))
def test_binary_ops_random_broadcast_shapes(shapes, op, transposed, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.standard_normal(sa)
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb) if op == "div" else rng.standard_normal(sb)
    tt, th = _pair([_layout(a, transposed[0]), _layout(b, transposed[1])])
    out = BINARY[op](*tt)
    assert out.shape == shapes.result_shape
    _compare(out, BINARY[op](*th), tt, th, seed)


def _axis_strategy(ndim):
    dims = list(range(ndim))
    signed = st.sampled_from(dims).flatmap(lambda d: st.sampled_from([d, d - ndim]))
    as_tuple = st.lists(st.sampled_from(dims), min_size=1, max_size=ndim, unique=True).flatmap(
        lambda ds: st.tuples(*[st.sampled_from([d, d - ndim]) for d in ds]))
    return st.one_of(st.none(), signed, as_tuple)


@st.composite
def reduction_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    return shape, draw(_axis_strategy(len(shape))), draw(st.booleans())


@SETTINGS
@given(case=reduction_case(), op=st.sampled_from(["sum", "mean", "max", "min"]), transposed=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_reductions_random_axis_keepdims(case, op, transposed, seed):
    shape, axis, keepdims = case
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    x = rng.permutation(np.arange(n) + rng.uniform(0, 0.5, n)).reshape(shape)      # no ties
    tt, th = _pair([_layout(x, transposed)])
    out = getattr(tt[0], op)(axis=axis, keepdims=keepdims)
    if op in ("sum", "mean"):
        ref = getattr(torch, op)(th[0], dim=axis, keepdim=keepdims)
    else:
        dim = tuple(range(len(shape))) if axis is None else axis
        ref = (torch.amax if op == "max" else torch.amin)(th[0], dim=dim, keepdim=keepdims)
    _compare(out, ref, tt, th, seed)


@st.composite
def matmul_case(draw):
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    left_1d, right_1d = draw(st.booleans()), draw(st.booleans())
    sa = (k,) if left_1d else batch.input_shapes[0] + (m, k)
    sb = (k,) if right_1d else batch.input_shapes[1] + (k, n)
    return sa, sb


@SETTINGS
@given(shapes=matmul_case(), transposed=st.tuples(st.booleans(), st.booleans()), seed=st.integers(0, 2**31 - 1))
def test_matmul_random_shapes(shapes, transposed, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    tt, th = _pair([_layout(a, transposed[0]), _layout(b, transposed[1])])
    _compare(tt[0] @ tt[1], th[0] @ th[1], tt, th, seed)


# ------------------------------------------------------------------------------------------------
# gradcheck on random compositions
# ------------------------------------------------------------------------------------------------
UNARY_STEPS = [
    ("exp_of_tanh", lambda t: t.tanh().exp()),
    ("square", lambda t: t * t),
    ("cube_pow", lambda t: t ** 3),
    ("sigmoid", lambda t: Sigmoid()(t)),
    ("gelu_tanh", lambda t: GELU(approximate="tanh")(t)),
    ("gelu", lambda t: GELU()(t)),
    ("softmax_last", lambda t: Softmax(dim=-1)(t)),
    ("softmax_first", lambda t: Softmax(dim=0)(t)),
    ("log_softmax", lambda t: log_softmax(t, dim=-1)),
    ("sqrt_softplus", lambda t: (t.exp() + 1.0).log().sqrt()),
    ("abs_plus", lambda t: (t * 3.0 + 0.5).abs()),
    ("transpose", lambda t: t.T),
    ("flip", lambda t: t[::-1]),
    ("center_rows", lambda t: t - t.mean(axis=-1, keepdims=True)),
    ("scale_by_max", lambda t: t / (t.max(axis=0, keepdims=True).abs() + 1.0)),
    ("self_matmul", lambda t: t @ t.T),
    ("div_rpow", lambda t: 2.0 ** t / (1.0 + t * t)),
    ("gather_repeat", lambda t: t[[0, 0, -1]]),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=4),
       steps=st.lists(st.sampled_from(range(len(UNARY_STEPS))), min_size=1, max_size=4),
       seed=st.integers(0, 2**31 - 1))
def test_gradcheck_random_compositions(shape, steps, seed):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.uniform(-1.5, 1.5, shape), requires_grad=True, dtype=np.float64)
    w = Tensor(rng.uniform(-1.0, 1.0, shape[-1]), requires_grad=True, dtype=np.float64)

    def fn(x, w):
        y = x * w                       # broadcast second input
        for i in steps:
            y = UNARY_STEPS[i][1](y)
        return y

    # iterated powers / exponentials can overflow: central differences on inf are meaningless
    with no_grad():
        value = fn(x, w).data
    assume(np.all(np.isfinite(value)) and np.abs(value).max() < 1e6)
    # (the abs kink and max ties have probability zero for these random inputs)
    assert gradcheck(fn, [x, w], eps=1e-6, atol=1e-5, rtol=1e-4, seed=seed % 1000)


@settings(max_examples=30, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(["add", "sub", "mul", "div", "pow"]), seed=st.integers(0, 2**31 - 1))
def test_gradcheck_binary_broadcast(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a = Tensor(rng.uniform(0.5, 2.0, shapes.input_shapes[0]), requires_grad=True, dtype=np.float64)
    b = Tensor(rng.uniform(0.5, 2.0, shapes.input_shapes[1]), requires_grad=True, dtype=np.float64)
    f = dict(BINARY, pow=lambda p, q: p ** q)[op]
    assert gradcheck(f, [a, b])
