"""Module 08's pad_sequence without PyTorch: right and left padding, batch-first and time-first layouts, the
gradient of each sequence (its own slice, none from the padding), a collate_fn built on it, and bad input."""
import numpy as np
import pytest

from tinytorch.core.dataloader import DataLoader, Dataset, PadSequenceFunction, pad_sequence
from tinytorch.core.tensor import Tensor, check_backward


def test_right_and_left_padding():
    seqs = [Tensor([1, 2, 3]), Tensor([4]), Tensor([5, 6])]
    assert pad_sequence(seqs, batch_first=True).data.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]
    assert pad_sequence(seqs, batch_first=True, padding_side="left", padding_value=9).data.tolist() == \
        [[1, 2, 3], [9, 9, 4], [9, 5, 6]]
    time_first = pad_sequence(seqs)
    assert time_first.shape == (3, 3) and time_first.data[:, 1].tolist() == [4, 0, 0]
    feats = pad_sequence([np.ones((2, 4)), np.ones((5, 4))], batch_first=True)
    assert feats.shape == (2, 5, 4) and feats.data[0, 2:].sum() == 0 and feats.data[1].sum() == 20


def test_gradient_goes_back_to_each_sequence():
    a = Tensor(np.arange(6.0).reshape(3, 2), dtype=np.float64, requires_grad=True)
    b = Tensor(np.ones((1, 2)), dtype=np.float64, requires_grad=True)
    out = pad_sequence([a, b], padding_side="left")                     # (3, 2, 2)
    g = np.arange(12.0).reshape(3, 2, 2)
    out.backward(g)
    assert np.array_equal(a.grad.data, g[:, 0]) and np.array_equal(b.grad.data, g[2:, 1])


@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(batch_first=False), dict(batch_first=True, left=True)])
def test_backward_against_central_differences(kw):
    rng = np.random.default_rng(0)
    assert check_backward(PadSequenceFunction, rng.standard_normal((3, 2)), rng.standard_normal((1, 2)),
                          rng.standard_normal((4, 2)), **kw)


def test_as_a_collate_fn():
    class Sentences(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.arange(1, i + 2)

    batches = list(DataLoader(Sentences(), batch_size=2, collate_fn=lambda xs: pad_sequence(xs, batch_first=True)))
    assert batches[0].data.tolist() == [[1, 0], [1, 2]] and batches[1].shape == (2, 4)


@pytest.mark.parametrize("call, words", [
    (lambda: pad_sequence([]), "empty"),
    (lambda: pad_sequence([np.zeros((2, 3)), np.zeros((2, 4))]), "(2, 4)"),
    (lambda: pad_sequence([np.zeros(2)], padding_side="middle"), "middle"),
])
def test_bad_input(call, words):
    with pytest.raises(ValueError) as e:
        call()
    assert words in str(e.value)
