"""Module 10 (Tokenization): progressive integration tests.

  A. TestStackBelow         -- modules 01-09 that text models use still work: Tensor, layers, losses,
                               autograd, optimizers, the Shakespeare loader.
  B. Tokenization core:
       TestCharTokenizer    -- vocabulary, round trip, specials, unknowns
       TestBatches          -- padding, truncation, masks
       TestBPE              -- merges, compression, save/load
  C. TestTokenizerInTheStack -- ids from a padded batch drive Tensor ops: a lookup through Tensor
                               indexing with gradients to the rows used, a next-token loss that
                               ignores padding via CrossEntropyLoss(ignore_index=pad_id), and a tiny
                               model trained on tokenized Shakespeare.
"""
import numpy as np
import pytest

from tinytorch.core import autograd
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import load_tinyshakespeare
from tinytorch.core.layers import Linear, Parameter
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import BPETokenizer, CharTokenizer, Tokenizer

TEXT = load_tinyshakespeare()


@pytest.fixture(autouse=True)
def _recording_on():
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.from_text(TEXT[:100_000], vocab_size=400)


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_keeps_integer_ids(self):
        t = Tensor(np.array([[1, 2], [3, 4]]))
        assert t.dtype == np.int64 and t.shape == (2, 2)
        w = Tensor(np.arange(10.0).reshape(5, 2), requires_grad=True)
        rows = w[t.data]                                     # fancy indexing by an id array
        assert rows.shape == (2, 2, 2) and rows.data[1, 1].tolist() == [8.0, 9.0]

    def test_layers_losses_autograd_optimizer(self):
        lin = Linear(3, 4, rng=np.random.default_rng(0))
        x = Tensor(np.ones((2, 3)))
        loss = CrossEntropyLoss()(lin(x), np.array([1, 3]))
        loss.backward()
        assert lin.weight.grad.shape == (4, 3)
        before = lin.weight.data.copy()
        SGD(lin.parameters(), lr=0.1).step()
        np.testing.assert_allclose(lin.weight.data, before - 0.1 * lin.weight.grad.data, rtol=1e-6)
        with no_grad():
            assert not lin(x).requires_grad

    def test_shakespeare_is_shipped(self):
        assert len(TEXT) == 1_115_394 and TEXT.startswith("First Citizen:")


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestCharTokenizer:
    def test_vocabulary_and_round_trip(self):
        tok = CharTokenizer.from_text(TEXT)
        assert tok.vocab_size == 69 and tok.chars == sorted(set(TEXT))
        chunk = TEXT[5000:15000]
        ids = tok.encode(chunk)
        assert len(ids) == len(chunk) and min(ids) >= 4 and tok.decode(ids) == chunk
        assert tok.encode("A", add_special_tokens=True) == [tok.bos_id, tok.token_to_id("A"), tok.eos_id]

    def test_unknowns_and_specials(self):
        tok = CharTokenizer("ab")
        assert tok.encode("abc") == [4, 5, tok.unk_id]
        assert tok.decode([tok.bos_id, 4, tok.unk_id, tok.eos_id, tok.pad_id]) == "a"
        assert tok.decode([tok.bos_id, 4, tok.unk_id, tok.eos_id, tok.pad_id],
                          skip_special_tokens=False) == "<bos>a<unk><eos><pad>"
        assert tok.pad_id != tok.eos_id


class TestBatches:
    def test_longest_padding_and_mask(self):
        tok = CharTokenizer.from_text(TEXT)
        lines = TEXT.split("\n")[:8]
        out = tok.encode_batch(lines)
        ids, mask = out["input_ids"], out["attention_mask"]
        assert ids.shape == (8, max(len(l) for l in lines)) and ids.dtype == np.int64
        assert mask.sum(axis=1).tolist() == [len(l) for l in lines]
        assert ((ids == tok.pad_id) == (mask == 0)).all()        # pad exactly where the mask is 0
        assert tok.decode_batch(ids) == lines

    def test_max_length_truncation_keeps_bos_and_eos(self):
        tok = CharTokenizer.from_text(TEXT)
        out = tok.encode_batch(["First Citizen", "All"], padding="max_length", max_length=6,
                               truncation=True, add_special_tokens=True)
        ids = out["input_ids"]
        assert ids.shape == (2, 6)
        assert tok.decode(ids[0], skip_special_tokens=False) == "<bos>Firs<eos>"
        assert tok.decode(ids[1], skip_special_tokens=False) == "<bos>All<eos><pad>"
        assert out["attention_mask"].tolist() == [[1] * 6, [1] * 5 + [0]]


class TestBPE:
    def test_merges_compress_and_round_trip(self, bpe):
        assert bpe.vocab_size == 400
        held = "".join(c for c in TEXT[200_000:230_000] if c in bpe.alphabet)
        ids = bpe.encode(held)
        assert bpe.decode(ids) == held and len(ids) < 0.6 * len(held)
        assert max(ids) < bpe.vocab_size and min(ids) >= 4

    def test_save_load_identical(self, bpe, tmp_path):
        loaded = Tokenizer.load(bpe.save(tmp_path / "bpe.json"))
        chunk = TEXT[300_000:320_000]
        assert loaded.encode(chunk) == bpe.encode(chunk)


# ================================================================================================
# C. Tokenizers wired into the stack
# ================================================================================================
class TestTokenizerInTheStack:
    def test_batch_ids_index_a_weight_and_gradients_reach_only_used_rows(self):
        tok = CharTokenizer("abcd")
        out = tok.encode_batch(["abba", "c"])
        ids = Tensor(out["input_ids"])
        table = Parameter(np.random.default_rng(0).standard_normal((tok.vocab_size, 3)).astype(np.float32))
        vecs = table[ids.data]
        assert vecs.shape == (2, 4, 3)
        mask = Tensor(out["attention_mask"][..., None].astype(np.float32))
        (vecs * mask).sum().backward()                       # padded positions contribute nothing
        counts = np.zeros(tok.vocab_size)
        np.add.at(counts, out["input_ids"][out["attention_mask"] == 1], 1)
        np.testing.assert_allclose(table.grad.data, np.repeat(counts[:, None], 3, axis=1))
        assert (table.grad.data[tok.pad_id] == 0).all()      # padding was masked out

    def test_next_token_loss_ignores_padding(self):
        tok = CharTokenizer.from_text(TEXT)
        out = tok.encode_batch(["To be", "or not to be"], add_special_tokens=True)
        ids = out["input_ids"]
        inputs, targets = ids[:, :-1], ids[:, 1:]
        V = tok.vocab_size
        rng = np.random.default_rng(1)
        logits = Tensor(rng.standard_normal(inputs.shape + (V,)).astype(np.float32), requires_grad=True)
        loss = CrossEntropyLoss(ignore_index=tok.pad_id)(logits.reshape(-1, V), targets.reshape(-1))
        flat, t = logits.data.reshape(-1, V).astype(np.float64), targets.reshape(-1)
        logp = flat - flat.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        real = t != tok.pad_id
        assert real.sum() == out["attention_mask"][:, 1:].sum()
        assert loss.item() == pytest.approx(-logp[real, t[real]].mean(), rel=1e-5)
        loss.backward()
        g = logits.grad.data.reshape(-1, V)
        assert (g[~real] == 0).all() and (np.abs(g[real]).sum(axis=1) > 0).all()

    def test_a_bigram_model_learns_from_bpe_tokens(self, bpe):
        ids = np.array(bpe.encode(TEXT[:60_000]))
        V = bpe.vocab_size
        rng = np.random.default_rng(0)
        table = Parameter((rng.standard_normal((V, 16)) * 0.1).astype(np.float32))
        head = Linear(16, V, rng=rng)
        opt = Adam([table, *head.parameters()], lr=0.05)
        loss_fn = CrossEntropyLoss()
        losses = []
        for step in range(50):
            idx = rng.integers(0, len(ids) - 1, size=256)
            loss = loss_fn(head(table[ids[idx]]), ids[idx + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(np.log(V), abs=0.3)               # a uniform guess at first
        assert np.mean(losses[-10:]) < losses[0] - 1.2
