"""Module 01's kit ops: the `Function`s of 01_tensor_ops (Cat, Stack, Expand, Gather, Sin, Cos, Clamp,
Where, Maximum, Tril, Roll, Pad, Einsum) and 01_tensor_kit (Cast, Clone), whose forward and backward
the student writes.

For every op: its forward against NumPy, its backward against central differences in float64 (the
chapter's `check_backward`), and the detail of its gradient that is easy to get wrong and that PyTorch
fixes (ties of maximum, inclusive clamp bounds, repeated gather indices, ...). Only NumPy and tinytorch:
this file ships with the student release, and fails while any of these forwards or backwards is a stub.
No engine (module 05 comes later): each backward is called on the context its forward filled.
"""
import numpy as np
import pytest

from tinytorch.core import tensor_ops
from tinytorch.core.tensor import check_backward
from tinytorch.core.tensor_kit import Cast, Clone
from tinytorch.core.tensor_ops import (Cat, Clamp, Cos, Einsum, Expand, Gather, Maximum, Pad, Roll, Sin,
                                       Stack, Tril, Where)

RNG = np.random.default_rng(2024)


def r(*shape):
    return RNG.standard_normal(shape)


A, B, C = r(3, 4), r(3, 4), r(3, 2)
COL, VEC, MAT = r(3, 1), r(5), r(4, 2)
INDEX = np.array([[0, 2], [1, 1], [3, 3]])               # rows 1 and 2 read one column twice
COND = A > 0

# name: (op, inputs, forward keywords, the forward NumPy computes from the same inputs)
CASES = {
    "cat": (Cat, (A, C), dict(dim=1), lambda a, c: np.concatenate([a, c], axis=1)),
    "stack": (Stack, (A, B), dict(dim=2), lambda a, b: np.stack([a, b], axis=2)),
    "expand": (Expand, (COL,), dict(shape=(2, 3, 4)), lambda c: np.broadcast_to(c, (2, 3, 4))),
    "gather": (Gather, (A,), dict(index=INDEX, dim=1), lambda a: np.take_along_axis(a, INDEX, axis=1)),
    "sin": (Sin, (A,), {}, np.sin),
    "cos": (Cos, (A,), {}, np.cos),
    "clamp": (Clamp, (A,), dict(lo=-0.5, hi=0.5), lambda a: np.clip(a, -0.5, 0.5)),
    "clamp_hi_only": (Clamp, (A,), dict(lo=None, hi=0.2), lambda a: np.minimum(a, 0.2)),
    "where": (Where, (A, B), dict(cond=COND), lambda a, b: np.where(COND, a, b)),
    "where_broadcast": (Where, (A, COL), dict(cond=COND), lambda a, c: np.where(COND, a, c)),
    "maximum": (Maximum, (A, B), {}, np.maximum),
    "tril": (Tril, (A,), dict(k=0), np.tril),
    "triu": (Tril, (A,), dict(k=1, upper=True), lambda a: np.triu(a, 1)),
    "roll": (Roll, (A,), dict(shifts=1, dims=1), lambda a: np.roll(a, 1, axis=1)),
    "roll_tuple": (Roll, (A,), dict(shifts=(1, -2), dims=(0, 1)), lambda a: np.roll(a, (1, -2), axis=(0, 1))),
    "pad": (Pad, (A,), dict(widths=((1, 0), (2, 1)), value=7.0),
            lambda a: np.pad(a, ((1, 0), (2, 1)), constant_values=7.0)),
    "einsum_matmul": (Einsum, (A, MAT), dict(equation=(("ij", "jk"), "ik")), lambda a, m: a @ m),
    "einsum_summed": (Einsum, (A, VEC), dict(equation=(("ij", "k"), "i")),
                      lambda a, v: a.sum(axis=1) * v.sum()),
    "cast": (Cast, (A,), dict(dtype=np.float32), lambda a: a.astype(np.float32)),
    "clone": (Clone, (A,), {}, lambda a: a.copy()),
}


def forward(op, *xs, **params):
    "A fresh context (every input needing a gradient) and the forward's output on it."
    ctx = op()
    ctx.needs_input_grad = (True,) * len(xs)
    return ctx, op.forward(ctx, *xs, **params)


def backward(op, ctx, grad, needs=None):
    "The backward's gradients as a tuple; `needs` overrides which inputs need one."
    if needs is not None:
        ctx.needs_input_grad = needs
    g = op.backward(ctx, grad)
    return g if isinstance(g, tuple) else (g,)


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_numpy(name):
    op, xs, params, expected = CASES[name]
    _, out = forward(op, *xs, **params)
    want = expected(*xs)
    assert np.asarray(out).shape == want.shape and np.asarray(out).dtype == want.dtype
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_central_differences(name):
    op, xs, params, _ = CASES[name]
    eps = 1e-3 if name == "cast" else 1e-6                  # float32 output: a larger step
    assert check_backward(op, *xs, eps=eps, **params)


def test_cat_backward_gives_each_input_its_piece():
    ctx, out = forward(Cat, np.zeros((2, 1)), np.zeros((2, 3)), np.zeros((2, 2)), dim=1)
    g = np.arange(12.0).reshape(2, 6)
    pieces = backward(Cat, ctx, g)
    assert [p.tolist() for p in pieces] == [g[:, :1].tolist(), g[:, 1:4].tolist(), g[:, 4:].tolist()]


def test_stack_backward_takes_slices():
    ctx, out = forward(Stack, np.zeros((2, 3)), np.zeros((2, 3)), dim=1)
    assert out.shape == (2, 2, 3)
    g = np.arange(12.0).reshape(2, 2, 3)
    ga, gb = backward(Stack, ctx, g)
    assert ga.tolist() == g[:, 0].tolist() and gb.tolist() == g[:, 1].tolist()


def test_expand_backward_sums_to_the_input_shape():
    ctx, out = forward(Expand, np.ones((3, 1)), shape=(2, 3, 4))
    (g,) = backward(Expand, ctx, np.ones((2, 3, 4)))
    assert g.shape == (3, 1) and g.ravel().tolist() == [8.0, 8.0, 8.0]


def test_gather_backward_accumulates_repeated_indices():
    ctx, out = forward(Gather, np.array([[10.0, 20.0, 30.0]]), index=np.array([[1, 1, 1, 2]]), dim=1)
    assert out.tolist() == [[20.0, 20.0, 20.0, 30.0]]
    (g,) = backward(Gather, ctx, np.array([[1.0, 2.0, 4.0, 8.0]]))
    assert g.tolist() == [[0.0, 7.0, 8.0]]                  # 1 + 2 + 4: np.add.at, not assignment


def test_gather_along_dim_0():
    a = np.arange(6.0).reshape(3, 2)
    index = np.array([[2, 0], [2, 2]])
    ctx, out = forward(Gather, a, index=index, dim=0)
    assert out.tolist() == [[4.0, 1.0], [4.0, 5.0]]
    (g,) = backward(Gather, ctx, np.ones((2, 2)))
    assert g.tolist() == [[0.0, 1.0], [0.0, 0.0], [2.0, 1.0]]


@pytest.mark.parametrize("op", [Sin, Cos])
def test_sin_cos_promote_integers_to_float32(op):
    _, out = forward(op, np.array([0, 1, 2]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, getattr(np, op.__name__.lower())(np.array([0.0, 1.0, 2.0])), rtol=1e-6)


def test_cos_backward_is_minus_sine():
    x = np.array([0.0, np.pi / 2, 1.0])
    ctx, _ = forward(Cos, x)
    (g,) = backward(Cos, ctx, np.ones(3))
    np.testing.assert_allclose(g, -np.sin(x), rtol=1e-12)


def test_clamp_passes_gradient_on_the_bounds_inclusive():
    ctx, out = forward(Clamp, np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), lo=0.0, hi=1.0)
    assert out.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    (g,) = backward(Clamp, ctx, np.full(5, 3.0))
    assert g.tolist() == [0.0, 3.0, 3.0, 3.0, 0.0]


def test_clamp_with_one_bound_passes_the_other_side():
    ctx, _ = forward(Clamp, np.array([-5.0, 0.0, 5.0]), lo=None, hi=0.0)
    (g,) = backward(Clamp, ctx, np.ones(3))
    assert g.tolist() == [1.0, 1.0, 0.0]


def test_where_returns_none_for_an_input_that_needs_no_grad():
    cond = np.array([True, False, True])
    ctx, out = forward(Where, np.array([1.0, 2.0, 3.0]), np.array([-1.0, -2.0, -3.0]), cond=cond)
    assert out.tolist() == [1.0, -2.0, 3.0]
    ga, gb = backward(Where, ctx, np.array([1.0, 2.0, 4.0]), needs=(True, False))
    assert ga.tolist() == [1.0, 0.0, 4.0] and gb is None
    ga, gb = backward(Where, ctx, np.array([1.0, 2.0, 4.0]), needs=(False, True))
    assert ga is None and gb.tolist() == [0.0, 2.0, 0.0]


def test_where_keeps_the_inputs_dtype():
    _, out = forward(Where, np.array([1, 2], dtype=np.int32), np.array([3, 4], dtype=np.int32),
                     cond=np.array([True, False]))
    assert out.dtype == np.int32 and out.tolist() == [1, 4]


def test_maximum_splits_the_gradient_at_ties():
    ctx, out = forward(Maximum, np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 4.0]))
    assert out.tolist() == [1.0, 3.0, 5.0]
    ga, gb = backward(Maximum, ctx, np.full(3, 2.0))
    assert ga.tolist() == [1.0, 0.0, 2.0] and gb.tolist() == [1.0, 2.0, 0.0]


def test_tril_backward_masks_like_the_forward():
    ctx, _ = forward(Tril, np.ones((3, 3)), k=-1)
    (g,) = backward(Tril, ctx, np.ones((3, 3)))
    assert g.tolist() == np.tril(np.ones((3, 3)), -1).tolist()
    ctx, _ = forward(Tril, np.ones((2, 3, 3)), k=1, upper=True)   # batched: the last two axes
    (g,) = backward(Tril, ctx, np.ones((2, 3, 3)))
    assert g.tolist() == np.triu(np.ones((2, 3, 3)), 1).tolist()


def test_roll_backward_rolls_back_with_tuple_shifts():
    a = np.arange(12.0).reshape(3, 4)
    ctx, out = forward(Roll, a, shifts=(1, -3), dims=(0, 1))
    (g,) = backward(Roll, ctx, out)
    assert g.tolist() == a.tolist()                          # the rolled values sent back where they came from
    (g,) = backward(Roll, ctx, a)
    assert g.tolist() == np.roll(a, (-1, 3), axis=(0, 1)).tolist()


def test_pad_backward_slices_out_the_input():
    a = np.ones((2, 3))
    ctx, out = forward(Pad, a, widths=((1, 2), (0, 1)), value=-1.0)
    assert out.shape == (5, 4) and out.sum() == 6 - 14
    g = np.arange(20.0).reshape(5, 4)
    (ga,) = backward(Pad, ctx, g)
    assert ga.shape == (2, 3) and ga.tolist() == g[1:3, 0:3].tolist()


def test_einsum_backward_broadcasts_letters_only_one_operand_has():
    a, v = np.arange(6.0).reshape(2, 3), np.array([1.0, 2.0])
    ctx, out = forward(Einsum, a, v, equation=(("ij", "k"), "i"))
    assert out.tolist() == [3.0 * 3, 12.0 * 3]
    ga, gv = backward(Einsum, ctx, np.array([1.0, 10.0]))
    assert ga.tolist() == [[3.0] * 3, [30.0] * 3] and gv.tolist() == [1.0 * 3 + 10.0 * 12] * 2
    ga.fill(0.0)                                             # a writable array, not a broadcast view


def test_einsum_backward_skips_an_operand_that_needs_no_grad():
    ctx, _ = forward(Einsum, A, MAT, equation=(("ij", "jk"), "ik"))
    ga, gm = backward(Einsum, ctx, np.ones((3, 2)), needs=(False, True))
    assert ga is None
    np.testing.assert_allclose(gm, A.T @ np.ones((3, 2)), rtol=1e-12)


def test_einsum_grad_is_one_operands_gradient():
    g = np.ones((3, 2))
    np.testing.assert_allclose(tensor_ops._einsum_grad(0, ("ij", "jk"), "ik", (A, MAT), g), g @ MAT.T, rtol=1e-12)
    np.testing.assert_allclose(tensor_ops._einsum_grad(1, ("ij", "jk"), "ik", (A, MAT), g), A.T @ g, rtol=1e-12)


@pytest.mark.parametrize("src, dst", [(np.float64, np.float32), (np.float32, np.float64), (np.float32, np.float16)])
def test_cast_backward_casts_back_to_the_input_dtype(src, dst):
    ctx, out = forward(Cast, np.array([1.5, -2.0], dtype=src), dtype=dst)
    assert out.dtype == dst and out.tolist() == [1.5, -2.0]
    (g,) = backward(Cast, ctx, np.array([0.25, 4.0], dtype=dst))
    assert g.dtype == src and g.tolist() == [0.25, 4.0]


def test_clone_is_a_copy_and_passes_the_gradient_through():
    a = np.array([1.0, 2.0])
    ctx, out = forward(Clone, a)
    out[0] = 9.0
    assert a.tolist() == [1.0, 2.0] and not np.shares_memory(a, out)
    (g,) = backward(Clone, ctx, np.array([3.0, 4.0]))
    assert g.tolist() == [3.0, 4.0]
