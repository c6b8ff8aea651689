"""SPEC section 3: bad input gets a clear error that names what was wrong and the values seen --
never a silent NaN or a wrong result. Each test checks the exception type and that the values
(shapes, indices, sizes, names) appear in the message."""
import re

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor


def raises_naming(exc, *values):
    "pytest.raises that also asserts every value's text appears literally in the message."
    pattern = "".join(f"(?=.*{re.escape(str(v))})" for v in values)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


# --------------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [
    ((2, 3), (4, 5)),                 # 2-D
    ((2, 3, 4), (2, 5, 6)),           # batched, inner mismatch
    ((3,), (4,)),                     # 1-D @ 1-D
    ((3,), (4, 5)),                   # 1-D left
    ((2, 3), (4,)),                   # 1-D right
    ((2, 3, 4), (3, 4, 5)),           # batch dims that do not broadcast
], ids=str)
def test_matmul_shape_mismatch_names_both_shapes(sa, sb):
    a, b = Tensor(np.ones(sa)), Tensor(np.ones(sb))
    with raises_naming(ValueError, sa, sb, "matmul"):
        a @ b


@pytest.mark.parametrize("sa,sb", [((), (3,)), ((3,), ()), ((), ())], ids=str)
def test_matmul_zero_dim_operand_names_shapes(sa, sb):
    with raises_naming(ValueError, sa, sb, "matmul"):
        Tensor(np.ones(sa)) @ Tensor(np.ones(sb))


def test_matmul_mismatch_names_the_inner_sizes():
    with raises_naming(ValueError, "(3)", "(4)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


# --------------------------------------------------------------------------------------------------
# shapes, conversion
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,new", [((2, 3), (4,)), ((2, 3), (4, -1)), ((6,), (5, 2))], ids=str)
def test_reshape_incompatible_names_both_shapes(shape, new):
    with raises_naming(ValueError, shape, new, "reshape"):
        Tensor(np.ones(shape)).reshape(*new)


def test_item_on_multi_element_names_shape():
    with raises_naming(ValueError, (2, 3), "item"):
        Tensor(np.ones((2, 3))).item()
    with raises_naming(ValueError, (2,)):
        float(Tensor([1.0, 2.0]))
    assert Tensor([[4.5]]).item() == 4.5


def test_bool_of_multi_element_tensor_names_shape():
    with raises_naming(ValueError, (3,), "ambiguous"):
        bool(Tensor([1.0, 2.0, 3.0]))
    with raises_naming(ValueError, (2, 2)):
        "yes" if Tensor(np.ones((2, 2))) > 0 else "no"     # an `if` on a tensor calls bool()
    assert bool(Tensor([2.0])) is True


@pytest.mark.parametrize("bad", ["flaot32", "banana", "int33"])
def test_unknown_dtype_string_names_it(bad):
    with raises_naming(TypeError, bad, "dtype"):
        Tensor([1.0, 2.0], dtype=bad)


@pytest.mark.parametrize("data", [[[1, 2], [3]], [[1.0, 2.0], [3.0, 4.0, 5.0]], [1, [2, 3]]], ids=str)
def test_ragged_list_data_is_refused(data):
    with pytest.raises(ValueError, match="(?i)tensor.*(inhomogeneous|ragged)"):
        Tensor(data)


@pytest.mark.parametrize("dtype", ["float32", "int64", np.float64])
def test_ragged_list_data_with_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="(?i)inhomogeneous|ragged"):
        Tensor([[1, 2], [3]], dtype=dtype)


def test_non_numeric_data_is_refused():
    with raises_naming(TypeError, "not numeric"):
        Tensor(["a", "b"])


def test_permute_and_unsqueeze_bad_dims_name_values():
    t = Tensor(np.ones((2, 3)))
    with raises_naming(ValueError, (0, 0), (2, 3)):
        t.permute(0, 0)
    with raises_naming(IndexError, "5"):
        t.unsqueeze(5)
