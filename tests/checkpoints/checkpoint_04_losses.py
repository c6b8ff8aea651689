"""Can I measure a model's error stably for regression and classification?"""
import math

import numpy as np
import pytest

from tinytorch.core.losses import (BCEFunction, BinaryCrossEntropyLoss, CrossEntropyFunction, CrossEntropyLoss,
                                   LogSoftmaxFunction, MSEFunction, MSELoss, log_softmax)
from tinytorch.core.tensor import Tensor, check_backward

TRAP = dict(all="raise", under="ignore")   # overflow / NaN / divide-by-zero raise; exp underflow to 0 is fine

LOGITS = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [-1.0, 0.0, 4.0]]


def _ce(rows, targets):
    return sum(-(r[t] - math.log(sum(math.exp(v) for v in r))) for r, t in zip(rows, targets)) / len(rows)


def test_mean_squared_error_for_regression():
    loss = MSELoss()(Tensor([1.0, 2.0, 3.0]), Tensor([1.0, 4.0, 0.0]))
    assert loss.shape == () and loss.item() == pytest.approx(13 / 3)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        MSELoss()(Tensor([1.0]), Tensor([1.0, 2.0]))


def test_cross_entropy_for_classification():
    loss = CrossEntropyLoss()(Tensor(LOGITS), Tensor([0, 1, 2]))
    assert loss.shape == () and loss.item() == pytest.approx(_ce(LOGITS, [0, 1, 2]), abs=1e-6)
    assert CrossEntropyLoss()(Tensor(np.zeros((4, 5))), Tensor([0, 1, 2, 3])).item() == pytest.approx(math.log(5))
    x = Tensor(np.array(LOGITS))
    np.testing.assert_allclose(log_softmax(x).data, np.array(LOGITS) - np.log(np.exp(LOGITS).sum(1, keepdims=True)),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="3"):
        CrossEntropyLoss()(Tensor(LOGITS), Tensor([0, 3, 1]))


def test_cross_entropy_skips_ignored_targets():
    loss = CrossEntropyLoss()(Tensor(LOGITS), Tensor([0, -100, 2]))
    assert loss.item() == pytest.approx(_ce([LOGITS[0], LOGITS[2]], [0, 2]), abs=1e-6)
    pad = CrossEntropyLoss(ignore_index=0)(Tensor(LOGITS), Tensor([0, 1, 2]))
    assert pad.item() == pytest.approx(_ce(LOGITS[1:], [1, 2]), abs=1e-6)


def test_stable_at_extreme_inputs():
    with np.errstate(**TRAP):
        wrong = CrossEntropyLoss()(Tensor([[1e4, -1e4]]), Tensor([1])).item()
        right = CrossEntropyLoss()(Tensor([[1e4, -1e4]]), Tensor([0])).item()
        tie = CrossEntropyLoss()(Tensor([[1e4, 1e4]]), Tensor([0])).item()
        logp = log_softmax(Tensor([[1000.0, 0.0]])).data
    # BCE takes probabilities; exactly 0 and 1 must give PyTorch's clamped value, not inf or NaN
    clamped = BinaryCrossEntropyLoss()(Tensor([0.0, 1.0]), Tensor([1.0, 0.0])).item()
    perfect = BinaryCrossEntropyLoss()(Tensor([0.0, 1.0]), Tensor([0.0, 1.0])).item()
    assert wrong == pytest.approx(2e4) and right == 0.0 and tie == pytest.approx(math.log(2))
    np.testing.assert_allclose(logp, [[0.0, -1000.0]], atol=1e-3)                # not -inf
    assert clamped == pytest.approx(100.0) and perfect == 0.0                  # log clamped at -100


def test_binary_cross_entropy_on_probabilities():
    loss = BinaryCrossEntropyLoss()(Tensor([0.9, 0.2, 0.6]), Tensor([1.0, 0.0, 1.0]))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3, rel=1e-6)
    soft = BinaryCrossEntropyLoss()(Tensor([0.7]), Tensor([0.25])).item()
    assert soft == pytest.approx(-(0.25 * math.log(0.7) + 0.75 * math.log(0.3)), rel=1e-6)
    with pytest.raises(ValueError, match="1.5"):
        BinaryCrossEntropyLoss()(Tensor([1.5]), Tensor([1.0]))


def test_every_loss_knows_its_derivative():
    # each backward against central differences (module 01's check_backward), float64, no engine
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 3))
    assert check_backward(LogSoftmaxFunction, z, dim=1)
    assert check_backward(CrossEntropyFunction, z, targets=np.array([0, 2, -100, 1]))
    assert check_backward(MSEFunction, z, rng.standard_normal((4, 3)))
    assert check_backward(BCEFunction, rng.uniform(0.1, 0.9, (4, 3)), rng.uniform(0, 1, (4, 3)))
