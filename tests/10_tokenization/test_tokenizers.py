"""Tokenizers against independent oracles: round trips (hypothesis), padding and masks, special ids,
BPE merges against a naive reference implementation, JSON save/load, compression on Shakespeare."""
import json
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytorch.core.dataloader import load_tinyshakespeare
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import (BPETokenizer, CharTokenizer, Tokenizer, learn_merges, merge_pair,
                                         pad_sequences, pretokenize)

SHAKESPEARE = load_tinyshakespeare()
TRAIN, HELD_OUT = SHAKESPEARE[:100_000], SHAKESPEARE[100_000:160_000]
CHARS = sorted(set(SHAKESPEARE))


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.from_text(SHAKESPEARE)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.from_text(TRAIN, vocab_size=512)


# -------------------------------------------------------------------------------------------------
# Naive references: recount every pair after every merge; encode by applying each merge in order.
# -------------------------------------------------------------------------------------------------
def naive_train(text, n_new, min_frequency=2):
    words = Counter(pretokenize(text))
    seqs = {w: list(w) for w in words}
    known = set(text)
    merges = []
    added = 0
    while added < n_new:
        counts = Counter()
        for w, f in words.items():
            s = seqs[w]
            for pair in zip(s, s[1:]):
                counts[pair] += f
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))           # most frequent, ties by the pair
        if counts[best] < min_frequency:
            break
        merges.append(best)
        if best[0] + best[1] not in known:
            known.add(best[0] + best[1])
            added += 1
        for w in words:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def naive_encode_piece(piece, merges):
    symbols = list(piece)
    for a, b in merges:                      # every merge, in the order learned
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


# -------------------------------------------------------------------------------------------------
# Character tokenizer
# -------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=CHARS, max_size=200), st.booleans())
def test_char_round_trip_on_random_text_from_the_vocabulary(text, specials):
    tok = CharTokenizer(CHARS)
    ids = tok.encode(text, add_special_tokens=specials)
    assert len(ids) == len(text) + 2 * specials
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text
    if specials:
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids, skip_special_tokens=False) == "<bos>" + text + "<eos>"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_char_unknown_characters_become_unk(text):
    tok = CharTokenizer("abc \n")
    ids = tok.encode(text)
    assert len(ids) == len(text)
    for c, i in zip(text, ids):
        assert (i == tok.unk_id) == (c not in "abc \n")
    assert tok.decode(ids) == "".join(c for c in text if c in "abc \n")
    assert tok.decode(ids, skip_special_tokens=False) == "".join(c if c in "abc \n" else "<unk>" for c in text)


def test_char_vocabulary_is_sorted_and_deterministic(char_tok):
    assert char_tok.chars == CHARS and len(CHARS) == 65
    assert char_tok.vocab_size == 4 + 65 == len(char_tok)
    assert [char_tok.token_to_id(c) for c in CHARS] == list(range(4, 69))
    rng = np.random.default_rng(0)
    shuffled = "".join(rng.permutation(list(SHAKESPEARE[:5000])))
    assert CharTokenizer.from_text(shuffled).get_vocab() == CharTokenizer.from_text(SHAKESPEARE[:5000]).get_vocab()
    assert CharTokenizer(list("cab")).chars == CharTokenizer("abc").chars == ["a", "b", "c"]
    assert CharTokenizer().fit("cab").get_vocab() == CharTokenizer.from_text("abc").get_vocab()
    tok = CharTokenizer("ab").fit("xyz")                                 # fit rebuilds the vocabulary
    assert tok.chars == ["x", "y", "z"] and tok.encode("a") == [tok.unk_id]


@pytest.mark.parametrize("make", [lambda: CharTokenizer("hello"), lambda: BPETokenizer.from_text("hello hello", 12)])
def test_special_tokens_are_distinct_and_fixed(make):
    tok = make()
    ids = (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id)
    assert ids == (0, 1, 2, 3) and len(set(ids)) == 4 and tok.pad_id != tok.eos_id
    assert tok.special_ids == ids
    assert [tok.id_to_token(i) for i in ids] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert [tok.token_to_id(t) for t in ["<pad>", "<unk>", "<bos>", "<eos>"]] == list(ids)
    assert tok.token_to_id("never a token") == tok.unk_id
    assert all(i < tok.vocab_size for i in ids)
    text_ids = tok.encode("hello")
    assert not set(text_ids) & set(ids)                 # real text never produces special ids
    assert tok.decode([tok.pad_id, tok.bos_id, *text_ids, tok.eos_id, tok.pad_id]) == "hello"


def test_decode_accepts_lists_arrays_and_tensors(char_tok):
    ids = char_tok.encode("To be")
    assert char_tok.decode(np.array(ids)) == "To be"
    assert char_tok.decode(np.array(ids, dtype=np.int32)) == "To be"
    assert char_tok.decode(Tensor(np.array(ids))) == "To be"
    assert char_tok.decode([]) == "" and char_tok.encode("") == []
    assert char_tok.tokenize("To b") == ["T", "o", " ", "b"]


# -------------------------------------------------------------------------------------------------
# Padded batches and attention masks
# -------------------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abcde \n", max_size=12), min_size=1, max_size=6), st.booleans())
def test_encode_batch_pads_to_the_longest_with_a_mask_from_the_padding(texts, specials):
    tok = CharTokenizer("abcde \n")
    out = tok.encode_batch(texts, add_special_tokens=specials)
    assert set(out) == {"input_ids", "attention_mask"}
    ids, mask = out["input_ids"], out["attention_mask"]
    want = [tok.encode(t, add_special_tokens=specials) for t in texts]
    T = max(len(w) for w in want)
    assert ids.shape == mask.shape == (len(texts), T)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    for i, w in enumerate(want):
        assert ids[i, :len(w)].tolist() == w
        assert (ids[i, len(w):] == tok.pad_id).all()
        assert mask[i].tolist() == [1] * len(w) + [0] * (T - len(w))
    assert tok.decode_batch(ids) == texts
    for mode in (True, "longest"):
        again = tok.encode_batch(texts, padding=mode, add_special_tokens=specials)
        assert np.array_equal(again["input_ids"], ids) and np.array_equal(again["attention_mask"], mask)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abc ", max_size=15), min_size=1, max_size=5), st.integers(1, 10),
       st.booleans(), st.sampled_from([True, "longest", "max_length"]))
def test_truncation_and_max_length(texts, L, specials, padding):
    tok = CharTokenizer("abc ")
    out = tok.encode_batch(texts, padding=padding, max_length=L, truncation=True, add_special_tokens=specials)
    ids, mask = out["input_ids"], out["attention_mask"]
    rows = []
    for t in texts:
        body = tok.encode(t)
        if specials:
            rows.append(([tok.bos_id] + body[:max(L - 2, 0)] + [tok.eos_id])[:L])
        else:
            rows.append(body[:L])
    T = L if padding == "max_length" else max(len(r) for r in rows)
    assert ids.shape == (len(texts), T) and T <= L
    for i, r in enumerate(rows):
        assert ids[i, :len(r)].tolist() == r and mask[i].sum() == len(r)
        assert (ids[i][mask[i] == 0] == tok.pad_id).all()
        if specials and L >= 2:
            assert r[0] == tok.bos_id and r[-1] == tok.eos_id       # bos/eos survive truncation


def test_padding_to_max_length_and_no_padding():
    tok = CharTokenizer("abc")
    out = tok.encode_batch(["ab", "c"], padding="max_length", max_length=5)
    assert out["input_ids"].tolist() == [[4, 5, 0, 0, 0], [6, 0, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    same = tok.encode_batch(["ab", "ca"], padding=False)
    assert same["input_ids"].tolist() == [[4, 5], [6, 4]] and same["attention_mask"].min() == 1
    assert tok.encode_batch(["ab", "ca"], padding="do_not_pad")["input_ids"].shape == (2, 2)
    empty = tok.encode_batch(["", ""])
    assert empty["input_ids"].shape == (2, 0) and empty["attention_mask"].shape == (2, 0)


def test_pad_sequences_directly():
    ids, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_sequences([[9]], pad_id=0, length=3)
    assert ids.tolist() == [[9, 0, 0]] and mask.tolist() == [[1, 0, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64


# -------------------------------------------------------------------------------------------------
# BPE
# -------------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_pretokenize_is_lossless(text):
    pieces = pretokenize(text)
    assert "".join(pieces) == text and all(pieces)


def test_merge_pair():
    assert merge_pair(list("abab"), ("a", "b")) == ["ab", "ab"]
    assert merge_pair(list("aaaa"), ("a", "a")) == ["aa", "aa"]
    assert merge_pair(list("aaa"), ("a", "a")) == ["aa", "a"]
    assert merge_pair(["ab", "c", "ab"], ("c", "ab")) == ["ab", "cab"]
    assert merge_pair(["x"], ("x", "y")) == ["x"] and merge_pair([], ("x", "y")) == []


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n'", min_size=1, max_size=150), st.integers(0, 25))
def test_bpe_training_and_encoding_match_a_naive_reference(corpus, n_new):
    base = 4 + len(set(corpus))
    tok = BPETokenizer(vocab_size=base + n_new).train(corpus)
    assert tok.merges == naive_train(corpus, n_new)
    assert tok.vocab_size <= base + n_new
    for piece in set(pretokenize(corpus)) | {" abba", "cab'c", "\n\n"}:
        assert tok.tokenize(piece) == [s if s in tok.get_vocab() else "<unk>"
                                       for s in naive_encode_piece(piece, tok.merges)]
    assert tok.decode(tok.encode(corpus)) == corpus


def test_learn_merges_counts_piece_frequencies():
    merges = learn_merges({"ab": 5, "bc": 3, "abc": 1}, 2, "abc")
    assert merges == [("a", "b"), ("b", "c")]          # ab: 5 + 1, bc: 3 + 1 before the first merge
    assert learn_merges({"ab": 1}, 5, "ab") == []       # min_frequency 2: nothing occurs twice
    assert learn_merges({"ab": 1}, 5, "ab", min_frequency=1) == [("a", "b")]


def test_bpe_compresses_shakespeare_and_round_trips(bpe):
    assert bpe.vocab_size == 512 and len(bpe.merges) >= 512 - 4 - len(bpe.alphabet)
    assert len(set(bpe.get_vocab())) == bpe.vocab_size                       # no duplicate tokens
    assert bpe.merges[0] == (" ", "t")                                       # the most frequent pair
    known = "".join(c for c in HELD_OUT if c in bpe.alphabet)
    ids = bpe.encode(known)
    assert bpe.decode(ids) == known
    assert len(ids) < 0.55 * len(known)                                      # fewer tokens than characters
    assert bpe.unk_id not in ids
    assert len(bpe.encode(TRAIN)) < len(bpe.encode(HELD_OUT)) * len(TRAIN) / len(HELD_OUT)   # fits its corpus best
    bigger = BPETokenizer.from_text(TRAIN, vocab_size=1024)
    assert len(bigger.encode(known)) < len(ids)                              # more merges, fewer tokens


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=sorted(set(TRAIN)), max_size=150))
def test_bpe_round_trip_on_random_text_from_its_alphabet(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.unk_id not in ids and len(ids) <= len(text)
    assert bpe.decode(bpe.encode(text, add_special_tokens=True), skip_special_tokens=False) == \
        "<bos>" + text + "<eos>"


def test_bpe_unknown_characters_and_determinism(bpe):
    ids = bpe.encode("Zounds! Qué?")          # no 'Z' or 'é' in the first 100k characters
    toks = bpe.tokenize("Zounds! Qué?")
    assert ids.count(bpe.unk_id) == 2 and toks.count("<unk>") == 2
    assert bpe.decode(ids) == "ounds! Qu?"
    again = BPETokenizer.from_text(TRAIN, vocab_size=512)
    assert again.merges == bpe.merges and again.get_vocab() == bpe.get_vocab()


def test_bpe_stops_when_the_corpus_runs_out_of_pairs():
    tok = BPETokenizer(vocab_size=1000).train("abab abab")
    assert tok.vocab_size < 1000
    assert tok.decode(tok.encode("abab abab")) == "abab abab"
    assert tok.merges == [("a", "b"), ("ab", "ab")]            # (" ", "abab") occurs once: below min_frequency
    assert tok.vocab_size == 4 + 3 + 2
    assert tok.encode("abab abab") == [tok.token_to_id("abab"), tok.token_to_id(" "), tok.token_to_id("abab")]


# -------------------------------------------------------------------------------------------------
# Saving and loading
# -------------------------------------------------------------------------------------------------
def test_bpe_save_load_gives_identical_encodings(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    assert bpe.save(path) == path
    config = json.loads(path.read_text(encoding="utf-8"))                    # plain JSON, no pickle
    assert config["type"] == "BPETokenizer" and config["merges"][0] == [" ", "t"]
    loaded = BPETokenizer.load(path)
    assert isinstance(loaded, BPETokenizer) and loaded is not bpe
    assert loaded.merges == bpe.merges and loaded.alphabet == bpe.alphabet
    assert loaded.get_vocab() == bpe.get_vocab() and loaded.vocab_size == bpe.vocab_size
    assert loaded.encode(HELD_OUT) == bpe.encode(HELD_OUT)
    assert loaded.decode(bpe.encode(HELD_OUT[:500])) == bpe.decode(bpe.encode(HELD_OUT[:500]))
    assert isinstance(Tokenizer.load(path), BPETokenizer)
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.json"]                # no temporary file left


def test_char_save_load_and_overwrite(tmp_path, char_tok):
    path = tmp_path / "tok.json"
    CharTokenizer("xyz").save(path)
    char_tok.save(path)                                                        # replaces the old file
    loaded = Tokenizer.load(path)
    assert isinstance(loaded, CharTokenizer) and loaded.chars == CHARS
    assert loaded.encode(HELD_OUT[:1000]) == char_tok.encode(HELD_OUT[:1000])


def test_an_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch, bpe):
    path = tmp_path / "tok.json"
    CharTokenizer("abc").save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)          # what the atomic writer renames with
    with pytest.raises(OSError, match="simulated"):
        bpe.save(path)
    assert path.read_bytes() == before                                         # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]                # temporary file removed


def test_hf_special_token_names_and_pad_equal_eos():
    tok = CharTokenizer.from_text("abc")
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert (tok.pad_id, tok.eos_id) == (tok.pad_token_id, tok.eos_token_id)          # the old names still work
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.pad_id == tok.eos_token_id == 3
    batch = tok.encode_batch(["ab", "abc"], add_special_tokens=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids[0].tolist() == [2, 4, 5, 3, 3] and mask[0].tolist() == [1, 1, 1, 1, 0]   # the real eos stays real
    left = tok.encode_batch(["ab", "abc"], padding_side="left")
    assert left["input_ids"][0].tolist() == [3, 4, 5] and left["attention_mask"][0].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="'<nope>'"):
        tok.pad_token = "<nope>"
    with pytest.raises(ValueError, match="padding_side"):
        tok.encode_batch(["a"], padding_side="middle")
    CharTokenizer.from_text("abc")                       # other instances keep their own pad token
    assert CharTokenizer.from_text("abc").pad_token_id == 0


def test_pad_token_survives_save(tmp_path):
    tok = CharTokenizer.from_text("abc")
    tok.pad_token = tok.eos_token
    tok.save(tmp_path / "t.json")
    assert Tokenizer.load(tmp_path / "t.json").pad_token_id == 3
