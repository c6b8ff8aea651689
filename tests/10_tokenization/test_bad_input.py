"""Bad input to the tokenizers: each error is raised, of the right type, naming what was wrong."""
import json

import numpy as np
import pytest

from tinytorch.core.dataloader import load_tinyshakespeare
from tinytorch.core.tokenization import BPETokenizer, CharTokenizer, Tokenizer


@pytest.fixture
def tok():
    return CharTokenizer("abc ")            # 4 specials + 4 characters = 8 ids


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [lambda: CharTokenizer.from_text(""), lambda: CharTokenizer().fit(""),
                                   lambda: BPETokenizer(100).train(""), lambda: BPETokenizer.from_text("", 50)])
def test_empty_training_text(train):
    with pytest.raises(ValueError, match="training text is empty"):
        train()


def test_training_text_must_be_a_string():
    with pytest.raises(TypeError, match="expected a str, got list"):
        BPETokenizer(100).train(["abc"])
    with pytest.raises(TypeError, match="expected a str, got bytes"):
        CharTokenizer.from_text(b"abc")


def test_vocab_size_smaller_than_alphabet_plus_specials_names_both():
    with pytest.raises(ValueError, match=r"vocab_size 50 is smaller .* 61 distinct characters .* "
                                         r"4 special tokens = 65"):
        BPETokenizer(vocab_size=50).train(load_tinyshakespeare()[:100_000])
    with pytest.raises(ValueError, match=r"vocab_size 6 .* 3 distinct characters .* = 7"):
        BPETokenizer.from_text("abcabc", vocab_size=6)
    assert BPETokenizer.from_text("abcabc", vocab_size=7).merges == []          # exactly the base: fine


@pytest.mark.parametrize("value, err, msg", [(0, ValueError, r"BPETokenizer: vocab_size must be a positive integer \(>= 1\), got 0"),
                                             (-5, ValueError, "got -5"),
                                             ("512", TypeError, r"vocab_size must be a positive integer \(>= 1\), got '512'"),
                                             (True, TypeError, "got True")])
def test_bad_vocab_size(value, err, msg):
    with pytest.raises(err, match=msg):
        BPETokenizer(vocab_size=value)


def test_bad_chars():
    with pytest.raises(ValueError, match="single characters; item 1 is 'bc'"):
        CharTokenizer(["a", "bc"])
    with pytest.raises(ValueError, match="chars is empty"):
        CharTokenizer([])


def test_untrained_bpe_cannot_encode():
    with pytest.raises(RuntimeError, match="not trained yet"):
        BPETokenizer(100).encode("hello")


# -- encoding and decoding --------------------------------------------------------------------------
def test_encode_needs_a_string(tok):
    with pytest.raises(TypeError, match="expected a str, got int"):
        tok.encode(42)
    with pytest.raises(TypeError, match="expected a str, got list"):
        tok.encode(["a", "b"])


@pytest.mark.parametrize("ids, bad", [([4, 5, 8], 8), ([4, 1000], 1000), ([-1, 4], -1), (np.array([3, 9]), 9)])
def test_decode_id_out_of_range_names_the_id_and_the_vocab_size(tok, ids, bad):
    with pytest.raises(IndexError, match=rf"token id {bad} is out of range for a vocabulary of 8 tokens"):
        tok.decode(ids)


def test_decode_bad_shapes_and_dtypes(tok):
    with pytest.raises(TypeError, match="token ids must be integers, got dtype float64"):
        tok.decode([4.0, 5.0])
    with pytest.raises(ValueError, match=r"1-D sequence of ids, got shape \(2, 2\).*decode_batch"):
        tok.decode(np.array([[4, 5], [6, 7]]))
    with pytest.raises(IndexError, match="token id 99 is out of range"):
        tok.id_to_token(99)
    with pytest.raises(IndexError, match="token id 8 is out of range"):
        tok.decode_batch(np.array([[4, 8]]))


# -- batches ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_length", [0, -3])
def test_max_length_must_be_positive(tok, max_length):
    with pytest.raises(ValueError, match=rf"encode_batch: max_length must be a positive integer \(>= 1\), got {max_length}"):
        tok.encode_batch(["ab"], padding="max_length", max_length=max_length)
    with pytest.raises(ValueError, match=rf"got {max_length}"):
        tok.encode_batch(["ab"], max_length=max_length, truncation=True)


def test_max_length_must_be_an_integer(tok):
    with pytest.raises(TypeError, match=r"max_length must be a positive integer \(>= 1\), got 2.5"):
        tok.encode_batch(["ab"], padding="max_length", max_length=2.5)


def test_too_long_without_truncation(tok):
    with pytest.raises(ValueError, match=r"text 1 has 5 tokens, more than max_length=3; pass truncation=True"):
        tok.encode_batch(["ab", "abcab"], padding="max_length", max_length=3)
    with pytest.raises(ValueError, match=r"text 0 has 4 tokens, more than max_length=3"):
        tok.encode_batch(["ab"], max_length=3, add_special_tokens=True)       # bos + 2 + eos


def test_padding_options_that_need_max_length(tok):
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        tok.encode_batch(["ab"], padding="max_length")
    with pytest.raises(ValueError, match="truncation=True needs max_length"):
        tok.encode_batch(["ab"], truncation=True)


def test_unknown_padding_and_ragged_without_padding(tok):
    with pytest.raises(ValueError, match="padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                                         "got 'left'"):
        tok.encode_batch(["ab"], padding="left")
    with pytest.raises(ValueError, match=r"padding=False needs sequences of one length, got lengths \[1, 3\]"):
        tok.encode_batch(["abc", "a"], padding=False)


def test_batch_input_types(tok):
    with pytest.raises(TypeError, match="got a single str"):
        tok.encode_batch("abc")
    with pytest.raises(ValueError, match="empty list of texts"):
        tok.encode_batch([])
    with pytest.raises(TypeError, match="item 1 is a int, not a str"):
        tok.encode_batch(["ab", 3])


# -- files ------------------------------------------------------------------------------------------
def test_load_rejects_bad_files(tmp_path):
    bpe = BPETokenizer.from_text("to be or not to be", vocab_size=16)
    good = json.loads(bpe.save(tmp_path / "good.json").read_text())

    def write(name, content):
        p = tmp_path / name
        p.write_text(content if isinstance(content, str) else json.dumps(content))
        return p

    with pytest.raises(ValueError, match="invalid JSON"):
        BPETokenizer.load(write("broken.json", '{"type": "BPETok'))
    with pytest.raises(ValueError, match="no 'type' field"):
        Tokenizer.load(write("notype.json", {"merges": []}))
    with pytest.raises(ValueError, match=r"unknown tokenizer type 'WordPiece'"):
        Tokenizer.load(write("wp.json", {**good, "type": "WordPiece"}))
    with pytest.raises(ValueError, match="format_version 7 is not supported"):
        BPETokenizer.load(write("v7.json", {**good, "format_version": 7}))
    with pytest.raises(ValueError, match="special tokens"):
        BPETokenizer.load(write("sp.json", {**good, "special_tokens": ["<eos>", "<unk>", "<bos>", "<pad>"]}))
    with pytest.raises(ValueError, match=r"merge 0 \['zz', 'q'\] uses a token that no earlier merge made"):
        BPETokenizer.load(write("m.json", {**good, "merges": [["zz", "q"]] + good["merges"]}))
    with pytest.raises(ValueError, match=r"merge 1 is \['a'\], not a \[left, right\] pair"):
        BPETokenizer.load(write("m2.json", {**good, "merges": good["merges"][:1] + [["a"]]}))
    char_path = CharTokenizer("abc").save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="holds a CharTokenizer, not a BPETokenizer"):
        BPETokenizer.load(char_path)


# -- the vocabulary, the special-token wrapping, padding ---------------------------------------------
def test_a_token_twice_in_the_vocabulary_is_named():
    tok = Tokenizer()
    with pytest.raises(ValueError, match="Tokenizer: the token 'ab' appears twice in the vocabulary"):
        tok._set_vocab(["ab", "c", "ab"])
    with pytest.raises(ValueError, match="the token '<eos>' appears twice"):
        tok._set_vocab(["<eos>"])                                    # a special is already there


def test_wrapping_leaves_out_a_missing_special():
    tok = CharTokenizer("ab")
    assert tok.encode("ab", add_special_tokens=True) == [2, 4, 5, 3]
    tok.bos_token = None
    assert tok.encode("ab", add_special_tokens=True) == [4, 5, 3]
    tok.eos_token = None
    assert tok.encode("ab", add_special_tokens=True) == [4, 5]


def test_pad_sequences_too_long_and_bad_side():
    from tinytorch.core.tokenization import pad_sequences
    with pytest.raises(ValueError, match="sequence 1 has 3 ids, more than the padded length 2"):
        pad_sequences([[1], [1, 2, 3]], 0, length=2)
    with pytest.raises(ValueError, match="pad_sequences: unknown padding_side 'middle'"):
        pad_sequences([[1]], 0, padding_side="middle")
    ids, mask = pad_sequences([], 0)
    assert ids.shape == mask.shape == (0, 0)
