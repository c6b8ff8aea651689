"""Module 04. SPEC section 3: bad input gets a clear error that names what was wrong and the values seen --
never a silent NaN or a wrong result. Each test checks the exception type and that the values
(shapes, indices, sizes, names) appear in the message."""
import re

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss, log_softmax


def raises_naming(exc, *values):
    "pytest.raises that also asserts every value's text appears literally in the message."
    pattern = "".join(f"(?=.*{re.escape(str(v))})" for v in values)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


@pytest.mark.parametrize("dim", [2, -3])
def test_log_softmax_dim_out_of_range_names_dim_and_shape(dim):
    with raises_naming(ValueError, f"dim {dim}", (2, 3)):
        log_softmax(Tensor(np.ones((2, 3))), dim=dim)


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
