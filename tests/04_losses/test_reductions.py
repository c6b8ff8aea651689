"""Module 04's reductions, nll_loss, class weights and label smoothing from their formulas, with NumPy only
(this file ships with the student copy): values by hand, and every backward against central differences
(module 01's check_backward)."""
import numpy as np
import pytest

from tinytorch.core.losses import (BCEFunction, BinaryCrossEntropyLoss, CrossEntropyFunction, CrossEntropyLoss,
                                   MSEFunction, MSELoss, NLLFunction, NLLLoss, log_softmax, nll_loss)
from tinytorch.core.tensor import Tensor, check_backward

X = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [-1.0, 0.0, 1.0], [0.2, 0.2, 0.2]])
Y = np.array([0, 1, -100, 2])


def _logp(x):
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_reductions_of_cross_entropy_by_hand():
    per = -_logp(X)[np.arange(4), np.where(Y == -100, 0, Y)] * (Y != -100)
    x = Tensor(X, dtype=np.float64)
    none = CrossEntropyLoss(reduction="none")(x, Y)
    assert none.shape == (4,) and np.allclose(none.data, per) and none.data[2] == 0
    assert np.isclose(CrossEntropyLoss(reduction="sum")(x, Y).item(), per.sum())
    assert np.isclose(CrossEntropyLoss()(x, Y).item(), per.sum() / 3)               # the mean over the kept rows
    assert CrossEntropyLoss()(x, [-100] * 4).item() == 0                            # every row ignored


def test_class_weights_weight_each_row_and_the_mean_divides_by_their_total():
    w = np.array([0.5, 2.0, 3.0])
    picked = -_logp(X)[[0, 1, 3], [0, 1, 2]]
    rows = picked * w[[0, 1, 2]]
    x = Tensor(X, dtype=np.float64)
    assert np.allclose(CrossEntropyLoss(weight=w, reduction="none")(x, Y).data, [rows[0], rows[1], 0, rows[2]])
    assert np.isclose(CrossEntropyLoss(weight=w)(x, Y).item(), rows.sum() / w.sum())
    assert np.isclose(nll_loss(log_softmax(x, 1), Y, weight=w).item(), rows.sum() / w.sum())
    assert np.isclose(NLLLoss(weight=w, reduction="sum")(log_softmax(x, 1), Y).item(), rows.sum())


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_label_smoothing_is_cross_entropy_against_the_smoothed_target(eps):
    q = np.full((4, 3), eps / 3)
    keep = Y != -100
    q[np.arange(4)[keep], Y[keep]] += 1 - eps
    rows = -(q * _logp(X)).sum(axis=1) * keep
    x = Tensor(X, dtype=np.float64)
    assert np.allclose(CrossEntropyLoss(label_smoothing=eps, reduction="none")(x, Y).data, rows)
    assert np.isclose(CrossEntropyLoss(label_smoothing=eps)(x, Y).item(), rows.sum() / 3)


def test_mse_and_bce_reductions_by_hand():
    p, t = np.array([0.9, 0.2, 0.5]), np.array([1.0, 0.0, 1.0])
    sq = (p - t) ** 2
    assert np.allclose(MSELoss(reduction="none")(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64)).data, sq)
    assert np.isclose(MSELoss(reduction="sum")(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64)).item(), sq.sum())
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    got = BinaryCrossEntropyLoss(reduction="none")(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64))
    assert np.allclose(got.data, bce)
    assert np.isclose(BinaryCrossEntropyLoss(reduction="sum")(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64)).item(),
                      bce.sum())


def test_a_float32_mean_stays_float32():
    out = CrossEntropyLoss()(Tensor(X.astype(np.float32)), Y)
    assert out.data.dtype == np.float32 and out.shape == ()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_loss_backward_matches_central_differences(reduction):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    y = np.array([0, 3, -100, 1, 2])
    w = rng.uniform(0.5, 2.0, 4)
    assert check_backward(CrossEntropyFunction, z, targets=y, reduction=reduction)
    assert check_backward(CrossEntropyFunction, z, targets=y, reduction=reduction, weight=w, label_smoothing=0.2)
    assert check_backward(NLLFunction, z, targets=y, reduction=reduction, weight=w)
    assert check_backward(MSEFunction, z, rng.standard_normal((5, 4)), reduction=reduction)
    assert check_backward(BCEFunction, rng.uniform(0.1, 0.9, (5, 4)), rng.uniform(0, 1, (5, 4)), reduction=reduction)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown reduction 'avg'; known: 'mean', 'sum', 'none'"):
        MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="nll_loss: unknown reduction 'all'"):
        nll_loss(Tensor(X), Y, reduction="all")
    with pytest.raises(ValueError, match=r"shape \(3,\); got shape \(2,\)"):
        nll_loss(Tensor(X), Y, weight=[1.0, 2.0])
