"""Every differentiable op of modules 01-05 against PyTorch: forward values and the gradient of
every input, under a random cotangent (out.backward(G) with G random, never a plain sum, which
would give every output the same weight and hide permutation mistakes).

Each case runs in float64 (rtol 1e-6, atol 1e-8) and in float32 (1e-5), and checks that every
gradient -- the leaf's `.grad` and the gradient flowing between ops -- keeps the input's dtype.
Broadcast operands and non-contiguous inputs (transposed / strided NumPy views fed as data) are
included.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import Function
from tinytorch.core.activations import ReLU, Sigmoid, Tanh, GELU, Softmax
from tinytorch.core.layers import Linear, Parameter
from tinytorch.core.losses import MSELoss, CrossEntropyLoss, BinaryCrossEntropyLoss, log_softmax

DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float64): dict(rtol=1e-6, atol=1e-8),
       np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5)}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
_PROBE_LOG = []


class Probe(Function):
    """Identity op placed between each leaf and the op under test: it records the gradient that
    the op under test sends back (its shape and dtype), so a float32 graph that silently computes
    its gradients in float64 (or the other way round) is caught, not only the final `.grad`."""

    @staticmethod
    def forward(ctx, a):
        ctx.in_shape, ctx.in_dtype = a.shape, a.dtype
        return a

    @staticmethod
    def backward(ctx, grad):
        g = np.asarray(grad)
        _PROBE_LOG.append((ctx.in_shape, ctx.in_dtype, g.shape, g.dtype))
        return grad


def noncontig(a: np.ndarray) -> np.ndarray:
    "The same values as `a`, stored as a non-C-contiguous view (reversed strides, or a stride of 2)."
    a = np.asarray(a)
    if a.ndim == 1:
        buf = np.zeros(2 * a.shape[0], dtype=a.dtype)
        buf[::2] = a
        v = buf[::2]
    else:
        v = np.ascontiguousarray(a.transpose()).transpose()
    assert not v.flags.c_contiguous, "noncontig() needs a shape with at least two sides > 1 or 1-D"
    np.testing.assert_array_equal(v, a)
    return v


def distinct(rng, shape, lo=-2.0, hi=2.0):
    "Random values with no ties (a shuffled grid plus small noise), for max/min comparisons."
    n = int(np.prod(shape)) if shape else 1
    grid = np.linspace(lo, hi, n) + rng.uniform(-0.1, 0.1, n) * (hi - lo) / max(n, 1)
    return rng.permutation(grid).reshape(shape)


def away_from_zero(rng, shape, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def check(tt_fn, th_fn, *arrays, dtype=np.float64, seed=0, tol=None, expect_noncontig=None):
    """Run tt_fn on tinytorch Tensors and th_fn on torch tensors made from `arrays` (all inputs
    require grad), compare the outputs, backpropagate the same random cotangent through both and
    compare every input's gradient. Returns (tinytorch output, leaves)."""
    dtype = np.dtype(dtype)
    tol = tol or TOL[dtype]
    rng = np.random.default_rng(seed + 12345)

    # keep the non-contiguous layout when converting to the dtype under test
    arrays = [noncontig(np.asarray(a, dtype=dtype)) if i in (expect_noncontig or ()) and a.dtype != dtype else a
              for i, a in enumerate(arrays)]
    leaves = [Tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
    for i in (expect_noncontig or ()):
        assert not leaves[i].data.flags.c_contiguous, "test setup: input should be non-contiguous"
    _PROBE_LOG.clear()
    out = tt_fn(*[Probe.apply(t) for t in leaves])

    th_leaves = [torch.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]
    th_out = th_fn(*th_leaves)
    expected = th_out.detach().numpy()

    assert isinstance(out, Tensor)
    assert out.shape == tuple(expected.shape), f"forward shape {out.shape} vs torch {tuple(expected.shape)}"
    assert out.dtype == dtype, f"forward dtype {out.dtype}, expected {dtype}"
    np.testing.assert_allclose(out.data, expected, err_msg="forward value", **tol)

    G = np.asarray(rng.standard_normal(expected.shape), dtype=dtype)
    out.backward(G)
    th_out.backward(torch.from_numpy(G.copy()))

    for i, (t, th) in enumerate(zip(leaves, th_leaves)):
        assert t.grad is not None, f"input {i} got no gradient"
        assert type(t.grad) is Tensor
        assert t.grad.shape == t.shape, f"grad of input {i} has shape {t.grad.shape}, input {t.shape}"
        assert t.grad.dtype == dtype, f"grad of input {i} has dtype {t.grad.dtype}, expected {dtype}"
        np.testing.assert_allclose(t.grad.data, th.grad.numpy(), err_msg=f"gradient of input {i}", **tol)

    assert len(_PROBE_LOG) == len(leaves), "every input should receive exactly one gradient"
    for in_shape, in_dtype, g_shape, g_dtype in _PROBE_LOG:
        assert g_shape == in_shape, f"gradient sent back has shape {g_shape}, input has {in_shape}"
        assert g_dtype == in_dtype, f"gradient sent back has dtype {g_dtype}, input has {in_dtype}"
    return out, leaves


def R(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------------
# elementwise arithmetic, with broadcasting and non-contiguous inputs
# --------------------------------------------------------------------------------------------------
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5,), ()), ((), (5,)),
                    ((2, 1, 4), (3, 1)), ((1,), (2, 3))]

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_broadcast(op, shapes, dtype):
    rng = R(1)
    a = rng.standard_normal(shapes[0])
    b = away_from_zero(rng, shapes[1]) if op == "div" else rng.standard_normal(shapes[1])
    check(*BINARY[op], a, b, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_noncontiguous(op, dtype):
    rng = R(2)
    a = noncontig(rng.standard_normal((4, 3)))
    b = noncontig(away_from_zero(rng, (4, 3)))
    check(*BINARY[op], a, b, dtype=dtype, expect_noncontig=[0, 1])
    c = noncontig(away_from_zero(rng, (3,)))                   # strided 1-D, broadcast against (4, 3)
    check(*BINARY[op], a, c, dtype=dtype, expect_noncontig=[0, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,tt,th", [
    ("x+scalar", lambda x: x + 1.5, lambda x: x + 1.5),
    ("scalar+x", lambda x: 1.5 + x, lambda x: 1.5 + x),
    ("x-scalar", lambda x: x - 2.0, lambda x: x - 2.0),
    ("scalar-x", lambda x: 2.0 - x, lambda x: 2.0 - x),
    ("x*scalar", lambda x: x * -3.0, lambda x: x * -3.0),
    ("scalar*x", lambda x: 3 * x, lambda x: 3 * x),
    ("x/scalar", lambda x: x / 4.0, lambda x: x / 4.0),
    ("scalar/x", lambda x: 2.0 / x, lambda x: 2.0 / x),
    ("neg", lambda x: -x, lambda x: -x),
], ids=lambda v: v if isinstance(v, str) else "")
def test_scalar_operands_and_neg(name, tt, th, dtype):
    check(tt, th, away_from_zero(R(3), (3, 4)), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,positive", [(2, False), (3, False), (0.5, True), (-1.5, True), (1, False),
                                        (0, False), (-2, False)])
def test_pow_scalar(p, positive, dtype):
    x = np.abs(away_from_zero(R(4), (3, 4))) if positive else away_from_zero(R(4), (3, 4))
    check(lambda t: t ** p, lambda t: t ** p, x, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5,), ())], ids=str)
def test_pow_tensor(shapes, dtype):
    rng = R(5)
    base = rng.uniform(0.5, 2.0, shapes[0])
    expo = rng.standard_normal(shapes[1])
    check(lambda a, b: a ** b, lambda a, b: a ** b, base, expo, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base", [2.0, 0.5, 3])
def test_rpow(base, dtype):
    check(lambda x: base ** x, lambda x: base ** x, R(6).standard_normal((3, 4)), dtype=dtype)


def test_pow_noncontiguous():
    rng = R(7)
    check(lambda a, b: a ** b, lambda a, b: a ** b,
          noncontig(rng.uniform(0.5, 2, (4, 3))), noncontig(rng.standard_normal((4, 3))), expect_noncontig=[0, 1])


# --------------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------------
MATMUL_SHAPES = {
    "2d": ((3, 4), (4, 5)),
    "batched": ((2, 3, 4), (2, 4, 5)),
    "1d_left": ((4,), (4, 5)),
    "1d_left_batched": ((4,), (2, 4, 5)),
    "1d_right": ((3, 4), (4,)),
    "1d_right_batched": ((2, 3, 4), (4,)),
    "1d_1d": ((4,), (4,)),
    "broadcast_batch": ((2, 1, 3, 4), (5, 4, 6)),
    "2d_times_batched": ((3, 4), (2, 4, 5)),
    "batched_times_2d": ((2, 3, 4), (4, 5)),
    "batch_of_one": ((1, 3, 4), (3, 4, 2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(MATMUL_SHAPES))
def test_matmul(case, dtype):
    sa, sb = MATMUL_SHAPES[case]
    rng = R(8)
    check(lambda a, b: a @ b, lambda a, b: a @ b, rng.standard_normal(sa), rng.standard_normal(sb), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_noncontiguous(dtype):
    rng = R(9)
    a = noncontig(rng.standard_normal((3, 4)))
    b = noncontig(rng.standard_normal((4, 5)))
    check(lambda a, b: a @ b, lambda a, b: a @ b, a, b, dtype=dtype, expect_noncontig=[0, 1])
    a3 = np.transpose(np.ascontiguousarray(rng.standard_normal((4, 2, 3))), (1, 2, 0))   # (2, 3, 4), permuted
    b3 = noncontig(rng.standard_normal((2, 4, 5)))
    check(lambda a, b: a @ b, lambda a, b: a @ b, a3, b3, dtype=dtype, expect_noncontig=[0, 1])


def test_matmul_method_and_rmatmul():
    rng = R(10)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    check(lambda x, y: x.matmul(y), lambda x, y: x.matmul(y), a, b)
    # ndarray @ Tensor goes through Tensor.__rmatmul__
    check(lambda y: a @ y, lambda y: torch.from_numpy(a) @ y, b)


# --------------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------------
AXES = [None, 0, 1, 2, -1, -3, (0, 2), (-1, 0), (0, 1, 2)]


def _torch_reduce(op, x, axis, keepdims):
    if op in ("sum", "mean"):
        return getattr(torch, op)(x, dim=axis, keepdim=keepdims)
    dim = tuple(range(x.ndim)) if axis is None else axis
    return (torch.amax if op == "max" else torch.amin)(x, dim=dim, keepdim=keepdims)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reduction(op, axis, keepdims, dtype):
    x = distinct(R(11), (3, 4, 5))
    check(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims),
          lambda t: _torch_reduce(op, t, axis, keepdims), x, dtype=dtype)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reduction_dim_keepdim_aliases_and_positional(op):
    x = distinct(R(12), (3, 4))
    check(lambda t: getattr(t, op)(dim=1, keepdim=True), lambda t: _torch_reduce(op, t, 1, True), x)
    check(lambda t: getattr(t, op)(0), lambda t: _torch_reduce(op, t, 0, False), x)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)], ids=str)
def test_reduction_noncontiguous(op, axis):
    x = noncontig(distinct(R(13), (4, 5)))
    check(lambda t: getattr(t, op)(axis=axis), lambda t: _torch_reduce(op, t, axis, False), x,
          expect_noncontig=[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["max", "min"])
def test_extremum_ties_split_gradient_evenly(op, dtype):
    # rows with 2 and 3 tied extremes; torch.amax/amin split the gradient evenly, as should tinytorch
    x = np.array([[1.0, 3.0, 3.0, 0.0],
                  [2.0, 2.0, 2.0, 1.5 if op == "max" else 2.5]])
    if op == "min":
        x = np.array([[1.0, -3.0, -3.0, 0.0], [2.0, 2.0, 2.0, 2.5]])
    out, (leaf,) = check(lambda t: getattr(t, op)(axis=1), lambda t: _torch_reduce(op, t, 1, False), x, dtype=dtype)
    G = np.asarray(np.random.default_rng(12345).standard_normal(2), dtype=dtype)   # the cotangent check() used
    expected = np.zeros_like(x)
    expected[0, 1:3] = G[0] / 2
    expected[1, 0:3] = G[1] / 3
    np.testing.assert_allclose(leaf.grad.data, expected, **TOL[np.dtype(dtype)])

    # all-reduce with ties: three copies of the extreme value each get a third
    y = np.array([[5.0, 1.0], [5.0, 5.0]]) * (1 if op == "max" else -1)
    _, (leaf2,) = check(lambda t: getattr(t, op)(), lambda t: _torch_reduce(op, t, None, False), y, dtype=dtype)
    g = float(np.asarray(np.random.default_rng(12345).standard_normal(()), dtype=dtype))
    np.testing.assert_allclose(leaf2.grad.data, np.array([[g / 3, 0], [g / 3, g / 3]]), **TOL[np.dtype(dtype)])


# --------------------------------------------------------------------------------------------------
# shapes: reshape, transpose, permute, .T
# --------------------------------------------------------------------------------------------------
SHAPE_OPS = {
    "reshape_2x6": (lambda t: t.reshape(2, 6), lambda t: t.reshape(2, 6)),
    "reshape_tuple_-1": (lambda t: t.reshape((4, -1)), lambda t: t.reshape((4, -1))),
    "reshape_flat": (lambda t: t.reshape(-1), lambda t: t.reshape(-1)),
    "reshape_3d": (lambda t: t.reshape(2, 3, 2), lambda t: t.reshape(2, 3, 2)),
    "transpose_01": (lambda t: t.transpose(0, 1), lambda t: t.transpose(0, 1)),
    "transpose_neg": (lambda t: t.transpose(-1, -2), lambda t: t.transpose(-1, -2)),
    "transpose_noargs": (lambda t: t.transpose(), lambda t: t.permute(*reversed(range(t.ndim)))),
    "T": (lambda t: t.T, lambda t: t.permute(*reversed(range(t.ndim)))),
    "permute_10": (lambda t: t.permute(1, 0), lambda t: t.permute(1, 0)),
    "permute_tuple": (lambda t: t.permute((1, 0)), lambda t: t.permute((1, 0))),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncont", [False, True])
@pytest.mark.parametrize("op", list(SHAPE_OPS))
def test_shape_ops_2d(op, noncont, dtype):
    x = R(14).standard_normal((3, 4))
    if noncont:
        x = noncontig(x)
    check(*SHAPE_OPS[op], x, dtype=dtype, expect_noncontig=[0] if noncont else None)


SHAPE_OPS_3D = {
    "transpose_02": (lambda t: t.transpose(0, 2), lambda t: t.transpose(0, 2)),
    "transpose_-1_0": (lambda t: t.transpose(-1, 0), lambda t: t.transpose(-1, 0)),
    "transpose_noargs": (lambda t: t.transpose(), lambda t: t.permute(2, 1, 0)),
    "T": (lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    "permute_201": (lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    "permute_120": (lambda t: t.permute(1, 2, 0), lambda t: t.permute(1, 2, 0)),
    "permute_negative": (lambda t: t.permute(-1, 0, -2), lambda t: t.permute(-1, 0, -2)),
    "reshape_after_permute": (lambda t: t.permute(2, 0, 1).reshape(4, 6), lambda t: t.permute(2, 0, 1).reshape(4, 6)),
    "reshape_4_-1": (lambda t: t.reshape(4, -1), lambda t: t.reshape(4, -1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncont", [False, True])
@pytest.mark.parametrize("op", list(SHAPE_OPS_3D))
def test_shape_ops_3d(op, noncont, dtype):
    x = R(15).standard_normal((2, 3, 4))
    if noncont:
        x = noncontig(x)
    check(*SHAPE_OPS_3D[op], x, dtype=dtype, expect_noncontig=[0] if noncont else None)


# --------------------------------------------------------------------------------------------------
# indexing
# --------------------------------------------------------------------------------------------------
_MASK = np.array([[True, False, True, False, True],
                  [False, False, True, True, False],
                  [True, True, False, False, False],
                  [False, True, False, True, True]])

GETITEM = {
    "int": (lambda t: t[1], lambda t: t[1]),
    "negative_int": (lambda t: t[-1], lambda t: t[-1]),
    "int_pair_negative": (lambda t: t[-2, -1], lambda t: t[-2, -1]),
    "slice": (lambda t: t[1:3], lambda t: t[1:3]),
    "negative_slice": (lambda t: t[-3:-1, 1:], lambda t: t[-3:-1, 1:]),
    "step": (lambda t: t[::2, 1::2], lambda t: t[::2, 1::2]),
    "negative_step": (lambda t: t[::-1], lambda t: torch.flip(t, (0,))),
    "negative_step_cols": (lambda t: t[:, ::-2], lambda t: torch.flip(t, (1,))[:, ::2]),
    "ellipsis": (lambda t: t[..., 2], lambda t: t[..., 2]),
    "newaxis": (lambda t: t[None, 1:3], lambda t: t[None, 1:3]),
    "fancy_repeats": (lambda t: t[[0, 2, 0, 0]], lambda t: t[[0, 2, 0, 0]]),
    "fancy_pairs_repeats": (lambda t: t[[0, 1, 0, 3], [2, 2, 2, 4]], lambda t: t[[0, 1, 0, 3], [2, 2, 2, 4]]),
    "fancy_negative": (lambda t: t[[-1, 0, -1]], lambda t: t[[-1, 0, -1]]),
    "slice_and_fancy": (lambda t: t[1:, [4, 0, 4]], lambda t: t[1:, [4, 0, 4]]),
    "ndarray_index": (lambda t: t[np.array([3, 3, 1])], lambda t: t[torch.tensor([3, 3, 1])]),
    "tensor_index": (lambda t: t[Tensor(np.array([2, 0, 2]))], lambda t: t[torch.tensor([2, 0, 2])]),
    "bool_mask": (lambda t: t[_MASK], lambda t: t[torch.from_numpy(_MASK)]),
    "bool_mask_tensor": (lambda t: t[Tensor(_MASK)], lambda t: t[torch.from_numpy(_MASK)]),
    "bool_rows": (lambda t: t[np.array([True, False, True, True])],
                  lambda t: t[torch.tensor([True, False, True, True])]),
    "2d_fancy_index": (lambda t: t[np.array([[0, 1], [1, 0]])], lambda t: t[torch.tensor([[0, 1], [1, 0]])]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncont", [False, True])
@pytest.mark.parametrize("case", list(GETITEM))
def test_getitem(case, noncont, dtype):
    x = R(16).standard_normal((4, 5))
    if noncont:
        x = noncontig(x)
    check(*GETITEM[case], x, dtype=dtype, expect_noncontig=[0] if noncont else None)


def test_getitem_mask_from_comparison():
    x = R(17).standard_normal((4, 5))
    check(lambda t: t[t > 0], lambda t: t[t > 0], x)


def test_getitem_3d_mixed():
    x = R(18).standard_normal((3, 4, 5))
    check(lambda t: t[[2, 0, 2], :, 1:4], lambda t: t[[2, 0, 2], :, 1:4], x)
    check(lambda t: t[1, [0, 0, 3]], lambda t: t[1, [0, 0, 3]], x)


# --------------------------------------------------------------------------------------------------
# elementwise functions and activations
# --------------------------------------------------------------------------------------------------
UNARY = {
    "exp": (lambda t: t.exp(), torch.exp, "any"),
    "log": (lambda t: t.log(), torch.log, "positive"),
    "sqrt": (lambda t: t.sqrt(), torch.sqrt, "positive"),
    "tanh": (lambda t: t.tanh(), torch.tanh, "any"),
    "abs": (lambda t: t.abs(), torch.abs, "nonzero"),
    "builtin_abs": (lambda t: abs(t), torch.abs, "nonzero"),
    "relu": (lambda t: ReLU()(t), torch.relu, "nonzero"),
    "sigmoid": (lambda t: Sigmoid()(t), torch.sigmoid, "any"),
    "tanh_module": (lambda t: Tanh()(t), torch.tanh, "any"),
    "gelu_none": (lambda t: GELU()(t), lambda t: F.gelu(t, approximate="none"), "any"),
    "gelu_tanh": (lambda t: GELU(approximate="tanh")(t), lambda t: F.gelu(t, approximate="tanh"), "any"),
}


def _unary_input(kind, shape, seed):
    rng = R(seed)
    if kind == "positive":
        return rng.uniform(0.2, 3.0, shape)
    if kind == "nonzero":
        return away_from_zero(rng, shape, 0.1, 3.0)
    return rng.uniform(-4, 4, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncont", [False, True])
@pytest.mark.parametrize("op", list(UNARY))
def test_unary(op, noncont, dtype):
    tt, th, kind = UNARY[op]
    x = _unary_input(kind, (4, 5), 19)
    if noncont:
        x = noncontig(x)
    check(tt, th, x, dtype=dtype, expect_noncontig=[0] if noncont else None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_gelu_large_magnitudes(dtype):
    x = np.array([-60.0, -30.0, -8.0, -1e-3, 0.0, 1e-3, 8.0, 30.0, 60.0])
    check(lambda t: Sigmoid()(t), torch.sigmoid, x, dtype=dtype)
    check(lambda t: GELU(approximate="tanh")(t), lambda t: F.gelu(t, approximate="tanh"), x, dtype=dtype)
    check(lambda t: GELU()(t), lambda t: F.gelu(t), x, dtype=dtype)


def test_gelu_none_float64_is_accurate_over_a_range():
    "GELU(approximate='none') in float64 should match the exact erf formula (torch) to float64 precision."
    x = np.linspace(-6.0, 6.0, 49)
    check(lambda t: GELU()(t), lambda t: F.gelu(t), x, dtype=np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
def test_softmax_dims(dim, dtype):
    x = R(20).standard_normal((2, 3, 4)) * 3
    check(lambda t: Softmax(dim=dim)(t), lambda t: torch.softmax(t, dim=dim), x, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_log_softmax_dims(dim, dtype):
    x = R(21).standard_normal((2, 3, 4)) * 3
    check(lambda t: log_softmax(t, dim=dim), lambda t: torch.log_softmax(t, dim=dim), x, dtype=dtype)


def test_softmax_log_softmax_default_dim_noncontiguous_and_large_logits():
    x = noncontig(R(22).standard_normal((3, 5)) * 50 + 500)       # no overflow: shifted by the max
    check(lambda t: Softmax()(t), lambda t: torch.softmax(t, dim=-1), x, expect_noncontig=[0])
    check(lambda t: log_softmax(t), lambda t: torch.log_softmax(t, dim=-1), x, expect_noncontig=[0])


# --------------------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------------------
def _tt_linear(bias):
    def f(x, w, *b):
        layer = Linear(w.shape[1], w.shape[0], bias=bias)
        layer.weight = w
        if bias:
            layer.bias = b[0]
        return layer(x)
    return f


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", [(6, 4), (2, 3, 4), (4,), (2, 1, 3, 4)], ids=str)
def test_linear_inputs_as_tensors(x_shape, bias, dtype):
    rng = R(23)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal((3, 4))] + ([rng.standard_normal(3)] if bias else [])
    th = (lambda x, w, b: F.linear(x, w, b)) if bias else (lambda x, w: F.linear(x, w))
    check(_tt_linear(bias), th, *arrays, dtype=dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_noncontiguous_input_and_weight(bias):
    rng = R(24)
    arrays = [noncontig(rng.standard_normal((5, 4))), noncontig(rng.standard_normal((3, 4)))]
    arrays += [noncontig(rng.standard_normal(3))] if bias else []
    th = (lambda x, w, b: F.linear(x, w, b)) if bias else (lambda x, w: F.linear(x, w))
    check(_tt_linear(bias), th, *arrays, expect_noncontig=list(range(len(arrays))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_parameters_match_torch_linear(bias, dtype):
    "A real Linear layer with Parameter leaves: torch.nn.Linear with the same weights agrees."
    rng = R(25)
    layer = Linear(4, 3, bias=bias)
    layer.weight = Parameter(rng.standard_normal((3, 4)), dtype=dtype)
    if bias:
        layer.bias = Parameter(rng.standard_normal(3), dtype=dtype)
    ref = torch.nn.Linear(4, 3, bias=bias, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight.data))
        if bias:
            ref.bias.copy_(torch.from_numpy(layer.bias.data))
    xa = rng.standard_normal((2, 5, 4)).astype(dtype)
    x, tx = Tensor(xa, requires_grad=True, dtype=dtype), torch.tensor(xa, requires_grad=True)
    out, tout = layer(x), ref(tx)
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(out.data, tout.detach().numpy(), **tol)
    G = rng.standard_normal(out.shape).astype(dtype)
    out.backward(G)
    tout.backward(torch.from_numpy(G))
    pairs = [(x.grad, tx.grad), (layer.weight.grad, ref.weight.grad)]
    if bias:
        pairs.append((layer.bias.grad, ref.bias.grad))
    for g, tg in pairs:
        assert g.dtype == dtype
        np.testing.assert_allclose(g.data, tg.numpy(), **tol)


def test_linear_default_float32_layer_with_float32_input():
    layer = Linear(4, 3)
    x = Tensor(R(26).standard_normal((2, 4)).astype(np.float32), requires_grad=True)
    out = layer(x)
    assert out.dtype == np.float32
    out.backward(np.ones((2, 3), dtype=np.float32))
    assert layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(layer.bias.grad.data, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(x.grad.data, layer.weight.data.sum(axis=0)[None].repeat(2, 0), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)], ids=str)
def test_mse_loss(shape, dtype):
    rng = R(27)
    check(lambda p, t: MSELoss()(p, t), lambda p, t: F.mse_loss(p, t),
          rng.standard_normal(shape), rng.standard_normal(shape), dtype=dtype)


def test_mse_loss_noncontiguous():
    rng = R(28)
    check(lambda p, t: MSELoss()(p, t), lambda p, t: F.mse_loss(p, t),
          noncontig(rng.standard_normal((4, 3))), rng.standard_normal((4, 3)), expect_noncontig=[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_loss_target_as_array(dtype):
    rng = R(29)
    target = rng.standard_normal((4, 3))
    check(lambda p: MSELoss()(p, target), lambda p: F.mse_loss(p, torch.tensor(target.astype(dtype))),
          rng.standard_normal((4, 3)), dtype=dtype)


CE_CASES = {
    "plain": ((6, 4), np.array([0, 3, 1, 1, 2, 0]), {}),
    "ignore_default": ((6, 4), np.array([0, -100, 1, -100, 2, 3]), {}),
    "ignore_custom": ((6, 4), np.array([0, 2, 1, 2, 2, 3]), {"ignore_index": 2}),
    "NCL": ((3, 4, 5), np.array([[0, 1, 2, 3, 0], [3, 3, 1, -100, 2], [1, 0, 0, 2, -100]]), {}),
    "NCHW": ((2, 3, 2, 2), np.array([[[0, 1], [2, 1]], [[2, 2], [0, 1]]]), {}),
    "single_class_target_per_row": ((1, 5), np.array([4]), {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy(case, dtype):
    shape, targets, kw = CE_CASES[case]
    logits = R(30).standard_normal(shape) * 2
    check(lambda z: CrossEntropyLoss(**kw)(z, targets),
          lambda z: F.cross_entropy(z, torch.from_numpy(targets), **kw), logits, dtype=dtype)


@pytest.mark.parametrize("targets_kind", ["ndarray", "tensor", "list"])
def test_cross_entropy_target_containers_and_noncontiguous_logits(targets_kind):
    targets = np.array([2, 0, 1, 2])
    y = {"ndarray": targets, "tensor": Tensor(targets), "list": targets.tolist()}[targets_kind]
    logits = noncontig(R(31).standard_normal((4, 3)))
    check(lambda z: CrossEntropyLoss()(z, y), lambda z: F.cross_entropy(z, torch.from_numpy(targets)), logits,
          expect_noncontig=[0])


def test_cross_entropy_large_logits_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [-500.0, 500.0, 0.0]])
    targets = np.array([2, 1])
    out, _ = check(lambda z: CrossEntropyLoss()(z, targets),
                   lambda z: F.cross_entropy(z, torch.from_numpy(targets)), logits)
    assert np.isfinite(out.data)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=str)
def test_binary_cross_entropy(shape, hard, dtype):
    rng = R(32)
    p = rng.uniform(0.05, 0.95, shape)
    t = rng.integers(0, 2, shape).astype(np.float64) if hard else rng.uniform(0, 1, shape)
    check(lambda a, b: BinaryCrossEntropyLoss()(a, b), lambda a, b: F.binary_cross_entropy(a, b), p, t, dtype=dtype)


def test_binary_cross_entropy_noncontiguous_and_from_sigmoid():
    rng = R(33)
    z = noncontig(rng.standard_normal((4, 3)) * 2)
    t = rng.integers(0, 2, (4, 3)).astype(np.float64)
    check(lambda a: BinaryCrossEntropyLoss()(Sigmoid()(a), t),
          lambda a: F.binary_cross_entropy(torch.sigmoid(a), torch.from_numpy(t)), z, expect_noncontig=[0])


def test_binary_cross_entropy_saturated_probabilities_clamp_like_torch():
    "p exactly 0 or 1: torch clamps the log at -100, so the loss is finite (and so should ours be)."
    p = np.array([0.0, 1.0, 0.3, 1.0])
    t = np.array([1.0, 0.0, 1.0, 1.0])
    out = BinaryCrossEntropyLoss()(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64))
    ref = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(t))
    np.testing.assert_allclose(out.data, ref.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# a small network end to end
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_composition(dtype):
    rng = R(34)
    x = rng.standard_normal((5, 4))
    w1, b1 = rng.standard_normal((6, 4)), rng.standard_normal(6)
    w2, b2 = rng.standard_normal((3, 6)), rng.standard_normal(3)
    y = np.array([0, 2, 1, 1, 0])

    def tt(x, w1, b1, w2, b2):
        h = GELU(approximate="tanh")(_tt_linear(True)(x, w1, b1)).tanh()
        return CrossEntropyLoss()(_tt_linear(True)(h, w2, b2), y)

    def th(x, w1, b1, w2, b2):
        return F.cross_entropy(F.linear(torch.tanh(F.gelu(F.linear(x, w1, b1), approximate="tanh")), w2, b2), torch.from_numpy(y))

    check(tt, th, x, w1, b1, w2, b2, dtype=dtype)


def test_binary_cross_entropy_target_of_another_dtype_keeps_its_gradient():
    "A float64 target that requires grad, with float32 probabilities: its gradient must not be silently dropped."
    p = Tensor(np.array([0.3, 0.6], dtype=np.float32), requires_grad=True)
    t = Tensor(np.array([0.2, 0.9]), requires_grad=True, dtype=np.float64)
    BinaryCrossEntropyLoss()(p, t).backward()
    assert t.grad is not None, "the target's gradient was dropped (the graph was cut by a dtype conversion)"
    expected = (np.log(1 - p.data.astype(np.float64)) - np.log(p.data.astype(np.float64))) / 2
    np.testing.assert_allclose(t.grad.data, expected, rtol=1e-5)
