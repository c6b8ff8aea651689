"""Can I turn token ids and positions into trainable vectors?"""
import math

import numpy as np
import pytest

from tinytorch.core.embeddings import Embedding, PositionalEncoding, SinusoidalPositionalEncoding
from tinytorch.core.layers import Linear
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import CharTokenizer


def test_an_embedding_reads_rows_and_sends_gradients_back_to_them():
    emb = Embedding(8, 3, rng=np.random.default_rng(0))
    assert emb.weight.shape == (8, 3) and emb.weight.requires_grad
    ids = np.array([[1, 4, 4], [0, 1, 6]])
    out = emb(ids)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[ids])
    g = np.random.default_rng(1).standard_normal((2, 3, 3)).astype(np.float32)
    out.backward(g)
    grad = emb.weight.grad.data
    np.testing.assert_allclose(grad[4], g[0, 1] + g[0, 2], rtol=1e-6)      # a repeated id adds up
    np.testing.assert_allclose(grad[1], g[0, 0] + g[1, 1], rtol=1e-6)
    assert (grad[[2, 3, 5, 7]] == 0).all()                                 # unused rows: exactly zero
    with pytest.raises(IndexError, match="token id 8 is out of range for an embedding table of 8 rows"):
        emb([2, 8])


def test_the_padding_row_stays_zero_and_never_learns():
    emb = Embedding(5, 2, padding_idx=0, rng=np.random.default_rng(0))
    assert (emb.weight.data[0] == 0).all()
    out = emb(np.array([0, 3, 0]))
    np.testing.assert_array_equal(out.data[0], [0.0, 0.0])
    out.sum().backward()
    assert (emb.weight.grad.data[0] == 0).all() and (emb.weight.grad.data[3] == 1).all()


def test_positions_are_added_from_a_learned_or_a_fixed_table():
    x = Tensor(np.zeros((2, 4, 6), dtype=np.float32), requires_grad=True)
    learned = PositionalEncoding(10, 6, rng=np.random.default_rng(0))
    y = learned(x, start_pos=3)
    np.testing.assert_allclose(y.data[1], learned.weight.data[3:7])
    y.sum().backward()
    assert (learned.weight.grad.data[3:7] == 2).all() and (learned.weight.grad.data[[0, 1, 2, 7, 8, 9]] == 0).all()
    fixed = SinusoidalPositionalEncoding(10, 6)
    assert list(fixed.parameters()) == []
    pe = fixed(x).data[0]
    for pos in range(4):
        for j in range(6):
            angle = pos / 10000 ** (2 * (j // 2) / 6)
            assert pe[pos, j] == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="length 4 starting at position 7 needs 11 positions, more than max_seq_len 10"):
        fixed(x, start_pos=7)


def test_text_to_trainable_vectors_end_to_end():
    text = "to be, or not to be, that is the question. " * 20
    tok = CharTokenizer.from_text(text)
    batch = tok.encode_batch(["to be", "or not"], add_special_tokens=True)
    ids = batch["input_ids"]
    emb = Embedding(tok.vocab_size, 8, padding_idx=tok.pad_id, rng=np.random.default_rng(0))
    pos = PositionalEncoding(16, 8, rng=np.random.default_rng(1))
    assert pos(emb(ids)).shape == (2, 8, 8)

    data = np.array(tok.encode(text))
    head = Linear(8, tok.vocab_size, rng=np.random.default_rng(2))
    opt = SGD([*emb.parameters(), *head.parameters()], lr=0.5)
    losses = []
    for _ in range(60):
        x, y = data[:-1], data[1:]
        loss = CrossEntropyLoss()(head(pos(emb(x[None, :16]))[0]), y[:16])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (emb.weight.data[tok.pad_id] == 0).all()                        # padding row never moved
