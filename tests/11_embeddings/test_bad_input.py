"""Bad input to the embedding layers: each error is raised, of the right type, naming what was wrong."""
import numpy as np
import pytest

from tinytorch.core.embeddings import Embedding, PositionalEncoding, SinusoidalPositionalEncoding
from tinytorch.core.tensor import Tensor


@pytest.fixture
def emb():
    return Embedding(10, 4, rng=np.random.default_rng(0))


@pytest.mark.parametrize("ids, bad", [([3, 10], 10), ([[1, 2], [3, 12]], 12), ([-1, 4], -1), (np.array([-7]), -7),
                                      (Tensor(np.array([0, 100])), 100), (10, 10)])
def test_id_out_of_range_names_the_id_and_the_size(emb, ids, bad):
    with pytest.raises(IndexError, match=rf"token id {bad} is out of range for an embedding table of 10 rows "
                                         rf"\(valid ids: 0..9\)"):
        emb(ids)


@pytest.mark.parametrize("ids, dtype", [(np.array([1.0, 2.0]), "float64"), (Tensor([1.0, 2.0]), "float32"),
                                        ([1.5], "float64"), (np.array([True, False]), "bool")])
def test_non_integer_ids_are_an_error(emb, ids, dtype):
    with pytest.raises(TypeError, match=rf"token ids must be integers, got dtype {dtype}"):
        emb(ids)


@pytest.mark.parametrize("args, err, msg", [((0, 4), ValueError, r"num_embeddings must be a positive integer \(>= 1\), got 0"),
                                            ((10, -2), ValueError, r"embedding_dim must be a positive integer \(>= 1\), got -2"),
                                            ((10.0, 4), TypeError, r"num_embeddings must be a positive integer \(>= 1\), got 10.0"),
                                            ((10, "4"), TypeError, r"embedding_dim must be a positive integer \(>= 1\), got '4'")])
def test_bad_sizes(args, err, msg):
    with pytest.raises(err, match=msg):
        Embedding(*args)


def test_bad_padding_idx():
    with pytest.raises(ValueError, match="padding_idx 10 is out of range for 10 embeddings"):
        Embedding(10, 4, padding_idx=10)
    with pytest.raises(ValueError, match="padding_idx must be an integer >= -10, got -11"):
        Embedding(10, 4, padding_idx=-11)
    with pytest.raises(TypeError, match="padding_idx must be an integer >= -10, got 0.5"):
        Embedding(10, 4, padding_idx=0.5)


@pytest.mark.parametrize("cls", [PositionalEncoding, SinusoidalPositionalEncoding])
class TestPositionalLimits:
    def test_sequence_longer_than_the_table_names_both(self, cls):
        pe = cls(16, 8)
        with pytest.raises(ValueError, match=r"a sequence of length 17 starting at position 0 needs 17 positions, "
                                             r"more than max_seq_len 16"):
            pe(Tensor(np.zeros((2, 17, 8))))
        assert pe(Tensor(np.zeros((2, 16, 8)))).shape == (2, 16, 8)      # exactly full is fine

    def test_start_pos_past_the_end(self, cls):
        pe = cls(16, 8)
        with pytest.raises(ValueError, match=r"length 1 starting at position 16 needs 17 positions.*max_seq_len 16"):
            pe(Tensor(np.zeros((1, 1, 8))), start_pos=16)
        with pytest.raises(ValueError, match=r"length 5 starting at position 12 needs 17"):
            pe(Tensor(np.zeros((5, 8))), start_pos=12)
        assert pe(Tensor(np.zeros((1, 1, 8))), start_pos=15).shape == (1, 1, 8)

    @pytest.mark.parametrize("start_pos", [-1, 1.0, True])
    def test_bad_start_pos(self, cls, start_pos):
        with pytest.raises(ValueError, match=rf"start_pos must be an integer >= 0, got {start_pos!r}"):
            cls(16, 8)(Tensor(np.zeros((1, 2, 8))), start_pos=start_pos)

    def test_wrong_embed_dim_names_both(self, cls):
        with pytest.raises(ValueError, match=r"last dimension is 6 \(shape \(2, 3, 6\)\) but embed_dim is 8"):
            cls(16, 8)(Tensor(np.zeros((2, 3, 6))))

    @pytest.mark.parametrize("shape", [(8,), (1, 2, 3, 8)])
    def test_wrong_rank(self, cls, shape):
        with pytest.raises(ValueError, match=rf"expected input of shape \(batch, seq_len, 8\) or \(seq_len, 8\), "
                                             rf"got shape {re_shape(shape)}"):
            cls(16, 8)(Tensor(np.zeros(shape)))

    def test_bad_sizes(self, cls):
        with pytest.raises(ValueError, match=r"max_seq_len must be a positive integer \(>= 1\), got 0"):
            cls(0, 8)
        with pytest.raises(TypeError, match=r"embed_dim must be a positive integer \(>= 1\), got 8.0"):
            cls(16, 8.0)


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")
