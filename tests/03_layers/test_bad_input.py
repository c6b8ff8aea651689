"""Module 03. SPEC section 3: bad input gets a clear error that names what was wrong and the values seen --
never a silent NaN or a wrong result. Each test checks the exception type and that the values
(shapes, indices, sizes, names) appear in the message."""
import re

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.layers import Dropout, Linear, Module, Sequential


def raises_naming(exc, *values):
    "pytest.raises that also asserts every value's text appears literally in the message."
    pattern = "".join(f"(?=.*{re.escape(str(v))})" for v in values)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


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
