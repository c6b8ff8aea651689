"""GPT.generate and sample_next_token: repeatable under a seed, greedy cases, top-k, temperature,
the context window, input and output forms, and argument errors."""
import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import GPT, sample_next_token


@pytest.fixture(scope="module")
def model():
    m = GPT(vocab_size=15, embed_dim=16, num_layers=2, num_heads=2, max_seq_len=8, seed=0)
    rng = np.random.default_rng(0)
    for p in m.parameters():                      # larger weights: a less uniform next-token distribution
        p.data += rng.standard_normal(p.shape).astype(np.float32) * 0.3
    return m


def test_same_seed_same_tokens_and_different_seeds_differ(model):
    prompt = np.array([1, 2, 3])
    a = model.generate(prompt, 20, seed=11)
    b = model.generate(prompt, 20, seed=11)
    np.testing.assert_array_equal(a, b)
    others = {tuple(model.generate(prompt, 20, seed=s).tolist()) for s in range(5)}
    assert len(others) > 1
    np.testing.assert_array_equal(a[:3], prompt)
    assert a.dtype == np.int64 and ((a >= 0) & (a < 15)).all()


def test_greedy_is_argmax_and_ignores_the_seed(model):
    prompt = np.array([4, 5])
    g0 = model.generate(prompt, 10, temperature=0, seed=1)
    g1 = model.generate(prompt, 10, temperature=0, seed=2)
    k1 = model.generate(prompt, 10, top_k=1, seed=3)
    np.testing.assert_array_equal(g0, g1)
    np.testing.assert_array_equal(g0, k1)
    ids = prompt[None]                                         # step by step, by hand
    for _ in range(10):
        nxt = model(ids[:, -8:]).data[:, -1].argmax(-1)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(g0, ids[0])


def test_model_mode_is_restored(model):
    model.train()
    model.generate(np.array([1]), 2, seed=0)
    assert model.training
    model.eval()
    model.generate(np.array([1]), 2, seed=0)
    assert not model.training


def test_sampling_frequencies_follow_softmax_over_temperature():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    n = 20000
    rng = np.random.default_rng(0)
    for temp in (1.0, 0.5, 2.0):
        picks = np.array([sample_next_token(logits, temp, None, rng)[0] for _ in range(n)])
        freq = np.bincount(picks, minlength=4) / n
        p = np.exp(logits[0] / temp)
        p /= p.sum()
        np.testing.assert_allclose(freq, p, atol=0.015)


def test_top_k_keeps_only_the_k_largest():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2000, 9))
    for k in (2, 5):
        picks = sample_next_token(z, 1.5, k, rng)
        ranks = (z > z[np.arange(len(z)), picks][:, None]).sum(-1)      # how many logits beat the pick
        assert ranks.max() <= k - 1
        assert len(np.unique(ranks)) == k                                # every one of the k is reachable
    np.testing.assert_array_equal(sample_next_token(z, 1.0, 1, rng), z.argmax(-1))
    picks = sample_next_token(z, 1.0, 100, np.random.default_rng(2))    # k > V: no restriction
    assert picks.min() >= 0 and picks.max() <= 8


def test_zero_probability_tokens_are_never_picked():
    logits = np.array([[0.0, -np.inf, 0.0, -np.inf]])
    rng = np.random.default_rng(3)
    picks = {int(sample_next_token(logits, 1.0, None, rng)[0]) for _ in range(500)}
    assert picks == {0, 2}


def test_prompt_longer_than_the_context_is_cropped(model):
    long_prompt = np.arange(12) % 15                           # max_seq_len is 8
    out = model.generate(long_prompt, 5, seed=4)
    assert out.shape == (17,)
    np.testing.assert_array_equal(out[:12], long_prompt)
    cropped = model.generate(long_prompt[-8:], 5, seed=4)       # the model only ever saw the last 8
    np.testing.assert_array_equal(out[12:], cropped[8:])


def test_output_form_follows_the_prompt(model):
    batch = np.array([[1, 2, 3], [4, 5, 6]])
    out = model.generate(batch, 4, seed=5)
    assert isinstance(out, np.ndarray) and out.shape == (2, 7)
    row = model.generate(batch[1], 4, seed=5)                  # one row, alone: its own draws
    assert row.shape == (7,)
    t = model.generate(Tensor(np.array([1, 2, 3])), 4, seed=5)
    assert isinstance(t, Tensor) and t.shape == (7,)
    lst = model.generate([1, 2, 3], 4, seed=5)
    np.testing.assert_array_equal(lst, t.data)
    np.testing.assert_array_equal(model.generate(batch, 0), batch)


def test_generation_argument_errors(model):
    with pytest.raises(ValueError, match="non-empty"):
        model.generate(np.array([], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(np.array([1]), -1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(np.array([1]), 2, temperature=-0.5)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(np.array([1]), 2, top_k=0)
    with pytest.raises(IndexError, match="15"):
        model.generate(np.array([1, 15]), 2)
    with pytest.raises(TypeError, match="use_cache"):
        model.generate(np.array([1]), 2, use_cache=True)        # module 13 knows no cache (module 15 adds one)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        sample_next_token(np.zeros(5))
