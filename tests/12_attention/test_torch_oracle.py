"""Module 12 (attention) against PyTorch.

scaled_dot_product_attention against torch.nn.functional.scaled_dot_product_attention and
MultiHeadAttention against torch.nn.MultiheadAttention (batch_first, the same weights: PyTorch's
in_proj_weight is q_proj, k_proj and v_proj stacked, and its head h also owns rows h*hd:(h+1)*hd, so the
documented layout is PyTorch's). Forward values and the gradient of every input and weight under a random
cotangent (a plain sum would hide a wrong permutation), float64 to ~1e-10, float32 to ~1e-5. Masks:
causal, padding, both, broadcast batch dimensions, non-contiguous inputs. Then the head gate's
gradient against a finite difference and against torch.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinytorch.core.attention import MultiHeadAttention, scaled_dot_product_attention
from tinytorch.core.tensor import Tensor

TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-5)}


def close(got, want, dtype, what=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == tuple(want.shape), (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, err_msg=what, **TOL[dtype])


CASES = [
    # q shape, k shape, v shape, mask kind
    ((2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4), None),
    ((2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 6), "causal"),
    ((2, 2, 4, 8), (2, 2, 7, 8), (2, 2, 7, 3), "padding"),
    ((2, 2, 6, 4), (2, 2, 6, 4), (2, 2, 6, 4), "padding+causal"),
    ((3, 5, 4), (1, 6, 4), (3, 6, 2), "random"),          # k broadcast over the batch
    ((1, 4), (3, 4), (3, 5), None),                          # 2-D: one sequence
]


def make_mask(kind, q_shape, k_shape, rng):
    Tq, Tk = q_shape[-2], k_shape[-2]
    if kind is None:
        return None
    if kind == "causal":
        return np.tril(np.ones((Tq, Tk), dtype=bool))
    if kind == "random":
        m = rng.random(q_shape[:-2] + (Tq, Tk)) > 0.4
        m[..., 0] = True                                     # torch gives NaN for a fully masked row
        return m
    B = q_shape[0]
    lengths = rng.integers(1, Tk + 1, B)
    lengths[0] = Tk
    pad = (np.arange(Tk)[None, :] < lengths[:, None])[:, None, None, :]
    if kind == "padding":
        return pad
    return pad & np.tril(np.ones((Tq, Tk), dtype=bool))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_sdpa_forward_and_gradients(case, dtype):
    qs, ks, vs, kind = CASES[case]
    rng = np.random.default_rng(case)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in (qs, ks, vs))
    mask = make_mask(kind, qs, ks, rng)
    tq, tk, tv = (Tensor(a, requires_grad=True, dtype=dtype) for a in (q, k, v))
    out = scaled_dot_product_attention(tq, tk, tv, mask=mask)
    G = rng.standard_normal(out.shape).astype(dtype)
    out.backward(G)

    pq, pk, pv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    ref = F.scaled_dot_product_attention(pq, pk, pv, attn_mask=None if mask is None else torch.from_numpy(mask))
    ref.backward(torch.from_numpy(G))
    close(out.data, ref, dtype, "output")
    close(tq.grad.data, pq.grad, dtype, "grad q")
    close(tk.grad.data, pk.grad, dtype, "grad k")
    close(tv.grad.data, pv.grad, dtype, "grad v")


def test_sdpa_is_causal_scale_and_non_contiguous_inputs():
    rng = np.random.default_rng(10)
    base = rng.standard_normal((2, 6, 3, 4))                     # (B, T, H, d): transpose to (B, H, T, d)
    q, k, v = base, base[..., ::-1].copy(), base * 0.5 + 1
    views = [a.transpose(0, 2, 1, 3) for a in (q, k, v)]
    assert not views[0].flags.c_contiguous
    tq, tk, tv = (Tensor(a, requires_grad=True, dtype=np.float64) for a in views)
    out = scaled_dot_product_attention(tq, tk, tv, is_causal=True, scale=0.7)
    G = rng.standard_normal(out.shape).transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)   # non-contiguous
    out.backward(G)
    pq, pk, pv = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in views)
    ref = F.scaled_dot_product_attention(pq, pk, pv, is_causal=True, scale=0.7)
    ref.backward(torch.from_numpy(np.ascontiguousarray(G)))
    close(out.data, ref, np.float64, "output")
    for mine, theirs, name in ((tq, pq, "q"), (tk, pk, "k"), (tv, pv, "v")):
        close(mine.grad.data, theirs.grad, np.float64, f"grad {name}")


def to_float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def torch_mha_from(mha: MultiHeadAttention):
    D, H = mha.embed_dim, mha.num_heads
    ref = torch.nn.MultiheadAttention(D, H, bias=True, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.from_numpy(np.concatenate(
            [mha.q_proj.weight.data, mha.k_proj.weight.data, mha.v_proj.weight.data]).astype(np.float64)))
        ref.in_proj_bias.copy_(torch.from_numpy(np.concatenate(
            [mha.q_proj.bias.data, mha.k_proj.bias.data, mha.v_proj.bias.data]).astype(np.float64)))
        ref.out_proj.weight.copy_(torch.from_numpy(mha.out_proj.weight.data.astype(np.float64)))
        ref.out_proj.bias.copy_(torch.from_numpy(mha.out_proj.bias.data.astype(np.float64)))
    return ref


@pytest.mark.parametrize("D,H,T,mask_kind", [(8, 2, 5, None), (12, 3, 6, "causal"), (16, 4, 7, "padding+causal"),
                                             (6, 1, 4, "causal")])
def test_multi_head_attention_against_torch(D, H, T, mask_kind):
    rng = np.random.default_rng(D * 10 + H)
    mha = to_float64(MultiHeadAttention(D, H, rng=rng))
    ref = torch_mha_from(mha)
    B = 3
    x = rng.standard_normal((B, T, D))
    mask = make_mask(mask_kind, (B, T, T, D), (B, T, T, D), rng)     # (T, T) or (B, 1, 1, T) & (T, T)
    tx = Tensor(x, requires_grad=True, dtype=np.float64)
    out = mha(tx, mask=mask)
    G = rng.standard_normal(out.shape)
    out.backward(G)

    px = torch.tensor(x, requires_grad=True)
    attn_mask = None
    if mask is not None:                                  # torch's boolean attn_mask: True = NOT allowed
        full = np.broadcast_to(mask, (B, H, T, T)).reshape(B * H, T, T)
        attn_mask = torch.from_numpy(~full)
    y, _ = ref(px, px, px, attn_mask=attn_mask, need_weights=False)
    y.backward(torch.from_numpy(G))
    close(out.data, y, np.float64, "output")
    close(tx.grad.data, px.grad, np.float64, "grad x")
    gw = ref.in_proj_weight.grad.numpy()
    gb = ref.in_proj_bias.grad.numpy()
    for i, lin in enumerate((mha.q_proj, mha.k_proj, mha.v_proj)):
        close(lin.weight.grad.data, gw[i * D:(i + 1) * D], np.float64, f"grad {i} weight")
        close(lin.bias.grad.data, gb[i * D:(i + 1) * D], np.float64, f"grad {i} bias")
    close(mha.out_proj.weight.grad.data, ref.out_proj.weight.grad, np.float64, "grad out_proj.weight")
    close(mha.out_proj.bias.grad.data, ref.out_proj.bias.grad, np.float64, "grad out_proj.bias")


def test_head_gate_gradient_against_torch_and_finite_differences():
    rng = np.random.default_rng(3)
    D, H, T, B = 12, 3, 5, 2
    mha = to_float64(MultiHeadAttention(D, H, rng=rng))
    mha.head_mask.data = np.array([1.0, 0.5, 0.0])                       # one head off, one halved
    mha.head_mask.requires_grad_(True)
    x = rng.standard_normal((B, T, D))
    causal = np.tril(np.ones((T, T), dtype=bool))
    G = rng.standard_normal((B, T, D))
    out = mha(Tensor(x, dtype=np.float64), mask=causal)
    out.backward(G)
    grad = mha.head_mask.grad.data.copy()
    assert grad.shape == (3,) and grad[2] != 0          # a closed head still has an importance gradient

    # finite differences of L = sum(out * G) in each gate
    loss = lambda: float(np.sum(mha(Tensor(x, dtype=np.float64), mask=causal).data * G))
    eps = 1e-6
    for h in range(H):
        old = mha.head_mask.data[h]
        mha.head_mask.data[h] = old + eps
        up = loss()
        mha.head_mask.data[h] = old - eps
        down = loss()
        mha.head_mask.data[h] = old
        assert abs((up - down) / (2 * eps) - grad[h]) < 1e-6 * max(1.0, abs(grad[h])), h

    # torch: the same gate multiplied into each head's output before out_proj
    hd = D // H
    W = {n: torch.tensor(p.data) for n, p in mha.named_parameters()}
    gate = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    px = torch.tensor(x)
    split = lambda t: t.view(B, T, H, hd).transpose(1, 2)
    q = split(px @ W["q_proj.weight"].T + W["q_proj.bias"])
    k = split(px @ W["k_proj.weight"].T + W["k_proj.bias"])
    v = split(px @ W["v_proj.weight"].T + W["v_proj.bias"])
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(causal)) * gate[None, :, None, None]
    y = o.transpose(1, 2).reshape(B, T, D) @ W["out_proj.weight"].T + W["out_proj.bias"]
    y.backward(torch.from_numpy(G))
    close(out.data, y, np.float64, "gated output")
    close(grad, gate.grad, np.float64, "gate gradient")


def test_closed_head_contributes_exactly_zero():
    rng = np.random.default_rng(4)
    mha = MultiHeadAttention(8, 2, rng=rng)
    x = Tensor(rng.standard_normal((2, 4, 8)).astype(np.float32))
    mha.head_mask.data[:] = 0.0
    out = mha(x).data
    np.testing.assert_array_equal(out, np.broadcast_to(mha.out_proj.bias.data, out.shape))  # only the bias left
