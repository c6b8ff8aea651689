"""Can I store numbers with a shape and dtype, compute with them as NumPy does, and give every op its
derivative?"""
import re

import numpy as np
import pytest

from tinytorch.core import tensor as T
from tinytorch.core.tensor import Tensor, _check_matmul, check_backward
from tinytorch.core import tensor_kit, tensor_ops as K


def test_stores_numbers_with_a_shape_and_a_dtype():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = Tensor(arr)
    assert t.shape == (2, 3) and t.ndim == 2 and t.size() == (2, 3) and t.numel() == 6 and t.dtype == np.float32
    assert t.data is arr                                    # the array itself, not a copy
    arr[0, 0] = 9.0
    assert t.data[0, 0] == 9.0                              # so in-place edits are seen
    assert Tensor([1.5, 2.5]).dtype == np.float32           # Python floats -> float32
    assert Tensor(np.zeros((2, 2))).dtype == np.float32     # float64 arrays -> float32
    assert Tensor([1, 2, 3]).dtype == np.int64              # integers stay integers
    q = Tensor([1, -2, 127], dtype=np.int8)
    assert q.dtype == np.int8 and q.data.nbytes == 3        # int8 is one real byte per element
    assert Tensor(2.5).item() == 2.5 and float(Tensor([4.0])) == 4.0
    assert Tensor(Tensor([1.0, 2.0])).data.tolist() == [1.0, 2.0]


def test_elementwise_arithmetic_broadcasts_like_numpy():
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    b = np.array([10.0, 20.0, 40.0], dtype=np.float32)
    c = np.array([[2.0], [4.0]], dtype=np.float32)
    ta, tb, tc = Tensor(a), Tensor(b), Tensor(c)
    for got, want in [(ta + tb, a + b), (ta - tc, a - c), (ta * tb, a * b), (ta / tc, a / c),
                      (tb / ta, b / a), (1 - ta, 1 - a), (ta * 2, a * 2), (2 / ta, 2 / a)]:
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got.data, want, rtol=1e-6)
    ints = Tensor([1, 2]) / Tensor([2, 4])
    assert ints.dtype == np.float32 and ints.data.tolist() == [0.5, 0.5]     # int / int -> float32
    assert (Tensor([1, 2]) + Tensor([3, 4])).data.tolist() == [4, 6]
    assert (Tensor([1, 2], dtype=np.int8) * 3).dtype == np.int8


def test_matrix_multiplication_checks_shapes():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    batch = rng.standard_normal((5, 2, 3)).astype(np.float32)
    v = rng.standard_normal(3).astype(np.float32)
    for got, want in [(Tensor(a) @ Tensor(b), a @ b), (Tensor(batch) @ Tensor(b), batch @ b),
                      (Tensor(a) @ Tensor(v), a @ v), (Tensor(v) @ Tensor(b), v @ b)]:
        assert got.shape == want.shape
        np.testing.assert_allclose(got.data, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        Tensor(a) @ Tensor(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        Tensor(v) @ Tensor(np.ones(2))
    # the shape rule itself, checked before NumPy is asked
    assert _check_matmul((5, 2, 3), (3, 4)) is None and _check_matmul((3,), (3, 4)) is None
    for bad in [((2, 3), (4, 2)), ((2, 3), (2,)), ((7, 2, 3), (2, 3))]:
        with pytest.raises(ValueError, match=re.escape(str(bad[0])) + ".*" + re.escape(str(bad[1]))):
            _check_matmul(*bad)


def test_reductions_with_axis_and_keepdims():
    m = np.array([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], dtype=np.float32)
    t = Tensor(m)
    assert t.sum().item() == 21.0
    assert t.sum(axis=0).data.tolist() == [5.0, 7.0, 9.0]
    assert t.sum(axis=1, keepdims=True).shape == (2, 1)
    assert t.sum(axis=-1, keepdims=True).data.tolist() == [[9.0], [12.0]]
    assert t.sum(axis=(0, 1)).item() == 21.0
    assert t.mean(axis=0).data.tolist() == [2.5, 3.5, 4.5]
    assert t.max(axis=1).data.tolist() == [5.0, 6.0] and t.min().item() == 1.0
    cube = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(Tensor(cube).sum(axis=(0, 2), keepdims=True).data,
                                  cube.sum(axis=(0, 2), keepdims=True))


def test_shapes_indexing_and_elementwise_functions():
    r = np.arange(12, dtype=np.float32)
    t = Tensor(r)
    assert t.reshape(3, 4).shape == (3, 4) and t.reshape(-1, 6).shape == (2, 6)
    cube = Tensor(r.reshape(2, 3, 2))
    np.testing.assert_array_equal(cube.permute(2, 0, 1).data, r.reshape(2, 3, 2).transpose(2, 0, 1))
    np.testing.assert_array_equal(cube.transpose(0, 2).data, np.swapaxes(r.reshape(2, 3, 2), 0, 2))
    assert t.reshape(3, 4).T.shape == (4, 3)
    assert t[3].item() == 3.0 and t[2:5].data.tolist() == [2.0, 3.0, 4.0]
    assert t.reshape(3, 4)[:, 1].data.tolist() == [1.0, 5.0, 9.0]
    assert t[t > 9].data.tolist() == [10.0, 11.0]
    x = np.array([0.25, 1.0, 2.0], dtype=np.float32)
    for name in ("exp", "log", "sqrt", "tanh"):
        got = getattr(Tensor(x), name)()
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got.data, getattr(np, name)(x), rtol=1e-6, err_msg=name)


def _x(*shape, positive=False, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


@pytest.mark.parametrize("op, shapes, params, positive", [
    (T.Add, [(3, 4), (4,)], {}, False), (T.Sub, [(3, 1), (1, 4)], {}, False),
    (T.Mul, [(2, 3), (3,)], {}, False), (T.Div, [(3, 4), (3, 4)], {}, True),
    (T.Neg, [(3,)], {}, False), (T.PowScalar, [(4,)], {"exponent": 3}, False),
    (T.Pow, [(4,), (4,)], {}, True), (T.MatMul, [(2, 3, 4), (4, 5)], {}, False),
    (T.MatMul, [(4,), (4, 3)], {}, False), (T.Sum, [(3, 4)], {"axis": 1}, False),
    (T.Mean, [(3, 4)], {"axis": 0, "keepdims": True}, False), (T.Max, [(3, 4)], {"axis": 1}, False),
    (T.Min, [(3, 4)], {}, False), (T.Reshape, [(3, 4)], {"shape": (4, 3)}, False),
    (T.Permute, [(2, 3, 4)], {"dims": (2, 0, 1)}, False),
    (T.GetItem, [(3, 4)], {"index": np.array([2, 0, 2])}, False),
    (T.Exp, [(3,)], {}, False), (T.Log, [(3,)], {}, True), (T.Sqrt, [(3,)], {}, True),
    (T.Tanh, [(3,)], {}, False), (T.Abs, [(3,)], {}, False),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_every_op_knows_its_derivative(op, shapes, params, positive):
    # each backward against central differences with a random cotangent, float64, no engine
    xs = [_x(*s, positive=positive, seed=i) for i, s in enumerate(shapes)]
    assert check_backward(op, *xs, **params)


_COND = np.random.default_rng(7).standard_normal((3, 4)) > 0


@pytest.mark.parametrize("op, shapes, params", [
    (K.Cat, [(3, 4), (3, 2)], {"dim": 1}), (K.Stack, [(3, 4), (3, 4)], {"dim": 2}),
    (K.Expand, [(3, 1)], {"shape": (2, 3, 4)}),
    (K.Gather, [(3, 4)], {"index": np.array([[0, 2], [1, 1], [3, 3]]), "dim": 1}),
    (K.Sin, [(3, 4)], {}), (K.Cos, [(3, 4)], {}), (K.Clamp, [(3, 4)], {"lo": -0.5, "hi": 0.5}),
    (K.Where, [(3, 4), (3, 1)], {"cond": _COND}), (K.Maximum, [(3, 4), (3, 4)], {}),
    (K.Tril, [(3, 4)], {"k": 1, "upper": True}), (K.Roll, [(3, 4)], {"shifts": (1, -2), "dims": (0, 1)}),
    (K.Pad, [(3, 4)], {"widths": ((1, 0), (2, 1)), "value": 7.0}),
    (K.Einsum, [(3, 4), (5,)], {"equation": (("ij", "k"), "i")}), (tensor_kit.Clone, [(3, 4)], {}),
    (tensor_kit.Cast, [(3, 4)], {"dtype": "float64"}),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_every_more_op_knows_its_derivative(op, shapes, params):
    # the PyTorch-kit ops of 01_tensor_ops / 01_tensor_kit: forward and backward are the student's too
    xs = [_x(*s, seed=i) for i, s in enumerate(shapes)]
    assert check_backward(op, *xs, **params)
