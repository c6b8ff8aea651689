"""Can I run and differentiate convolutions and pooling on images?"""
import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.activations import ReLU
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.spatial import AvgPool2d, BatchNorm2d, Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor


def direct_conv(x, w, b, stride, padding):
    "out[n, o, r, s] = b[o] + sum over c, i, j of w[o, c, i, j] * x_padded[n, c, r*sh + i, s*sw + j]"
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for r in range(oh):
        for s in range(ow):
            for i in range(kh):
                for j in range(kw):
                    out[:, :, r, s] += xp[:, :, r * sh + i, s * sw + j] @ w[:, :, i, j].T
    return out + b[None, :, None, None]


def numeric_grads(f, arrays, G, eps=1e-6):
    "Central differences of sum(f(*arrays) * G) with respect to every element of every array."
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for k in np.ndindex(a.shape):
            orig = a[k]
            a[k] = orig + eps
            plus = np.sum(f(*arrays) * G)
            a[k] = orig - eps
            minus = np.sum(f(*arrays) * G)
            a[k] = orig
            g[k] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def as64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), ((2, 3), (2, 1), (0, 1)), (1, 2, 0)])
def test_conv_forward_equals_the_definition(kernel, stride, padding):
    rng = np.random.default_rng(0)
    conv = Conv2d(3, 4, kernel, stride=stride, padding=padding, rng=rng)
    assert conv.weight.shape == (4, 3) + conv.kernel_size and conv.bias.shape == (4,)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    out = conv(Tensor(x))
    ref = direct_conv(x, conv.weight.data, conv.bias.data, conv.stride, conv.padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.data, ref, rtol=1e-4, atol=1e-5)


def test_conv_gradients_equal_central_differences():
    rng = np.random.default_rng(1)
    conv = as64(Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 1), rng=rng))
    x = rng.standard_normal((2, 2, 5, 4))
    xt = Tensor(x, requires_grad=True, dtype=np.float64)
    out = conv(xt)
    G = rng.standard_normal(out.shape)                       # a random cotangent, not a plain sum
    out.backward(G)
    w, b = conv.weight.data.copy(), conv.bias.data.copy()
    nx, nw, nb = numeric_grads(lambda x, w, b: direct_conv(x, w, b, (2, 1), (1, 1)), [x.copy(), w, b], G)
    np.testing.assert_allclose(xt.grad.data, nx, atol=1e-6)
    np.testing.assert_allclose(conv.weight.grad.data, nw, atol=1e-6)
    np.testing.assert_allclose(conv.bias.grad.data, nb, atol=1e-6)


def test_pooling_forward_and_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 4))
    blocks = x.reshape(2, 3, 3, 2, 2, 2)
    mx = MaxPool2d(2)(Tensor(x, dtype=np.float64))
    av = AvgPool2d(2)(Tensor(x, dtype=np.float64))
    np.testing.assert_allclose(mx.data, blocks.max(axis=(3, 5)))
    np.testing.assert_allclose(av.data, blocks.mean(axis=(3, 5)))
    assert MaxPool2d(3, stride=2, padding=1)(Tensor(x)).shape == (2, 3, 3, 2)

    t = Tensor(np.array([[[[1.0, 7.0, 2.0, 2.0], [7.0, 0.0, 2.0, 2.0]]]]), requires_grad=True)
    MaxPool2d(2)(t).backward(np.array([[[[3.0, 5.0]]]]))
    assert t.grad.data.tolist() == [[[[0.0, 3.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]   # first maximum only

    for layer in (MaxPool2d(3, 2, 1), AvgPool2d((2, 3), (1, 2))):
        x = rng.standard_normal((1, 2, 5, 6))
        xt = Tensor(x, requires_grad=True, dtype=np.float64)
        out = layer(xt)
        G = rng.standard_normal(out.shape)
        out.backward(G)
        (nx,) = numeric_grads(lambda a: layer(Tensor(a, dtype=np.float64)).data, [x.copy()], G)
        np.testing.assert_allclose(xt.grad.data, nx, atol=1e-6)


def test_batchnorm_normalises_tracks_statistics_and_differentiates():
    rng = np.random.default_rng(3)
    bn = as64(BatchNorm2d(2))
    bn.running_mean.data = bn.running_mean.data.astype(np.float64)
    bn.running_var.data = bn.running_var.data.astype(np.float64)
    bn.weight.data = np.array([1.5, 0.5])
    bn.bias.data = np.array([0.1, -0.2])
    x = rng.standard_normal((3, 2, 3, 2)) * 2 + 1
    xt = Tensor(x, requires_grad=True, dtype=np.float64)
    out = bn(xt)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    expect = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * \
        np.array([1.5, 0.5])[None, :, None, None] + np.array([0.1, -0.2])[None, :, None, None]
    np.testing.assert_allclose(out.data, expect, atol=1e-10)
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * mean)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * var * 18 / 17)
    assert int(bn.num_batches_tracked.item()) == 1

    G = rng.standard_normal(out.shape)
    out.backward(G)
    def f(x):
        m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        return (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-5) * \
            np.array([1.5, 0.5])[None, :, None, None]
    (nx,) = numeric_grads(f, [x.copy()], G)
    np.testing.assert_allclose(xt.grad.data, nx, atol=1e-6)

    bn.eval()
    e = bn(Tensor(x, dtype=np.float64)).data
    rm, rv = bn.running_mean.data, bn.running_var.data
    np.testing.assert_allclose(e, (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
                               * np.array([1.5, 0.5])[None, :, None, None] + np.array([0.1, -0.2])[None, :, None, None])


def test_a_small_cnn_learns_the_digits():
    (X, y), (Xt, yt) = load_digits(flatten=False)
    r = np.random.default_rng(0)
    cnn = Sequential(Conv2d(1, 8, 3, padding=1, rng=r), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                     Conv2d(8, 16, 3, padding=1, rng=r), BatchNorm2d(16), ReLU(), MaxPool2d(2),
                     Flatten(), Linear(64, 10, rng=r))
    loss_fn = CrossEntropyLoss()
    for _ in range(2):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0):
            loss = loss_fn(cnn(xb), yb)
            cnn.zero_grad()
            loss.backward()
            with no_grad():
                for p in cnn.parameters():
                    p.data -= 0.1 * p.grad.data
    cnn.eval()
    with no_grad():
        acc = float((cnn(Xt).data.argmax(axis=1) == yt.data).mean())
    assert acc > 0.85, acc
