"""Module 09 (spatial) against PyTorch: Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d, Flatten.

Forward values and the gradient of every input (image, weight, bias) under a random cotangent
(out.backward(G) with G random: a plain sum would give every output the same weight and hide a wrong
permutation of the gradient). float64 to 1e-10, float32 to about 1e-5. Configurations: stride 1/2,
padding 0/1/2, square, non-square and 1x1 kernels, 1..4 channels in and out, batch 1..3, plus
hypothesis-generated ones, non-contiguous inputs and cotangents, and ties in max pooling.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytorch.core.tensor import Tensor
from tinytorch.core.spatial import AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, MaxPool2d

TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=1e-4, atol=2e-5)}


def close(got, want, dtype, what=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, err_msg=what, **TOL[dtype])


def make_conv(w, b, stride, padding, dtype):
    o, c, kh, kw = w.shape
    conv = Conv2d(c, o, (kh, kw), stride=stride, padding=padding, bias=b is not None)
    conv.weight.data = w.astype(dtype)
    if b is not None:
        conv.bias.data = b.astype(dtype)
    return conv


def check_conv(n, c, o, h, w, kernel, stride, padding, dtype=np.float64, bias=True, seed=0, transform=None):
    """Conv2d forward and all three gradients against F.conv2d. `transform` turns the input array into
    a non-contiguous view of the same values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c) + kernel).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    x_in = transform(x) if transform else x
    assert np.array_equal(x_in, x)
    conv = make_conv(wt, b, stride, padding, dtype)
    xt = Tensor(x_in, requires_grad=True, dtype=dtype)
    out = conv(xt)
    G = rng.standard_normal(out.shape).astype(dtype)

    xx = torch.tensor(x, requires_grad=True)
    ww = torch.tensor(wt, requires_grad=True)
    bb = torch.tensor(b, requires_grad=True) if bias else None
    ref = F.conv2d(xx, ww, bb, stride=stride, padding=padding)
    close(out.data, ref, dtype, "forward")
    assert out.dtype == dtype

    out.backward(G)
    ref.backward(torch.tensor(G))
    close(xt.grad.data, xx.grad, dtype, "grad input")
    close(conv.weight.grad.data, ww.grad, dtype, "grad weight")
    assert xt.grad.dtype == dtype and conv.weight.grad.dtype == dtype
    if bias:
        close(conv.bias.grad.data, bb.grad, dtype, "grad bias")


# (n, c, o, h, w, kernel, stride, padding)
CONFIGS = [
    (1, 1, 1, 5, 5, (3, 3), (1, 1), (0, 0)),
    (2, 3, 4, 8, 8, (3, 3), (1, 1), (1, 1)),
    (3, 2, 3, 7, 6, (3, 3), (2, 2), (1, 1)),
    (2, 4, 2, 9, 9, (5, 5), (2, 2), (2, 2)),
    (1, 2, 3, 6, 7, (2, 3), (1, 2), (0, 1)),
    (2, 3, 2, 7, 5, (3, 1), (2, 1), (2, 0)),
    (3, 4, 4, 5, 5, (1, 1), (1, 1), (0, 0)),
    (2, 3, 1, 6, 6, (1, 1), (2, 2), (0, 0)),
    (1, 1, 4, 4, 4, (4, 4), (1, 1), (0, 0)),       # kernel as large as the input: one output pixel
    (2, 2, 2, 3, 3, (5, 5), (1, 1), (1, 1)),       # kernel larger than the input, fits the padding
    (1, 3, 2, 8, 5, (2, 2), (2, 2), (2, 1)),
    (3, 1, 3, 10, 10, (3, 3), (2, 1), (0, 2)),
    (2, 2, 3, 6, 6, (3, 3), (3, 3), (1, 1)),       # stride as large as the kernel
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_conv2d_matches_torch(cfg, dtype):
    check_conv(*cfg, dtype=dtype, seed=hash(cfg) % 1000)


@pytest.mark.parametrize("cfg", CONFIGS[:6])
def test_conv2d_without_bias_matches_torch(cfg):
    check_conv(*cfg, bias=False)


@given(n=st.integers(1, 3), c=st.integers(1, 4), o=st.integers(1, 4),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), extra_h=st.integers(0, 5), extra_w=st.integers(0, 5),
       seed=st.integers(0, 2**16))
@settings(deadline=None, max_examples=40)
def test_conv2d_matches_torch_generated(n, c, o, kh, kw, sh, sw, ph, pw, extra_h, extra_w, seed):
    h = max(1, kh - 2 * ph) + extra_h              # the kernel always fits the padded input
    w = max(1, kw - 2 * pw) + extra_w
    check_conv(n, c, o, h, w, (kh, kw), (sh, sw), (ph, pw), seed=seed)


NONCONTIG = {
    "permuted": lambda a: np.ascontiguousarray(a.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
    "strided": lambda a: np.repeat(a, 2, axis=3)[:, :, :, ::2],
    "reversed": lambda a: np.ascontiguousarray(a[:, ::-1, ::-1])[:, ::-1, ::-1],
    "channels_last": lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
}


@pytest.mark.parametrize("kind", sorted(NONCONTIG))
@pytest.mark.parametrize("padding", [(0, 0), (1, 1)])
def test_conv2d_non_contiguous_input(kind, padding):
    x = np.zeros((2, 3, 6, 5))
    assert not NONCONTIG[kind](x).flags.c_contiguous
    check_conv(2, 3, 4, 6, 5, (3, 3), (1, 1), padding, transform=NONCONTIG[kind])
    check_conv(2, 3, 4, 6, 5, (2, 3), (2, 1), padding, dtype=np.float32, transform=NONCONTIG[kind])


def test_conv2d_inside_a_graph_with_non_contiguous_gradients():
    "A permute before and after the conv: the conv receives and returns non-contiguous arrays."
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3))          # NHWC
    wt, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    conv = make_conv(wt, b, (1, 1), (1, 1), np.float64)
    xt = Tensor(x, requires_grad=True, dtype=np.float64)
    out = conv(xt.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    G = rng.standard_normal(out.shape)
    out.backward(G)
    xx, ww, bb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ref = F.conv2d(xx.permute(0, 3, 1, 2), ww, bb, padding=1).permute(0, 2, 3, 1)
    ref.backward(torch.tensor(G))
    close(out.data, ref, np.float64)
    close(xt.grad.data, xx.grad, np.float64)
    close(conv.weight.grad.data, ww.grad, np.float64)
    close(conv.bias.grad.data, bb.grad, np.float64)


def test_conv2d_skips_the_input_gradient_when_not_needed():
    rng = np.random.default_rng(4)
    x, wt, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    conv = make_conv(wt, b, (1, 1), (0, 0), np.float64)
    xt = Tensor(x, dtype=np.float64)              # data: no gradient wanted
    out = conv(xt)
    G = rng.standard_normal(out.shape)
    out.backward(G)
    assert xt.grad is None
    ww = torch.tensor(wt, requires_grad=True)
    F.conv2d(torch.tensor(x), ww, torch.tensor(b)).backward(torch.tensor(G))
    close(conv.weight.grad.data, ww.grad, np.float64)


def test_conv2d_default_init_matches_torch_distribution():
    "Weights and bias uniform in +-1/sqrt(fan_in), as kaiming_uniform(a=sqrt(5)) gives in PyTorch."
    conv = Conv2d(4, 64, (3, 5), rng=np.random.default_rng(0))
    ref = torch.nn.Conv2d(4, 64, (3, 5))
    bound = 1 / np.sqrt(4 * 3 * 5)
    for mine, theirs in ((conv.weight.data, ref.weight), (conv.bias.data, ref.bias)):
        theirs = theirs.detach().numpy()
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype == np.float32
        assert np.abs(mine).max() <= bound and np.abs(theirs).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.95 * bound                    # the whole range is used
    assert abs(conv.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound  # uniform, not normal


# ---------------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------------
POOLS = [
    ((2, 2), None, (0, 0), (2, 3, 8, 8)),
    ((2, 2), None, (0, 0), (1, 2, 7, 9)),       # odd sizes: the last row/column is dropped
    ((3, 3), (2, 2), (1, 1), (2, 2, 7, 7)),
    ((3, 3), (1, 1), (0, 0), (1, 3, 5, 6)),     # overlapping windows
    ((2, 3), (1, 2), (1, 1), (3, 1, 6, 7)),
    ((1, 1), (2, 2), (0, 0), (2, 2, 5, 5)),
    ((4, 4), (2, 2), (2, 2), (1, 2, 6, 6)),
]


def run_pool(cls, torch_fn, kernel, stride, padding, shape, dtype, x=None, seed=0, transform=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) if x is None else x.astype(dtype)
    layer = cls(kernel, stride, padding)
    xt = Tensor(transform(x) if transform else x, requires_grad=True, dtype=dtype)
    out = layer(xt)
    G = rng.standard_normal(out.shape).astype(dtype)
    out.backward(G)
    xx = torch.tensor(x, requires_grad=True)
    ref = torch_fn(xx, kernel, stride if stride is not None else kernel, padding)
    ref.backward(torch.tensor(G))
    close(out.data, ref, dtype, "forward")
    close(xt.grad.data, xx.grad, dtype, "grad input")
    assert out.dtype == dtype and xt.grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,stride,padding,shape", POOLS)
def test_max_pool_matches_torch(kernel, stride, padding, shape, dtype):
    run_pool(MaxPool2d, F.max_pool2d, kernel, stride, padding, shape, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel,stride,padding,shape", POOLS)
def test_avg_pool_matches_torch(kernel, stride, padding, shape, dtype):
    run_pool(AvgPool2d, F.avg_pool2d, kernel, stride, padding, shape, dtype)


@pytest.mark.parametrize("kernel,stride,padding,shape", POOLS)
def test_max_pool_ties_route_the_gradient_like_torch(kernel, stride, padding, shape):
    "Few distinct values, so most windows have ties: the gradient goes to the first maximum, as in PyTorch."
    x = np.random.default_rng(5).integers(0, 3, shape).astype(np.float64)
    run_pool(MaxPool2d, F.max_pool2d, kernel, stride, padding, shape, np.float64, x=x)
    run_pool(MaxPool2d, F.max_pool2d, kernel, stride, padding, shape, np.float64, x=np.zeros(shape))


def test_max_pool_propagates_nan_like_torch():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    out = MaxPool2d(2)(Tensor(x, dtype=np.float64)).data
    ref = F.max_pool2d(torch.tensor(x), 2).numpy()
    assert np.isnan(out[0, 0, 0, 0]) and np.isnan(ref[0, 0, 0, 0])
    np.testing.assert_array_equal(out[~np.isnan(out)], ref[~np.isnan(ref)])


@given(kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 1), pw=st.integers(0, 1), h=st.integers(3, 7), w=st.integers(3, 7),
       seed=st.integers(0, 2**16))
@settings(deadline=None, max_examples=30)
def test_pools_match_torch_generated(kh, kw, sh, sw, ph, pw, h, w, seed):
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    for cls, fn in ((MaxPool2d, F.max_pool2d), (AvgPool2d, F.avg_pool2d)):
        run_pool(cls, fn, (kh, kw), (sh, sw), (ph, pw), (2, 2, h, w), np.float64, seed=seed)


@pytest.mark.parametrize("kind", sorted(NONCONTIG))
def test_pools_non_contiguous_input(kind):
    for cls, fn in ((MaxPool2d, F.max_pool2d), (AvgPool2d, F.avg_pool2d)):
        run_pool(cls, fn, (2, 2), None, (0, 0), (2, 3, 6, 6), np.float64, transform=NONCONTIG[kind])
        run_pool(cls, fn, (3, 3), (2, 2), (1, 1), (2, 3, 7, 6), np.float32, transform=NONCONTIG[kind])


# ---------------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------------
def bn_pair(c, dtype, momentum=0.1, eps=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    mine = BatchNorm2d(c, eps=eps, momentum=momentum)
    ref = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum)
    if dtype == np.float64:
        ref.double()
    w, b = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    mine.weight.data, mine.bias.data = w.astype(dtype), b.astype(dtype)
    for name in ("running_mean", "running_var"):
        getattr(mine, name).data = getattr(mine, name).data.astype(dtype)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
        ref.bias.copy_(torch.tensor(b))
    return mine, ref


def check_bn_step(mine, ref, x, G, dtype, transform=None):
    xt = Tensor(transform(x) if transform else x, requires_grad=True, dtype=dtype)
    mine.weight.grad = mine.bias.grad = None
    ref.zero_grad()
    out = mine(xt)
    xx = torch.tensor(x, requires_grad=True)
    r = ref(xx)
    close(out.data, r, dtype, "forward")
    out.backward(G)
    r.backward(torch.tensor(G))
    close(xt.grad.data, xx.grad, dtype, "grad input")
    close(mine.weight.grad.data, ref.weight.grad, dtype, "grad weight")
    close(mine.bias.grad.data, ref.bias.grad, dtype, "grad bias")
    close(mine.running_mean.data, ref.running_mean, dtype, "running_mean")
    close(mine.running_var.data, ref.running_var, dtype, "running_var")
    assert int(mine.num_batches_tracked.item()) == int(ref.num_batches_tracked.item())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_train_then_eval_matches_torch(dtype, momentum):
    rng = np.random.default_rng(7)
    mine, ref = bn_pair(3, dtype, momentum=momentum)
    for step in range(3):                         # several training steps: the running stats evolve
        x = (rng.standard_normal((4, 3, 5, 6)) * rng.uniform(0.5, 3, 3)[None, :, None, None]
             + rng.standard_normal(3)[None, :, None, None]).astype(dtype)
        G = rng.standard_normal(x.shape).astype(dtype)
        check_bn_step(mine, ref, x, G, dtype)
    mine.eval()
    ref.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    check_bn_step(mine, ref, x, rng.standard_normal(x.shape).astype(dtype), dtype)
    assert int(mine.num_batches_tracked.item()) == 3


@pytest.mark.parametrize("kind", sorted(NONCONTIG))
def test_batchnorm_non_contiguous_input(kind):
    rng = np.random.default_rng(8)
    mine, ref = bn_pair(3, np.float64)
    x = rng.standard_normal((2, 3, 4, 6))
    check_bn_step(mine, ref, x, rng.standard_normal(x.shape), np.float64, transform=NONCONTIG[kind])


def test_batchnorm_small_batches_and_one_pixel_images():
    rng = np.random.default_rng(9)
    for shape in [(2, 4, 1, 1), (1, 2, 2, 1), (5, 1, 1, 3)]:
        mine, ref = bn_pair(shape[1], np.float64, seed=shape[0])
        x = rng.standard_normal(shape)
        check_bn_step(mine, ref, x, rng.standard_normal(shape), np.float64)


def test_batchnorm_without_affine_matches_torch():
    rng = np.random.default_rng(10)
    mine = BatchNorm2d(2, affine=False)
    ref = torch.nn.BatchNorm2d(2, affine=False).double()
    for name in ("running_mean", "running_var"):
        getattr(mine, name).data = getattr(mine, name).data.astype(np.float64)
    x = rng.standard_normal((3, 2, 3, 3))
    G = rng.standard_normal(x.shape)
    xt = Tensor(x, requires_grad=True, dtype=np.float64)
    xx = torch.tensor(x, requires_grad=True)
    out, r = mine(xt), ref(xx)
    out.backward(G)
    r.backward(torch.tensor(G))
    close(out.data, r, np.float64)
    close(xt.grad.data, xx.grad, np.float64)
    assert list(mine.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("shape,size", [((2, 3, 7, 5), (3, 2)), ((1, 2, 8, 8), 1), ((2, 1, 5, 9), (4, 4)),
                                        ((3, 6, 6), (2, 3)), ((1, 1, 4, 4), (4, None))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adaptive_avg_pool_matches_torch(shape, size, dtype):
    "Forward and input gradient (overlapping windows add up) against F.adaptive_avg_pool2d."
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    xt = Tensor(x, requires_grad=True, dtype=dtype)
    xr = torch.tensor(x, requires_grad=True)
    out, ref = AdaptiveAvgPool2d(size)(xt), F.adaptive_avg_pool2d(xr, size)
    close(out.data, ref, dtype, "forward")
    g = rng.standard_normal(ref.shape).astype(dtype)
    out.backward(g)
    ref.backward(torch.tensor(g))
    close(xt.grad.data, xr.grad, dtype, "input gradient")


@pytest.mark.parametrize("start,end", [(1, -1), (0, 1), (-2, -1), (0, -1), (2, 2)])
def test_flatten_matches_torch(start, end):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    got = Flatten(start, end)(Tensor(x, dtype=np.float64))
    want = torch.nn.Flatten(start, end)(torch.tensor(x))
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.data, want.numpy())
