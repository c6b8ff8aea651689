"""Can I generate text one token at a time without recomputing the past, and get exactly the same text?"""
import numpy as np

from tinytorch.core.autograd import no_grad
from tinytorch.core.transformers import GPT
from tinytorch.generation.kv_cache import KVCache, cached_forward, cached_generate, offset_causal_mask


def small_gpt():
    model = GPT(vocab_size=13, embed_dim=16, num_layers=2, num_heads=2, max_seq_len=10, seed=0)
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.data += rng.standard_normal(p.shape).astype(np.float32) * 0.2
    return model.eval()


def test_the_cache_appends_and_returns_views():
    cache = KVCache(num_layers=2, batch_size=1, num_heads=2, head_dim=3, max_len=5)
    rng = np.random.default_rng(1)
    k1, v1 = rng.standard_normal((1, 2, 2, 3)), rng.standard_normal((1, 2, 2, 3))
    k2, v2 = rng.standard_normal((1, 2, 1, 3)), rng.standard_normal((1, 2, 1, 3))
    cache.update(1, k1, v1)
    k_all, v_all = cache.update(1, k2, v2)
    assert k_all.shape == (1, 2, 3, 3) and cache.lengths == [0, 3]
    np.testing.assert_allclose(k_all, np.concatenate([k1, k2], axis=2), rtol=1e-6)
    np.testing.assert_allclose(v_all, np.concatenate([v1, v2], axis=2), rtol=1e-6)
    assert np.shares_memory(k_all, cache.keys[1])
    cache.reset()
    assert cache.lengths == [0, 0]
    try:
        cache.update(0, np.zeros((1, 2, 6, 3)), np.zeros((1, 2, 6, 3)))
        raise AssertionError("6 positions do not fit in max_len=5")
    except ValueError as e:
        assert "max_len=5" in str(e)


def test_offset_causal_mask():
    np.testing.assert_array_equal(offset_causal_mask(3, 0), np.tril(np.ones((3, 3), dtype=bool)))
    assert offset_causal_mask(2, 4).tolist() == [[True] * 5 + [False], [True] * 6]


def test_cached_forward_equals_the_full_forward():
    model = small_gpt()
    ids = np.random.default_rng(2).integers(0, 13, (2, 9))
    with no_grad():
        full = model(ids).data
        cache = KVCache.for_model(model, batch_size=2)
        steps = [cached_forward(model, ids[:, :4], cache, 0).data]
        for t in range(4, 9):
            steps.append(cached_forward(model, ids[:, t:t + 1], cache, t).data)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5)
    assert cache.seq_len == 9


def test_cached_generation_gives_the_same_tokens():
    model = small_gpt()
    for kwargs in (dict(temperature=1.0, seed=3), dict(temperature=0.0), dict(temperature=0.8, top_k=3, seed=4)):
        prompt = np.array([[1, 2, 3], [4, 5, 6]])
        np.testing.assert_array_equal(cached_generate(model, prompt, 12, **kwargs),     # 3 + 12 > 10: the window
                                      model.generate(prompt, 12, **kwargs))             # fills up on the way
