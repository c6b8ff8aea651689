"""Module 02. SPEC section 3: bad input gets a clear error that names what was wrong and the values seen --
never a silent NaN or a wrong result. Each test checks the exception type and that the values
(shapes, indices, sizes, names) appear in the message."""
import re

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import GELU, Softmax


def raises_naming(exc, *values):
    "pytest.raises that also asserts every value's text appears literally in the message."
    pattern = "".join(f"(?=.*{re.escape(str(v))})" for v in values)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


# --------------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------------
def test_gelu_unknown_approximation_names_it():
    with raises_naming(ValueError, "'sigmoid'"):
        GELU(approximate="sigmoid")


@pytest.mark.parametrize("dim", [2, -3, 5])
def test_softmax_dim_out_of_range_names_dim_and_shape(dim):
    with raises_naming(ValueError, f"dim {dim}", (2, 3)):
        Softmax(dim=dim)(Tensor(np.ones((2, 3))))
