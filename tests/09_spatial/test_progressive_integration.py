"""Module 09 (Spatial): progressive integration tests.

  A. TestStackBelow       -- modules 01-05 (and the data of 08) still work: tensor ops, layers,
                             losses, autograd, no_grad, state dicts.
  B. TestSpatialCore      -- Conv2d / pools / BatchNorm2d / Flatten against direct NumPy computations,
                             gradients against central differences, buffers and modes.
  C. TestSpatialInTheStack -- a CNN made of these layers in a Sequential: gradients reach every
                             parameter, a few steps on the digits make the loss fall, eval is
                             deterministic, the module imports alone.
"""
import subprocess
import sys

import numpy as np
import pytest

from tinytorch.core.activations import ReLU, Softmax
from tinytorch.core.autograd import gradcheck, no_grad
from tinytorch.core.layers import Linear, Module, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.tensor import Tensor
from tinytorch.core.spatial import (AvgPool2d, BatchNorm2d, Conv2D, Conv2d, Flatten, MaxPool2d,
                                    col2im, conv_output_size, im2col)


def f64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def direct_conv(x, w, b, stride, padding):
    "Convolution by its definition, vectorised over the batch and channels only."
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    o, _, kh, kw = w.shape
    oh, ow = conv_output_size(x.shape[2:], (kh, kw), stride, padding)
    out = np.empty((x.shape[0], o, oh, ow))
    for r in range(oh):
        for s in range(ow):
            win = xp[:, :, r * stride[0]:r * stride[0] + kh, s * stride[1]:s * stride[1] + kw]
            out[:, :, r, s] = np.einsum("nchw,ochw->no", win, w) + b
    return out


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_ops_and_autograd(self):
        a = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
        y = ((a * 2 + 1) ** 2).sum(axis=1).mean()
        y.backward()
        np.testing.assert_allclose(a.grad.data, 2 * (2 * a.data + 1) * 2 / 2)
        assert (a @ a.T).shape == (2, 2) and a.reshape(3, 2).permute(1, 0).shape == (2, 3)
        with no_grad():
            assert not (a * 3).requires_grad

    def test_layers_losses_and_state_dict(self):
        rng = np.random.default_rng(0)
        model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
        x = Tensor(rng.standard_normal((5, 4)))
        loss = CrossEntropyLoss()(model(x), Tensor(np.array([0, 1, 2, 1, 0])))
        loss.backward()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
        assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        s = Softmax()(model(x)).data
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-6)
        assert MSELoss()(Tensor([1.0, 2.0]), Tensor([1.0, 4.0])).item() == pytest.approx(2.0)

    def test_gradcheck_still_catches_errors(self):
        lin = f64(Linear(3, 2))
        x = Tensor(np.random.default_rng(1).standard_normal((4, 3)), requires_grad=True, dtype=np.float64)
        assert gradcheck(lambda x, w, b: lin(x), [x, lin.weight, lin.bias])

    def test_digits_are_available_as_images(self):
        from tinytorch.core.dataloader import load_digits
        (X, y), (Xt, yt) = load_digits(flatten=False)
        assert X.shape == (1437, 1, 8, 8) and Xt.shape == (360, 1, 8, 8) and X.dtype == np.float32


# ================================================================================================
# B. The module's core
# ================================================================================================
class TestSpatialCore:
    @pytest.mark.parametrize("kernel,stride,padding", [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 2)),
                                                       ((1, 1), (1, 1), (0, 0)), ((4, 4), (3, 3), (2, 2))])
    def test_conv_forward_matches_direct_computation(self, kernel, stride, padding):
        rng = np.random.default_rng(2)
        conv = Conv2d(3, 5, kernel, stride=stride, padding=padding, rng=rng)
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        out = conv(Tensor(x))
        ref = direct_conv(x, conv.weight.data, conv.bias.data, stride, padding)
        assert out.shape == ref.shape and out.dtype == np.float32
        np.testing.assert_allclose(out.data, ref, rtol=1e-4, atol=1e-5)

    def test_conv_gradients_by_gradcheck(self):
        rng = np.random.default_rng(3)
        for k, s, p in [(3, 1, 1), ((3, 2), (2, 2), (1, 0))]:
            conv = f64(Conv2d(2, 3, k, stride=s, padding=p, rng=rng))
            x = Tensor(rng.standard_normal((2, 2, 6, 5)), requires_grad=True, dtype=np.float64)
            assert gradcheck(lambda x, w, b: conv(x), [x, conv.weight, conv.bias])

    def test_im2col_col2im_are_adjoint_and_shaped(self):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((2, 3, 7, 6))
        cols, (oh, ow) = im2col(x, (3, 2), (2, 1), (1, 1))
        assert (oh, ow) == conv_output_size((7, 6), (3, 2), (2, 1), (1, 1)) == (4, 7)
        assert cols.shape == (2, 3 * 3 * 2, 4 * 7)
        c = rng.standard_normal(cols.shape)
        back = col2im(c, x.shape, (3, 2), (2, 1), (1, 1))
        assert back.shape == x.shape
        assert np.sum(cols * c) == pytest.approx(np.sum(x * back), rel=1e-12)

    def test_pools_match_direct_computation(self):
        x = np.random.default_rng(5).standard_normal((2, 3, 6, 6))
        blocks = x.reshape(2, 3, 3, 2, 3, 2)
        np.testing.assert_allclose(MaxPool2d(2)(Tensor(x, dtype=np.float64)).data, blocks.max(axis=(3, 5)))
        np.testing.assert_allclose(AvgPool2d(2)(Tensor(x, dtype=np.float64)).data, blocks.mean(axis=(3, 5)))
        assert MaxPool2d(3, 2, 1)(Tensor(x)).shape == (2, 3, 3, 3)
        for layer in (MaxPool2d(3, 2, 1), AvgPool2d(2, 1)):
            xt = Tensor(x, requires_grad=True, dtype=np.float64)
            assert gradcheck(lambda x: layer(x), [xt])

    def test_batchnorm_modes_and_buffers(self):
        rng = np.random.default_rng(6)
        bn = BatchNorm2d(4)
        x = Tensor((rng.standard_normal((8, 4, 3, 3)) * 3 + 2).astype(np.float32))
        y = bn(x)
        np.testing.assert_allclose(y.data.mean(axis=(0, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(y.data.std(axis=(0, 2, 3)), 1, atol=1e-3)
        assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
        assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
        rm = bn.running_mean.data.copy()
        bn.eval()
        y1, y2 = bn(x[:1]), bn(x)
        np.testing.assert_allclose(y1.data, y2.data[:1], rtol=1e-6)     # eval: independent of the batch
        np.testing.assert_array_equal(bn.running_mean.data, rm)
        assert int(bn.num_batches_tracked.item()) == 1
        bn2 = f64(BatchNorm2d(2))
        for training in (True, False):
            bn2.train(training)
            xt = Tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True, dtype=np.float64)
            assert gradcheck(lambda x, w, b: bn2(x), [xt, bn2.weight, bn2.bias])

    def test_flatten_and_alias(self):
        assert Flatten()(Tensor(np.zeros((2, 3, 4, 5)))).shape == (2, 60)
        assert Conv2D is Conv2d
        assert isinstance(Conv2d(1, 1, 1), Module) and isinstance(Conv2d(1, 1, 1).weight, Parameter)


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
def lenet(rng, pool=MaxPool2d):
    return Sequential(Conv2d(1, 6, 3, padding=1, rng=rng), BatchNorm2d(6), ReLU(), MaxPool2d(2),
                      Conv2d(6, 16, 3, padding=1, rng=rng), BatchNorm2d(16), ReLU(), pool(2),
                      Flatten(), Linear(16 * 2 * 2, 32, rng=rng), ReLU(), Linear(32, 10, rng=rng))


class TestSpatialInTheStack:
    @pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
    def test_gradients_reach_every_parameter(self, pool):
        rng = np.random.default_rng(7)
        model = lenet(rng, pool)
        x = Tensor(rng.random((4, 1, 8, 8)).astype(np.float32))
        loss = CrossEntropyLoss()(model(x), Tensor(np.array([1, 2, 3, 4])))
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == np.float32, name
            assert np.abs(p.grad.data).sum() > 0, name

    def test_a_small_cnn_learns_the_digits(self):
        from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
        (X, y), (Xt, yt) = load_digits(flatten=False)
        model = lenet(np.random.default_rng(8))
        loss_fn = CrossEntropyLoss()
        loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0)
        model.eval()
        with no_grad():
            first = loss_fn(model(Xt), yt).item()
        model.train()
        for _ in range(3):
            for xb, yb in loader:
                loss = loss_fn(model(xb), yb)
                model.zero_grad()
                loss.backward()
                with no_grad():
                    for p in model.parameters():
                        p.data -= 0.1 * p.grad.data
        model.eval()
        with no_grad():
            logits = model(Xt)
            last = loss_fn(logits, yt).item()
        acc = float((logits.data.argmax(axis=1) == yt.data).mean())
        assert last < 0.25 * first, (first, last)
        assert acc > 0.85, acc
        assert int(model[1].num_batches_tracked.item()) == 3 * len(loader)

    def test_eval_under_no_grad_records_nothing_and_is_deterministic(self):
        model = lenet(np.random.default_rng(9)).eval()
        x = Tensor(np.random.default_rng(10).random((3, 1, 8, 8)).astype(np.float32))
        with no_grad():
            a, b = model(x), model(x)
        assert not a.requires_grad and a._ctx is None
        np.testing.assert_array_equal(a.data, b.data)

    def test_spatial_imports_alone(self):
        code = ("import tinytorch.core.spatial as s, numpy as np; "
                "print(s.Conv2d(1, 2, 3)(s.Tensor(np.zeros((1, 1, 5, 5), dtype=np.float32))).shape)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "(1, 2, 3, 3)"
