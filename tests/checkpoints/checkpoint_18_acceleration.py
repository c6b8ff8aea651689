"""Can I make a kernel measurably faster and prove it?"""
import time

import numpy as np

from tinytorch.core.activations import GELU
from tinytorch.core.autograd import no_grad
from tinytorch.core.spatial import Conv2d
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.acceleration import FusedGELU, conv2d_direct, conv2d_image, gelu_fused


def fastest(fns, number, repeat=5):
    "Seconds per call of each function: interleaved repeats, the fastest of each, after a warm-up call."
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            for _ in range(number):
                f()
            best[i] = min(best[i], (time.perf_counter() - t) / number)
    return best


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


def test_the_fused_gelu_is_measurably_faster_than_separate_passes():
    x = np.random.default_rng(2).standard_normal(1_000_000).astype(np.float32)
    xt = Tensor(x)
    gelu = GELU(approximate="tanh")
    np.testing.assert_allclose(gelu_fused(x), gelu(xt).data, rtol=1e-4, atol=2e-5)

    def separate():
        with no_grad():
            return gelu(xt)

    t_separate, t_fused = fastest([separate, lambda: gelu_fused(x)], number=3)
    assert t_separate / t_fused > 1.5, f"fused {t_fused * 1e3:.2f} ms vs separate passes {t_separate * 1e3:.2f} ms"


def test_compiling_the_convolution_loops_is_measurably_faster_than_interpreting_them():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.zeros(2, np.float32)
    out_c, out_p = np.empty((2, 4, 4), np.float32), np.empty((2, 4, 4), np.float32)
    conv2d_image(x, w, b, out_c, 1, 1)
    conv2d_image.py_func(x, w, b, out_p, 1, 1)                  # the same loops, run by the interpreter
    np.testing.assert_allclose(out_c, out_p, rtol=1e-5, atol=1e-6)
    t_compiled, t_python = fastest([lambda: conv2d_image(x, w, b, out_c, 1, 1),
                                    lambda: conv2d_image.py_func(x, w, b, out_p, 1, 1)], number=3)
    assert t_python / t_compiled > 20, f"compiled {t_compiled * 1e6:.1f} us vs interpreted {t_python * 1e6:.1f} us"
