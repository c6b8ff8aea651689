"""Module 04's L1, Huber, SmoothL1, BCE-with-logits and KL-divergence losses against PyTorch
(torch.nn.functional, float64): every reduction, delta/beta, weight/pos_weight, log_target; the value and the
gradients at the input and the target (each loss's backward called on its recorded context, with a random
upstream gradient for "none"), and the torch-named faces."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tinytorch.nn as tnn
import tinytorch.nn.functional as TF
from tinytorch.core.losses import (binary_cross_entropy_with_logits, huber_loss, kl_div, l1_loss,
                                   smooth_l1_loss)
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)
REDUCTIONS = ("mean", "sum", "none")


def _loss_fn(out):
    "The loss Function that made `out` (SmoothL1 divides the Huber loss by beta afterwards)."
    fn = out.grad_fn
    while type(fn).__name__ not in ("L1Function", "HuberFunction", "BCEWithLogitsFunction", "KLDivFunction"):
        fn = fn.inputs[0].grad_fn
    return fn


def _check(ours, theirs, xt, tt, upstream, scale=1.0):
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    theirs.backward(torch.from_numpy(upstream.reshape(theirs.shape)))
    fn = _loss_fn(ours)
    gx, gt = type(fn).backward(fn, np.asarray(upstream / scale).reshape(ours.shape))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gt, tt.grad.numpy(), rtol=1e-9, atol=1e-12)


def _inputs(seed, shape=(5, 3), target=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    t = rng.standard_normal(shape) * 2 if target is None else target(rng, shape)
    up = rng.standard_normal(shape)
    return rng, x, t, up


def _T(a):
    return Tensor(a, dtype=np.float64, requires_grad=True)


def _torch(*arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_l1_huber_smooth_l1(reduction):
    for seed, delta in ((0, 1.0), (1, 0.3), (2, 2.5)):
        _, x, t, up = _inputs(seed)
        x[0, 0] = t[0, 0]                              # sign(0) = 0 as PyTorch
        u = up if reduction == "none" else np.asarray(up[0, 0])
        xt, tt = _torch(x, t)
        _check(l1_loss(_T(x), _T(t), reduction), F.l1_loss(xt, tt, reduction=reduction), xt, tt, u)
        xt, tt = _torch(x, t)
        _check(huber_loss(_T(x), _T(t), reduction, delta),
               F.huber_loss(xt, tt, reduction=reduction, delta=delta), xt, tt, u)
        xt, tt = _torch(x, t)
        _check(smooth_l1_loss(_T(x), _T(t), reduction, delta),
               F.smooth_l1_loss(xt, tt, reduction=reduction, beta=delta), xt, tt, u, scale=delta)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(reduction):
    rng, x, t, up = _inputs(3, (6, 4), target=lambda rng, s: rng.uniform(0, 1, s))
    x[0] = [40.0, -40.0, 1e3, -1e3]                       # saturated logits stay exact
    u = up if reduction == "none" else np.asarray(up[0, 0])
    for weight, pos_weight in ((None, None), (rng.uniform(0.5, 2, (6, 4)), None), (None, rng.uniform(0.5, 4, 4)),
                               (rng.uniform(0.5, 2, 4), rng.uniform(0.5, 4, 4))):
        xt, tt = _torch(x, t)
        theirs = F.binary_cross_entropy_with_logits(
            xt, tt, reduction=reduction, weight=None if weight is None else torch.from_numpy(weight),
            pos_weight=None if pos_weight is None else torch.from_numpy(pos_weight))
        ours = binary_cross_entropy_with_logits(_T(x), _T(t), weight, reduction, pos_weight)
        _check(ours, theirs, xt, tt, u)


@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
@pytest.mark.parametrize("log_target", (False, True))
def test_kl_div(reduction, log_target):
    rng = np.random.default_rng(4)
    x = np.log(rng.dirichlet(np.ones(5), 4))
    q = rng.dirichlet(np.ones(5), 4)
    t = np.log(q) if log_target else q
    up = rng.standard_normal(x.shape)
    u = up if reduction == "none" else np.asarray(up[0, 0])
    xt, tt = _torch(x, t)
    _check(kl_div(_T(x), _T(t), reduction, log_target),
           F.kl_div(xt, tt, reduction=reduction, log_target=log_target), xt, tt, u)


def test_kl_div_zero_target_value():
    x = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    ours = kl_div(_T(x), _T(t), "none").data
    np.testing.assert_allclose(ours, F.kl_div(torch.tensor(x), torch.tensor(t), reduction="none").numpy())


def test_faces_match_torch_classes():
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    pairs = ((tnn.L1Loss(), torch.nn.L1Loss()), (tnn.HuberLoss(delta=0.5), torch.nn.HuberLoss(delta=0.5)),
             (tnn.SmoothL1Loss(beta=0.0), torch.nn.SmoothL1Loss(beta=0.0)),
             (tnn.BCEWithLogitsLoss(pos_weight=np.full(4, 2.0)),
              torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((4,), 2.0, dtype=torch.float64))),
             (tnn.KLDivLoss(reduction="batchmean", log_target=True),
              torch.nn.KLDivLoss(reduction="batchmean", log_target=True)))
    for ours, theirs in pairs:
        want = theirs(torch.tensor(x), torch.tensor(t)).item()
        assert np.isclose(ours(_T(x), _T(t)).item(), want, rtol=1e-10), type(ours).__name__
    assert np.isclose(TF.huber_loss(_T(x), _T(t), delta=2.0).item(),
                      F.huber_loss(torch.tensor(x), torch.tensor(t), delta=2.0).item(), rtol=1e-10)
    assert tnn.BCEWithLogitsLoss(pos_weight=np.ones(4)).state_dict().keys() == {"pos_weight"}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("var_shape", ((5, 3), (5, 1), (5,)))
@pytest.mark.parametrize("full", (False, True))
def test_gaussian_nll(reduction, var_shape, full):
    from tinytorch.core.losses import gaussian_nll_loss
    rng, x, t, up = _inputs(6)
    var = rng.uniform(0.2, 2.0, var_shape)
    var.flat[0] = 1e-9                                            # clamped at eps, gradient passed through
    u = up if reduction == "none" else np.asarray(up[0, 0])
    xt, tt, vt = _torch(x, t, var)
    theirs = F.gaussian_nll_loss(xt, tt, vt, full=full, eps=1e-4, reduction=reduction)
    xo, to, vo = _T(x), _T(t), _T(var)
    ours = gaussian_nll_loss(xo, to, vo, full, 1e-4, reduction)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    theirs.backward(torch.from_numpy(u.reshape(theirs.shape)))
    fn = ours.grad_fn                                             # the loss's backward on its recorded context
    assert type(fn).__name__ == "GaussianNLLFunction"
    grads = type(fn).backward(fn, u.reshape(ours.shape))
    for g, th in zip(grads, (xt, tt, vt)):
        np.testing.assert_allclose(np.reshape(g, th.shape), th.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p, swap, margin", [(2.0, False, 1.0), (1.0, True, 2.0), (3.0, True, 0.5), (2.0, True, 3.0)])
def test_triplet_margin(reduction, p, swap, margin):
    from tinytorch.core.losses import triplet_margin_loss
    rng = np.random.default_rng(8)
    a, pos, neg = rng.standard_normal((3, 7, 5))
    neg[:2] = a[:2] + 10.0                                          # two easy triplets: loss 0, no gradient
    up = rng.standard_normal(7) if reduction == "none" else np.asarray(rng.standard_normal())
    at, pt, nt = _torch(a, pos, neg)
    theirs = F.triplet_margin_loss(at, pt, nt, margin=margin, p=p, swap=swap, reduction=reduction)
    ours = triplet_margin_loss(_T(a), _T(pos), _T(neg), margin, p, 1e-6, swap, reduction)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    theirs.backward(torch.from_numpy(up))
    fn = ours.grad_fn
    for g, th in zip(type(fn).backward(fn, up), (at, pt, nt)):
        np.testing.assert_allclose(g, th.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert not fn.active[:2].any() and fn.active[2:].any()
