"""Module 04's L1, Huber, SmoothL1, BCE-with-logits and KL-divergence losses without PyTorch: values at
hand-computed points, stability at extreme logits, every backward against central differences, bad input."""
import numpy as np
import pytest

from tinytorch.core.losses import (BCEWithLogitsFunction, BCEWithLogitsLoss, HuberFunction, HuberLoss,
                                   KLDivFunction, KLDivLoss, L1Function, L1Loss, SmoothL1Loss,
                                   binary_cross_entropy_with_logits, huber_loss, kl_div, l1_loss, smooth_l1_loss)
from tinytorch.core.tensor import Tensor, check_backward

D = Tensor([-3.0, -0.5, 0.0, 0.5, 3.0])
ZERO = np.zeros(5)


def test_l1_huber_smooth_l1_values():
    assert np.allclose(l1_loss(D, ZERO, reduction="none").data, [3, 0.5, 0, 0.5, 3])
    assert np.isclose(L1Loss()(D, ZERO).item(), 7.0 / 5)
    assert np.allclose(huber_loss(D, ZERO, reduction="none", delta=1.0).data, [2.5, 0.125, 0, 0.125, 2.5])
    assert np.isclose(HuberLoss(reduction="sum", delta=2.0)(D, ZERO).item(), 2 * 4.0 + 2 * 0.125)
    assert np.allclose(smooth_l1_loss(D, ZERO, reduction="none", beta=2.0).data, [2.0, 0.0625, 0, 0.0625, 2.0])
    assert np.isclose(SmoothL1Loss(beta=0.0)(D, ZERO).item(), 7.0 / 5)


def test_bce_with_logits_values_and_stability():
    x, t = np.array([2.0, -1.0, 0.0]), np.array([1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-x))
    ref = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert np.allclose(binary_cross_entropy_with_logits(Tensor(x), t, reduction="none").data, ref)
    ref_pw = -(3.0 * t * np.log(p) + (1 - t) * np.log(1 - p))
    assert np.allclose(BCEWithLogitsLoss(pos_weight=[3.0], reduction="none")(Tensor(x), t).data, ref_pw)
    assert np.isclose(BCEWithLogitsLoss(weight=[2.0, 0.0, 1.0], reduction="sum")(Tensor(x), t).item(),
                      2 * ref[0] + ref[2], rtol=1e-6)
    big = binary_cross_entropy_with_logits(Tensor([1e4, -1e4, 1e4]), Tensor([0.0, 1.0, 1.0]), reduction="none")
    assert np.allclose(big.data, [1e4, 1e4, 0.0])


def test_kl_div_values():
    q = np.array([[0.2, 0.8], [0.5, 0.5]])
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    kl = (q * (np.log(q) - logp)).sum()
    assert np.isclose(KLDivLoss(reduction="batchmean")(Tensor(logp), q).item(), kl / 2, rtol=1e-6)
    assert np.isclose(kl_div(Tensor(logp), q).item(), kl / 4, rtol=1e-6)
    assert np.isclose(kl_div(Tensor(logp), np.log(q), reduction="sum", log_target=True).item(), kl, rtol=1e-6)
    zero = kl_div(Tensor(logp), np.array([[0.0, 1.0], [1.0, 0.0]]), reduction="none").data
    assert zero[0, 0] == 0 and np.isclose(zero[0, 1], -logp[0, 1])


@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
def test_backwards_against_central_differences(reduction):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert check_backward(L1Function, a, b, reduction=reduction)
    assert check_backward(HuberFunction, a, b, delta=0.7, reduction=reduction)
    assert check_backward(BCEWithLogitsFunction, a, rng.uniform(0, 1, (3, 4)), reduction=reduction)
    assert check_backward(BCEWithLogitsFunction, a, rng.uniform(0, 1, (3, 4)), reduction=reduction,
                          weight=rng.uniform(0.5, 2, (3, 4)), pos_weight=rng.uniform(0.5, 3, 4))
    assert check_backward(KLDivFunction, a, rng.uniform(0.1, 1, (3, 4)), reduction=reduction)
    assert check_backward(KLDivFunction, a, b, reduction=reduction, log_target=True)


def test_batchmean_backward():
    rng = np.random.default_rng(2)
    assert check_backward(KLDivFunction, rng.standard_normal((3, 4)), rng.uniform(0.1, 1, (3, 4)),
                          reduction="batchmean")


@pytest.mark.parametrize("call, words", [
    (lambda: HuberLoss(delta=0.0), "delta"),
    (lambda: huber_loss(D, ZERO, delta=-1.0), "delta"),
    (lambda: SmoothL1Loss(beta=-1.0), "beta"),
    (lambda: L1Loss()(Tensor([1.0]), Tensor([1.0, 2.0])), "(2,)"),
    (lambda: BCEWithLogitsLoss(pos_weight=np.ones(3))(Tensor(np.zeros((2, 4))), np.zeros((2, 4))), "pos_weight"),
    (lambda: KLDivLoss(reduction="avg"), "avg"),
    (lambda: L1Loss(reduction="avg"), "L1Loss"),
])
def test_bad_input_names_the_value(call, words):
    with pytest.raises(ValueError) as e:
        call()
    assert words in str(e.value)


def test_gaussian_nll():
    from tinytorch.core.losses import GaussianNLLFunction, GaussianNLLLoss, gaussian_nll_loss
    rng = np.random.default_rng(3)
    x, t, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.uniform(0.5, 2, (4, 3))
    per = 0.5 * (np.log(v) + (x - t) ** 2 / v)
    assert np.allclose(GaussianNLLLoss(reduction="none")(Tensor(x), t, v).data, per, rtol=1e-5)
    assert np.isclose(gaussian_nll_loss(Tensor(x), t, v, full=True).item(), per.mean() + 0.5 * np.log(2 * np.pi), rtol=1e-5)
    row = rng.uniform(0.5, 2, 4)                                    # one variance per row
    assert np.allclose(gaussian_nll_loss(Tensor(x), t, row, reduction="none").data,
                       0.5 * (np.log(row)[:, None] + (x - t) ** 2 / row[:, None]), rtol=1e-5)
    clamped = gaussian_nll_loss(Tensor([0.0]), Tensor([0.0]), Tensor([0.0]), eps=1e-2).item()
    assert np.isclose(clamped, 0.5 * np.log(1e-2), rtol=1e-5)
    for reduction in ("mean", "sum", "none"):
        assert check_backward(GaussianNLLFunction, x, t, v, reduction=reduction)
        assert check_backward(GaussianNLLFunction, x, t, row[:, None], reduction=reduction, full=True)
    with pytest.raises(ValueError, match="negative"):
        gaussian_nll_loss(Tensor(x), t, -v)
    with pytest.raises(ValueError, match="incorrect size"):
        gaussian_nll_loss(Tensor(x), t, np.ones((3, 3)))


def test_triplet_margin():
    from tinytorch.core.losses import TripletMarginFunction, TripletMarginLoss, triplet_margin_loss
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    pos = np.array([[1.0, 0.0], [3.0, 0.0]])
    neg = np.array([[0.0, 2.0], [0.0, 1.0]])
    per = triplet_margin_loss(Tensor(a), pos, neg, margin=0.5, eps=0.0, reduction="none").data
    assert np.allclose(per, [0.0, 2.5])                       # max(1 − 2 + .5, 0), max(3 − 1 + .5, 0)
    line = [Tensor([[0.0, 0.0]]), [[1.0, 0.0]], [[2.0, 0.0]]]     # d(a, p) = 1, d(a, n) = 2, d(p, n) = 1
    assert np.isclose(triplet_margin_loss(*line, margin=0.5, eps=0.0).item(), 0.0)
    assert np.isclose(triplet_margin_loss(*line, margin=0.5, eps=0.0, swap=True).item(), 0.5)   # the closer negative
    assert np.isclose(TripletMarginLoss(margin=1.0, p=1.0)(Tensor([0.0, 0.0]), [1.0, 1.0], [3.0, 0.0]).item(),
                      max(2.0 - 3.0 + 1.0, 0.0) + 4e-6, atol=1e-5)          # one unbatched triplet, L1 distances
    rng = np.random.default_rng(5)
    x, y, z = rng.standard_normal((3, 6, 4))
    for kw in (dict(margin=2.0), dict(margin=2.0, p=1.0, swap=True, reduction="none"),
               dict(margin=3.0, p=3.0, swap=True, reduction="sum")):
        assert check_backward(TripletMarginFunction, x, y, z, **kw)
    with pytest.raises(ValueError, match="margin"):
        triplet_margin_loss(Tensor(x), y, z, margin=0.0)
