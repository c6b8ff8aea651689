"""Module 10, part 2 (GPT-2's byte-level BPE, `tinytorch.core.tokenization_gpt2`) without the oracle: the byte
map, GPT-2's pre-tokenizer, the tokenizer's tables, encoding and decoding on a toy vocabulary, and the import
paths. (tests/10_tokenization/test_gpt2_tokenizer.py compares with Hugging Face's tokenizer on hundreds of
strings; it needs transformers, so a student copy does not have it: this file is what checks the exercises
there.)"""
import subprocess
import sys
import unicodedata

import pytest

from tinytorch.core import tokenization, tokenization_gpt2
from tinytorch.core.tokenization import ByteLevelBPETokenizer, Tokenizer, bytes_to_unicode, gpt2_pattern
from tinytorch.core.tokenization_gpt2 import _char_class, _unicode_ranges


# -- the byte map -----------------------------------------------------------------------------------
def test_bytes_to_unicode_is_gpt2s_table():
    b2u = bytes_to_unicode()
    assert sorted(b2u) == list(range(256)) and len(set(b2u.values())) == 256
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    assert all(b2u[b] == chr(b) for b in printable)
    shifted = [b for b in range(256) if b not in printable]
    assert [b2u[b] for b in shifted] == [chr(256 + n) for n in range(len(shifted))]     # in byte order
    assert (b2u[0], b2u[ord(" ")], b2u[ord("\n")], b2u[127], b2u[173]) == ("Ā", "Ġ", "Ċ", "ġ", "Ń")


# -- the pre-tokenizer ------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["L", "N"])
def test_unicode_ranges_are_the_maximal_runs_of_the_category(prefix):
    ranges = _unicode_ranges(prefix)
    assert ranges == sorted(ranges) and all(a <= b for a, b in ranges)
    inside = lambda cp: unicodedata.category(chr(cp)).startswith(prefix)      # noqa: E731
    for (a, b), nxt in zip(ranges, ranges[1:] + [(None, None)]):
        assert inside(a) and inside(b)
        assert a == 0 or not inside(a - 1)                                   # maximal on the left
        assert b == 0x10FFFF or not inside(b + 1)                            # and on the right
        if nxt[0] is not None:
            assert nxt[0] > b + 1                                            # runs never touch
    brute = sum(inside(cp) for cp in range(0x3000))
    assert sum(min(b, 0x2FFF) - a + 1 for a, b in ranges if a < 0x3000) == brute


def test_char_class_spells_ranges_for_re():
    assert _char_class([(65, 90), (97, 97)]) == r"\U00000041-\U0000005a\U00000061"
    assert _char_class([]) == ""


@pytest.mark.parametrize("text, pieces", [
    ("Hello world's 123 ünïcödé!!  \n", ["Hello", " world", "'s", " 123", " ünïcödé", "!!", "  \n"]),
    ("I'll we've it's don't", ["I", "'ll", " we", "'ve", " it", "'s", " don", "'t"]),
    ("a  b\n\n c", ["a", " ", " b", "\n\n", " c"]),
    ("4.5e3 ½ Ⅻ", ["4", ".", "5", "e", "3", " ½", " Ⅻ"]),
    ("x_y a-b!!! ...", ["x", "_", "y", " a", "-", "b", "!!!", " ..."]),
    ("tab\there  end ", ["tab", "\t", "here", " ", " end", " "]),
    ("\u00a0x\u3000y", ["\u00a0", "x", "\u3000", "y"]),
    ("x\x1cy", ["x", "\x1c", "y"]),                     # U+001C is whitespace for Python's re, not for GPT-2
    ("'S Hello", ["'", "S", " Hello"]),                 # contractions are lower case only
])
def test_gpt2_pattern_cuts_like_gpt2(text, pieces):
    assert gpt2_pattern().findall(text) == pieces
    assert "".join(pieces) == text


# -- the tokenizer on a toy vocabulary ---------------------------------------------------------------
def toy(merges=(("Ġ", "t"), ("Ġt", "o"), ("ð", "Ł")), extra=("Ġt", "Ġto", "ðŁ"), specials=("<|endoftext|>",)):
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for t in (*extra, *specials):
        vocab[t] = len(vocab)
    return ByteLevelBPETokenizer(vocab, list(merges), special_tokens=specials), vocab


def test_tables():
    tok, vocab = toy()
    assert tok._ranks == {("Ġ", "t"): 0, ("Ġt", "o"): 1, ("ð", "Ł"): 2}
    assert all(tok._id_to_token[i] == t for t, i in vocab.items()) and len(tok._id_to_token) == len(vocab)
    assert tok._token_to_id == vocab and tok._token_to_id is not vocab
    assert all(tok.byte_decoder[c] == b for b, c in tok.byte_encoder.items()) and len(tok.byte_decoder) == 256
    assert tok.added_tokens == ["<|endoftext|>"]
    assert tok._split.split("a<|endoftext|>b") == ["a", "<|endoftext|>", "b"]
    plain, _ = toy(specials=())
    assert plain.added_tokens == [] and plain._split is None and plain.eos_token is None


def test_special_tokens_are_matched_whole_longest_first():
    tok, vocab = toy(specials=("<|end|>", "<|end|>x"))
    assert tok.encode("<|end|>x<|end|>y") == [vocab["<|end|>x"], vocab["<|end|>"], vocab["y"]]
    assert tok.encode("<|end|>", add_special_tokens=False) == [vocab["<|end|>"]]


def test_encode_merges_bytes_by_rank_and_caches_pieces():
    tok, vocab = toy()
    assert tok.tokenize(" to be") == ["Ġto", "Ġ", "b", "e"]
    assert tok.encode("🙂") == [vocab["ðŁ"], vocab["Ļ"], vocab["Ĥ"]]           # 4 bytes, a merge of the first 2
    assert tok._cache[" to"] == [vocab["Ġto"]]
    tok._cache[" to"] = [7]                                                     # a cached piece is reused
    assert tok.encode(" to") == [7]


def test_decode_joins_bytes_across_tokens():
    tok, vocab = toy()
    for text in ["to 🙂 é", "🙂🙂", "a<|endoftext|>b", "\x00\n\t", "東京"]:
        assert tok.decode(tok.encode(text), skip_special_tokens=False) == text
    ids = tok.encode("🙂<|endoftext|>é")
    assert tok.decode(ids) == "🙂é"
    assert tok.decode(ids, skip_special_tokens=False) == "🙂<|endoftext|>é"
    assert tok.decode([vocab["ðŁ"]]) == "\ufffd"                           # half a character: replaced


def test_merges_that_do_not_fit_the_vocab_are_named():
    tok, _ = toy(merges=(("Ġ", "b"),), extra=())
    with pytest.raises(ValueError, match=r"'Ġb' is not in the vocabulary .*do not belong together"):
        tok.encode(" b")


# -- import paths ------------------------------------------------------------------------------------
def test_names_are_re_exported_by_tokenization():
    assert tokenization.ByteLevelBPETokenizer is tokenization_gpt2.ByteLevelBPETokenizer
    assert tokenization.bytes_to_unicode is tokenization_gpt2.bytes_to_unicode
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tokenization.nope


@pytest.mark.parametrize("stmt", [
    "import tinytorch.core.tokenization_gpt2 as g; print(g.ByteLevelBPETokenizer.__name__)",
    "from tinytorch.core.tokenization import ByteLevelBPETokenizer as B; print(B.__name__)",
])
def test_either_module_imports_first(stmt):
    proc = subprocess.run([sys.executable, "-c", stmt], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ByteLevelBPETokenizer"


def test_a_saved_gpt2_tokenizer_loads_in_a_fresh_process(tmp_path):
    tok, _ = toy()
    path = tok.save(tmp_path / "gpt2.json")
    code = ("import sys; from tinytorch.core.tokenization import Tokenizer; "
            f"t = Tokenizer.load({str(path)!r}); print(type(t).__name__, t.encode(' to'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ByteLevelBPETokenizer {tok.encode(' to')}"
    assert isinstance(Tokenizer.load(path), ByteLevelBPETokenizer)
