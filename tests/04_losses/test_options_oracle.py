"""Module 04's loss options against PyTorch (torch.nn.functional, float64): reduction="mean"/"sum"/"none"
for every loss, class weights and label smoothing for cross-entropy, class weights for nll_loss, with
ignore_index and extra dimensions; the value and the gradient at the input (each loss's backward called on
its recorded context, with a random upstream gradient for "none")."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinytorch.core.losses import (CrossEntropyLoss, NLLLoss, binary_cross_entropy, cross_entropy, log_softmax,
                                   mse_loss, nll_loss)
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)


def _local_grad(out, upstream):
    "The gradient at the first input of the Function that made `out` (its backward on the recorded context)."
    fn = out.grad_fn
    while fn is not None and type(fn).__name__ not in ("CrossEntropyFunction", "NLLFunction", "MSEFunction",
                                                         "BCEFunction"):
        fn = fn.inputs[0].grad_fn          # a reshape after the loss (reduction="none" with extra dims)
    return fn, np.asarray(type(fn).backward(fn, upstream)[0])


def _compare(ours, theirs, x_torch, upstream):
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    theirs.backward(torch.from_numpy(upstream.reshape(theirs.shape)))
    fn, g = _local_grad(ours, upstream)
    np.testing.assert_allclose(g.reshape(x_torch.grad.shape), x_torch.grad.numpy(), rtol=1e-9, atol=1e-12)


def _case(seed, shape=(6, 4)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    y = rng.integers(0, shape[1], shape[0])
    y[1] = -100
    return rng, x, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class-weights"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_options_match_torch(reduction, weighted, smoothing):
    rng, x, y = _case(0)
    w = rng.uniform(0.2, 2.0, 4) if weighted else None
    xt = torch.tensor(x, requires_grad=True)
    theirs = F.cross_entropy(xt, torch.from_numpy(y), weight=None if w is None else torch.from_numpy(w),
                             reduction=reduction, label_smoothing=smoothing)
    ours = CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=smoothing)(Tensor(x, dtype=np.float64, requires_grad=True), y)
    upstream = rng.standard_normal(theirs.shape) if reduction == "none" else np.array(1.3)
    _compare(ours, theirs, xt, upstream)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_extra_dims_weights_and_smoothing(reduction):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    y = rng.integers(0, 3, (2, 4, 5))
    y[0, 1, 2] = 7
    w = np.array([0.5, 1.0, 2.0])
    xt = torch.tensor(x, requires_grad=True)
    theirs = F.cross_entropy(xt, torch.from_numpy(y), weight=torch.from_numpy(w), ignore_index=7,
                             reduction=reduction, label_smoothing=0.2)
    ours = cross_entropy(Tensor(x, dtype=np.float64, requires_grad=True), y, weight=w, ignore_index=7, reduction=reduction,
                         label_smoothing=0.2)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class-weights"])
def test_nll_loss_options_match_torch(reduction, weighted):
    rng, x, y = _case(2)
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    w = rng.uniform(0.2, 2.0, 4) if weighted else None
    xt = torch.tensor(logp, requires_grad=True)
    theirs = F.nll_loss(xt, torch.from_numpy(y), weight=None if w is None else torch.from_numpy(w), reduction=reduction)
    ours = NLLLoss(weight=w, reduction=reduction)(Tensor(logp, dtype=np.float64, requires_grad=True), y)
    upstream = rng.standard_normal(theirs.shape) if reduction == "none" else np.array(0.7)
    _compare(ours, theirs, xt, upstream)
    assert np.allclose(nll_loss(log_softmax(Tensor(x, dtype=np.float64, requires_grad=True), 1), y, weight=w, reduction=reduction).data,
                       theirs.detach().numpy())


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_mse_and_bce_reductions_match_torch(reduction):
    rng = np.random.default_rng(3)
    p, t = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    for ours_fn, theirs_fn in ((mse_loss, F.mse_loss), (binary_cross_entropy, F.binary_cross_entropy)):
        pt = torch.tensor(p, requires_grad=True)
        theirs = theirs_fn(pt, torch.from_numpy(t), reduction=reduction)
        ours = ours_fn(Tensor(p, dtype=np.float64, requires_grad=True), Tensor(t, dtype=np.float64), reduction=reduction)
        upstream = rng.standard_normal(theirs.shape) if reduction == "none" else np.array(0.9)
        _compare(ours, theirs, pt, upstream)


def test_weights_are_a_buffer_and_have_one_value_per_class():
    loss = CrossEntropyLoss(weight=[1.0, 2.0, 3.0])
    assert list(loss.state_dict()) == ["weight"] and list(torch.nn.CrossEntropyLoss(torch.ones(3)).state_dict()) == ["weight"]
    assert CrossEntropyLoss().state_dict() == {}
    with pytest.raises(ValueError, match=r"weight must hold one value per class, shape \(4,\); got shape \(3,\)"):
        loss(Tensor(np.zeros((2, 4))), [0, 1])
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 1\], got 1.5"):
        CrossEntropyLoss(label_smoothing=1.5)
