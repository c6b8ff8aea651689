"""Module 05: the engine chains the local rules written in modules 01-04.

Modules 01-04 check each op's backward on its own (called directly on the op's context). These tests
are the same stack through `loss.backward()`: gradients reach the first layer of a Sequential and agree
with PyTorch, broadcast operands get gradients of their own shape (unbroadcast), leaf dtypes are kept,
`zero_grad` clears what backward filled in.
"""
import numpy as np
import pytest
import torch

from tinytorch.core.activations import GELU, ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss
from tinytorch.core.tensor import Tensor


class TestTensorOpsThroughTheEngine:
    def test_broadcast_operands_get_gradients_of_their_own_shape(self):
        x = Tensor(np.ones((64, 3)), requires_grad=True)
        b = Tensor(np.zeros(3), requires_grad=True)
        s = Tensor(np.ones((64, 1)), requires_grad=True)
        c = Tensor(2.0, requires_grad=True)
        ((x + b) * s * c).sum().backward()
        assert b.grad.shape == (3,) and b.grad.data.tolist() == [128.0] * 3
        assert s.grad.shape == (64, 1) and np.allclose(s.grad.data, 6.0)
        assert c.grad.shape == () and c.grad.item() == pytest.approx(192.0)
        assert x.grad.shape == (64, 3) and np.allclose(x.grad.data, 2.0)

    def test_gradients_keep_the_leaf_dtype(self):
        x = Tensor([1.0, 2.0], requires_grad=True)
        (x * Tensor([3.0, 4.0], dtype=np.float64)).sum().backward()
        assert x.grad.dtype == np.float32 and x.grad.data.tolist() == [3.0, 4.0]


def _torch_twin(model):
    layers = []
    for layer in model:
        if isinstance(layer, Linear):
            lin = torch.nn.Linear(layer.in_features, layer.out_features).double()
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.weight.data.astype(np.float64)))
                lin.bias.copy_(torch.from_numpy(layer.bias.data.astype(np.float64)))
            layers.append(lin)
        else:
            layers.append({ReLU: torch.nn.ReLU(), Sigmoid: torch.nn.Sigmoid(), Tanh: torch.nn.Tanh(),
                           GELU: torch.nn.GELU(), Softmax: torch.nn.Softmax(dim=-1)}[type(layer)])
    return torch.nn.Sequential(*layers)


class TestLayersAndActivationsThroughTheEngine:
    def test_sequential_forward_matches_numpy(self):
        rng = np.random.default_rng(0)
        model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng), Sigmoid())
        x = rng.standard_normal((5, 4)).astype(np.float32)
        l1, l2 = model[0], model[2]
        h = np.maximum(x @ l1.weight.data.T + l1.bias.data, 0)
        ref = 1 / (1 + np.exp(-(h @ l2.weight.data.T + l2.bias.data)))
        out = model(Tensor(x))
        assert out.shape == (5, 3)
        np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("act", [ReLU, Sigmoid, Tanh, GELU, Softmax])
    def test_gradient_reaches_the_first_layer_and_matches_pytorch(self, act):
        rng = np.random.default_rng(3)
        model = Sequential(Linear(4, 6, rng=rng), act(), Linear(6, 3, rng=rng), act())
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        x = rng.standard_normal((5, 4))
        v = rng.standard_normal((5, 3))
        out = model(Tensor(x, dtype=np.float64))
        out.backward(v)
        first = model[0].weight
        assert first.grad is not None and first.grad.shape == (6, 4)
        assert np.abs(first.grad.data).sum() > 0

        twin = _torch_twin(model)
        tout = twin(torch.from_numpy(x))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6, atol=1e-7)
        tout.backward(torch.from_numpy(v))
        for (name, p), tp in zip(model.named_parameters(), twin.parameters()):
            np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-5, atol=1e-7, err_msg=name)

    def test_dead_relu_blocks_the_gradient(self):
        lin = Linear(3, 2, rng=np.random.default_rng(0))
        lin.bias.data[...] = -100.0                 # every pre-activation negative
        x = Tensor(np.random.default_rng(1).standard_normal((4, 3)))
        ReLU()(lin(x)).sum().backward()
        assert np.all(lin.weight.grad.data == 0) and np.all(lin.bias.grad.data == 0)

    def test_zero_grad_clears_what_backward_filled(self):
        model = Sequential(Linear(2, 3), Tanh(), Linear(3, 1))
        model(Tensor(np.ones((4, 2)))).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()
        assert all(p.grad is None for p in model.parameters())


class Tied(Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(1)
        self.fc1 = Linear(4, 8, rng=rng)
        self.fc2 = Linear(8, 2, rng=rng)
        self.fc3 = Linear(8, 2, rng=rng)
        self.fc3.weight = self.fc2.weight        # shared (tied) weight

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h) + self.fc3(h)


class TestLayersThroughTheEngine:
    def _twin(self, model):
        tmodel = torch.nn.Sequential(*[
            torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, Linear)
            else {ReLU: torch.nn.ReLU, Tanh: torch.nn.Tanh, Sigmoid: torch.nn.Sigmoid}[type(m)]()
            for m in model]).double()
        tmodel.load_state_dict({k: torch.from_numpy(v.numpy().astype(np.float64)) for k, v in model.state_dict().items()})
        return tmodel

    def test_every_parameter_gets_pytorchs_gradient(self):
        rng = np.random.default_rng(11)
        model = Sequential(Linear(5, 7, rng=rng), Tanh(), Linear(7, 4, rng=rng), ReLU(), Linear(4, 2, rng=rng))
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        tmodel = self._twin(model)
        x = rng.standard_normal((2, 3, 5))
        v = rng.standard_normal((2, 3, 2))
        xt = Tensor(x, requires_grad=True, dtype=np.float64)
        out = model(xt)
        out.backward(v)
        txt = torch.tensor(x, requires_grad=True)
        tout = tmodel(txt)
        tout.backward(torch.from_numpy(v))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        tgrads = dict(tmodel.named_parameters())
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.shape == p.shape, name
            np.testing.assert_allclose(p.grad.data, tgrads[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(xt.grad.data, txt.grad.numpy(), rtol=1e-9, atol=1e-12)

    def test_tied_weight_gradient_is_the_sum_of_both_uses(self):
        net = Tied()
        x = Tensor(np.random.default_rng(0).standard_normal((3, 4)))
        net(x).sum().backward()
        h = net.fc1(x).data
        np.testing.assert_allclose(net.fc2.weight.grad.data, 2 * np.ones((2, 3)) @ h, rtol=1e-5, atol=1e-6)

    def test_eval_under_no_grad_records_nothing(self):
        model = Sequential(Linear(3, 3), Dropout(0.5), ReLU(), Linear(3, 1)).eval()
        with no_grad():
            y = model(Tensor(np.ones((2, 3))))
        assert not y.requires_grad and y.grad_fn is None
        assert model[-1](Tensor(np.ones((2, 3)))).requires_grad

    def test_manual_step_after_load_moves_the_loaded_parameters(self):
        # load_state_dict copies into the existing arrays, so references taken before loading
        # (what an optimizer holds) still point at the live parameters.
        model = Sequential(Linear(2, 2), ReLU(), Linear(2, 1))
        held = list(model.parameters())
        model.load_state_dict({k: np.ones_like(v) for k, v in model.state_dict().items()})
        model(Tensor(np.ones((1, 2)))).sum().backward()
        with no_grad():
            for p in held:
                p.data -= 0.1 * p.grad.data
        assert model[2].bias.data.tolist() == pytest.approx([0.9])
        np.testing.assert_allclose(model[0].weight.data, 0.9, rtol=1e-6)


class TestLossesThroughTheEngine:
    def test_classifier_loss_reaches_every_parameter_as_in_pytorch(self):
        rng = np.random.default_rng(8)
        model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
        tmodel = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        tmodel.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()})
        x = rng.standard_normal((10, 4)).astype(np.float32)
        y = rng.integers(0, 3, 10)
        loss = CrossEntropyLoss()(model(Tensor(x)), Tensor(y))
        loss.backward()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-5)
        tgrads = dict(tmodel.named_parameters())
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.shape == p.shape, name
            assert np.abs(p.grad.data).sum() > 0, name
            np.testing.assert_allclose(p.grad.data, tgrads[name].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)

    def test_sigmoid_bce_and_mse_regression_backpropagate(self):
        rng = np.random.default_rng(9)

        class Net(Module):
            def __init__(self):
                super().__init__()
                self.body = Linear(3, 5, rng=rng)
                self.act = Tanh()
                self.out = Linear(5, 1, rng=rng)

            def forward(self, x):
                return self.out(self.act(self.body(x)))

        net = Net()
        x = Tensor(rng.standard_normal((8, 3)))
        bce = BinaryCrossEntropyLoss()(Sigmoid()(net(x)), Tensor(rng.integers(0, 2, (8, 1)).astype(np.float32)))
        bce.backward()
        g_bce = {n: p.grad.data.copy() for n, p in net.named_parameters()}
        net.zero_grad()
        mse = MSELoss()(net(x), Tensor(rng.standard_normal((8, 1))))
        mse.backward()
        for n, p in net.named_parameters():
            assert p.grad is not None and np.abs(g_bce[n]).sum() > 0 and np.abs(p.grad.data).sum() > 0, n

    def test_a_gradient_step_lowers_the_loss(self):
        rng = np.random.default_rng(10)
        model = Sequential(Linear(2, 8, rng=rng), Tanh(), Linear(8, 2, rng=rng))
        x = Tensor(rng.standard_normal((32, 2)))
        y = Tensor((x.data[:, 0] > 0).astype(np.int64))
        loss_fn = CrossEntropyLoss()
        before = loss_fn(model(x), y)
        before.backward()
        with no_grad():
            for p in model.parameters():
                p.data -= 0.1 * p.grad.data
            after = loss_fn(model(x), y)
        assert after.item() < before.item()
        assert not after.requires_grad

    def test_loss_is_a_graph_node_not_a_detached_number(self):
        w = Linear(2, 2)
        loss = CrossEntropyLoss()(w(Tensor(np.ones((1, 2)))), Tensor([0]))
        assert loss.requires_grad and loss.grad_fn is not None
        assert MSELoss()(w(Tensor(np.ones((1, 2)))), Tensor(np.zeros((1, 2)))).grad_fn is not None
