"""Bad input to the transformer stack: each a clear error whose message names what was wrong."""
import numpy as np
import pytest

from tinytorch.core.attention import MultiHeadAttention, scaled_dot_product_attention
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.transformers import GPT, LayerNorm, TransformerBlock


@pytest.fixture(scope="module")
def model():
    return GPT(vocab_size=10, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=6, seed=0)


def test_empty_text_for_the_tokenizer():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")


def test_empty_input(model):
    with pytest.raises(ValueError, match="no tokens"):
        model(np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="non-empty"):
        model.generate([], 3)


def test_token_ids_out_of_range(model):
    with pytest.raises(IndexError, match=r"token id 10 .*10 rows"):
        model(np.array([[1, 2, 10]]))
    with pytest.raises(IndexError, match="-1"):
        model(np.array([[1, -1]]))
    with pytest.raises(TypeError, match="integers"):
        model(np.array([[1.5, 2.0]]))


def test_sequence_longer_than_the_position_table(model):
    with pytest.raises(ValueError, match=r"7 tokens .*max_seq_len=6"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(B, T\).*\(7,\)"):
        model(np.zeros(7, dtype=np.int64))                     # 1-D ids: say which shape is expected


def test_embed_dim_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match=r"embed_dim=10 is not divisible by num_heads=3"):
        GPT(vocab_size=5, embed_dim=10, num_layers=1, num_heads=3, max_seq_len=4)
    with pytest.raises(ValueError, match=r"embed_dim=10 .*num_heads=3"):
        TransformerBlock(10, 3)
    with pytest.raises(ValueError, match=r"embed_dim=10 .*num_heads=4"):
        MultiHeadAttention(10, 4)


def test_bad_sizes():
    for kwargs, name in ((dict(vocab_size=0), "vocab_size"), (dict(num_layers=-1), "num_layers"),
                         (dict(max_seq_len=2.5), "max_seq_len")):
        args = dict(vocab_size=5, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=4)
        args.update(kwargs)
        with pytest.raises(ValueError, match=name):
            GPT(**args)


def test_mask_of_the_wrong_shape():
    rng = np.random.default_rng(0)
    q = Tensor(rng.standard_normal((2, 3, 5, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 4\).*\(2, 3, 5, 5\)"):
        scaled_dot_product_attention(q, q, q, mask=np.ones((5, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"\(3, 1, 1, 5\).*\(2, 3, 5, 5\)"):
        scaled_dot_product_attention(q, q, q, mask=np.ones((3, 1, 1, 5), dtype=bool))
    block = TransformerBlock(8, 2)
    with pytest.raises(ValueError, match=r"\(6, 6\).*\(1, 2, 5, 5\)"):
        block(Tensor(np.zeros((1, 5, 8), dtype=np.float32)), mask=np.ones((6, 6), dtype=bool))
    with pytest.raises(TypeError, match="dtype"):
        scaled_dot_product_attention(q, q, q, mask=np.array([["a"] * 5] * 5))


def test_qkv_shapes_that_do_not_fit():
    rng = np.random.default_rng(1)
    a = Tensor(rng.standard_normal((2, 5, 4)).astype(np.float32))
    b = Tensor(rng.standard_normal((2, 5, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"q \(2, 5, 4\) and k \(2, 5, 3\)"):
        scaled_dot_product_attention(a, b, b)
    with pytest.raises(ValueError, match=r"k \(2, 5, 4\) and v \(2, 4, 4\)"):
        scaled_dot_product_attention(a, a, Tensor(np.zeros((2, 4, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        scaled_dot_product_attention(Tensor(np.zeros(5, dtype=np.float32)), a, a)
    with pytest.raises(TypeError, match="floating"):
        scaled_dot_product_attention(Tensor(np.zeros((5, 4), dtype=np.int64)), a, a)


def test_layer_norm_and_attention_input_shapes():
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 5\)"):
        LayerNorm(4)(Tensor(np.zeros((3, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(5, 8\)"):
        MultiHeadAttention(8, 2)(Tensor(np.zeros((5, 8), dtype=np.float32)))
