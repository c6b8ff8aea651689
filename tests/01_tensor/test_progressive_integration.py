"""Module 01 (Tensor): progressive integration tests.

Three sections:
  A. TestFoundation        -- module 01 is the first module; below it there is only the package itself
                              and the `Function` base class it records ops with. Both must still work.
  B. TestTensorCore        -- this module's core behaviour (SPEC section 3, first bullet).
  C. TestTensorInTheStack  -- each op's backward (written in this module) agrees with PyTorch and with
                              central differences (the chapter's `check_backward`), broadcast operands,
                              non-contiguous inputs. No engine: module 05 comes later, so every
                              backward is called directly on the context the op recorded.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

import tinytorch
from tinytorch.core import tensor as tensor_module
from tinytorch.core.tensor import (Function, GradcheckError, Tensor, _sum_to, check_backward,
                                   is_grad_enabled, set_grad_enabled)

RNG = np.random.default_rng(1234)


def _rand(*shape, positive=False):
    a = RNG.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


# ================================================================================================
# A. The foundation below this module
# ================================================================================================
class TestFoundation:
    @pytest.mark.parametrize("stmt, expected", [
        ("import tinytorch; print(tinytorch.__version__)", tinytorch.__version__),
        ("import tinytorch.core.tensor as m; print(m.Tensor([1.0, 2.0]).dtype)", "float32"),
        ("from tinytorch.core.tensor import Tensor; print((Tensor([[1.0, 2.0]]) @ Tensor([[3.0], [4.0]])).item())",
         "11.0"),
        # module 01 stands alone: importing it never loads a later chapter (05's engine is looked up
        # only when Tensor.backward is called)
        ("import tinytorch.core.tensor as t, sys; t.Tensor([1.0]) * 2; "
         "print(sorted(m for m in sys.modules if m.startswith('tinytorch.')))",
         "['tinytorch.core', 'tinytorch.core.function', 'tinytorch.core.tensor', 'tinytorch.core.tensor_math', "
         "'tinytorch.core.tensor_methods']"),   # 01's own parts 0, 1 and 4
        # part 0 (Function, grad mode, the checker) needs nothing else of the package
        ("import tinytorch.core.function as f, sys; print(sorted(m for m in sys.modules if m.startswith('tinytorch.')))",
         "['tinytorch.core', 'tinytorch.core.function']"),
    ])
    def test_imports_alone_in_a_fresh_interpreter(self, stmt, expected):
        proc = subprocess.run([sys.executable, "-c", stmt], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == expected

    def test_parts_0_and_1_are_re_exported_by_the_tensor_module(self):
        from tinytorch.core import function, tensor_math
        for name in ("Function", "GradcheckError", "check_backward", "numerical_gradient", "compare_gradients",
                     "is_grad_enabled", "set_grad_enabled", "_sum_to", "_grad_mode"):
            assert getattr(tensor_module, name) is getattr(function, name), name
        for name in ("Exp", "Log", "Sqrt", "Tanh", "Abs", "_floating"):
            assert getattr(tensor_module, name) is getattr(tensor_math, name), name
        assert {"Function", "check_backward", "set_grad_enabled", "Exp", "Abs"} <= set(tensor_module.__all__)

    def test_every_op_is_a_function_subclass(self):
        for name in ["Add", "Sub", "Mul", "Div", "Neg", "PowScalar", "Pow", "MatMul", "Sum", "Mean",
                     "Max", "Min", "Reshape", "Permute", "GetItem", "Exp", "Log", "Sqrt", "Tanh", "Abs"]:
            op = getattr(tensor_module, name)
            assert issubclass(op, Function), name

    def test_ops_are_recorded_only_when_a_gradient_is_wanted(self):
        a = Tensor([1.0, 2.0])
        w = Tensor([3.0, 4.0], requires_grad=True)
        assert (a * 2).grad_fn is None and not (a * 2).requires_grad
        y = a * w
        assert y.requires_grad and y.grad_fn is not None and not y.is_leaf
        assert "Mul" in repr(y.grad_fn)
        with set_grad_enabled(False):
            z = a * w
            assert not is_grad_enabled()
        assert is_grad_enabled()
        assert not z.requires_grad and z.grad_fn is None and z.is_leaf

    def test_a_plain_tensor_has_no_dict(self):
        with pytest.raises(AttributeError):
            Tensor([1.0]).anything = 1

    def test_check_backward_catches_a_wrong_backward(self):
        class Square(Function):
            @staticmethod
            def forward(ctx, a):
                ctx.save_for_backward(a)
                return a * a

            @staticmethod
            def backward(ctx, grad):
                (a,) = ctx.saved_tensors
                return grad * a                         # missing factor 2

        class Flip(Function):                           # right values, wrong positions
            @staticmethod
            def forward(ctx, a):
                return a.T

            @staticmethod
            def backward(ctx, grad):
                return grad.reshape(grad.shape[::-1])

        x = _rand(3, 2)
        with pytest.raises(GradcheckError, match="input 0"):
            check_backward(Square, x)
        with pytest.raises(GradcheckError):
            check_backward(Flip, x)


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestConstructionAndDtypes:
    @pytest.mark.parametrize("data", [
        2.5, [1.0, 2.0], [[1.5], [2.5]], np.zeros((2, 3)), np.ones(4, dtype=np.float32),
        np.float64(3.0), np.ones(2, dtype=np.float16),
    ])
    def test_floats_default_to_float32(self, data):
        t = Tensor(data)
        assert t.dtype == np.float32
        assert t.data.dtype == np.float32
        np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float32))

    @pytest.mark.parametrize("data, dtype", [
        ([1, 2, 3], np.int64), (7, np.int64), (np.arange(3, dtype=np.int32), np.int32),
        (np.arange(3, dtype=np.uint8), np.uint8), ([True, False], np.bool_),
    ])
    def test_integer_and_bool_data_keep_their_dtype(self, data, dtype):
        t = Tensor(data)
        assert t.dtype == dtype
        assert t.dtype.kind in "iub"

    @pytest.mark.parametrize("dtype, itemsize", [(np.int8, 1), (np.int16, 2), (np.float64, 8),
                                                 (np.float32, 4), (np.uint8, 1)])
    def test_dtype_argument_is_real_storage(self, dtype, itemsize):
        t = Tensor([1, -2, 100, 3] if dtype != np.uint8 else [1, 2, 100, 3], dtype=dtype)
        assert t.dtype == dtype and t.data.dtype == dtype
        assert t.data.nbytes == 4 * itemsize
        assert t.data.itemsize == itemsize

    def test_int8_arithmetic_stays_int8(self):
        q = Tensor([1, -2, 127], dtype=np.int8)
        assert q.data.nbytes == 3
        assert (q + 1).dtype == np.int8
        assert (q * q).dtype == np.int8
        assert (q - Tensor([1, 1, 1], dtype=np.int8)).data.tolist() == [0, -3, 126]

    def test_data_is_the_array_itself_and_in_place_edits_are_seen(self):
        arr = np.ones((2, 3), dtype=np.float32)
        t = Tensor(arr)
        assert t.data is arr
        assert t.numpy() is arr
        arr[0, 0] = 7.0
        assert t.data[0, 0] == 7.0
        assert (t * 2).data[0, 0] == 14.0           # ops see the edit, nothing was cached
        t.data[1, 2] = -1.0
        assert arr[1, 2] == -1.0
        t.data += 1                                   # in place through .data
        assert arr[0, 0] == 8.0 and t.sum().item() == pytest.approx(8 + 2 * 4 + 0)

    def test_tensor_from_tensor_shares_storage(self):
        a = Tensor([1.0, 2.0])
        b = Tensor(a)
        assert np.shares_memory(a.data, b.data)

    def test_properties(self):
        t = Tensor(np.arange(24.0).reshape(2, 3, 4))
        assert t.shape == (2, 3, 4) and t.ndim == 3 and t.size() == (2, 3, 4) and t.numel() == 24 and len(t) == 2
        assert t.T.shape == (4, 3, 2)
        assert t.grad is None and not t.requires_grad and t.is_leaf
        assert Tensor([3.5]).item() == 3.5 and isinstance(Tensor([3.5]).item(), float)
        assert float(Tensor(2.0)) == 2.0 and int(Tensor([4])) == 4
        with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
            t.item()

    def test_only_float_tensors_can_require_grad(self):
        with pytest.raises(ValueError, match="int64"):
            Tensor([1, 2], requires_grad=True)
        assert Tensor([1.0], requires_grad=True).requires_grad

    def test_detach_shares_storage_and_cuts_the_graph(self):
        x = Tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        d = y.detach()
        assert np.shares_memory(d.data, y.data)
        assert not d.requires_grad and d.grad_fn is None

    def test_non_numeric_data_is_rejected(self):
        with pytest.raises(TypeError, match="str|<U"):
            Tensor(["a", "b"])


class TestArithmeticAndBroadcasting:
    SHAPES = [((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((5,), ()), ((), (2, 2)),
              ((2, 1, 3), (4, 1))]

    @pytest.mark.parametrize("sa, sb", SHAPES)
    @pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
    def test_binary_ops_match_numpy_with_broadcasting(self, sa, sb, op):
        a = _rand(*sa).astype(np.float32)
        b = (_rand(*sb, positive=True)).astype(np.float32)
        fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
              "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
        out = fn(Tensor(a), Tensor(b))
        ref = fn(a, b)
        assert out.shape == ref.shape
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.data, ref, rtol=1e-6)

    def test_scalars_and_arrays_on_either_side(self):
        a = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        assert (a + 1).data.tolist() == [[2, 3, 4], [5, 6, 7]]
        assert (1 - a).data.tolist() == [[0, -1, -2], [-3, -4, -5]]
        assert (2 * a).data[1, 2] == 12 and (a * 2.0).dtype == np.float32
        assert (a / 2).data[0, 1] == 1.0 and (12 / a).data[1, 1] == pytest.approx(2.4)
        assert (-a).data[0, 0] == -1
        assert (a ** 2).data[1, 0] == 16 and (2 ** Tensor([3.0])).item() == 8
        left = np.array([10.0, 20.0, 30.0]) + a       # ndarray on the left defers to Tensor
        assert isinstance(left, Tensor) and left.data.tolist() == [[11, 22, 33], [14, 25, 36]]
        assert isinstance(np.ones(3) * a, Tensor)

    def test_result_dtypes_follow_pytorch(self):
        assert (Tensor([1, 2]) / Tensor([2, 4])).dtype == np.float32          # int / int -> float32
        assert (Tensor([1, 2]) / Tensor([2, 4])).data.tolist() == [0.5, 0.5]
        assert (Tensor([1, 2]) + Tensor([1, 2])).dtype == np.int64
        assert (Tensor([1, 2]) * 1.5).dtype == np.float32
        assert (Tensor([1, 2]) * Tensor([1.5, 2.0])).dtype == np.float32       # NumPy would say float64
        f64 = Tensor([1.0], dtype=np.float64)
        assert (f64 + 1.0).dtype == np.float64 and (f64 * Tensor([2.0])).dtype == np.float64

    def test_incompatible_shapes_raise(self):
        with pytest.raises(ValueError, match="broadcast"):
            Tensor(np.ones((2, 3))) + Tensor(np.ones((4,)))

    def test_comparisons_give_boolean_tensors(self):
        a = Tensor([1.0, 5.0, 3.0])
        assert (a > 2).dtype == np.bool_ and (a > 2).data.tolist() == [False, True, True]
        assert (a == Tensor([1.0, 0.0, 3.0])).data.tolist() == [True, False, True]
        assert (a <= 3).data.tolist() == [True, False, True]


class TestMatmul:
    @pytest.mark.parametrize("sa, sb", [((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((2, 1, 3, 4), (5, 4, 2)),
                                        ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((4, 2, 3), (3,))])
    def test_matches_numpy(self, sa, sb):
        a, b = _rand(*sa).astype(np.float32), _rand(*sb).astype(np.float32)
        out = Tensor(a) @ Tensor(b)
        ref = a @ b
        assert out.shape == np.shape(ref) and out.dtype == np.float32
        np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(Tensor(a).matmul(Tensor(b)).data, ref, rtol=1e-5, atol=1e-6)

    def test_integer_matmul_stays_integer(self):
        out = Tensor([[1, 2], [3, 4]]) @ Tensor([[1], [1]])
        assert out.dtype.kind == "i" and out.data.tolist() == [[3], [7]]

    @pytest.mark.parametrize("sa, sb", [((2, 3), (4, 2)), ((3,), (4,)), ((5, 2, 3), (2, 3))])
    def test_mismatch_names_both_shapes(self, sa, sb):
        with pytest.raises(ValueError, match="matmul") as info:
            Tensor(np.ones(sa)) @ Tensor(np.ones(sb))
        assert str(sa) in str(info.value) and str(sb) in str(info.value)

    def test_zero_dimensional_operand_is_rejected(self):
        with pytest.raises(ValueError, match=r"\(\)"):
            Tensor(2.0) @ Tensor(np.ones((2, 2)))


class TestReductions:
    @pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), [0, 1]])
    @pytest.mark.parametrize("keepdims", [False, True])
    @pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
    def test_match_numpy(self, name, axis, keepdims):
        a = _rand(2, 3, 4).astype(np.float32)
        out = getattr(Tensor(a), name)(axis=axis, keepdims=keepdims)
        np_axis = tuple(axis) if isinstance(axis, list) else axis
        ref = getattr(np, name)(a, axis=np_axis, keepdims=keepdims)
        assert out.shape == np.shape(ref)
        np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)

    def test_pytorch_spelling(self):
        m = Tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
        assert m.sum(dim=1, keepdim=True).shape == (2, 1)
        assert m.sum(dim=0).data.tolist() == [5, 7, 9]
        assert m.max(dim=1).data.tolist() == [5, 6]
        assert m.argmax(axis=1).data.tolist() == [1, 2] and m.argmin().item() == 0
        with pytest.raises(TypeError, match="axis= or dim="):
            m.sum(axis=0, dim=0)

    def test_integer_reductions(self):
        q = Tensor([100, 100, 100], dtype=np.int8)
        assert q.sum().item() == 300                 # accumulates in a wider integer, no wrap-around
        assert Tensor([1, 2]).mean().dtype == np.float32 and Tensor([1, 2]).mean().item() == 1.5

    def test_empty_max_is_an_error(self):
        with pytest.raises(ValueError, match=r"empty.*\(0,\)"):
            Tensor(np.zeros(0)).max()


class TestShapesAndIndexing:
    def test_reshape(self):
        a = np.arange(12.0, dtype=np.float32)
        r = Tensor(a)
        for shape in [(3, 4), (-1, 6), (2, 2, 3), (12,)]:
            np.testing.assert_array_equal(r.reshape(*shape).data, a.reshape(shape))
        assert r.reshape((2, 6)).shape == (2, 6) and r.view(4, 3).shape == (4, 3)
        with pytest.raises(ValueError, match=r"\(12,\).*\(5, 3\)"):
            r.reshape(5, 3)

    def test_transpose_permute_and_T(self):
        a = _rand(2, 3, 4).astype(np.float32)
        t = Tensor(a)
        np.testing.assert_array_equal(t.permute(2, 0, 1).data, a.transpose(2, 0, 1))
        np.testing.assert_array_equal(t.permute((1, 2, 0)).data, a.transpose(1, 2, 0))
        np.testing.assert_array_equal(t.transpose(0, 2).data, np.swapaxes(a, 0, 2))
        np.testing.assert_array_equal(t.transpose(-1, -2).data, np.swapaxes(a, -1, -2))
        np.testing.assert_array_equal(t.transpose().data, a.transpose())
        np.testing.assert_array_equal(t.T.data, a.T)
        m = Tensor(a[0])
        np.testing.assert_array_equal(m.T.data, a[0].T)
        with pytest.raises(ValueError, match="permutation"):
            t.permute(0, 0, 1)

    def test_flatten_unsqueeze_squeeze(self):
        t = Tensor(np.zeros((2, 1, 3)))
        assert t.flatten().shape == (6,) and t.flatten(1).shape == (2, 3)
        assert t.unsqueeze(0).shape == (1, 2, 1, 3) and t.unsqueeze(-1).shape == (2, 1, 3, 1)
        assert t.squeeze().shape == (2, 3) and t.squeeze(1).shape == (2, 3) and t.squeeze(0).shape == (2, 1, 3)

    def test_squeeze_of_a_scalar(self):
        # torch.tensor(1.).squeeze() and .squeeze(0) both return the 0-d tensor unchanged
        s = Tensor(1.5)
        assert s.squeeze().shape == () and s.squeeze(0).shape == () and s.squeeze(-1).item() == 1.5

    @pytest.mark.parametrize("index", [
        2, -1, slice(1, 5), slice(None, None, -2), (1, slice(None)), (slice(None), 2),
        (Ellipsis, 1), (None, 0), np.array([0, 0, 2]), np.array([True, False, True]),
        (np.array([0, 2]), np.array([1, 3])),
    ])
    def test_indexing_matches_numpy(self, index):
        a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
        np.testing.assert_array_equal(Tensor(a)[index].data, a[index])

    def test_out_of_range_index_raises(self):
        with pytest.raises(IndexError, match="3"):
            Tensor(np.zeros((3, 4)))[3]

    def test_indexing_with_tensors(self):
        r = Tensor(np.arange(12.0))
        assert r[r > 9].data.tolist() == [10, 11]
        assert r[Tensor([1, 1, 4])].data.tolist() == [1, 1, 4]

    def test_setitem_writes_into_storage(self):
        t = Tensor(np.zeros((2, 3)))
        t[0, 1] = 5.0
        t[1] = Tensor([1.0, 2.0, 3.0])
        assert t.data.tolist() == [[0, 5, 0], [1, 2, 3]]
        w = Tensor([1.0], requires_grad=True)
        with pytest.raises(RuntimeError, match="no_grad"):
            w[0] = 2.0


class TestElementwiseFunctions:
    @pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "abs"])
    def test_match_numpy_and_keep_float32(self, name):
        a = _rand(3, 4, positive=name in ("log", "sqrt")).astype(np.float32)
        out = getattr(Tensor(a), name)()
        np.testing.assert_allclose(out.data, getattr(np, name)(a), rtol=1e-6)
        assert out.dtype == np.float32

    def test_known_values(self):
        e = Tensor([0.0, 1.0])
        np.testing.assert_allclose(e.exp().data, [1, np.e], rtol=1e-6)
        assert Tensor([np.e]).log().item() == pytest.approx(1.0)
        assert Tensor([4.0]).sqrt().item() == 2.0
        assert Tensor([0.0]).tanh().item() == 0.0 and Tensor([30.0]).tanh().item() == 1.0


# ================================================================================================
# C. The ops wired into the stack: backward of every op agrees with PyTorch
# ================================================================================================
OPS = {
    # name: (tinytorch fn, torch fn, input shapes, positive inputs)
    "add broadcast": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)], False),
    "sub broadcast": (lambda a, b: a - b, lambda a, b: a - b, [(3, 1), (1, 4)], False),
    "mul broadcast": (lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (3, 1)], False),
    "div broadcast": (lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (1, 4)], True),
    "neg": (lambda a: -a, lambda a: -a, [(3,)], False),
    "pow scalar": (lambda a: a ** 3, lambda a: a ** 3, [(5,)], False),
    "pow half": (lambda a: a ** 0.5, lambda a: a ** 0.5, [(5,)], True),
    "pow tensor": (lambda a, b: a ** b, lambda a, b: a ** b, [(4,), (4,)], True),
    "rpow": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(4,)], False),
    "square by self": (lambda a: a * a, lambda a: a * a, [(3, 2)], False),
    "matmul 2d": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4, 2)], False),
    "matmul batched broadcast": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], False),
    "matmul vector-matrix": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4, 3)], False),
    "matmul matrix-vector": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4,)], False),
    "matmul batch-vector": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4,)], False),
    "matmul dot product": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4,)], False),
    "sum all": (lambda a: a.sum(), lambda a: a.sum(), [(3, 4)], False),
    "sum axis": (lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), [(3, 4)], False),
    "sum axes keepdims": (lambda a: a.sum(axis=(0, 2), keepdims=True),
                          lambda a: a.sum(dim=(0, 2), keepdim=True), [(2, 3, 4)], False),
    "mean axis": (lambda a: a.mean(axis=-1), lambda a: a.mean(dim=-1), [(3, 4)], False),
    "mean all": (lambda a: a.mean(), lambda a: a.mean(), [(3, 4)], False),
    "max axis": (lambda a: a.max(axis=1), lambda a: torch.amax(a, dim=1), [(3, 4)], False),
    "max keepdims": (lambda a: a.max(axis=0, keepdims=True), lambda a: torch.amax(a, dim=0, keepdim=True),
                     [(3, 4)], False),
    "min all": (lambda a: a.min(), lambda a: torch.amin(a), [(3, 4)], False),
    "reshape": (lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [(3, 4)], False),
    "permute": (lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), [(2, 3, 4)], False),
    "transpose": (lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2), [(2, 3, 4)], False),
    "T": (lambda a: a.T, lambda a: a.T, [(3, 4)], False),
    "getitem slices": (lambda a: a[1:, ::2], lambda a: a[1:, ::2], [(3, 4)], False),
    "getitem repeated rows": (lambda a: a[np.array([0, 2, 0])], lambda a: a[torch.tensor([0, 2, 0])],
                              [(3, 4)], False),
    "getitem mask": (lambda a: a[np.array([True, False, True])], lambda a: a[torch.tensor([True, False, True])],
                     [(3, 4)], False),
    "getitem none ellipsis": (lambda a: a[None, ..., 1], lambda a: a[None, ..., 1], [(3, 4)], False),
    "exp": (lambda a: a.exp(), lambda a: a.exp(), [(3, 4)], False),
    "log": (lambda a: a.log(), lambda a: a.log(), [(3, 4)], True),
    "sqrt": (lambda a: a.sqrt(), lambda a: a.sqrt(), [(3, 4)], True),
    "tanh": (lambda a: a.tanh(), lambda a: a.tanh(), [(3, 4)], False),
    "abs": (lambda a: a.abs(), lambda a: a.abs(), [(3, 4)], False),
}


def _local_grads(out: Tensor, v: np.ndarray) -> dict:
    """d<out, v>/d(input) for each input of the ONE op that made `out`: that op's backward called
    directly on the context it recorded (no engine), summed back to each input's shape, added up
    for an input used twice (`a * a`)."""
    ctx = out.grad_fn
    assert ctx is not None, "the op recorded no context"
    grads = type(ctx).backward(ctx, v)
    grads = grads if isinstance(grads, tuple) else (grads,)
    result = {}
    for inp, g in zip(ctx.inputs, grads):
        if not inp.requires_grad:
            continue
        assert g is not None, f"{type(ctx).__name__}.backward returned None for an input that needs a gradient"
        g = _sum_to(np.asarray(g), inp.shape)
        result[id(inp)] = result[id(inp)] + g if id(inp) in result else g
    return result


def _compare_with_torch(tt_fn, torch_fn, arrays):
    xs = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    txs = [torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=True) for a in arrays]
    out, tout = tt_fn(*xs), torch_fn(*txs)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    v = np.random.default_rng(7).standard_normal(out.shape)    # random cotangent, not .sum()
    grads = _local_grads(out, v)
    tout.backward(torch.from_numpy(np.asarray(v)))
    for i, (x, tx) in enumerate(zip(xs, txs)):
        assert id(x) in grads, f"input {i} got no gradient"
        g = grads[id(x)]
        assert g.shape == x.shape, f"input {i}: gradient shape {g.shape} != {x.shape}"
        np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"gradient of input {i}")


# the Function behind each entry of OPS, with what check_backward needs: (op, input shapes, params,
# positive inputs)
CHECKS = {
    "add": (tensor_module.Add, [(3, 4), (4,)], {}, False),
    "sub": (tensor_module.Sub, [(3, 1), (1, 4)], {}, False),
    "mul": (tensor_module.Mul, [(2, 3, 4), (3, 1)], {}, False),
    "div": (tensor_module.Div, [(3, 4), (1, 4)], {}, True),
    "neg": (tensor_module.Neg, [(3,)], {}, False),
    "pow scalar": (tensor_module.PowScalar, [(5,)], {"exponent": 3}, False),
    "pow tensor": (tensor_module.Pow, [(4,), (4,)], {}, True),
    "matmul": (tensor_module.MatMul, [(2, 1, 3, 4), (5, 4, 2)], {}, False),
    "matmul vector": (tensor_module.MatMul, [(2, 3, 4), (4,)], {}, False),
    "sum": (tensor_module.Sum, [(2, 3, 4)], {"axis": (0, 2), "keepdims": True}, False),
    "mean": (tensor_module.Mean, [(3, 4)], {"axis": -1}, False),
    "max": (tensor_module.Max, [(3, 4)], {"axis": 1}, False),
    "min": (tensor_module.Min, [(3, 4)], {}, False),
    "reshape": (tensor_module.Reshape, [(3, 4)], {"shape": (2, 6)}, False),
    "permute": (tensor_module.Permute, [(2, 3, 4)], {"dims": (1, 2, 0)}, False),
    "getitem": (tensor_module.GetItem, [(3, 4)], {"index": np.array([0, 2, 0])}, False),
    "exp": (tensor_module.Exp, [(3, 4)], {}, False),
    "log": (tensor_module.Log, [(3, 4)], {}, True),
    "sqrt": (tensor_module.Sqrt, [(3, 4)], {}, True),
    "tanh": (tensor_module.Tanh, [(3, 4)], {}, False),
    "abs": (tensor_module.Abs, [(3, 4)], {}, False),
}


class TestTensorInTheStack:
    @pytest.mark.parametrize("name", list(OPS))
    def test_forward_and_backward_match_pytorch(self, name):
        tt_fn, torch_fn, shapes, positive = OPS[name]
        arrays = [_rand(*s, positive=positive) for s in shapes]
        _compare_with_torch(tt_fn, torch_fn, arrays)

    @pytest.mark.parametrize("name", list(CHECKS))
    def test_backward_matches_central_differences(self, name):
        op, shapes, params, positive = CHECKS[name]
        assert check_backward(op, *[_rand(*sh, positive=positive) for sh in shapes], **params)

    def test_non_contiguous_inputs(self):
        base = _rand(4, 3)
        a = base.T                               # (3, 4), Fortran-ordered view
        b = np.transpose(_rand(2, 5, 4), (0, 2, 1))[0]   # (4, 5) strided view
        assert not a.flags["C_CONTIGUOUS"] and not b.flags["C_CONTIGUOUS"]
        _compare_with_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])
        _compare_with_torch(lambda x: x.tanh(), lambda x: x.tanh(), [a])
        _compare_with_torch(lambda x: x.sum(axis=1, keepdims=True), lambda x: x.sum(dim=1, keepdim=True), [a])
        _compare_with_torch(lambda x: x.permute(1, 0), lambda x: x.permute(1, 0), [a])
        _compare_with_torch(lambda x: x[::2], lambda x: x[::2], [b])
        assert check_backward(tensor_module.MatMul, a, b)

    def test_broadcast_operands_get_gradients_that_sum_to_their_shape(self):
        x = Tensor(np.ones((64, 3)), requires_grad=True)
        b = Tensor(np.zeros(3), requires_grad=True)
        grads = _local_grads(x + b, np.ones((64, 3)))
        assert grads[id(b)].shape == (3,) and grads[id(b)].tolist() == [64.0] * 3
        assert grads[id(x)].shape == (64, 3)

    @pytest.mark.parametrize("exponent", [0, 1, 2, 3])
    def test_integer_powers_have_finite_gradients_at_zero(self, exponent):
        # d(x^p)/dx = p x^(p-1) is 0 for p = 0 (torch gives 0, not 0 * inf = NaN) and finite for p >= 1
        x = Tensor([0.0, 2.0], requires_grad=True)
        tx = torch.tensor([0.0, 2.0], requires_grad=True)
        with np.errstate(all="raise"):
            g = _local_grads(x ** exponent, np.ones(2, dtype=np.float32))[id(x)]
        (tx ** exponent).sum().backward()
        np.testing.assert_array_equal(g, tx.grad.numpy())
