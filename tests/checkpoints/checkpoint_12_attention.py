"""Can every position of a sequence gather information from the positions it may see, with weights it learns?"""
import math

import numpy as np

from tinytorch.core.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from tinytorch.core.autograd import gradcheck
from tinytorch.core.tensor import Tensor


def reference(q, k, v, allowed):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    s = np.where(allowed, s, -np.inf)
    with np.errstate(invalid="ignore"):                 # a fully masked row is NaN here; callers skip it
        w = np.exp(s - s.max(-1, keepdims=True))
        return (w / w.sum(-1, keepdims=True)) @ v


def test_attention_matches_the_formula_with_exact_zeros_where_masked():
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 3))
    allowed = np.tril(np.ones((5, 6), dtype=bool), k=1)
    out, w = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=allowed, return_weights=True)
    assert out.shape == (2, 5, 3) and w.shape == (2, 5, 6)
    np.testing.assert_allclose(out.data, reference(q, k, v, allowed), rtol=1e-4, atol=1e-5)
    assert (w.data[:, ~allowed] == 0).all()
    np.testing.assert_allclose(w.data.sum(-1), 1.0, rtol=1e-5)


def test_a_query_that_may_see_nothing_outputs_zeros_not_nan():
    rng = np.random.default_rng(1)
    q, k, v = (Tensor(rng.standard_normal((3, 4)), requires_grad=True, dtype=np.float64) for _ in range(3))
    allowed = np.ones((3, 3), dtype=bool)
    allowed[0] = False
    out = scaled_dot_product_attention(q, k, v, mask=allowed)
    assert np.isfinite(out.data).all() and (out.data[0] == 0).all()
    np.testing.assert_allclose(out.data[1:], reference(q.data, k.data, v.data, allowed)[1:], rtol=1e-10)
    out.backward(np.ones((3, 4)))
    assert np.isfinite(q.grad.data).all() and (q.grad.data[0] == 0).all()


def test_attention_gradients_match_central_differences():
    rng = np.random.default_rng(2)
    q, k, v = (Tensor(rng.standard_normal(s), requires_grad=True, dtype=np.float64)
               for s in ((2, 3, 4), (2, 5, 4), (2, 5, 2)))
    mask = rng.random((2, 3, 5)) > 0.3
    mask[:, :, 0] = True
    assert gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask=mask), [q, k, v])


def test_heads_split_merge_and_gate():
    x = Tensor(np.arange(24, dtype=np.float32).reshape(1, 3, 8))
    h = split_heads(x, 2)
    assert h.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(h.data[0, 1], x.data[0, :, 4:8])        # head 1 = features 4:8
    np.testing.assert_array_equal(merge_heads(h).data, x.data)
    gated = merge_heads(h, Tensor(np.array([0.0, 3.0], dtype=np.float32))).data
    assert (gated[..., :4] == 0).all() and np.allclose(gated[..., 4:], 3 * x.data[..., 4:])
    xg = Tensor(np.random.default_rng(3).standard_normal((2, 3, 6)), requires_grad=True, dtype=np.float64)
    gate = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda a, g: merge_heads(split_heads(a, 3), g) * 1.0, [xg, gate])


def test_multi_head_attention_is_causal_and_its_head_gate_works():
    rng = np.random.default_rng(4)
    mha = MultiHeadAttention(8, 2, rng=rng)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    causal = np.tril(np.ones((5, 5), dtype=bool))
    y = mha(Tensor(x), mask=causal)
    assert y.shape == (2, 5, 8)
    x2 = x.copy()
    x2[:, 3:] = 0.0
    np.testing.assert_allclose(mha(Tensor(x2), mask=causal).data[:, :3], y.data[:, :3], atol=1e-5)
    mha.head_mask.data[:] = [1.0, 0.0]
    off = mha(Tensor(x), mask=causal).data
    mha.head_mask.data[:] = 1.0
    mha.out_proj.weight.data[:, 4:8] = 0.0                                  # head 1's columns of out_proj
    np.testing.assert_allclose(mha(Tensor(x), mask=causal).data, off, atol=1e-5)
    mha.head_mask.requires_grad_(True)
    (mha(Tensor(x), mask=causal) * Tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))).sum().backward()
    g = mha.head_mask.grad.data
    assert g.shape == (2,) and g[1] == 0.0 and g[0] != 0.0                   # head 1 now writes nothing
