"""SPEC section 3: bad input gets a clear error that names what was wrong and the values seen --
never a silent NaN or a wrong result. Each test checks the exception type and that the values
(shapes, indices, sizes, names) appear in the message."""
import re

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import GELU, Softmax
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss, log_softmax


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


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(2, 3), (3,), (5, 2, 7)], ids=str)
def test_linear_wrong_input_width_names_expected_width_and_shape(x_shape):
    layer = Linear(4, 2)
    with raises_naming(ValueError, "4", x_shape):
        layer(Tensor(np.ones(x_shape, dtype=np.float32)))


def test_linear_scalar_input_names_shape():
    with raises_naming(ValueError, "4", ()):
        Linear(4, 2)(Tensor(1.0))


@pytest.mark.parametrize("args,value", [((0, 3), 0), ((3, 0), 0), ((-2, 3), -2), ((2.5, 3), 2.5), ((True, 3), True)])
def test_linear_bad_sizes_name_the_value(args, value):
    with raises_naming(ValueError, repr(value), "Linear"):
        Linear(*args)


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, -1])
def test_dropout_p_outside_range_names_p(p):
    with raises_naming(ValueError, p, "Dropout"):
        Dropout(p)


def test_sequential_with_non_module_names_item_and_type():
    with raises_naming(TypeError, "item 1", "int"):
        Sequential(Linear(2, 2), 3)
    with raises_naming(TypeError, "function"):
        Sequential(lambda x: x)
    with raises_naming(TypeError, "str"):
        Sequential(Linear(2, 2)).append("relu")


def test_gelu_unknown_approximation_names_it():
    with raises_naming(ValueError, "'sigmoid'"):
        GELU(approximate="sigmoid")


@pytest.mark.parametrize("dim", [2, -3, 5])
def test_softmax_dim_out_of_range_names_dim_and_shape(dim):
    with raises_naming(ValueError, f"dim {dim}", (2, 3)):
        Softmax(dim=dim)(Tensor(np.ones((2, 3))))


@pytest.mark.parametrize("dim", [2, -3])
def test_log_softmax_dim_out_of_range_names_dim_and_shape(dim):
    with raises_naming(ValueError, f"dim {dim}", (2, 3)):
        log_softmax(Tensor(np.ones((2, 3))), dim=dim)


# --------------------------------------------------------------------------------------------------
# state dicts
# --------------------------------------------------------------------------------------------------
class TwoLayer(Module):
    def __init__(self):
        super().__init__()
        self.fc1 = Linear(3, 4)
        self.fc2 = Linear(4, 2)


def test_load_state_dict_missing_key_is_named():
    model = TwoLayer()
    state = model.state_dict()
    del state["fc2.bias"]
    with raises_naming(KeyError, "fc2.bias", "missing"):
        model.load_state_dict(state)


def test_load_state_dict_unexpected_key_is_named():
    model = TwoLayer()
    state = model.state_dict()
    state["fc3.weight"] = np.zeros((2, 2), dtype=np.float32)
    with raises_naming(KeyError, "fc3.weight", "unexpected"):
        model.load_state_dict(state)
    # non-strict: loads the rest and reports the extra key
    report = model.load_state_dict(state, strict=False)
    assert report["unexpected_keys"] == ["fc3.weight"] and report["missing_keys"] == []


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    model = TwoLayer()
    state = model.state_dict()
    state["fc1.weight"] = np.zeros((3, 4), dtype=np.float32)
    before = model.fc1.weight.data.copy()
    with raises_naming(ValueError, "fc1.weight", (4, 3), (3, 4)):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.fc1.weight.data, before)   # nothing written into that weight


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [3, 7, -1, -5])
def test_cross_entropy_target_out_of_range_names_value_and_class_count(bad):
    logits = Tensor(np.zeros((4, 3), dtype=np.float32))
    targets = np.array([0, 1, bad, 2])
    with raises_naming(IndexError, f"target {bad}", "3 classes"):
        CrossEntropyLoss()(logits, targets)


def test_cross_entropy_target_out_of_range_in_spatial_input():
    logits = Tensor(np.zeros((2, 3, 4), dtype=np.float32))
    targets = np.zeros((2, 4), dtype=np.int64)
    targets[1, 2] = 9
    with raises_naming(IndexError, "target 9", "3 classes"):
        CrossEntropyLoss()(logits, targets)


def test_cross_entropy_ignore_index_is_not_out_of_range():
    loss = CrossEntropyLoss(ignore_index=-1)(Tensor(np.zeros((2, 3))), np.array([-1, 2]))
    np.testing.assert_allclose(loss.item(), np.log(3), rtol=1e-6)


@pytest.mark.parametrize("logit_shape,target_shape", [((4, 3), (3,)), ((4, 3), (4, 1)), ((2, 3, 5), (2, 4)),
                                                      ((2, 3, 5), (2,))], ids=str)
def test_cross_entropy_targets_shape_mismatch_names_shapes(logit_shape, target_shape):
    with raises_naming(ValueError, logit_shape, target_shape):
        CrossEntropyLoss()(Tensor(np.zeros(logit_shape)), np.zeros(target_shape, dtype=np.int64))


def test_cross_entropy_float_targets_with_fractions_name_dtype():
    with raises_naming(TypeError, "float64"):
        CrossEntropyLoss()(Tensor(np.zeros((2, 3))), np.array([0.5, 1.0]))


@pytest.mark.parametrize("sp,st", [((2, 3), (3, 2)), ((4,), (4, 1)), ((2, 3), (2,))], ids=str)
def test_mse_shape_mismatch_names_both_shapes(sp, st):
    with raises_naming(ValueError, sp, st, "MSELoss"):
        MSELoss()(Tensor(np.zeros(sp)), Tensor(np.zeros(st)))


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan")])
def test_bce_probability_outside_unit_interval_names_value(bad):
    p = Tensor(np.array([0.2, bad, 0.7]))
    t = Tensor(np.array([0.0, 1.0, 1.0]))
    with raises_naming(ValueError, str(np.float32(bad)), "[0, 1]"):
        BinaryCrossEntropyLoss()(p, t)


def test_bce_shape_mismatch_names_shapes():
    with raises_naming(ValueError, (3,), (3, 1)):
        BinaryCrossEntropyLoss()(Tensor(np.full(3, 0.5)), Tensor(np.ones((3, 1))))
