"""Module 11 (Embeddings): progressive integration tests.

  A. TestStackBelow          -- modules 01-10 still work: Tensor, autograd, layers, losses,
                                optimizers, tokenizers.
  B. Embedding core:
       TestEmbeddingCore     -- lookup, scatter-add backward, padding_idx, index validation
       TestPositionalCore    -- learned and sinusoidal tables, start_pos, limits
  C. TestEmbeddingsInTheStack -- tokenizer -> embedding -> positions pipeline; ids from a tokenizer
                                validated against a smaller table; position limits vs max_length;
                                gradients reach exactly the rows used; shapes feed a single-head
                                attention written here with tinytorch ops (masked by the tokenizer's
                                attention mask); variable sequence lengths; training with SGD and
                                Adam; sinusoidal vs learned; table memory = 4 * rows * dim bytes.
"""
import math

import numpy as np
import pytest

from tinytorch.core import autograd
from tinytorch.core.activations import Softmax
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import load_tinyshakespeare
from tinytorch.core.embeddings import Embedding, PositionalEncoding, SinusoidalPositionalEncoding
from tinytorch.core.layers import Linear, Module
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import BPETokenizer, CharTokenizer

TEXT = load_tinyshakespeare()


@pytest.fixture(autouse=True)
def _recording_on():
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.from_text(TEXT)


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_autograd_layers(self):
        lin = Linear(4, 2, rng=np.random.default_rng(0))
        x = Tensor(np.ones((3, 4)), requires_grad=True)
        lin(x).sum().backward()
        np.testing.assert_allclose(x.grad.data, np.tile(lin.weight.data.sum(axis=0), (3, 1)), rtol=1e-6)
        assert lin.weight.grad.shape == (2, 4)
        with no_grad():
            assert not lin(x).requires_grad

    def test_losses_and_optimizers(self):
        logits = Tensor(np.zeros((2, 3)), requires_grad=True)
        loss = CrossEntropyLoss()(logits, np.array([0, 2]))
        assert loss.item() == pytest.approx(math.log(3), rel=1e-6)
        loss.backward()
        SGD([logits], lr=1.0).step()
        assert logits.data[0, 0] > 0 and logits.data[1, 2] > 0

    def test_tokenizers(self, char_tok):
        assert char_tok.decode(char_tok.encode("To be")) == "To be"
        batch = char_tok.encode_batch(["To be", "or"])
        assert batch["input_ids"].shape == (2, 5) and batch["attention_mask"].sum() == 7
        bpe = BPETokenizer.from_text(TEXT[:20_000], vocab_size=150)
        assert len(bpe.encode(TEXT[:2000])) < 2000


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestEmbeddingCore:
    def test_lookup_and_backward(self):
        emb = Embedding(6, 3, rng=np.random.default_rng(0))
        ids = np.array([[0, 5, 5], [2, 0, 1]])
        out = emb(ids)
        np.testing.assert_array_equal(out.data, emb.weight.data[ids])
        g = np.random.default_rng(1).standard_normal((2, 3, 3)).astype(np.float32)
        out.backward(g)
        want = np.zeros((6, 3), dtype=np.float32)
        np.add.at(want, ids.ravel(), g.reshape(-1, 3))
        np.testing.assert_allclose(emb.weight.grad.data, want, rtol=1e-6)
        assert (emb.weight.grad.data[[3, 4]] == 0).all()

    def test_padding_idx_and_validation(self):
        emb = Embedding(6, 3, padding_idx=0)
        emb(np.array([0, 0, 4])).sum().backward()
        assert (emb.weight.grad.data[0] == 0).all() and (emb.weight.grad.data[4] == 1).all()
        with pytest.raises(IndexError, match="token id 6 is out of range for an embedding table of 6 rows"):
            emb([1, 6])
        with pytest.raises(TypeError, match="must be integers"):
            emb(np.array([1.0]))


class TestPositionalCore:
    def test_learned_and_sinusoidal_add_their_rows(self):
        x = Tensor(np.ones((2, 4, 8), dtype=np.float32))
        for pe in (PositionalEncoding(10, 8), SinusoidalPositionalEncoding(10, 8)):
            np.testing.assert_allclose(pe(x).data, 1 + np.broadcast_to(pe.table.data[:4], (2, 4, 8)))
            np.testing.assert_allclose(pe(x, start_pos=6).data[1], 1 + pe.table.data[6:10])
            np.testing.assert_allclose(pe(x[0]).data, 1 + pe.table.data[:4])        # unbatched (T, d)
            with pytest.raises(ValueError, match="length 4 starting at position 7 needs 11 positions, more than "
                                                 "max_seq_len 10"):
                pe(x, start_pos=7)


# ================================================================================================
# C. Embeddings wired into the stack
# ================================================================================================
def single_head_attention(x, Wq, Wk, Wv, mask=None):
    "softmax(q k^T / sqrt(d) [+ -1e9 at padded keys]) v, with tinytorch ops only."
    q, k, v = Wq(x), Wk(x), Wv(x)
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)                       # (B, T, T)
    if mask is not None:
        scores = scores + Tensor((1.0 - mask[:, None, :].astype(np.float32)) * -1e9)
    weights = Softmax(dim=-1)(scores)
    return weights @ v, weights


class TinyEncoder(Module):
    def __init__(self, vocab, d, max_len, pad_id, sinusoidal=False, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.tok = Embedding(vocab, d, padding_idx=pad_id, rng=rng)
        self.pos = SinusoidalPositionalEncoding(max_len, d) if sinusoidal else PositionalEncoding(max_len, d, rng=rng)
        self.q, self.k, self.v = Linear(d, d, rng=rng), Linear(d, d, rng=rng), Linear(d, d, rng=rng)

    def forward(self, ids, mask=None):
        h = self.pos(self.tok(ids))
        out, weights = single_head_attention(h, self.q, self.k, self.v, mask)
        return out, weights


class TestEmbeddingsInTheStack:
    def test_tokenizer_to_vectors_pipeline(self, char_tok):
        batch = char_tok.encode_batch(["First Citizen:", "Before we proceed", "Speak"], add_special_tokens=True)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        tok_emb = Embedding(char_tok.vocab_size, 12, padding_idx=char_tok.pad_id, rng=np.random.default_rng(0))
        pos = PositionalEncoding(32, 12, rng=np.random.default_rng(1))
        h = pos(tok_emb(ids))
        assert h.shape == ids.shape + (12,) == (3, 19, 12)
        np.testing.assert_allclose(h.data[2, 3], tok_emb.weight.data[ids[2, 3]] + pos.weight.data[3], rtol=1e-6)
        np.testing.assert_allclose(h.data[mask == 0], np.broadcast_to(pos.weight.data[np.nonzero(mask == 0)[1]],
                                                                      h.data[mask == 0].shape))   # pad row is 0

    def test_tokenizer_ids_are_validated_against_the_table(self, char_tok):
        small = Embedding(40, 4)                        # smaller than the 69-token vocabulary
        ids = char_tok.encode_batch(["zebra"])["input_ids"]
        with pytest.raises(IndexError, match=rf"token id {ids.max()} is out of range for an embedding table of 40 rows"):
            small(ids)

    def test_position_limits_meet_tokenizer_max_length(self, char_tok):
        pos = SinusoidalPositionalEncoding(16, 4)
        emb = Embedding(char_tok.vocab_size, 4)
        long_line = TEXT[:200]
        ok = char_tok.encode_batch([long_line], max_length=16, truncation=True)["input_ids"]
        assert pos(emb(ok)).shape == (1, 16, 4)
        too_long = char_tok.encode_batch([long_line[:17]])["input_ids"]
        with pytest.raises(ValueError, match="length 17 .* max_seq_len 16"):
            pos(emb(too_long))

    def test_gradients_reach_exactly_the_rows_used(self, char_tok):
        batch = char_tok.encode_batch(["to be", "or not"])
        ids, mask = batch["input_ids"], batch["attention_mask"]
        model = TinyEncoder(char_tok.vocab_size, 8, 10, char_tok.pad_id)
        out, _ = model(ids, mask)
        (out * Tensor(mask[..., None].astype(np.float32))).sum().backward()
        rows = np.flatnonzero(np.abs(model.tok.weight.grad.data).sum(axis=1))
        assert rows.tolist() == sorted(set(ids[mask == 1].tolist()))     # pad row excluded, unused rows 0
        pos_rows = np.flatnonzero(np.abs(model.pos.weight.grad.data).sum(axis=1))
        assert pos_rows.tolist() == list(range(ids.shape[1]))
        assert all(p.grad is not None for p in model.parameters())

    def test_attention_shapes_and_padding_mask(self, char_tok):
        batch = char_tok.encode_batch(["To be, or not", "to be"])
        ids, mask = batch["input_ids"], batch["attention_mask"]
        model = TinyEncoder(char_tok.vocab_size, 16, 32, char_tok.pad_id)
        out, weights = model(ids, mask)
        B, T = ids.shape
        assert out.shape == (B, T, 16) and weights.shape == (B, T, T)
        np.testing.assert_allclose(weights.data.sum(axis=-1), 1.0, rtol=1e-5)
        assert weights.data[1][:, mask[1] == 0].max() < 1e-6              # nobody attends to padding
        # the real tokens of row 1 see the same thing as "to be" alone, unpadded
        alone, _ = model(char_tok.encode_batch(["to be"])["input_ids"])
        np.testing.assert_allclose(out.data[1, :5], alone.data[0], rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("sinusoidal", [False, True])
    def test_variable_sequence_lengths(self, sinusoidal):
        model = TinyEncoder(30, 8, 20, 0, sinusoidal=sinusoidal)
        rng = np.random.default_rng(0)
        for T in (1, 2, 7, 20):
            ids = rng.integers(1, 30, size=(3, T))
            out, w = model(ids)
            assert out.shape == (3, T, 8) and w.shape == (3, T, T)
        # generation step by step: position t of a full pass == adding position t alone via start_pos
        ids = rng.integers(1, 30, size=(1, 6))
        full = model.pos(model.tok(ids)).data
        steps = [model.pos(model.tok(ids[:, t:t + 1]), start_pos=t).data for t in range(6)]
        np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-6)

    def test_training_with_optimizers(self, char_tok):
        data = np.array(char_tok.encode(TEXT[:50_000]))
        V = char_tok.vocab_size
        for opt_cls, lr in ((SGD, 2.0), (Adam, 0.03), (AdamW, 0.03)):
            rng = np.random.default_rng(0)
            emb, head = Embedding(V, 16, rng=rng), Linear(16, V, rng=rng)
            params = [*emb.parameters(), *head.parameters()]
            opt = opt_cls(params, lr=lr)
            losses = []
            for _ in range(40):
                i = rng.integers(0, len(data) - 1, size=256)
                loss = CrossEntropyLoss()(head(emb(data[i])), data[i + 1])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            assert np.mean(losses[-5:]) < losses[0] - 0.8, (opt_cls.__name__, losses[0], losses[-5:])

    def test_sinusoidal_vs_learned(self):
        x = Tensor(np.zeros((1, 5, 6), dtype=np.float32))
        learned, fixed = PositionalEncoding(5, 6, rng=np.random.default_rng(0)), SinusoidalPositionalEncoding(5, 6)
        assert [n for n, _ in learned.named_parameters()] == ["weight"] and list(fixed.parameters()) == []
        assert list(learned.state_dict()) == ["weight"] and list(fixed.state_dict()) == ["pe"]
        assert np.abs(learned.weight.data).max() < 0.15 < np.abs(fixed.pe.data).max() <= 1.0   # small init vs +-1
        target = Tensor(np.ones((1, 5, 6), dtype=np.float32))
        opt = SGD(learned.parameters(), lr=10.0)
        fixed_before = fixed.pe.data.copy()
        for _ in range(20):
            for pe in (learned, fixed):
                loss = ((pe(x) - target) ** 2).mean()
                if pe is learned:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        assert ((learned(x) - target) ** 2).mean().item() < 1e-3           # the learned table fits
        np.testing.assert_array_equal(fixed.pe.data, fixed_before)          # the fixed one cannot move

    @pytest.mark.parametrize("rows, dim", [(69, 32), (512, 64), (1024, 128)])
    def test_memory_scaling(self, rows, dim):
        tables = [Embedding(rows, dim).weight, PositionalEncoding(rows, dim).table,
                  SinusoidalPositionalEncoding(rows, dim).table]
        for t in tables:
            assert t.data.nbytes == 4 * rows * dim
        assert Embedding(2 * rows, dim).weight.data.nbytes == 2 * tables[0].data.nbytes
        assert Embedding(rows, 2 * dim).weight.data.nbytes == 2 * tables[0].data.nbytes
        assert Embedding(rows, dim).num_parameters() == rows * dim
