"""Module 18 (Acceleration): progressive integration tests.

  A. TestStackBelow            -- tensors and autograd, Conv2d (im2col), GELU, and module 17's sparse
                                  layers still work.
  B. TestAccelerationCore      -- conv2d_direct against PyTorch's conv2d (strides, padding, float64, the
                                  parallel variant), the fused GELU against PyTorch's tanh GELU forward and
                                  backward (with a bias, random cotangents), bad input.
  C. TestAccelerationInTheStack -- FusedGELU inside a model trains on the digits; conv2d_direct computes a
                                  CNN's first layer; the module imports alone without compiling anything.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

from tinytorch.core.activations import GELU, ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam
from tinytorch.core.spatial import Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.acceleration import FusedGELU, FusedGELUFunction, conv2d_direct, gelu_fused


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_autograd_and_gelu(self):
        x = Tensor(np.linspace(-3, 3, 7), requires_grad=True)
        y = GELU(approximate="tanh")(x * 2).sum()
        y.backward()
        assert x.grad.shape == (7,) and np.all(np.isfinite(x.grad.data))

    def test_conv2d_im2col_still_matches_pytorch(self):
        rng = np.random.default_rng(0)
        conv = Conv2d(2, 3, 3, padding=1, rng=rng)
        x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
        ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(conv.weight.data),
                                         torch.tensor(conv.bias.data), padding=1)
        np.testing.assert_allclose(conv(Tensor(x)).data, ref.numpy(), rtol=1e-4, atol=1e-5)

    def test_module_17_sparse_layer_still_equals_dense(self):
        from tinytorch.optimization.sparse import SparseLinear
        rng = np.random.default_rng(1)
        lin = Linear(16, 8, rng=rng)
        lin.weight.data[rng.random((8, 16)) < 0.8] = 0
        x = Tensor(rng.standard_normal((4, 16)).astype(np.float32))
        np.testing.assert_allclose(SparseLinear.from_linear(lin)(x).data, lin(x).data, rtol=1e-5, atol=1e-6)


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestAccelerationCore:
    @pytest.mark.parametrize("cin,cout,k,stride,padding,hw", [
        (1, 6, 5, 1, 2, (28, 28)), (3, 4, 3, 1, 0, (7, 9)), (2, 5, 3, 2, 1, (9, 8)),
        (4, 2, (2, 3), (2, 1), (0, 1), (6, 7)), (3, 3, 1, 1, 0, (4, 4)), (2, 2, 4, 3, 2, (5, 5))])
    @pytest.mark.parametrize("parallel", [False, True])
    def test_conv2d_direct_equals_pytorch(self, cin, cout, k, stride, padding, hw, parallel):
        rng = np.random.default_rng(2)
        kk = (k, k) if isinstance(k, int) else k
        w = rng.standard_normal((cout, cin) + kk).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        x = rng.standard_normal((3, cin) + hw).astype(np.float32)
        ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride,
                                         padding=padding).numpy()
        got = conv2d_direct(x, w, b, stride, padding, parallel=parallel)
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(conv2d_direct(x, w, None, stride, padding), ref - b[None, :, None, None],
                                   rtol=1e-4, atol=1e-4)

    def test_conv2d_direct_in_float64_and_on_non_contiguous_input(self):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 3, 8, 8)).transpose(0, 1, 3, 2)          # a non-contiguous view
        w = rng.standard_normal((4, 3, 3, 3))
        got = conv2d_direct(x, w, padding=1)
        assert got.dtype == np.float64
        ref = torch.nn.functional.conv2d(torch.tensor(np.ascontiguousarray(x)), torch.tensor(w), padding=1).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)

    @pytest.mark.parametrize("shape", [(64, 300), (5,), (2, 3, 17), (1, 1)])
    def test_fused_gelu_forward_and_backward_equal_pytorch(self, shape):
        rng = np.random.default_rng(4)
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        x.flat[0] = 40.0                                                   # saturated: the gradient is 1
        if x.size > 1:
            x.flat[1] = -40.0                                              # the gradient is 0
        G = rng.standard_normal(shape).astype(np.float32)                  # a random cotangent
        xt = Tensor(x, requires_grad=True)
        y = FusedGELU()(xt)
        y.backward(G)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.gelu(tx, approximate="tanh")
        ty.backward(torch.tensor(G))
        np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-5, atol=2e-5)
        np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=1e-4, atol=2e-5)

    def test_fused_bias_gelu_and_its_gradients(self):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((6, 10)).astype(np.float32)
        b = rng.standard_normal(10).astype(np.float32)
        G = rng.standard_normal((6, 10)).astype(np.float32)
        xt, bt = Tensor(x, requires_grad=True), Tensor(b, requires_grad=True)
        y = FusedGELUFunction.apply(xt, bt)
        y.backward(G)
        tx, tb = torch.tensor(x, requires_grad=True), torch.tensor(b, requires_grad=True)
        ty = torch.nn.functional.gelu(tx + tb, approximate="tanh")
        ty.backward(torch.tensor(G))
        np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-5, atol=2e-5)
        np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(bt.grad.data, tb.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gelu_fused(x, b), ty.detach().numpy(), rtol=1e-5, atol=2e-5)

    def test_fused_gelu_in_float64_empty_and_scalar_inputs(self):
        x = np.linspace(-6, 6, 101)
        ref = torch.nn.functional.gelu(torch.tensor(x), approximate="tanh").numpy()
        got = gelu_fused(x)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, atol=5e-6)                    # the rational tanh's accuracy
        assert gelu_fused(np.zeros((0, 4), np.float32)).shape == (0, 4)
        assert gelu_fused(np.float32(0.0)).shape == () and float(gelu_fused(np.float32(1.0))) == pytest.approx(0.8412, abs=1e-4)

    def test_bad_input_is_refused_with_the_values_seen(self):
        x = np.zeros((1, 2, 5, 5), np.float32)
        with pytest.raises(ValueError, match=r"x has 2 channels but the weight expects 3"):
            conv2d_direct(x, np.zeros((4, 3, 3, 3), np.float32))
        with pytest.raises(ValueError, match=r"expected x \(N, C, H, W\).*\(2, 5, 5\)"):
            conv2d_direct(x[0], np.zeros((4, 2, 3, 3), np.float32))
        with pytest.raises(ValueError, match=r"kernel \(7, 7\) is larger than the padded input \(5, 5\)"):
            conv2d_direct(x, np.zeros((1, 2, 7, 7), np.float32))
        with pytest.raises(ValueError, match=r"stride must be >= 1.*stride 0"):
            conv2d_direct(x, np.zeros((1, 2, 3, 3), np.float32), stride=0)
        with pytest.raises(TypeError, match=r"padding must be an int or a pair of ints, got 'same'"):
            conv2d_direct(x, np.zeros((1, 2, 3, 3), np.float32), padding="same")
        with pytest.raises(ValueError, match=r"bias must have shape \(1,\), got \(2,\)"):
            conv2d_direct(x, np.zeros((1, 2, 3, 3), np.float32), bias=np.zeros(2))
        with pytest.raises(ValueError, match=r"bias must have shape \(5,\) to match the last axis of x \(3, 5\), got \(4,\)"):
            gelu_fused(np.zeros((3, 5), np.float32), bias=np.zeros(4))


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestAccelerationInTheStack:
    def test_an_mlp_with_the_fused_gelu_learns_the_digits(self):
        from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
        (X, y), (Xt, yt) = load_digits()
        rng = np.random.default_rng(6)
        model = Sequential(Linear(64, 64, rng=rng), FusedGELU(), Linear(64, 10, rng=rng))
        opt, loss_fn = Adam(model.parameters(), lr=0.01), CrossEntropyLoss()
        for _ in range(3):
            for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=0):
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
        with no_grad():
            acc = float((model(Xt).data.argmax(axis=1) == yt.data).mean())
        assert acc > 0.9, acc

    def test_fused_and_plain_gelu_models_agree(self):
        rng = np.random.default_rng(7)
        a = Sequential(Linear(8, 16, rng=rng), GELU(approximate="tanh"), Linear(16, 3, rng=rng))
        b = Sequential(Linear(8, 16), FusedGELU(), Linear(16, 3))
        b.load_state_dict(a.state_dict())
        x = Tensor(rng.standard_normal((5, 8)).astype(np.float32))
        np.testing.assert_allclose(b(x).data, a(x).data, rtol=1e-5, atol=1e-5)

    def test_conv2d_direct_computes_a_cnn_first_layer(self):
        rng = np.random.default_rng(8)
        cnn = Sequential(Conv2d(1, 6, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(96, 10, rng=rng))
        x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
        with no_grad():
            h = cnn[0](Tensor(x)).data
            rest = Sequential(*cnn.layers[1:])
            direct = rest(Tensor(conv2d_direct(x, cnn[0].weight, cnn[0].bias, 1, 1))).data
            np.testing.assert_allclose(direct, cnn(Tensor(x)).data, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(conv2d_direct(x, cnn[0].weight, cnn[0].bias, 1, 1), h, rtol=1e-4, atol=1e-5)

    def test_the_module_imports_alone_and_compiles_nothing_on_import(self):
        code = ("import time, sys; t = time.perf_counter(); import tinytorch.optimization.acceleration as a; "
                "print(sum(len(f.signatures) for f in (a.conv2d_image, a.gelu_fused_kernel, a.conv2d_direct_kernel)))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "0"
