"""Every op of the PyTorch kit against torch==2.13.0: values and gradients (against a random cotangent),
in float32 and float64, with broadcast and non-contiguous (transposed) inputs.

Each case is written once as PyTorch code taking the framework `T` (torch or tinytorch) and the input
tensors, so the same expression runs on both."""

import numpy as np
import pytest
import torch

import tinytorch
from tinytorch.core.tensor import Tensor

RNG = np.random.default_rng(0)


def _arr(shape, dtype, noncontig):
    "Random input; noncontig: a transposed view (strides not in C order) of the given shape."
    if noncontig and len(shape) >= 2:
        base = RNG.standard_normal((shape[1], shape[0]) + tuple(shape[2:])).astype(dtype)
        return np.swapaxes(base, 0, 1)
    return RNG.standard_normal(shape).astype(dtype)


def _run(T, fn, arrays, cot_seed=1):
    if T is torch:
        ts = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    else:
        ts = [Tensor(a, dtype=a.dtype, requires_grad=True) for a in arrays]
    out = fn(T, *ts)
    val = np.array(out.detach().numpy() if T is torch else out.data, dtype=np.float64)
    cot = np.random.default_rng(cot_seed).standard_normal(val.shape)
    c = torch.from_numpy(cot.astype(arrays[0].dtype)) if T is torch else Tensor(cot.astype(arrays[0].dtype), dtype=arrays[0].dtype)
    (out * c).sum().backward()
    grads = [np.zeros(a.shape) if t.grad is None else np.array(t.grad.numpy() if T is torch else t.grad.data, dtype=np.float64)
             for t, a in zip(ts, arrays)]
    return val, grads


MASK = RNG.random((3, 4)) > 0.5
INDEX = RNG.integers(0, 4, size=(3, 2))

# name -> (fn(T, *tensors), input shapes)
CASES = {
    "sin": (lambda T, x: T.sin(x), [(3, 4)]),
    "cos": (lambda T, x: x.cos(), [(3, 4)]),
    "clamp": (lambda T, x: T.clamp(x, min=-0.3, max=0.4), [(3, 4)]),
    "clamp_min_only": (lambda T, x: x.clamp(min=0.1), [(3, 4)]),
    "tril": (lambda T, x: T.tril(x), [(3, 4)]),
    "triu_k1": (lambda T, x: x.triu(1), [(4, 3)]),
    "roll": (lambda T, x: T.roll(x, 1, 1), [(3, 4)]),
    "roll_two_dims": (lambda T, x: x.roll((1, -2), (0, 1)), [(3, 4)]),
    "roll_flat": (lambda T, x: T.roll(x, 2), [(3, 4)]),
    "expand": (lambda T, x: x.expand(2, 3, 4), [(3, 1)]),
    "expand_minus_one": (lambda T, x: x.expand(-1, 5), [(3, 1)]),
    "expand_as": (lambda T, x, y: x.expand_as(y) * y, [(1, 4), (3, 4)]),
    "repeat": (lambda T, x: x.repeat(2, 1, 3), [(3, 4)]),
    "masked_fill": (lambda T, x: x.masked_fill(T.tensor(MASK), -1.5), [(3, 4)]),
    "masked_fill_broadcast": (lambda T, x: x.masked_fill(T.tensor(MASK[0]), 0.0), [(3, 4)]),
    "gather": (lambda T, x: T.gather(x, 1, T.tensor(INDEX)), [(3, 4)]),
    "topk_values": (lambda T, x: T.topk(x, 2).values, [(3, 4)]),
    "topk_smallest_dim0": (lambda T, x: x.topk(2, dim=0, largest=False)[0], [(3, 4)]),
    "sort_values": (lambda T, x: T.sort(x, dim=0, descending=True)[0], [(3, 4)]),
    "max_dim": (lambda T, x: T.max(x, 1).values, [(3, 4)]),
    "split": (lambda T, x: sum((p * (i + 1)).sum() for i, p in enumerate(x.split(3, dim=1))), [(3, 4)]),
    "split_sizes": (lambda T, x: sum((p * (i + 1)).sum() for i, p in enumerate(T.split(x, [1, 2], dim=0))), [(3, 4)]),
    "chunk": (lambda T, x: sum((p * (i + 1)).sum() for i, p in enumerate(x.chunk(2, dim=-1))), [(3, 4)]),
    "unbind": (lambda T, x: sum((p * (i + 1)).sum() for i, p in enumerate(x.unbind(1))), [(3, 4)]),
    "cat": (lambda T, x, y: T.cat([x, y], dim=0), [(3, 4), (2, 4)]),
    "cat_last": (lambda T, x, y: T.cat((x, y), dim=-1), [(3, 4), (3, 2)]),
    "stack": (lambda T, x, y: T.stack([x, y], dim=1), [(3, 4), (3, 4)]),
    "where_broadcast": (lambda T, x, y: T.where(x > 0, x, y), [(3, 4), (4,)]),
    "where_scalar": (lambda T, x: T.where(x > 0, x, 0.0), [(3, 4)]),
    "maximum": (lambda T, x, y: T.maximum(x, y), [(3, 4), (1, 4)]),
    "minimum": (lambda T, x, y: T.minimum(x, y), [(3, 4), (3, 1)]),
    "pad_last": (lambda T, x: T.nn.functional.pad(x, (1, 2)), [(3, 4)]),
    "pad_two": (lambda T, x: T.nn.functional.pad(x, (1, 0, 0, 2), value=0.5), [(3, 4)]),
    "double_cast": (lambda T, x: x.double() * 2, [(3, 4)]),
    "type_as": (lambda T, x, y: x.type_as(y) + y, [(3, 4), (3, 4)]),
    "clone": (lambda T, x: x.clone() * x, [(3, 4)]),
    "view_as": (lambda T, x, y: x.contiguous().view_as(y) * y, [(3, 4), (4, 3)]),
    "flatten_range": (lambda T, x: T.flatten(x, 1, 2), [(2, 3, 4)]),
    "flatten_neg": (lambda T, x: x.flatten(-2), [(2, 3, 4)]),
    "transpose": (lambda T, x: x.transpose(0, -1), [(2, 3, 4)]),
    "permute": (lambda T, x: x.permute(2, 0, 1), [(2, 3, 4)]),
    "unsqueeze_neg": (lambda T, x: x.unsqueeze(-1) * x.unsqueeze(1), [(3, 4)]),
    "squeeze_dim": (lambda T, x: x.squeeze(1), [(3, 1, 4)]),
    "pow_square": (lambda T, x: x.pow(2) + x.square(), [(3, 4)]),
    "add_alpha": (lambda T, x, y: x.add(y, alpha=2.0) - x.sub(y, alpha=0.5), [(3, 4), (4,)]),
    "var": (lambda T, x: x.var(1), [(3, 4)]),
    "var_all_biased": (lambda T, x: T.var(x, unbiased=False), [(3, 4)]),
    "std_keepdim": (lambda T, x: x.std(0, keepdim=True), [(3, 4)]),
    "std_correction0": (lambda T, x: T.std(x, dim=(0, 1), correction=0), [(2, 3, 4)]),
    "norm": (lambda T, x: x.norm(), [(3, 4)]),
    "norm_dim": (lambda T, x: T.norm(x, dim=1), [(3, 4)]),
    "norm_p1": (lambda T, x: x.norm(p=1, dim=0, keepdim=True), [(3, 4)]),
    "norm_p3": (lambda T, x: x.norm(p=3), [(3, 4)]),
    "einsum_matmul": (lambda T, a, b: T.einsum("ij,jk->ik", a, b), [(3, 4), (4, 5)]),
    "einsum_batched_attention": (lambda T, q, k: T.einsum("bhtd,bhsd->bhts", q, k), [(2, 3, 4, 5), (2, 3, 6, 5)]),
    "einsum_sum_out": (lambda T, a, b: T.einsum("ij,kj->i", a, b), [(3, 4), (2, 4)]),
    "einsum_implicit_outer": (lambda T, a, b: T.einsum("i,j", a, b), [(3,), (4,)]),
    "einsum_trace_free_sum": (lambda T, a: T.einsum("ij->j", a), [(3, 4)]),
    # nn.functional
    "relu": (lambda T, x: T.nn.functional.relu(x), [(3, 4)]),
    "sigmoid": (lambda T, x: T.sigmoid(x), [(3, 4)]),
    "tanh": (lambda T, x: T.nn.functional.tanh(x), [(3, 4)]),
    "gelu": (lambda T, x: T.nn.functional.gelu(x), [(3, 4)]),
    "gelu_tanh": (lambda T, x: T.nn.functional.gelu(x, approximate="tanh"), [(3, 4)]),
    "softmax": (lambda T, x: T.nn.functional.softmax(x, dim=0), [(3, 4)]),
    "leaky_relu": (lambda T, x: T.nn.functional.leaky_relu(x, 0.2), [(3, 4)]),
    "leaky_relu_layer": (lambda T, x: T.nn.LeakyReLU()(x), [(3, 4)]),
    "silu": (lambda T, x: T.nn.functional.silu(x) + T.nn.SiLU()(x * 2), [(3, 4)]),
    "identity": (lambda T, x: T.nn.Identity(7, k=1)(x) * 3, [(3, 4)]),
    "log_softmax_layer": (lambda T, x: T.nn.LogSoftmax(dim=1)(x), [(3, 4)]),
    "log_softmax": (lambda T, x: T.nn.functional.log_softmax(x, dim=-1), [(3, 4)]),
    "linear": (lambda T, x, w, b: T.nn.functional.linear(x, w, b), [(5, 4), (3, 4), (3,)]),
    "linear_nobias": (lambda T, x, w: T.nn.functional.linear(x, w), [(2, 5, 4), (3, 4)]),
    "max_pool2d": (lambda T, x: T.nn.functional.max_pool2d(x, 2), [(2, 3, 6, 6)]),
    "avg_pool2d": (lambda T, x: T.nn.functional.avg_pool2d(x, 3, stride=2, padding=1), [(2, 3, 7, 7)]),
    "adaptive_avg_pool2d": (lambda T, x: T.nn.functional.adaptive_avg_pool2d(x, (3, 2)), [(2, 3, 5, 7)]),
    "adaptive_avg_pool2d_1": (lambda T, x: T.nn.AdaptiveAvgPool2d(1)(x), [(2, 3, 4, 4)]),
    "conv2d": (lambda T, x, w, b: T.nn.functional.conv2d(x, w, b, stride=2, padding=1), [(2, 3, 7, 7), (4, 3, 3, 3), (4,)]),
    "sdpa_causal": (lambda T, q, k, v: T.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                    [(2, 5, 4), (2, 5, 4), (2, 5, 3)]),
    "sdpa_attn_mask": (lambda T, q, k, v: T.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=T.tensor(np.tril(np.ones((5, 5), dtype=bool)))), [(2, 5, 4), (2, 5, 4), (2, 5, 3)]),
    "embedding": (lambda T, w: T.nn.functional.embedding(T.tensor(np.array([[0, 2, 2], [5, 1, 0]])), w), [(6, 3)]),
    "embedding_layer_ids": (lambda T, w: w[T.tensor(np.array([1, 1, 4]))] * 2, [(6, 3)]),
    "dropout_eval": (lambda T, x: T.nn.functional.dropout(x, 0.5, training=False), [(3, 4)]),
    "mse_sum": (lambda T, x, y: T.nn.functional.mse_loss(x, y, reduction="sum"), [(3, 4), (3, 4)]),
    "mse_none": (lambda T, x, y: T.nn.MSELoss(reduction="none")(x, y), [(3, 4), (3, 4)]),
    "bce_none": (lambda T, x: T.nn.functional.binary_cross_entropy(T.sigmoid(x), T.tensor(MASK * 1.0).type_as(x),
                                                                    reduction="none"), [(3, 4)]),
    "bce_sum": (lambda T, x: T.nn.BCELoss(reduction="sum")(T.sigmoid(x), T.tensor(MASK * 1.0).type_as(x)), [(3, 4)]),
}

TARGETS = np.array([0, 3, 1, -100, 2])
LOSS_CASES = {
    "cross_entropy_" + r: (lambda T, x, r=r: T.nn.functional.cross_entropy(x, T.tensor(TARGETS), reduction=r), [(5, 4)])
    for r in ("mean", "sum", "none")
}
LOSS_CASES.update({
    "nll_loss_" + r: (lambda T, x, r=r: T.nn.functional.nll_loss(T.nn.functional.log_softmax(x, dim=1),
                                                               T.tensor(TARGETS), reduction=r), [(5, 4)])
    for r in ("mean", "sum", "none")
})
LOSS_CASES["cross_entropy_spatial_none"] = (
    lambda T, x: T.nn.CrossEntropyLoss(reduction="none")(x, T.tensor(np.array([[0, 1, 2], [3, 0, 1]]))), [(2, 4, 3)])
CASES.update(LOSS_CASES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "transposed"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_pytorch(name, noncontig, dtype):
    fn, shapes = CASES[name]
    arrays = [_arr(s, dtype, noncontig and i == 0) for i, s in enumerate(shapes)]
    if name.startswith("max_dim") or name.startswith("topk") or name.startswith("sort") or name == "maximum":
        arrays = [a + np.arange(a.size).reshape(a.shape) * 1e-3 for a in arrays]    # no ties
    val_t, grads_t = _run(torch, fn, arrays)
    val_o, grads_o = _run(tinytorch, fn, arrays)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    assert val_o.shape == val_t.shape
    np.testing.assert_allclose(val_o, val_t, **tol, err_msg=f"{name}: values")
    for i, (go, gt) in enumerate(zip(grads_o, grads_t)):
        np.testing.assert_allclose(go, gt, **tol, err_msg=f"{name}: gradient of input {i}")


def test_noncontiguous_inputs_really_are_noncontiguous():
    a = _arr((3, 4), np.float32, True)
    assert not a.flags.c_contiguous and Tensor(a, dtype=a.dtype).is_contiguous() is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtypes_follow_pytorch(dtype):
    x = RNG.standard_normal((3, 4)).astype(dtype)
    for name in ("sin", "clamp", "gather", "cat", "pad_last", "adaptive_avg_pool2d_1", "gelu_tanh"):
        fn, shapes = CASES[name]
        arrays = [RNG.standard_normal(s).astype(dtype) for s in shapes]
        ours = fn(tinytorch, *[Tensor(a, dtype=dtype) for a in arrays])
        theirs = fn(torch, *[torch.from_numpy(a) for a in arrays])
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch."), name
    assert x.dtype == dtype
