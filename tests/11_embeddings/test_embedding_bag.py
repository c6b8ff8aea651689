"""Module 11's EmbeddingBag without PyTorch: sums, means and maxima of bags given as rows or by offsets (empty
bags are zeros), the max gradient going to the one row holding each maximum, every backward against central
differences, padding ids not counted, and bad input named."""
import numpy as np
import pytest

from tinytorch.core.embeddings import EmbeddingBag, EmbeddingBagFunction, embedding_bag
from tinytorch.core.tensor import Tensor, check_backward

W = np.random.default_rng(2).standard_normal((10, 4))


def _w():
    return Tensor(W, dtype=np.float64, requires_grad=True)


def test_sum_mean_max_values():
    out = embedding_bag(np.array([1, 2, 4, 5, 4, 3]), _w(), offsets=np.array([0, 2, 2]), mode="sum")
    assert np.allclose(out.data, [W[1] + W[2], np.zeros(4), 2 * W[4] + W[5] + W[3]])
    assert np.allclose(embedding_bag(np.array([[1, 2], [3, 3]]), _w(), mode="mean").data, [(W[1] + W[2]) / 2, W[3]])
    assert np.allclose(embedding_bag(np.array([1, 2, 7]), _w(), [0, 1, 3], mode="max", include_last_offset=True).data,
                       [W[1], np.maximum(W[2], W[7])])
    assert np.allclose(embedding_bag(np.array([[0, 1, 0]]), _w(), padding_idx=0).data, W[1:2])


def test_max_gradient_goes_to_the_winning_row_once():
    w = _w()
    out = embedding_bag(np.array([[3, 3, 6]]), w, mode="max")
    out.backward(np.ones((1, 4)))
    winner = np.where(W[3] >= W[6], 3, 6)
    expected = np.zeros_like(W)
    expected[winner, np.arange(4)] = 1.0
    assert np.array_equal(w.grad.data, expected)                   # a repeated winning id counts once


def test_sum_gradient_and_per_sample_weights():
    w = _w()
    psw = Tensor(np.array([2.0, -1.0, 0.5]), dtype=np.float64, requires_grad=True)
    out = embedding_bag(np.array([4, 4, 1]), w, [0, 2], mode="sum", per_sample_weights=psw)
    assert np.allclose(out.data, [W[4], 0.5 * W[1]])
    g = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    out.backward(g)
    assert np.allclose(w.grad.data[4], g[0]) and np.allclose(w.grad.data[1], 0.5 * g[1])
    assert np.allclose(psw.grad.data, [g[0] @ W[4], g[0] @ W[4], g[1] @ W[1]])


@pytest.mark.parametrize("mode", ("sum", "mean", "max"))
def test_backward_against_central_differences(mode):
    rng = np.random.default_rng(4)
    ids, bags = np.array([0, 5, 5, 2, 3, 1]), np.array([0, 0, 0, 2, 2, 3])
    assert check_backward(EmbeddingBagFunction, rng.standard_normal((6, 3)), ids=ids, bags=bags, num_bags=4, mode=mode)
    if mode == "sum":
        assert check_backward(EmbeddingBagFunction, rng.standard_normal((6, 3)), rng.standard_normal(6), ids=ids,
                              bags=bags, num_bags=4, mode=mode)


@pytest.mark.parametrize("call, words", [
    (lambda: EmbeddingBag(5, 2)(np.array([1, 2])), "offsets"),
    (lambda: EmbeddingBag(5, 2)(np.array([1, 2]), offsets=[1]), "[1]"),
    (lambda: EmbeddingBag(5, 2)(np.array([1, 2]), offsets=[0, 3]), "[0, 3]"),
    (lambda: EmbeddingBag(5, 2)(np.array([[1]]), offsets=[0]), "offsets must be None"),
    (lambda: EmbeddingBag(5, 2, mode="avg"), "avg"),
    (lambda: embedding_bag(np.array([[1]]), _w(), mode="mean", per_sample_weights=np.ones((1, 1))), "mode='sum'"),
])
def test_bad_input_names_the_value(call, words):
    with pytest.raises(ValueError) as e:
        call()
    assert words in str(e.value)


def test_out_of_range_id():
    with pytest.raises(IndexError, match="12"):
        EmbeddingBag(10, 2)(np.array([[1, 12]]))
