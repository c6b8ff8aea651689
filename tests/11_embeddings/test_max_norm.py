"""Module 11's max_norm (torch's embedding_renorm_) without PyTorch: the rows read are scaled in place to at most
max_norm (in the norm_type norm), rows not read or already small are untouched, the lookup returns the
rescaled rows, and bad settings are named."""
import numpy as np
import pytest

from tinytorch.core.embeddings import Embedding, embedding, renorm_rows
from tinytorch.core.tensor import Tensor


def test_renorm_rows_in_place():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0], [1.0, 1.0]])
    renorm_rows(w, np.array([0, 1, 0]), max_norm=1.0)
    assert np.allclose(w[0], [0.6, 0.8], atol=1e-6) and np.array_equal(w[1], [0.3, 0.4])
    assert np.array_equal(w[2], [6.0, 8.0]) and np.array_equal(w[3], [1.0, 1.0])     # not read
    renorm_rows(w, np.array([3]), max_norm=1.5, norm_type=1.0)                       # |1| + |1| = 2 > 1.5
    assert np.allclose(w[3], [0.75, 0.75], atol=1e-6)


def test_embedding_layer_and_functional():
    emb = Embedding(5, 4, max_norm=0.5, rng=np.random.default_rng(0))
    before = emb.weight.data.copy()
    out = emb(np.array([[2, 4], [4, 4]]))
    norms = np.linalg.norm(emb.weight.data, axis=1)
    assert (norms[[2, 4]] <= 0.5 + 1e-5).all() and np.array_equal(emb.weight.data[[0, 1, 3]], before[[0, 1, 3]])
    assert np.array_equal(out.data[1, 0], emb.weight.data[4])
    w = Tensor(np.array([[10.0, 0.0], [0.1, 0.0]]), dtype=np.float64)
    assert np.allclose(embedding(np.array([0, 1]), w, max_norm=2.0).data, [[2.0, 0.0], [0.1, 0.0]], atol=1e-6)
    assert "max_norm=0.5" in repr(emb)


@pytest.mark.parametrize("kw, words", [(dict(max_norm=0.0), "max_norm"), (dict(max_norm=1.0, norm_type=-1.0), "norm_type")])
def test_bad_settings(kw, words):
    with pytest.raises(ValueError, match=words):
        Embedding(4, 2, **kw)
