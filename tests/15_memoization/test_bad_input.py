"""Bad input to the KV cache and cached generation: each a clear error naming the values seen."""
import numpy as np
import pytest

from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.autograd import no_grad
from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import GPT
from tinytorch.generation.kv_cache import KVCache, cached_forward, cached_generate


@pytest.fixture(scope="module")
def model():
    return GPT(vocab_size=9, embed_dim=8, num_layers=2, num_heads=2, max_seq_len=6, seed=0).eval()


def test_exceeding_max_len():
    cache = KVCache(1, 1, 2, 3, max_len=4)
    k = np.zeros((1, 2, 3, 3), dtype=np.float32)
    cache.update(0, k, k)
    with pytest.raises(ValueError, match=r"cannot add 2 positions to layer 0, which holds 3 of max_len=4"):
        cache.update(0, k[:, :, :2], k[:, :, :2])
    assert cache.lengths == [3]                                 # nothing was written


def test_wrong_shapes_and_layer():
    cache = KVCache(2, 1, 2, 3, max_len=4)
    with pytest.raises(ValueError, match=r"\(1, 2, T_new, 3\); got \(1, 3, 1, 3\)"):
        cache.update(0, np.zeros((1, 3, 1, 3)), np.zeros((1, 3, 1, 3)))
    with pytest.raises(ValueError, match="different numbers of positions"):
        cache.update(0, np.zeros((1, 2, 1, 3)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(IndexError, match=r"layer index 2 .*2 layers"):
        cache.update(2, np.zeros((1, 2, 1, 3)), np.zeros((1, 2, 1, 3)))
    with pytest.raises(IndexError, match="-1"):
        cache.layer(-1)
    with pytest.raises(ValueError, match="max_len"):
        KVCache(1, 1, 2, 3, max_len=0)
    with pytest.raises(ValueError, match="num_heads lists 1 layers but num_layers=2"):
        KVCache(2, 1, [2], 3, max_len=4)
    with pytest.raises(ValueError, match=r"num_heads must be a positive integer \(>= 1\), got 0"):
        KVCache(2, 1, [2, 0], 3, max_len=4)


def test_the_cache_refuses_to_run_while_recording_gradients():
    mha = MultiHeadAttention(4, 2)
    cache = KVCache(1, 1, 2, 2, max_len=4)
    x = Tensor(np.zeros((1, 1, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="no_grad"):
        mha(x, kv_hook=cache.layer(0))
    with no_grad():
        assert mha(x, kv_hook=cache.layer(0)).shape == (1, 1, 4)


def test_positions_out_of_step(model):
    cache = KVCache.for_model(model)
    with no_grad():
        cached_forward(model, np.array([[1, 2]]), cache, 0)
        with pytest.raises(ValueError, match=r"holds 2 positions but start_pos=5"):
            cached_forward(model, np.array([[3]]), cache, 5)
        mha = model.blocks[0].attn
        with pytest.raises(ValueError, match=r"layer 0 holds 2 positions but start_pos=0"):
            mha(Tensor(np.zeros((1, 1, 8), dtype=np.float32)), kv_hook=cache.layer(0, 0))


def test_cached_generation_errors(model):
    with pytest.raises(ValueError, match="non-empty"):
        cached_generate(model, [], 3)
    with pytest.raises(ValueError, match="temperature"):
        cached_generate(model, [1], 3, temperature=-1)
    with pytest.raises(IndexError, match="9"):
        cached_generate(model, [1, 9], 3)
    with pytest.raises(ValueError, match="does not fit a batch of 2"):
        cached_generate(model, [[1], [2]], 3, cache=KVCache.for_model(model, batch_size=1))
    with pytest.raises(ValueError, match="max_seq_len=6"):
        cached_generate(model, [1], 3, cache=KVCache.for_model(model, max_len=4))
    big = KVCache.for_model(model, max_len=9)                  # the cache has room, the position table not
    with no_grad():
        cached_forward(model, np.array([[1, 2, 3]]), big, 0)
        with pytest.raises(ValueError, match="7 tokens is longer than max_seq_len=6"):
            cached_forward(model, np.array([[1, 2, 3, 4]]), big, 3)
