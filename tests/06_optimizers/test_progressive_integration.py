"""Module 06 (Optimizers): progressive integration tests.

  A. TestStackBelow        -- modules 01-05 (Tensor, activations, layers, losses, autograd) still work.
  B. Optimizer core:
       TestInterface       -- param groups, defaults, lazy state, skipped None grads, zero_grad,
                              closure, in-place updates, shared weights
       TestBadInput        -- every bad hyper-parameter / parameter list raises, naming the value
  C. TestOptimizersInTheStack -- real models trained with each optimizer reach a low loss; a float64
                              MLP trained by tinytorch and by PyTorch (forward, backward, Adam) stays
                              identical; loading weights after creating the optimizer keeps working.
"""
import numpy as np
import pytest
import torch

from tinytorch.core import autograd
from tinytorch.core.activations import ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Module, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import SGD, Adam, AdamW, Optimizer
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _recording_on():
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


# ================================================================================================
# A. Modules 01-05 still work
# ================================================================================================
class TestStackBelow:
    def test_tensor_and_activations(self):
        t = Tensor(np.arange(6.0).reshape(2, 3))
        assert t.dtype == np.float32 and (t @ t.T).data.tolist() == [[5, 14], [14, 50]]
        assert t.sum(axis=0).data.tolist() == [3, 5, 7] and t.reshape(3, 2).shape == (3, 2)
        assert ReLU()(Tensor([-1.0, 2.0])).data.tolist() == [0.0, 2.0]
        np.testing.assert_allclose(Softmax()(Tensor([[1.0, 1.0]])).data, [[0.5, 0.5]])
        assert Sigmoid()(Tensor([0.0])).item() == 0.5

    def test_layers_and_losses(self):
        seq = Sequential(Linear(3, 4), Tanh(), Linear(4, 2))
        assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert len(list(seq.parameters())) == 4 and all(isinstance(p, Parameter) for p in seq.parameters())
        x = Tensor(np.ones((5, 3)))
        assert seq(x).shape == (5, 2)
        loss = CrossEntropyLoss()(Tensor([[0.0, 0.0]]), Tensor([1]))
        assert loss.item() == pytest.approx(np.log(2), rel=1e-6)
        assert MSELoss()(Tensor([1.0, 3.0]), Tensor([1.0, 1.0])).item() == pytest.approx(2.0)

    def test_autograd_fills_parameter_grads(self):
        lin = Linear(3, 2)
        x = Tensor(np.arange(6.0).reshape(2, 3))
        lin(x).sum().backward()
        np.testing.assert_allclose(lin.weight.grad.data, np.tile(x.data.sum(axis=0), (2, 1)))
        np.testing.assert_allclose(lin.bias.grad.data, [2.0, 2.0])
        with no_grad():
            assert not lin(x).requires_grad
        lin.zero_grad()
        assert lin.weight.grad is None


# ================================================================================================
# B. Optimizer core
# ================================================================================================
class TestInterface:
    def test_param_groups_defaults_and_add_param_group(self):
        a, b, c = Parameter([1.0]), Parameter([2.0]), Parameter([3.0])
        opt = SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
        assert isinstance(opt, Optimizer) and len(opt.param_groups) == 2
        g0, g1 = opt.param_groups
        assert g0["params"] == [a] and g0["lr"] == 0.1 and g0["momentum"] == 0.0
        assert g1["params"][0] is b and g1["lr"] == 0.5 and g1["momentum"] == 0.9
        opt.add_param_group({"params": [c], "lr": 0.01})
        assert opt.param_groups[2]["lr"] == 0.01 and opt.param_groups[2]["nesterov"] is False
        with pytest.raises(ValueError, match="more than one parameter group"):
            opt.add_param_group({"params": [a]})
        with pytest.raises(ValueError, match=r"lr \(learning rate\) must be a finite number > 0, got -0.5"):
            opt.add_param_group({"params": [Parameter([0.0])], "lr": -0.5})
        assert len(opt.param_groups) == 3
        assert "Parameter Group 2" in repr(opt) and "lr: 0.01" in repr(opt)

    def test_generator_of_model_parameters_and_shared_weights(self):
        class Tied(Module):
            def __init__(self):
                super().__init__()
                self.a = Linear(3, 3, bias=False)
                self.b = Linear(3, 3, bias=False)
                self.b.weight = self.a.weight

            def forward(self, x):
                return self.b(self.a(x))

        model = Tied()
        opt = SGD(model.parameters(), lr=0.1)            # a generator works
        assert len(opt.param_groups[0]["params"]) == 1   # the tied weight once
        w = model.a.weight.data
        before = w.copy()
        model(Tensor(np.ones((2, 3)))).sum().backward()
        grad = model.a.weight.grad.data.copy()
        opt.step()
        assert model.a.weight is model.b.weight and model.a.weight.data is w    # still shared, in place
        np.testing.assert_allclose(w, before - 0.1 * grad, rtol=1e-6)          # one step, not two
        p = Parameter([1.0])
        opt2 = SGD([p, p], lr=1.0)                       # listed twice: updated once
        p.grad = Tensor([1.0])
        opt2.step()
        assert p.data[0] == 0.0

    def test_state_is_lazy_and_none_grads_are_skipped(self):
        p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
        opt = Adam([p, q], lr=0.1)
        assert opt.state == {}
        p.grad = Tensor(np.ones(3))
        opt.step()
        assert set(map(id, opt.state)) == {id(p)} and opt.state[p]["step"] == 1
        assert (q.data == 1).all()
        q.grad = Tensor(np.ones(2))
        opt.step()
        assert opt.state[p]["step"] == 2 and opt.state[q]["step"] == 1
        assert opt.state[p]["exp_avg"].shape == (3,) and opt.state[q]["exp_avg_sq"].dtype == np.float32

    def test_zero_grad_and_closure(self):
        p = Parameter([2.0])
        opt = SGD([p], lr=0.25)
        p.grad = Tensor([5.0])
        g = p.grad
        opt.zero_grad(set_to_none=False)
        assert p.grad is g and p.grad.data[0] == 0.0
        opt.zero_grad()
        assert p.grad is None

        def closure():
            opt.zero_grad()
            loss = (p * p).sum()
            loss.backward()
            return loss

        with no_grad():                                  # the closure re-enables gradients
            loss = opt.step(closure)
        assert loss.item() == 4.0 and p.data[0] == pytest.approx(2.0 - 0.25 * 4.0)
        assert opt.step() is None

    def test_updates_are_in_place_and_not_recorded(self):
        w = Parameter(np.ones((2, 2)))
        arr = w.data
        for opt in (SGD([w], lr=0.1, momentum=0.9), Adam([w]), AdamW([w])):
            w.grad = Tensor(np.ones((2, 2)))
            opt.step()
            assert w.data is arr and w.is_leaf and w.requires_grad and w.grad_fn is None

    def test_float64_parameters_stay_float64(self):
        p = Parameter(np.ones(4), dtype=np.float64)
        p.grad = Tensor(np.ones(4), dtype=np.float32)    # a float32 gradient is cast to the parameter
        for opt in (SGD([p], lr=0.1, momentum=0.5), Adam([p]), AdamW([p])):
            opt.step()
            assert p.data.dtype == np.float64
            assert all(v.dtype == np.float64 for v in opt.state[p].values() if isinstance(v, np.ndarray))

    def test_gradient_of_the_wrong_shape_is_a_clear_error(self):
        p = Parameter(np.ones((2, 3)))
        p.grad = Tensor(np.ones(3))
        with pytest.raises(ValueError, match=r"parameter of shape \(2, 3\) has a gradient of shape \(3,\)"):
            Adam([p]).step()


class TestBadInput:
    @pytest.mark.parametrize("make,exc,match", [
        (lambda ps: SGD(ps, lr=0), ValueError, r"SGD: lr \(learning rate\) must be a finite number > 0, got 0\b"),
        (lambda ps: SGD(ps, lr=-1e-3), ValueError, "got -0.001"),
        (lambda ps: SGD(ps, lr=float("nan")), ValueError, r"lr \(learning rate\) must be a finite number > 0, got nan"),
        (lambda ps: SGD(ps, lr="0.1"), TypeError, r"lr \(learning rate\) must be a finite number > 0, got '0.1' \(str\)"),
        (lambda ps: SGD(ps, lr=0.1, momentum=-0.9), ValueError, "momentum must be a finite number >= 0, got -0.9"),
        (lambda ps: SGD(ps, lr=0.1, weight_decay=-0.01), ValueError, "weight_decay must be a finite number >= 0, got -0.01"),
        (lambda ps: SGD(ps, lr=0.1, dampening=1.5), ValueError, r"dampening must be a finite number in \[0, 1\], got 1.5"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires momentum > 0"),
        (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening=0.1"),
        (lambda ps: Adam(ps, lr=-1), ValueError, r"Adam: lr \(learning rate\) must be a finite number > 0, got -1"),
        (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be a finite number in \[0, 1\), got 1.0"),
        (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be a finite number in \[0, 1\), got -0.1"),
        (lambda ps: Adam(ps, betas=(0.9,)), ValueError, r"betas must be a pair .* got \(0.9,\)"),
        (lambda ps: Adam(ps, eps=0), ValueError, "eps must be a finite number > 0, got 0"),
        (lambda ps: Adam(ps, eps=-1e-8), ValueError, "eps must be a finite number > 0, got -1e-08"),
        (lambda ps: AdamW(ps, weight_decay=-0.1), ValueError, "AdamW: weight_decay must be a finite number >= 0, got -0.1"),
        (lambda ps: AdamW(ps, betas=(0.9, 1.2)), ValueError, r"betas\[1\] must be a finite number in \[0, 1\), got 1.2"),
    ])
    def test_bad_hyper_parameters(self, make, exc, match):
        with pytest.raises(exc, match=match):
            make([Parameter([1.0])])

    @pytest.mark.parametrize("params,exc,match", [
        ([], ValueError, "empty parameter list"),
        (iter([]), ValueError, "empty parameter list"),
        ([Parameter([1.0]), np.ones(2)], TypeError, "item 1 of the parameters is a ndarray"),
        ([Parameter([1.0]), "weight"], TypeError, "item 1 of the parameters is a str: 'weight'"),
        (Parameter([1.0]), TypeError, "got a single Tensor of shape"),
        ({Parameter([1.0])}, TypeError, "not a set"),
        (42, TypeError, "iterable of Parameters or of dicts, got int"),
        ([{"lr": 0.1}], ValueError, "needs a 'params' key"),
        ([{"params": []}], ValueError, "empty parameter list"),
        ([Tensor([1, 2])], TypeError, "dtype int64"),
    ])
    def test_bad_parameter_lists(self, params, exc, match):
        for cls in (SGD, Adam, AdamW):
            with pytest.raises(exc, match=match):
                cls(params, lr=0.1)

    def test_non_leaf_tensor(self):
        w = Parameter([1.0])
        with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
            SGD([w * 2], lr=0.1)

    def test_model_without_parameters(self):
        with pytest.raises(ValueError, match="empty parameter list"):
            Adam(Sequential(ReLU(), Tanh()).parameters())


# ================================================================================================
# C. Optimizers wired into the stack
# ================================================================================================
def xor_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    return Tensor(x), Tensor((x[:, 0] * x[:, 1] > 0).astype(np.int64))


class TestOptimizersInTheStack:
    @pytest.mark.parametrize("make", [
        lambda ps: SGD(ps, lr=0.2, momentum=0.9),
        lambda ps: SGD(ps, lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-4),
        lambda ps: Adam(ps, lr=0.02),
        lambda ps: AdamW(ps, lr=0.02, weight_decay=1e-2),
    ], ids=["momentum", "nesterov", "adam", "adamw"])
    def test_an_mlp_learns_xor_to_a_low_loss(self, make):
        x, y = xor_data()
        model = Sequential(Linear(2, 32, rng=np.random.default_rng(1)), Tanh(),
                           Linear(32, 2, rng=np.random.default_rng(2)))
        opt, loss_fn = make(model.parameters()), CrossEntropyLoss()
        first = None
        for _ in range(300):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
        final = loss_fn(model(x), y).item()
        acc = (model(x).data.argmax(axis=1) == y.data).mean()
        assert final < 0.15 and final < 0.25 * first and acc > 0.95, (final, first, acc)

    def test_sgd_finds_the_least_squares_solution(self):
        rng = np.random.default_rng(3)
        X = rng.standard_normal((200, 3))
        true_w, true_b = np.array([[1.5, -2.0, 0.5]]), np.array([0.3])
        Y = X @ true_w.T + true_b + 0.01 * rng.standard_normal((200, 1))
        lin = Linear(3, 1)
        for p in lin.parameters():
            p.data = p.data.astype(np.float64)
        opt, loss_fn = SGD(lin.parameters(), lr=0.1, momentum=0.5), MSELoss()
        xt, yt = Tensor(X, dtype=np.float64), Tensor(Y, dtype=np.float64)
        for _ in range(200):
            opt.zero_grad()
            loss_fn(lin(xt), yt).backward()
            opt.step()
        A = np.hstack([X, np.ones((200, 1))])
        lstsq = np.linalg.lstsq(A, Y, rcond=None)[0].ravel()
        np.testing.assert_allclose(np.r_[lin.weight.data.ravel(), lin.bias.data], lstsq, atol=1e-6)

    @pytest.mark.parametrize("ours_cls,theirs_cls,kwargs", [
        (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
        (Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=1e-3)),
        (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    ], ids=["sgd", "adam", "adamw"])
    def test_training_loop_matches_pytorch_end_to_end(self, ours_cls, theirs_cls, kwargs):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((32, 5))
        y = rng.integers(0, 3, 32)
        tmodel = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
        model = Sequential(Linear(5, 16), Tanh(), Linear(16, 3))
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
        opt, topt = ours_cls(model.parameters(), **kwargs), theirs_cls(tmodel.parameters(), **kwargs)
        xt, yt = Tensor(x, dtype=np.float64), Tensor(y)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        for step in range(15):
            opt.zero_grad()
            topt.zero_grad()
            loss = CrossEntropyLoss()(model(xt), yt)
            tloss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-9), step
            loss.backward()
            tloss.backward()
            opt.step()
            topt.step()
        for (k, v), tv in zip(model.state_dict().items(), tmodel.state_dict().values()):
            np.testing.assert_allclose(v, tv.numpy(), rtol=0, atol=1e-9, err_msg=k)

    def test_loading_weights_after_creating_the_optimizer_keeps_it_working(self):
        x, y = xor_data(64)
        model = Sequential(Linear(2, 8), Tanh(), Linear(8, 2))
        opt = Adam(model.parameters(), lr=0.05)
        donor = Sequential(Linear(2, 8), Tanh(), Linear(8, 2))
        model.load_state_dict(donor.state_dict())       # in place: the optimizer still holds the right arrays
        before = model[0].weight.data.copy()
        opt.zero_grad()
        CrossEntropyLoss()(model(x), y).backward()
        opt.step()
        assert not np.array_equal(model[0].weight.data, before)
        assert opt.param_groups[0]["params"][0] is model[0].weight
