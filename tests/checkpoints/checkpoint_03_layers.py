"""Can I build a network from layers and find, save and restore all of its parameters?"""
import math

import numpy as np

from tinytorch.core.layers import Dropout, Linear, LinearFunction, Module, Parameter, Sequential
from tinytorch.core.tensor import Tensor, check_backward


class Net(Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.encoder = Sequential(Linear(4, 8, rng=rng), Dropout(0.5), Linear(8, 8, rng=rng))
        self.heads = [Linear(8, 3, rng=rng), Linear(8, 3, rng=rng)]     # a list of layers
        self.heads[1].weight = self.heads[0].weight                     # a shared (tied) weight
        self.scale = Parameter(np.ones(3, dtype=np.float32))

    def forward(self, x):
        h = self.encoder(x)
        return (self.heads[0](h) + self.heads[1](h)) * self.scale


def test_linear_computes_x_times_w_transposed_plus_b():
    rng = np.random.default_rng(1)
    lin = Linear(400, 5, rng=rng)
    assert lin.weight.shape == (5, 400) and lin.bias.shape == (5,)          # PyTorch's layout
    bound = 1 / math.sqrt(400)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.weight.data).max() > 0.9 * bound
    assert np.abs(lin.bias.data).max() <= bound
    x = rng.standard_normal((3, 400)).astype(np.float32)
    out = lin(Tensor(x))
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out.data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-4, atol=1e-5)
    seq = Sequential(Linear(400, 6, rng=rng), Linear(6, 2, rng=rng))
    assert len(seq) == 2 and seq[1].out_features == 2
    np.testing.assert_allclose(seq(Tensor(x)).data, seq[1](seq[0](Tensor(x))).data)


def test_every_parameter_is_found_once():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert sorted(names) == sorted(["scale", "encoder.0.weight", "encoder.0.bias", "encoder.2.weight",
                                    "encoder.2.bias", "heads.0.weight", "heads.0.bias", "heads.1.bias"])
    assert [n for n in names if n != "scale"] == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight",
                                                  "encoder.2.bias", "heads.0.weight", "heads.0.bias",
                                                  "heads.1.bias"]                  # layers in order
    params = list(net.parameters())
    assert len(params) == 8 and len({id(p) for p in params}) == 8          # the tied weight once
    assert dict(net.named_parameters())["encoder.2.weight"] is net.encoder[2].weight
    assert all(p.requires_grad for p in params)
    assert net(Tensor(np.ones((2, 4)))).shape == (2, 3)


def test_state_dict_saves_and_restores_in_place():
    net = Net().eval()
    sd = net.state_dict()
    assert sorted(sd) == sorted(["scale", "encoder.0.weight", "encoder.0.bias", "encoder.2.weight",
                                 "encoder.2.bias", "heads.0.weight", "heads.0.bias",
                                 "heads.1.weight", "heads.1.bias"])                  # tied: both names
    assert all(isinstance(v, Tensor) and not v.requires_grad for v in sd.values())
    assert np.shares_memory(sd["encoder.0.weight"].data, net.encoder[0].weight.data)      # as torch: shared
    x = Tensor(np.random.default_rng(2).standard_normal((3, 4)))
    before = net(x).data.copy()

    other = Net().eval()
    for p in other.parameters():
        p.data[...] = 0.5
    weight, array = other.encoder[0].weight, other.encoder[0].weight.data
    other.load_state_dict(sd)
    assert other.encoder[0].weight is weight and weight.data is array          # loaded in place
    assert other.heads[1].weight is other.heads[0].weight                      # still tied
    np.testing.assert_array_equal(other(x).data, before)


def test_dropout_is_active_only_while_training():
    d = Dropout(0.25, rng=np.random.default_rng(3))
    x = Tensor(np.ones((200, 500), dtype=np.float32))
    out = d.train()(x).data
    assert abs((out == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)             # survivors scaled
    net = Net()
    net.eval()
    assert not net.encoder[1].training
    np.testing.assert_array_equal(net.encoder[1](x).data, x.data)
    net.train()
    assert net.encoder[1].training


def test_linear_backward_gives_all_three_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3))
    w = rng.standard_normal((2, 3))
    b = rng.standard_normal(2)
    g = rng.standard_normal((5, 2))
    ctx = LinearFunction()
    ctx.needs_input_grad = (True, True, True)
    np.testing.assert_allclose(LinearFunction.forward(ctx, x, w, b), x @ w.T + b, rtol=1e-12)
    gx, gw, gb = LinearFunction.backward(ctx, g)
    np.testing.assert_allclose(gx, g @ w, rtol=1e-12)
    np.testing.assert_allclose(gw, g.T @ x, rtol=1e-12)
    np.testing.assert_allclose(gb, g.sum(axis=0), rtol=1e-12)
    assert check_backward(LinearFunction, rng.standard_normal((2, 4, 3)), w)      # batch dims, no bias
