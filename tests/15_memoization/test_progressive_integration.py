"""Module 15 (Memoization: the KV cache): progressive integration tests.

  A. TestStackBelow    -- modules 12-13 still work: attention with a mask, GPT forward and generate.
  B. The cache:
       TestKVCache     -- preallocated shapes, append, views not copies, per-layer lengths, reset,
                          for_model, memory, the per-layer object MultiHeadAttention takes
       TestCachedForward -- prefill + one-token decode steps give the logits of one full forward, for
                          several split points; the offset causal mask
  C. TestCachedGeneration -- cached_generate returns exactly GPT.generate's tokens (sampled, greedy,
                          top-k, a batch, a prompt longer than the window, a run that outgrows the
                          window), and does far less work: rows through the projections counted.
"""
import numpy as np
import pytest

from tinytorch.core.attention import MultiHeadAttention, scaled_dot_product_attention
from tinytorch.core.autograd import no_grad
from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import GPT, create_causal_mask
from tinytorch.generation.kv_cache import (KVCache, LayerCache, cached_forward, cached_generate,
                                                offset_causal_mask)


@pytest.fixture(scope="module")
def model():
    m = GPT(vocab_size=21, embed_dim=16, num_layers=3, num_heads=4, max_seq_len=16, seed=0)
    rng = np.random.default_rng(0)
    for p in m.parameters():
        p.data += rng.standard_normal(p.shape).astype(np.float32) * 0.2
    return m.eval()


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_attention_and_gpt(self, model):
        q = Tensor(np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32))
        out = scaled_dot_product_attention(q, q, q, mask=create_causal_mask(4))
        assert out.shape == (2, 4, 3)
        ids = np.array([[1, 2, 3, 4]])
        assert model(ids).shape == (1, 4, 21)
        a = model.generate(ids[0], 5, seed=0)
        np.testing.assert_array_equal(a, model.generate(ids[0], 5, seed=0))


# ================================================================================================
# B. The cache
# ================================================================================================
class TestKVCache:
    def test_append_views_lengths_reset(self):
        cache = KVCache(num_layers=2, batch_size=2, num_heads=3, head_dim=4, max_len=6)
        assert len(cache.keys) == 2 and cache.keys[0].shape == (2, 3, 6, 4) and cache.values[1].dtype == np.float32
        assert cache.nbytes == 2 * 2 * (2 * 3 * 6 * 4) * 4
        rng = np.random.default_rng(2)
        k1, v1 = rng.standard_normal((2, 3, 2, 4)), rng.standard_normal((2, 3, 2, 4))
        k_all, v_all = cache.update(0, k1, v1)
        assert k_all.shape == (2, 3, 2, 4) and cache.lengths == [2, 0] and cache.seq_len == 0
        np.testing.assert_allclose(v_all, v1, rtol=1e-6)
        cache.update(1, k1, v1)
        assert cache.seq_len == 2 == len(cache)
        k2, v2 = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 3, 3, 4))
        k_all, v_all = cache.layer(0).update(k2, v2)
        assert k_all.shape == (2, 3, 5, 4) and len(cache.layer(0)) == 5
        np.testing.assert_allclose(k_all[:, :, :2], k1, rtol=1e-6)
        np.testing.assert_allclose(k_all[:, :, 2:], k2, rtol=1e-6)
        assert np.shares_memory(k_all, cache.keys[0]) and np.shares_memory(v_all, cache.values[0])
        keys_array = cache.keys[0]
        cache.reset()
        assert cache.lengths == [0, 0] and cache.keys[0] is keys_array      # arrays kept, not reallocated
        k_all, _ = cache.update(0, k2[:, :, :1], v2[:, :, :1])
        assert k_all.shape == (2, 3, 1, 4)
        np.testing.assert_allclose(k_all, k2[:, :, :1], rtol=1e-6)

    def test_for_model(self, model):
        cache = KVCache.for_model(model, batch_size=3)
        assert (cache.num_layers, cache.batch_size, cache.num_heads, cache.head_dim, cache.max_len) == (3, 3, 4, 4, 16)
        assert KVCache.for_model(model, max_len=40).max_len == 40
        assert isinstance(cache.layer(2), LayerCache)
        assert "seq_len=0" in repr(cache)

    def test_multi_head_attention_through_the_cache(self):
        "Attention over cached keys/values = attention over the whole sequence, row by row."
        rng = np.random.default_rng(3)
        mha = MultiHeadAttention(8, 2, rng=rng)
        x = Tensor(rng.standard_normal((2, 6, 8)).astype(np.float32))
        with no_grad():
            full = mha(x, mask=create_causal_mask(6)).data
            cache = KVCache(1, 2, 2, 4, 6)
            first = mha(x[:, :4], mask=offset_causal_mask(4, 0), kv_hook=cache.layer(0, 0)).data
            fifth = mha(x[:, 4:5], kv_hook=cache.layer(0, 4)).data
            sixth = mha(x[:, 5:6], kv_hook=cache.layer(0, 5)).data
        np.testing.assert_allclose(np.concatenate([first, fifth, sixth], 1), full, rtol=1e-5, atol=1e-6)


class TestCachedForward:
    def test_offset_causal_mask(self):
        m = offset_causal_mask(2, 3)
        assert m.shape == (2, 5) and m.dtype == np.bool_
        assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
        np.testing.assert_array_equal(offset_causal_mask(4, 0), np.tril(np.ones((4, 4), dtype=bool)))

    @pytest.mark.parametrize("prefill", [1, 3, 7, 12])
    def test_prefill_then_decode_equals_the_full_forward(self, model, prefill):
        ids = np.random.default_rng(prefill).integers(0, 21, (2, 12))
        with no_grad():
            full = model(ids).data
            cache = KVCache.for_model(model, batch_size=2)
            parts = [cached_forward(model, ids[:, :prefill], cache, 0).data]
            for t in range(prefill, 12):
                parts.append(cached_forward(model, ids[:, t:t + 1], cache, t).data)
        got = np.concatenate(parts, axis=1)
        assert got.shape == full.shape and cache.seq_len == 12
        np.testing.assert_allclose(got, full, rtol=1e-4, atol=1e-5)

    def test_chunks_of_several_tokens_and_last_only(self, model):
        ids = np.random.default_rng(9).integers(0, 21, (1, 10))
        with no_grad():
            full = model(ids).data
            cache = KVCache.for_model(model)
            a = cached_forward(model, ids[:, :4], cache, 0).data
            b = cached_forward(model, ids[:, 4:9], cache, 4, last_only=True).data
        assert b.shape == (1, 1, 21)
        np.testing.assert_allclose(a, full[:, :4], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b[:, 0], full[:, 8], rtol=1e-4, atol=1e-5)


# ================================================================================================
# C. Cached generation
# ================================================================================================
class TestCachedGeneration:
    @pytest.mark.parametrize("kwargs", [dict(temperature=1.0, seed=0), dict(temperature=0.7, seed=1),
                                        dict(temperature=1.3, top_k=5, seed=2), dict(temperature=0.0),
                                        dict(top_k=1, seed=3)])
    def test_same_tokens_as_uncached(self, model, kwargs):
        prompt = np.array([3, 1, 4, 1, 5])
        plain = model.generate(prompt, 10, **kwargs)             # stays within the window (5 + 10 <= 16)
        cached = cached_generate(model, prompt, 10, **kwargs)
        np.testing.assert_array_equal(cached, plain)

    def test_batch_and_outgrowing_the_window(self, model):
        prompts = np.array([[1, 2, 3, 4], [9, 8, 7, 6]])
        plain = model.generate(prompts, 30, temperature=0.9, seed=4)        # 34 > max_seq_len 16
        cached = cached_generate(model, prompts, 30, temperature=0.9, seed=4)
        assert cached.shape == (2, 34)
        np.testing.assert_array_equal(cached, plain)

    def test_prompt_longer_than_the_window(self, model):
        prompt = np.arange(20) % 21
        plain = model.generate(prompt, 6, seed=5)
        np.testing.assert_array_equal(cached_generate(model, prompt, 6, seed=5), plain)

    def test_forms_and_a_reused_cache(self, model):
        t = cached_generate(model, Tensor(np.array([1, 2])), 3, seed=6)
        assert isinstance(t, Tensor) and t.shape == (5,)
        np.testing.assert_array_equal(t.data, model.generate(Tensor(np.array([1, 2])), 3, seed=6).data)
        np.testing.assert_array_equal(cached_generate(model, [1, 2], 0), [1, 2])
        cache = KVCache.for_model(model)
        a = cached_generate(model, [5, 6, 7], 8, seed=7, cache=cache)
        b = cached_generate(model, [5, 6, 7], 8, seed=7, cache=cache)            # reset between runs
        np.testing.assert_array_equal(a, b)
        assert model.training is False

    def test_every_module_gets_its_own_mode_back(self):
        "Generation runs in eval mode and gives each module back its own flag (module 02's eval_mode)."
        m = GPT(vocab_size=11, embed_dim=8, num_layers=2, num_heads=2, max_seq_len=8, seed=1)
        m.train()
        m.blocks[1].eval()                                   # one block frozen in eval mode on purpose
        before = [x.training for x in m.modules()]
        seen = []
        original = m.blocks[0].attn.forward
        def watching(*args, **kwargs):
            seen.append(m.training)
            return original(*args, **kwargs)
        m.blocks[0].attn.forward = watching
        try:
            cached_generate(m, [1, 2, 3], 2, seed=0)
        finally:
            del m.blocks[0].attn.forward
        assert seen and not any(seen)                        # eval mode while generating
        assert [x.training for x in m.modules()] == before   # block 1 stays in eval mode, the rest train

    def test_the_cache_does_less_work(self, model):
        "Count the rows that go through the first block's query projection: O(n) cached, O(n^2) not."
        lin = model.blocks[0].attn.q_proj
        rows = []
        original = lin.forward

        def counting(x):
            rows.append(int(np.prod(x.shape[:-1])))
            return original(x)
        lin.forward = counting                  # on this instance only, for the count
        try:
            prompt, n = np.array([1, 2, 3]), 13
            model.generate(prompt, n, seed=0)
            plain_rows, rows[:] = sum(rows), []
            cached_generate(model, prompt, n, seed=0)
            cached_rows = sum(rows)
        finally:
            del lin.forward
        assert cached_rows == len(prompt) + n - 1                   # the prompt once, then one row per token
        assert plain_rows == sum(range(len(prompt), len(prompt) + n))  # the whole context at every step
        assert plain_rows > 5 * cached_rows


def test_a_model_with_layers_of_different_head_counts():
    "After heads are physically removed from one layer (as module 17's compaction does), the cache still fits."
    from tinytorch.core.layers import Parameter
    model = GPT(vocab_size=11, embed_dim=12, num_layers=2, num_heads=3, max_seq_len=10, seed=1).eval()
    attn = model.blocks[1].attn
    keep = np.arange(4, 12)                                     # drop head 0 (rows 0:4) of layer 1
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        proj.weight = Parameter(proj.weight.data[keep])
        proj.bias = Parameter(proj.bias.data[keep])
        proj.out_features = keep.size
    attn.out_proj.weight = Parameter(attn.out_proj.weight.data[:, keep])
    attn.out_proj.in_features = keep.size
    attn.register_buffer("head_mask", Tensor(np.ones(2, dtype=np.float32)))
    attn.num_heads = 2
    cache = KVCache.for_model(model)
    assert cache.layer_heads == [3, 2] and cache.keys[1].shape == (1, 2, 10, 4)
    prompt = np.array([1, 2, 3])
    np.testing.assert_array_equal(cached_generate(model, prompt, 9, seed=0), model.generate(prompt, 9, seed=0))
