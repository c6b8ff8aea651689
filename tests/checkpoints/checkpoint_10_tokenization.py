"""Can I turn text into ids and back, in padded batches a model can trust?"""
import json

import numpy as np
import pytest

from tinytorch.core.dataloader import load_tinyshakespeare
from tinytorch.core.tokenization import BPETokenizer, CharTokenizer, Tokenizer


def test_characters_become_ids_and_come_back():
    tok = CharTokenizer.from_text("to be, or not to be")
    assert tok.chars == [" ", ",", "b", "e", "n", "o", "r", "t"]          # sorted, each once
    assert tok.vocab_size == 4 + 8
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3) and tok.pad_id != tok.eos_id
    ids = tok.encode("not to be")
    assert ids == [8, 9, 11, 4, 11, 9, 4, 6, 7]
    assert tok.decode(ids) == "not to be"
    assert tok.encode("bet?") == [6, 7, 11, tok.unk_id]                     # '?' was never seen
    assert tok.encode("be", add_special_tokens=True) == [tok.bos_id, 6, 7, tok.eos_id]
    assert tok.decode([tok.bos_id, 6, 7, tok.eos_id, tok.pad_id]) == "be"
    assert tok.decode([tok.bos_id, 6, 7], skip_special_tokens=False) == "<bos>be"
    with pytest.raises(IndexError, match="token id 12 is out of range for a vocabulary of 12 tokens"):
        tok.decode([6, 12])


def test_a_padded_batch_comes_with_a_mask_built_from_the_padding():
    tok = CharTokenizer.from_text("to be, or not to be")
    out = tok.encode_batch(["to be", "or", "not to be"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (3, 9) and ids.dtype == np.int64
    assert mask.sum(axis=1).tolist() == [5, 2, 9]
    assert ids[1].tolist() == tok.encode("or") + [tok.pad_id] * 7
    assert ((ids == tok.pad_id) == (mask == 0)).all()
    assert tok.decode_batch(ids) == ["to be", "or", "not to be"]
    cut = tok.encode_batch(["not to be", "be"], padding="max_length", max_length=5, truncation=True,
                           add_special_tokens=True)
    assert cut["input_ids"].tolist() == [[2, 8, 9, 11, 3], [2, 6, 7, 3, 0]]
    assert cut["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    with pytest.raises(ValueError, match=r"max_length must be a positive integer \(>= 1\), got 0"):
        tok.encode_batch(["to be"], padding="max_length", max_length=0)


def test_bpe_learns_the_most_frequent_pairs_first():
    tok = BPETokenizer.from_text("low lower lowest low low", vocab_size=4 + 8 + 4)
    assert tok.merges == [("l", "o"), ("lo", "w"), (" ", "low"), (" low", "e")]
    assert tok.vocab_size == 16
    assert tok.tokenize("lowest low") == ["low", "e", "s", "t", " low"]
    assert tok.decode(tok.encode("slow owls")) == "slow owls"
    with pytest.raises(ValueError, match=r"vocab_size 10 .* 8 distinct characters .* = 12"):
        BPETokenizer.from_text("low lower lowest", vocab_size=10)


def test_bpe_compresses_shakespeare_and_survives_save_and_load(tmp_path):
    text = load_tinyshakespeare()
    bpe = BPETokenizer.from_text(text[:100_000], vocab_size=512)
    assert bpe.vocab_size == 512
    held_out = "".join(c for c in text[100_000:140_000] if c in bpe.alphabet)
    ids = bpe.encode(held_out)
    assert bpe.decode(ids) == held_out
    assert len(ids) < 0.55 * len(held_out)                                 # far fewer tokens than characters
    path = bpe.save(tmp_path / "bpe.json")
    assert json.loads(path.read_text())["merges"][0] == list(bpe.merges[0])
    loaded = Tokenizer.load(path)
    assert isinstance(loaded, BPETokenizer) and loaded.encode(held_out) == ids
