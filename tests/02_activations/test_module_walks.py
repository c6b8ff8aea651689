"""Module 02's Module walks and the activations without a PyTorch oracle, with NumPy only (this file ships
with the student copy): discovery from attributes, apply, get_submodule, buffers, zero_grad, repr,
eval_mode, load_state_dict's in-place copy; LeakyReLU, SiLU, Sigmoid's forward and GELU's float32 erf."""
import math

import numpy as np
import pytest

from tinytorch.core.activations import (GELU, LeakyReLU, LeakyReLUFunction, Module, ModuleList, Parameter, Sigmoid,
                                        SiLU, SiLUFunction, eval_mode)
from tinytorch.core.activations import _erf
from tinytorch.core.tensor import Tensor, check_backward


class Leaf(Module):
    def __init__(self, n=2):
        super().__init__()
        self.w = Parameter(np.ones(n))
        self.note = Tensor([1.0])                      # a plain tensor: neither parameter nor buffer
        self.register_buffer("count", Tensor([0.0]))
        self.register_buffer("cache", Tensor([5.0]), persistent=False)


class Tree(Module):
    def __init__(self):
        super().__init__()
        self.head = Leaf(3)
        self.blocks = [Leaf(), Leaf()]
        self.more = ModuleList([Leaf()])
        self.scale = Parameter(np.ones(1))


def test_children_and_own_parameters_come_from_attributes_in_assignment_order():
    t = Tree()
    assert [n for n, _ in t.named_children()] == ["head", "blocks.0", "blocks.1", "more"]
    assert [n for n, _ in t._own_parameters()] == ["scale"] and [n for n, _ in t.head._own_parameters()] == ["w"]
    assert [n for n, _ in t.named_parameters()] == ["scale", "head.w", "blocks.0.w", "blocks.1.w", "more.0.w"]


def test_apply_visits_children_first_and_returns_the_module():
    t, seen = Tree(), []
    assert t.apply(lambda m: seen.append(m)) is t
    assert seen == [t.head, t.blocks[0], t.blocks[1], t.more[0], t.more, t]


def test_get_submodule_follows_dotted_names():
    t = Tree()
    assert t.get_submodule("") is t and t.get_submodule("blocks.1") is t.blocks[1]
    assert t.get_submodule("more.0") is t.more[0]
    with pytest.raises(AttributeError, match="Tree has no sub-module 'blocks.7'"):
        t.get_submodule("blocks.7")


def test_buffers_are_registered_named_and_saved_unless_not_persistent():
    t = Tree()
    assert [n for n, _ in t.named_buffers()][:4] == ["head.count", "head.cache", "blocks.0.count", "blocks.0.cache"]
    assert t.head.cache.data.tolist() == [5.0] and "cache" in t.head._non_persistent
    sd = t.state_dict()
    assert "head.count" in sd and not any(k.endswith("cache") for k in sd) and "head.note" not in sd
    t.head.register_buffer("count", Tensor([2.0]))          # registering again replaces, names it once
    assert t.head._buffer_names == ["count", "cache"] and t.head.count.data.tolist() == [2.0]


def test_a_subclass_without_super_init_can_still_register_buffers():
    class Bare(Module):
        def __init__(self):
            self.register_buffer("b", Tensor([1.0]), persistent=False)
    m = Bare()
    assert list(m.named_buffers()) == [("b", m.b)] and m.state_dict() == {}


def test_zero_grad_sets_none_or_fills_zeros_in_place():
    t = Tree()
    t.head.w.grad = Tensor(np.ones(3))
    array = t.head.w.grad.data
    t.zero_grad(set_to_none=False)
    assert t.head.w.grad.data is array and array.tolist() == [0.0] * 3 and t.scale.grad is None
    t.zero_grad()
    assert all(p.grad is None for p in t.parameters())


def test_repr_is_the_tree_of_modules():
    class Act(Module):
        def extra_repr(self):
            return "slope=0.1"
    class Net(Module):
        def __init__(self):
            super().__init__()
            self.a = Act()
            self.inner = ModuleList([Act()])
    assert repr(Act()) == "Act(slope=0.1)"
    assert repr(Net()) == "Net(\n  (a): Act(slope=0.1)\n  (inner): ModuleList(\n    (0): Act(slope=0.1)\n  )\n)"


def test_eval_mode_restores_each_flag_even_after_an_error():
    t = Tree()
    t.blocks[1].eval()
    with pytest.raises(KeyError):
        with eval_mode(t) as m:
            assert m is t and not any(x.training for x in t.modules())
            raise KeyError("stop")
    assert t.training and t.head.training and not t.blocks[1].training


def test_load_state_dict_copies_in_place_and_casts():
    t = Tree()
    w = t.head.w
    sd = {k: np.full(v.shape, 7, dtype=np.int64) for k, v in t.state_dict().items()}
    assert t.load_state_dict(sd) == {"missing_keys": [], "unexpected_keys": []}
    assert t.head.w is w and w.data.dtype == np.float32 and w.data.tolist() == [7.0] * 3


@pytest.mark.parametrize("fn,params", [(LeakyReLUFunction, {}), (LeakyReLUFunction, {"negative_slope": 0.3}),
                                       (SiLUFunction, {})])
def test_leaky_relu_and_silu_backward_match_central_differences(fn, params):
    z = np.random.default_rng(0).standard_normal((4, 5))
    assert check_backward(fn, z, **params)


def test_leaky_relu_and_silu_forward():
    x = Tensor(np.array([-2.0, 0.0, 3.0], dtype=np.float32))
    y = LeakyReLU(0.1)(x)
    assert y.data.dtype == np.float32 and np.allclose(y.data, [-0.2, 0.0, 3.0])
    s = SiLU()(Tensor(np.array([-1e4, -1.0, 0.0, 2.0], dtype=np.float32)))
    assert s.data.dtype == np.float32 and np.isfinite(s.data).all()
    assert np.allclose(s.data, [0.0, -1.0 / (1 + math.e), 0.0, 2.0 / (1 + math.exp(-2.0))], atol=1e-7)


def test_sigmoid_promotes_integers_and_saves_its_output():
    y = Sigmoid()(Tensor(np.array([0, 2])))
    assert y.data.dtype.kind == "f" and np.allclose(y.data, [0.5, 1 / (1 + math.exp(-2))])


def test_float32_erf_is_within_the_abramowitz_stegun_bound_and_odd():
    x = np.linspace(-6, 6, 4001).astype(np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    got = _erf(x)
    assert np.abs(got - exact).max() < 1.5e-7 and np.array_equal(got, -_erf(-x))
    g = GELU()(Tensor(x)).data
    assert np.allclose(g, x.astype(np.float64) * 0.5 * (1 + np.array([math.erf(float(v) / math.sqrt(2)) for v in x])),
                       atol=1e-6)
