"""Module 04 (Losses): progressive integration tests.

  A. TestStackBelow         -- modules 01 (Tensor), 02 (Activations), 03 (Layers) still work.
  B. TestMSE, TestCrossEntropy, TestLogSoftmax, TestBCE, TestLossGradients
                            -- values against hand computations, ignore_index, stability at extreme
                               logits, clear errors, each loss's backward (called on its recorded
                               context; the engine is module 05's) against PyTorch and central
                               differences.
  C. TestLossesInTheStack   -- the loss of a model's output is a graph node whose value and local
                               gradient agree with PyTorch.
"""
import math
import warnings

import numpy as np
import pytest
import torch

from tinytorch.core.activations import ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import (BCEFunction, BinaryCrossEntropyLoss, CrossEntropyFunction, CrossEntropyLoss,
                                   LogSoftmaxFunction, MSEFunction, MSELoss, log_softmax)
from tinytorch.core.tensor import Tensor, check_backward

TRAP = dict(all="raise", under="ignore")   # overflow / invalid / divide trapped; exp underflow to 0 is fine


# ================================================================================================
# A. Modules 01-03 still work
# ================================================================================================
class TestStackBelow:
    def test_tensor_core(self):
        t = Tensor([[1.0, 2.0], [3.0, 4.0]])
        assert t.dtype == np.float32 and Tensor([1]).dtype == np.int64
        assert (t * Tensor([1.0, 0.0])).data.tolist() == [[1, 0], [3, 0]]
        assert t.mean(axis=1).data.tolist() == [1.5, 3.5] and (t @ t).shape == (2, 2)

    def test_activations_core(self):
        with np.errstate(**TRAP):
            assert Sigmoid()(Tensor([-1e4, 0.0, 1e4])).data.tolist() == [0.0, 0.5, 1.0]
            s = Softmax(dim=0)(Tensor([[1.0, 2.0], [3.0, 4.0]])).data
        np.testing.assert_allclose(s.sum(axis=0), 1.0, rtol=1e-6)
        assert ReLU()(Tensor([-1.0, 1.0])).data.tolist() == [0, 1]

    def test_layers_core(self):
        model = Sequential(Linear(3, 4), ReLU(), Dropout(0.5), Linear(4, 2))
        assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
        assert model[0].weight.shape == (4, 3) and len(list(model.parameters())) == 4
        model.eval()
        x = Tensor(np.ones((2, 3)))
        np.testing.assert_array_equal(model(x).data, model(x).data)
        w = model[0].weight
        model.load_state_dict({k: np.zeros_like(v) for k, v in model.state_dict().items()})
        assert model[0].weight is w and np.all(model(x).data == 0)


# ================================================================================================
# B. This module's core
# ================================================================================================
def _ce_by_hand(logits, targets):
    total = 0.0
    for row, t in zip(logits, targets):
        total += -(row[t] - math.log(sum(math.exp(v) for v in row)))
    return total / len(targets)


class TestMSE:
    def test_value_by_hand(self):
        loss = MSELoss()(Tensor([1.0, 2.0, 3.0]), Tensor([1.0, 4.0, 0.0]))
        assert loss.shape == () and loss.dtype == np.float32
        assert loss.item() == pytest.approx((0 + 4 + 9) / 3)

    def test_2d_and_numpy_target(self):
        p = np.arange(6.0, dtype=np.float32).reshape(2, 3)
        t = np.ones((2, 3))
        assert MSELoss()(Tensor(p), t).item() == pytest.approx(float(((p - 1) ** 2).mean()))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"\(1,\).*\(2,\)"):
            MSELoss()(Tensor([1.0]), Tensor([1.0, 2.0]))
        with pytest.raises(ValueError, match=r"\(3, 1\)"):
            MSELoss()(Tensor(np.zeros((3, 1))), Tensor(np.zeros(3)))   # no silent (3, 3) broadcast


class TestCrossEntropy:
    LOGITS = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [-1.0, 0.0, 4.0]]

    def test_value_by_hand(self):
        loss = CrossEntropyLoss()(Tensor(self.LOGITS), Tensor([0, 1, 0]))
        assert loss.shape == () and loss.dtype == np.float32
        assert loss.item() == pytest.approx(_ce_by_hand(self.LOGITS, [0, 1, 0]), abs=1e-6)

    def test_uniform_logits_give_log_c(self):
        assert CrossEntropyLoss()(Tensor(np.zeros((4, 10))), Tensor([0, 3, 9, 5])).item() == pytest.approx(math.log(10))

    def test_targets_as_list_numpy_and_integral_floats(self):
        expected = _ce_by_hand(self.LOGITS, [2, 1, 0])
        for targets in ([2, 1, 0], np.array([2, 1, 0], dtype=np.int32), Tensor([2.0, 1.0, 0.0])):
            assert CrossEntropyLoss()(Tensor(self.LOGITS), targets).item() == pytest.approx(expected, abs=1e-6)
        with pytest.raises(TypeError, match="integer class indices"):
            CrossEntropyLoss()(Tensor(self.LOGITS), Tensor([0.5, 1.0, 0.0]))

    def test_ignore_index_default(self):
        loss = CrossEntropyLoss()(Tensor(self.LOGITS), Tensor([0, -100, 2]))
        # the ignored row neither contributes nor counts in the mean
        expected = (_ce_by_hand([self.LOGITS[0]], [0]) + _ce_by_hand([self.LOGITS[2]], [2])) / 2
        assert loss.item() == pytest.approx(expected, abs=1e-6)

    def test_ignore_index_custom(self):
        # padding id 0 ignored; the padded row's logits do not matter at all
        a = CrossEntropyLoss(ignore_index=0)(Tensor(self.LOGITS), Tensor([0, 1, 2]))
        other = [list(r) for r in self.LOGITS]
        other[0] = [100.0, -100.0, 3.0]
        b = CrossEntropyLoss(ignore_index=0)(Tensor(other), Tensor([0, 1, 2]))
        expected = _ce_by_hand(self.LOGITS[1:], [1, 2])
        assert a.item() == pytest.approx(expected, abs=1e-6) and b.item() == pytest.approx(expected, abs=1e-6)

    def test_matches_pytorch_including_ignore_and_extra_dims(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 5))
        y = np.array([0, 4, -100, 2, 2, -100])
        ours = CrossEntropyLoss()(Tensor(x, dtype=np.float64), y).item()
        theirs = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)).item()
        assert ours == pytest.approx(theirs, rel=1e-12)
        x3 = rng.standard_normal((2, 4, 3, 5))                     # (N, C, d1, d2)
        y3 = rng.integers(0, 4, (2, 3, 5))
        ours3 = CrossEntropyLoss()(Tensor(x3, dtype=np.float64), y3).item()
        theirs3 = torch.nn.functional.cross_entropy(torch.from_numpy(x3), torch.from_numpy(y3)).item()
        assert ours3 == pytest.approx(theirs3, rel=1e-12)

    def test_unbatched_logits(self):
        assert CrossEntropyLoss()(Tensor([1.0, 2.0, 3.0]), 2).item() == pytest.approx(_ce_by_hand([[1, 2, 3]], [2]))

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_stable_at_extreme_logits(self, dtype):
        with np.errstate(**TRAP):
            wrong = CrossEntropyLoss()(Tensor([[1e4, -1e4]], dtype=dtype), Tensor([1]))
            right = CrossEntropyLoss()(Tensor([[1e4, -1e4]], dtype=dtype), Tensor([0]))
            tie = CrossEntropyLoss()(Tensor([[1e4, 1e4, -1e4]], dtype=dtype), Tensor([1]))
            huge = CrossEntropyLoss()(Tensor([[1e30, -1e30, 0.0]], dtype=dtype), Tensor([2]))
        assert wrong.item() == pytest.approx(2e4) and np.isfinite(wrong.item())
        assert right.item() == 0.0
        assert tie.item() == pytest.approx(math.log(2), rel=1e-6)
        assert huge.item() == pytest.approx(1e30, rel=1e-6) and np.isfinite(huge.item())

    @pytest.mark.parametrize("targets, word", [([0, 3, 1], "3"), ([0, -1, 1], "-1")])
    def test_targets_out_of_range(self, targets, word):
        with pytest.raises(IndexError, match=f"target {word} is out of range for 3 classes"):
            CrossEntropyLoss()(Tensor(self.LOGITS), Tensor(targets))

    def test_target_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"\(3, 3\).*\(2,\)"):
            CrossEntropyLoss()(Tensor(self.LOGITS), Tensor([0, 1]))


class TestLogSoftmax:
    def test_closed_form_and_normalisation(self):
        x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
        out = log_softmax(Tensor(x)).data
        ref = x - np.log(np.exp(x.astype(np.float64)).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.exp(log_softmax(Tensor(x), dim=0).data).sum(axis=0), 1.0, rtol=1e-5)

    def test_stable_where_naive_log_of_softmax_is_minus_inf(self):
        x = Tensor([[1000.0, 0.0], [-1e4, 1e4]])
        with np.errstate(**TRAP):
            out = log_softmax(x).data
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, [[0.0, -1000.0], [-2e4, 0.0]], rtol=1e-6)

    def test_bad_dim(self):
        with pytest.raises(ValueError, match=r"dim 3.*\(2, 2\)"):
            log_softmax(Tensor(np.zeros((2, 2))), dim=3)


class TestBCE:
    def test_value_by_hand(self):
        loss = BinaryCrossEntropyLoss()(Tensor([0.9, 0.2, 0.6]), Tensor([1.0, 0.0, 1.0]))
        assert loss.shape == () and loss.dtype == np.float32
        assert loss.item() == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3, rel=1e-6)

    def test_soft_targets(self):
        loss = BinaryCrossEntropyLoss()(Tensor([0.7]), Tensor([0.25]))
        assert loss.item() == pytest.approx(-(0.25 * math.log(0.7) + 0.75 * math.log(0.3)), rel=1e-6)

    def test_clamped_at_the_extremes(self):
        with np.errstate(**TRAP):
            assert BinaryCrossEntropyLoss()(Tensor([0.0]), Tensor([1.0])).item() == pytest.approx(100.0)
            assert BinaryCrossEntropyLoss()(Tensor([1.0]), Tensor([0.0])).item() == pytest.approx(100.0)
            assert BinaryCrossEntropyLoss()(Tensor([1.0, 0.0]), Tensor([1.0, 0.0])).item() == 0.0

    def test_matches_pytorch(self):
        rng = np.random.default_rng(3)
        p = rng.uniform(0.01, 0.99, (5, 3))
        t = rng.uniform(0, 1, (5, 3))
        ours = BinaryCrossEntropyLoss()(Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64)).item()
        theirs = torch.nn.functional.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(t)).item()
        assert ours == pytest.approx(theirs, rel=1e-12)

    @pytest.mark.parametrize("p, word", [([1.5], "1.5"), ([-0.25], "-0.25"), ([float("nan")], "nan")])
    def test_rejects_non_probabilities(self, p, word):
        with pytest.raises(ValueError, match=f"{word}.*Sigmoid"):
            BinaryCrossEntropyLoss()(Tensor(p), Tensor([1.0]))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
            BinaryCrossEntropyLoss()(Tensor([0.5, 0.5]), Tensor([1.0, 0.0, 1.0]))


def _local_grads(out: Tensor, v=None) -> tuple:
    "The backward of the one op that made `out`, called on its recorded context (no engine)."
    ctx = out.grad_fn
    assert ctx is not None, "the loss recorded no context"
    v = np.ones(out.shape, dtype=out.dtype) if v is None else v
    g = type(ctx).backward(ctx, v)
    return g if isinstance(g, tuple) else (g,)


class TestLossGradients:
    def _compare(self, ours_fn, theirs_fn, x):
        xt = Tensor(x, requires_grad=True, dtype=np.float64)
        tx = torch.tensor(x, requires_grad=True)
        ours, theirs = ours_fn(xt), theirs_fn(tx)
        theirs.backward()
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)
        np.testing.assert_allclose(_local_grads(ours)[0], tx.grad.numpy(), rtol=1e-8, atol=1e-12)

    def test_cross_entropy_gradient(self):
        x = np.random.default_rng(4).standard_normal((5, 4))
        y = np.array([0, 3, -100, 1, 3])
        self._compare(lambda a: CrossEntropyLoss()(a, y),
                      lambda a: torch.nn.functional.cross_entropy(a, torch.from_numpy(y)), x)

    def test_mse_gradient_both_sides(self):
        rng = np.random.default_rng(5)
        p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        pt, tt = Tensor(p, requires_grad=True, dtype=np.float64), Tensor(t, requires_grad=True, dtype=np.float64)
        gp, gt = _local_grads(MSELoss()(pt, tt))
        np.testing.assert_allclose(gp, 2 * (p - t) / p.size, rtol=1e-12)
        np.testing.assert_allclose(gt, -2 * (p - t) / p.size, rtol=1e-12)

    def test_bce_gradient(self):
        p = np.random.default_rng(6).uniform(0.05, 0.95, (4, 2))
        t = np.random.default_rng(7).integers(0, 2, (4, 2)).astype(np.float64)
        self._compare(lambda a: BinaryCrossEntropyLoss()(a, Tensor(t, dtype=np.float64)),
                      lambda a: torch.nn.functional.binary_cross_entropy(a, torch.from_numpy(t)), p)

    @pytest.mark.parametrize("fn, inputs, params", [
        (LogSoftmaxFunction, [(4, 5)], {"dim": 1}),
        (LogSoftmaxFunction, [(4, 5)], {"dim": 0}),
        (CrossEntropyFunction, [(4, 5)], {"targets": np.array([0, 4, 2, 1])}),
        (CrossEntropyFunction, [(4, 5)], {"targets": np.array([0, -1, 2, -1]), "ignore_index": -1}),
        (MSEFunction, [(3, 4), (3, 4)], {}),
    ], ids=["log_softmax-1", "log_softmax-0", "cross-entropy", "cross-entropy-ignore", "mse"])
    def test_backward_matches_central_differences(self, fn, inputs, params):
        rng = np.random.default_rng(8)
        assert check_backward(fn, *[rng.standard_normal(s) for s in inputs], **params)

    def test_bce_backward_matches_central_differences(self):
        rng = np.random.default_rng(9)
        assert check_backward(BCEFunction, rng.uniform(0.1, 0.9, (3, 4)), rng.uniform(0, 1, (3, 4)))

    def test_cross_entropy_gradient_at_extreme_logits_is_finite(self):
        x = Tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
        with np.errstate(**TRAP):
            g = _local_grads(CrossEntropyLoss()(x, Tensor([1, 1])))[0]
        np.testing.assert_allclose(g, [[0.5, -0.5], [0.0, 0.0]], atol=1e-7)

    def test_bce_backward_at_saturated_probabilities_is_finite_and_silent(self):
        # A Sigmoid in float32 saturates to exactly 0.0 or 1.0 for |logit| > ~17: a BCE loss on such
        # outputs must backpropagate without floating-point warnings.
        p = Tensor([1.0, 0.0, 0.5], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(**TRAP):
                loss = BinaryCrossEntropyLoss()(p, Tensor([0.0, 1.0, 1.0]))
                g = _local_grads(loss)[0]
        assert np.all(np.isfinite(g))
        assert g[0] > 0 and g[1] < 0
        assert g[2] == pytest.approx(-2.0 / 3.0)


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestLossesInTheStack:
    def test_classifier_loss_and_its_gradient_at_the_logits_match_pytorch(self):
        rng = np.random.default_rng(8)
        model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
        tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        tmodel.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()})
        x = rng.standard_normal((10, 4)).astype(np.float32)
        y = rng.integers(0, 3, 10)
        loss = CrossEntropyLoss()(model(Tensor(x)), Tensor(y))
        tlogits = tmodel(torch.from_numpy(x))
        tlogits.retain_grad()
        tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(y))
        tloss.backward()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-5)
        assert loss.grad_fn.inputs[0].requires_grad                 # the logits are part of the graph
        np.testing.assert_allclose(_local_grads(loss)[0], tlogits.grad.numpy(), rtol=1e-4, atol=1e-6)

    def test_loss_is_a_graph_node_not_a_detached_number(self):
        w = Linear(2, 2)
        loss = CrossEntropyLoss()(w(Tensor(np.ones((1, 2)))), Tensor([0]))
        assert loss.requires_grad and loss.grad_fn is not None
        assert MSELoss()(w(Tensor(np.ones((1, 2)))), Tensor(np.zeros((1, 2)))).grad_fn is not None
