"""Is my environment ready to build tinytorch?"""
import importlib
import os
import sys
from pathlib import Path

import numpy as np

# The package under test: $TINYTORCH_UNDER_TEST when a tool says which one (tito module
# complete, tito grade), else the tinytorch/ of the checkout this file belongs to.
UNDER_TEST = Path(os.environ.get("TINYTORCH_UNDER_TEST")
                  or Path(__file__).resolve().parents[2] / "tinytorch").resolve()

CORE = {
    "tinytorch.core.tensor": ["Tensor"],
    "tinytorch.core.autograd": ["Function", "no_grad", "gradcheck"],
    "tinytorch.core.activations": ["ReLU", "Sigmoid", "Tanh", "GELU", "Softmax"],
    "tinytorch.core.layers": ["Module", "Linear", "Sequential", "Dropout"],
    "tinytorch.core.losses": ["MSELoss", "CrossEntropyLoss", "BinaryCrossEntropyLoss"],
}


def _inside(path, base):
    path = Path(path).resolve()
    return path == base or base in path.parents


def test_python_is_3_11_or_newer():
    assert sys.version_info >= (3, 11), f"Python 3.11+ is needed, this is {sys.version.split()[0]}"


def test_numpy_2_computes_in_float32():
    major = int(np.__version__.split(".")[0])
    assert major >= 2, f"NumPy 2 is needed, found {np.__version__}"
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert (a @ a.T).dtype == np.float32
    np.testing.assert_allclose(a @ a.T, [[5.0, 14.0], [14.0, 50.0]])


def test_the_tinytorch_imported_is_the_one_under_test():
    assert UNDER_TEST.is_dir(), f"no package at {UNDER_TEST}: export the notebooks first"
    tt = importlib.import_module("tinytorch")
    assert tt.__file__ is not None, "tinytorch is a namespace package: its __init__.py is missing"
    assert _inside(tt.__file__, UNDER_TEST), (
        f"the tinytorch being imported is {tt.__file__}, not the one under test in {UNDER_TEST}")
    assert isinstance(getattr(tt, "__version__", None), str)


def test_core_modules_import_from_the_package_under_test():
    for name, public in CORE.items():
        mod = importlib.import_module(name)
        assert _inside(mod.__file__, UNDER_TEST), f"{name} came from {mod.__file__}, not {UNDER_TEST}"
        missing = [p for p in public if not hasattr(mod, p)]
        assert not missing, f"{name} lacks {missing}"
