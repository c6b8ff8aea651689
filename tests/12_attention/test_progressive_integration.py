"""Module 12 (Attention): progressive integration tests.

  A. TestStackBelow        -- modules 01-11 still work: tensor ops, Linear, losses, autograd, the
                              optimizers, the tokenizer and the embeddings.
  B. Attention core:
       TestScaledDotProduct -- the formula, masks (causal, padding, both), exact zeros, a fully masked
                              row, returned weights, scale, dropout, broadcasting of batch dimensions
       TestHeads           -- split/merge layout, the head gate (exact zero, gradient), store_attention
       TestMultiHeadAttention -- shapes, causality, parameters and state dict, errors
  C. TestAttentionInTheStack -- token ids -> Embedding -> positions -> MultiHeadAttention -> Linear ->
                              CrossEntropyLoss, trained with AdamW: the loss falls and every parameter
                              gets a gradient; a padding mask built from the tokenizer's attention_mask.
"""
import math

import numpy as np
import pytest

from tinytorch.core.attention import (MultiHeadAttention, merge_heads, scaled_dot_product_attention,
                                      split_heads)
from tinytorch.core.autograd import gradcheck, no_grad
from tinytorch.core.embeddings import Embedding, PositionalEncoding
from tinytorch.core.layers import Linear, Module
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import CharTokenizer


def naive_attention(q, k, v, allowed=None, scale=None):
    "softmax(q k^T * scale) v written out in float64, with allowed=False entries removed."
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    tot = e.sum(-1, keepdims=True)
    w = e / np.where(tot == 0, 1, tot)
    return w @ v, w


def rand(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_layers_losses_autograd(self):
        rng = np.random.default_rng(0)
        x = Tensor(rand(rng, 4, 3), requires_grad=True)
        lin = Linear(3, 5, rng=rng)
        loss = CrossEntropyLoss()(lin(x), np.array([0, 1, 4, 2]))
        loss.backward()
        assert x.grad.shape == (4, 3) and lin.weight.grad.shape == (5, 3)
        assert np.isfinite(loss.item()) and loss.item() > 0
        t = Tensor(np.arange(6.0).reshape(2, 3))
        assert (t @ t.T).data.tolist() == [[5, 14], [14, 50]]
        assert t.permute(1, 0).shape == (3, 2)

    def test_optimizer_step(self):
        p = Tensor(np.array([1.0, -2.0]), requires_grad=True)
        opt = AdamW([p], lr=0.1, weight_decay=0.0)
        (p * p).sum().backward()
        opt.step()
        np.testing.assert_allclose(p.data, [0.9, -1.9], rtol=1e-5)

    def test_tokenizer_and_embeddings(self):
        tok = CharTokenizer.from_text("hello world")
        ids = tok.encode("hello")
        assert tok.decode(ids) == "hello"
        emb = Embedding(tok.vocab_size, 6, rng=np.random.default_rng(0))
        out = emb(np.array([ids]))
        assert out.shape == (1, 5, 6)
        np.testing.assert_array_equal(out.data[0, 1], emb.weight.data[ids[1]])
        pos = PositionalEncoding(8, 6)
        assert pos(out).shape == (1, 5, 6)
        with pytest.raises(ValueError):
            pos(Tensor(np.zeros((1, 9, 6), dtype=np.float32)))


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestScaledDotProduct:
    def test_matches_the_formula(self):
        rng = np.random.default_rng(1)
        q, k, v = rand(rng, 2, 3, 5, 4), rand(rng, 2, 3, 7, 4), rand(rng, 2, 3, 7, 6)
        out, w = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), return_weights=True)
        ref, ref_w = naive_attention(q, k, v)
        np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w.data, ref_w, rtol=1e-5, atol=1e-7)
        assert out.dtype == np.float32 and isinstance(w, Tensor) and w.shape == (2, 3, 5, 7)
        out_only = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v))
        assert isinstance(out_only, Tensor)                      # output only by default, as PyTorch
        np.testing.assert_array_equal(out_only.data, out.data)

    def test_float64_stays_float64_and_scale(self):
        rng = np.random.default_rng(2)
        q, k, v = (Tensor(rand(rng, 3, 4), dtype=np.float64) for _ in range(3))
        out = scaled_dot_product_attention(q, k, v, scale=0.3)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out.data, naive_attention(q.data, k.data, v.data, scale=0.3)[0], rtol=1e-12)

    def test_causal_mask_exact_zeros(self):
        rng = np.random.default_rng(3)
        q, k, v = rand(rng, 2, 6, 4), rand(rng, 2, 6, 4), rand(rng, 2, 6, 4)
        causal = np.tril(np.ones((6, 6), dtype=bool))
        out, w = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=causal, return_weights=True)
        assert (w.data[:, ~causal] == 0.0).all()                 # exactly zero, not 1e-9
        np.testing.assert_allclose(w.data.sum(-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(out.data, naive_attention(q, k, v, causal)[0], rtol=1e-5, atol=1e-6)
        out2, w2 = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True, return_weights=True)
        np.testing.assert_array_equal(w2.data, w.data)
        # 0/1 integers and a Tensor mean the same as booleans
        out3 = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=Tensor(causal.astype(np.int64)))
        np.testing.assert_array_equal(out3.data, out.data)

    def test_padding_and_causal_combined(self):
        rng = np.random.default_rng(4)
        B, H, T, d = 2, 2, 5, 3
        q, k, v = rand(rng, B, H, T, d), rand(rng, B, H, T, d), rand(rng, B, H, T, d)
        pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)[:, None, None, :]
        causal = np.tril(np.ones((T, T), dtype=bool))
        out, w = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=pad & causal,
                                              return_weights=True)
        assert (w.data[0, :, :, 3:] == 0).all()
        np.testing.assert_allclose(out.data, naive_attention(q, k, v, pad & causal)[0], rtol=1e-5, atol=1e-6)
        # the same through is_causal=True plus the padding mask
        out2 = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=pad, is_causal=True)
        np.testing.assert_array_equal(out2.data, out.data)

    def test_fully_masked_row_outputs_zeros_and_zero_gradient(self):
        rng = np.random.default_rng(5)
        q, k, v = (Tensor(rand(rng, 2, 4, 3), requires_grad=True, dtype=np.float64) for _ in range(3))
        allowed = np.ones((4, 4), dtype=bool)
        allowed[1] = False                                       # query 1 may attend to nothing
        with np.errstate(all="raise"):                           # no invalid-value or divide warnings either
            out, w = scaled_dot_product_attention(q, k, v, mask=allowed, return_weights=True)
        assert np.isfinite(out.data).all() and (out.data[:, 1] == 0).all() and (w.data[:, 1] == 0).all()
        G = rng.standard_normal(out.shape)
        G[:, 1] = 5.0                                            # a gradient arrives at the dead row...
        out.backward(G)
        for t in (q, k, v):
            assert np.isfinite(t.grad.data).all()
        assert (q.grad.data[:, 1] == 0).all()                    # ...and passes nothing back
        # everything masked: all zeros, finite gradients
        q.grad = k.grad = v.grad = None
        out = scaled_dot_product_attention(q, k, v, mask=np.zeros((4, 4), dtype=bool))
        out.backward(G)
        assert (out.data == 0).all() and (q.grad.data == 0).all() and (k.grad.data == 0).all()
        assert (v.grad.data == 0).all()

    def test_gradients_by_central_differences(self):
        rng = np.random.default_rng(6)
        q = Tensor(rand(rng, 2, 3, 4), requires_grad=True, dtype=np.float64)
        k = Tensor(rand(rng, 1, 5, 4), requires_grad=True, dtype=np.float64)    # broadcast over the batch
        v = Tensor(rand(rng, 2, 5, 2), requires_grad=True, dtype=np.float64)
        mask = rng.random((2, 3, 5)) > 0.3
        mask[0, 2] = False                                                        # one dead row
        assert gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask=mask), [q, k, v])
        assert k.grad is None or k.grad.shape == (1, 5, 4)

    def test_dropout_on_the_weights(self):
        rng = np.random.default_rng(7)
        q, k, v = (Tensor(rand(rng, 64, 8, 4)) for _ in range(3))
        ones = Tensor(np.ones((64, 8, 4), dtype=np.float32))
        out = scaled_dot_product_attention(Tensor(np.zeros((64, 8, 4), dtype=np.float32)), k, ones,
                                           dropout_p=0.5, rng=np.random.default_rng(0))
        # uniform weights 1/8, each kept with prob 0.5 and scaled by 2: row sums of kept weights * 2
        vals = out.data[..., 0]
        assert abs(vals.mean() - 1.0) < 0.05 and vals.std() > 0.1
        assert np.allclose(vals * 4, np.round(vals * 4))        # multiples of 2/8
        a = scaled_dot_product_attention(q, k, v, dropout_p=0.3, rng=np.random.default_rng(1))
        b = scaled_dot_product_attention(q, k, v, dropout_p=0.3, rng=np.random.default_rng(1))
        np.testing.assert_array_equal(a.data, b.data)
        with pytest.raises(ValueError, match="dropout_p"):
            scaled_dot_product_attention(q, k, v, dropout_p=1.0)


class TestHeads:
    def test_split_and_merge_layout(self):
        x = Tensor(np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8))
        h = split_heads(x, 4)
        assert h.shape == (2, 4, 3, 2)
        np.testing.assert_array_equal(h.data[1, 2, 0], x.data[1, 0, 4:6])     # head 2 = features 4:6
        np.testing.assert_array_equal(merge_heads(h).data, x.data)
        gate = Tensor(np.array([1.0, 0.0, 2.0, 1.0], dtype=np.float32))
        m = merge_heads(h, gate).data
        assert (m[..., 2:4] == 0).all()
        np.testing.assert_array_equal(m[..., 4:6], 2 * x.data[..., 4:6])

    def test_split_merge_gradients(self):
        rng = np.random.default_rng(8)
        x = Tensor(rand(rng, 2, 3, 6), requires_grad=True, dtype=np.float64)
        g = Tensor(rand(rng, 3), requires_grad=True, dtype=np.float64)
        assert gradcheck(lambda a, b: merge_heads(split_heads(a, 3) * 1.5, b), [x, g])

    def test_head_mask_is_a_buffer_of_ones(self):
        mha = MultiHeadAttention(12, 3)
        assert mha.head_mask.shape == (3,) and (mha.head_mask.data == 1).all()
        assert not mha.head_mask.requires_grad
        assert all(p is not mha.head_mask for p in mha.parameters())
        assert "head_mask" in mha.state_dict() and len(list(mha.parameters())) == 8

    def test_closing_a_head_equals_zeroing_its_value_rows(self):
        rng = np.random.default_rng(9)
        mha = MultiHeadAttention(12, 3, rng=rng)
        x = Tensor(rand(rng, 2, 4, 12, dtype=np.float32))
        mha.head_mask.data[2] = 0.0
        gated = mha(x).data.copy()
        mha.head_mask.data[2] = 1.0
        mha.v_proj.weight.data[8:12] = 0
        mha.v_proj.bias.data[8:12] = 0
        np.testing.assert_allclose(mha(x).data, gated, atol=1e-6)
        # and equals removing the head's columns from out_proj (the documented layout)
        mha2 = MultiHeadAttention(12, 3, rng=np.random.default_rng(10))
        base = mha2(x).data.copy()
        mha2.head_mask.data[0] = 0.0
        off = mha2(x).data
        mha2.head_mask.data[0] = 1.0
        mha2.out_proj.weight.data[:, 0:4] = 0
        np.testing.assert_allclose(mha2(x).data, off, atol=1e-6)
        assert not np.allclose(base, off)

    def test_store_attention(self):
        rng = np.random.default_rng(11)
        mha = MultiHeadAttention(8, 2, rng=rng)
        x = Tensor(rand(rng, 3, 5, 8, dtype=np.float32))
        mha(x)
        assert mha.last_attention_weights is None                # off by default
        mha.store_attention = True
        causal = np.tril(np.ones((5, 5), dtype=bool))
        mha(x, mask=causal)
        w = mha.last_attention_weights
        assert isinstance(w, np.ndarray) and w.shape == (3, 2, 5, 5)
        assert (w[..., ~causal] == 0).all() and np.allclose(w.sum(-1), 1, atol=1e-6)


class TestMultiHeadAttention:
    def test_shapes_parameters_and_layout(self):
        mha = MultiHeadAttention(16, 4, bias=True)
        names = [n for n, _ in mha.named_parameters()]
        assert names == ["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight",
                         "v_proj.bias", "out_proj.weight", "out_proj.bias"]
        assert all(p.shape in ((16, 16), (16,)) for p in mha.parameters())
        assert mha.head_dim == 4 and mha.num_heads == 4 and mha.embed_dim == 16
        assert len(list(MultiHeadAttention(16, 4, bias=False).parameters())) == 4
        out = mha(Tensor(np.zeros((2, 7, 16), dtype=np.float32)))
        assert out.shape == (2, 7, 16)

    def test_matches_a_per_head_computation(self):
        "Head h computed by hand from rows h*hd:(h+1)*hd of the projections and columns of out_proj."
        rng = np.random.default_rng(12)
        D, H, T = 12, 3, 5
        hd = D // H
        mha = MultiHeadAttention(D, H, rng=rng)
        x = rand(rng, 2, T, D)
        causal = np.tril(np.ones((T, T), dtype=bool))
        got = mha(Tensor(x), mask=causal).data
        W = lambda lin: (lin.weight.data.astype(np.float64), lin.bias.data.astype(np.float64))
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = W(mha.q_proj), W(mha.k_proj), W(mha.v_proj), W(mha.out_proj)
        want = np.zeros((2, T, D)) + bo
        for h in range(H):
            r = slice(h * hd, (h + 1) * hd)
            q, k, v = x @ wq[r].T + bq[r], x @ wk[r].T + bk[r], x @ wv[r].T + bv[r]
            o, _ = naive_attention(q, k, v, causal)
            want += o @ wo[:, r].T
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    def test_causality(self):
        rng = np.random.default_rng(13)
        mha = MultiHeadAttention(8, 2, rng=rng)
        x = rand(rng, 1, 6, 8, dtype=np.float32)
        causal = np.tril(np.ones((6, 6), dtype=bool))
        y1 = mha(Tensor(x), mask=causal).data
        x[0, 4:] += 1.0
        y2 = mha(Tensor(x), mask=causal).data
        np.testing.assert_allclose(y1[0, :4], y2[0, :4], atol=1e-6)
        assert not np.allclose(y1[0, 4:], y2[0, 4:])

    def test_dropout_only_in_training(self):
        rng = np.random.default_rng(14)
        mha = MultiHeadAttention(8, 2, dropout=0.5, rng=rng)
        x = Tensor(rand(rng, 2, 6, 8, dtype=np.float32))
        mha.eval()
        np.testing.assert_array_equal(mha(x).data, mha(x).data)
        mha.train()
        assert not np.allclose(mha(x).data, mha(x).data)

    def test_errors_name_the_values(self):
        with pytest.raises(ValueError, match=r"embed_dim=10 .*num_heads=4"):
            MultiHeadAttention(10, 4)
        with pytest.raises(ValueError, match="num_heads"):
            MultiHeadAttention(8, 0)
        mha = MultiHeadAttention(8, 2)
        with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(2, 5, 6\)"):
            mha(Tensor(np.zeros((2, 5, 6), dtype=np.float32)))
        with pytest.raises(ValueError, match=r"\(4, 4\).*\(2, 2, 5, 5\)"):
            mha(Tensor(np.zeros((2, 5, 8), dtype=np.float32)), mask=np.ones((4, 4), dtype=bool))
        with pytest.raises(ValueError, match="0.5"):
            mha(Tensor(np.zeros((2, 5, 8), dtype=np.float32)), mask=np.full((5, 5), 0.5))


# ================================================================================================
# C. Attention wired into the stack
# ================================================================================================
class TinyAttentionModel(Module):
    "ids -> Embedding + positions -> MultiHeadAttention (causal) -> Linear -> logits."
    def __init__(self, vocab, d=16, heads=2, max_len=16, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.emb = Embedding(vocab, d, rng=rng)
        self.emb.weight.data *= 0.3
        self.pos = PositionalEncoding(max_len, d, rng=rng)
        self.attn = MultiHeadAttention(d, heads, rng=rng)
        self.head = Linear(d, vocab, rng=rng)

    def forward(self, ids, mask=None):
        x = self.pos(self.emb(ids))
        T = x.shape[1]
        causal = np.tril(np.ones((T, T), dtype=bool))
        m = causal if mask is None else causal & mask
        return self.head(x + self.attn(x, mask=m))


class TestAttentionInTheStack:
    def test_a_tiny_attention_model_learns_to_copy_the_previous_token(self):
        rng = np.random.default_rng(15)
        V, T = 8, 12
        model = TinyAttentionModel(V, max_len=T)
        opt = AdamW(model.parameters(), lr=2e-2, weight_decay=0.0)
        loss_fn = CrossEntropyLoss()
        losses = []
        for step in range(150):
            seq = rng.integers(0, V, (16, T))
            target = np.concatenate([np.zeros((16, 1), dtype=np.int64), seq[:, :-1]], axis=1)   # previous token
            opt.zero_grad()
            loss = loss_fn(model(seq).reshape(-1, V), target.reshape(-1))
            loss.backward()
            if step == 0:
                for name, p in model.named_parameters():
                    assert p.grad is not None and np.abs(p.grad.data).sum() > 0, name
            opt.step()
            losses.append(loss.item())
        assert losses[0] > 1.8 and np.mean(losses[-10:]) < 0.5 * losses[0], (losses[0], losses[-10:])

    def test_padding_mask_from_the_tokenizer(self):
        tok = CharTokenizer.from_text("abcdefgh ")
        batch = tok.encode_batch(["abc", "abcdefg"])
        ids, attn_mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == (2, 7) and attn_mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0]
        model = TinyAttentionModel(tok.vocab_size, max_len=8)
        model.attn.store_attention = True
        pad = np.asarray(attn_mask, dtype=bool)[:, None, None, :]          # (B, 1, 1, T): keys only
        with no_grad():
            out = model(ids, mask=pad).data
        w = model.attn.last_attention_weights
        assert (w[0, :, :, 3:] == 0).all()                                 # nobody attends to padding
        assert np.isfinite(out).all()
        # the real tokens of the short sequence do not depend on what the padding holds
        ids2 = np.array(ids)
        ids2[0, 3:] = tok.encode("h")[0]
        with no_grad():
            out2 = model(ids2, mask=pad).data
        np.testing.assert_allclose(out[0, :3], out2[0, :3], atol=1e-6)
