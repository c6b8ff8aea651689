"""Can I make a kernel measurably faster and prove it?"""
import numpy as np

from tinytorch.core.activations import GELU
from tinytorch.core.autograd import no_grad
from tinytorch.core.spatial import Conv2d
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.acceleration import (FusedGELU, conv2d_direct, conv2d_image, gelu_fused,
                                                 gelu_fused_kernel)


def test_the_direct_convolution_computes_what_im2col_computes():
    rng = np.random.default_rng(0)
    for cin, cout, k, stride, padding in [(1, 4, 5, 1, 2), (3, 2, 3, 2, 1), (2, 3, (3, 2), (1, 2), (1, 0))]:
        conv = Conv2d(cin, cout, k, stride=stride, padding=padding, rng=rng)
        x = rng.standard_normal((2, cin, 9, 8)).astype(np.float32)
        expected = conv(Tensor(x)).data
        got = conv2d_direct(x, conv.weight.data, conv.bias.data, stride, padding)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_fused_gelu_computes_what_gelu_computes_forward_and_backward():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 50)) * 3).astype(np.float32)
    a, b = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    ya, yb = FusedGELU()(a), GELU(approximate="tanh")(b)
    np.testing.assert_allclose(ya.data, yb.data, rtol=1e-4, atol=2e-5)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ya.backward(g)
    yb.backward(g)
    np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=1e-4, atol=2e-5)


def test_the_fused_gelu_is_one_compiled_pass():
    # how much faster it is, is measured side by side in benchmarks/ (bench_acceleration), not in a test
    x = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    gelu = GELU(approximate="tanh")
    np.testing.assert_allclose(gelu_fused(x), gelu(Tensor(x)).data, rtol=1e-4, atol=2e-5)
    # its loop is a Numba kernel compiled in nopython mode, and the compiled loop computes what the
    # same loop computes when the interpreter runs it
    assert len(gelu_fused_kernel.nopython_signatures) >= 1, "gelu_fused's kernel is not compiled by Numba"
    rows = x[:1000].reshape(10, 100)
    bias, out_c, out_p = np.zeros(100, np.float32), np.empty_like(rows), np.empty_like(rows)
    gelu_fused_kernel(rows, bias, out_c)
    gelu_fused_kernel.py_func(rows, bias, out_p)
    np.testing.assert_allclose(out_c, out_p, rtol=1e-5, atol=1e-6)


def test_the_convolution_loops_are_compiled_and_compute_what_the_interpreter_computes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.zeros(2, np.float32)
    out_c, out_p = np.empty((2, 4, 4), np.float32), np.empty((2, 4, 4), np.float32)
    conv2d_image(x, w, b, out_c, 1, 1)
    conv2d_image.py_func(x, w, b, out_p, 1, 1)                  # the same loops, run by the interpreter
    np.testing.assert_allclose(out_c, out_p, rtol=1e-5, atol=1e-6)
    assert len(conv2d_image.nopython_signatures) >= 1, "conv2d_image is not compiled by Numba in nopython mode"