"""ByteLevelBPETokenizer against Hugging Face's GPT2Tokenizer built from the same local vocab.json and merges.txt
(tests/tiny_gpt2.py; nothing downloaded): the same ids on a few hundred strings (unicode, whitespace, emoji,
contractions, numbers), exact round trips, and GPT-2's special-token conventions. Fails (not skips) without
transformers."""
import random

import pytest

from tiny_gpt2 import CORPUS, checkpoint_dir, hf_tokenizer
from tinytorch.core.tokenization import ByteLevelBPETokenizer, Tokenizer

PIECES = ["hello", "Hello", " world", "don't", "I'll", "we've", "it's", "'S", "123", "4.5e3", "١٢٣", "½", "Ⅻ",
          "naïve", "café", "Ünïcödé", "東京", "日本語", "Привет", "مرحبا", "🙂", "🚀🚀", "👩‍👩‍👧", "e\u0301",
          "\t", "\n", "\n\n", "  ", "   ", "\r\n", "\u00a0", "\u3000", "\u2028", "\x1c", "x_y", "a-b", "!!!",
          "...", "$%", "(", ")", "—", "“quoted”", "tab\there", "end ", " ", "ß", "ﬁ", "Ǆ", "ǅ", "𝔘𝔫𝔦", "\x00"]


def strings():
    rng = random.Random(0)
    out = list(CORPUS) + PIECES
    for _ in range(300):
        out.append("".join(rng.choice(PIECES + [" ", " ", "\n"]) for _ in range(rng.randint(1, 8))))
    return out


@pytest.fixture(scope="module")
def toks():
    d = checkpoint_dir()
    return ByteLevelBPETokenizer.from_pretrained(d), hf_tokenizer(d)


def test_ids_equal_gpt2_tokenizer(toks):
    ours, ref = toks
    texts = strings()
    assert len(texts) >= 300
    mismatches = [(t, ours.encode(t), ref.encode(t)) for t in texts if ours.encode(t) != ref.encode(t)]
    assert not mismatches, mismatches[:3]
    for t in texts:
        assert ours.decode(ours.encode(t)) == t


def test_special_tokens_like_gpt2(toks, tmp_path):
    ours, ref = toks
    assert ours.vocab_size == len(ref)
    assert ours.eos_token == ours.bos_token == ours.unk_token == "<|endoftext|>" == ref.eos_token
    assert ours.eos_token_id == ref.eos_token_id and ours.pad_token is None and ours.pad_token_id is None
    with pytest.raises(ValueError, match="no pad token"):
        ours.encode_batch(["a", "bb"])
    text = "to be<|endoftext|>or not"
    assert ours.encode(text) == ref.encode(text)
    ours.pad_token = ours.eos_token
    assert ours.pad_token_id == ours.eos_token_id == ours.pad_id
    batch = ours.encode_batch(["to be", "or not to be, that"], padding_side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n0 = len(ours.encode("to be"))
    assert mask[0].tolist() == [0] * (ids.shape[1] - n0) + [1] * n0            # from lengths, not id == eos
    assert (ids[0, :ids.shape[1] - n0] == ours.eos_token_id).all()
    ours.save(tmp_path / "gpt2.json")
    again = Tokenizer.load(tmp_path / "gpt2.json")
    assert isinstance(again, ByteLevelBPETokenizer) and again.pad_token_id == ours.eos_token_id
    assert again.encode(CORPUS[4]) == ref.encode(CORPUS[4])
    ours.pad_token = None


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        ByteLevelBPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 2}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="ids of vocab"):
        ByteLevelBPETokenizer.from_pretrained(tmp_path)
