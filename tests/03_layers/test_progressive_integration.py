"""Module 03 (Layers): progressive integration tests.

  A. TestStackBelow        -- modules 01 (Tensor) and 02 (Activations) still work.
  B. Module / Linear / Sequential / Dropout core:
       TestDiscovery       -- parameters found from attributes, nested modules, lists of modules,
                              shared tensors, named_parameters order, modules(), train/eval, zero_grad
       TestStateDict       -- copies out, in-place round trip (identity kept), errors, shared names
       TestLinear          -- layout (out, in), y = x W^T + b, init bound 1/sqrt(fan_in), errors
       TestSequential      -- indexing, len, iteration, slicing, append
       TestDropout         -- identity in eval, zero fraction p and 1/(1-p) scaling in train
  C. TestLayersInTheStack  -- layers with activations: the forward of a whole model and Linear's
                              backward (called on its recorded context; the engine is module 05's)
                              agree with PyTorch and with central differences; weights move to
                              torch.nn.Linear unchanged.
"""
import math

import numpy as np
import pytest
import torch

from tinytorch.core.activations import ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.layers import Dropout, DropoutFunction, Linear, LinearFunction, Module, Parameter, Sequential
from tinytorch.core.tensor import Tensor, check_backward, set_grad_enabled


# ================================================================================================
# A. Modules 01 and 02 still work
# ================================================================================================
class TestStackBelow:
    def test_tensor_core(self):
        arr = np.arange(6, dtype=np.float32).reshape(2, 3)
        t = Tensor(arr)
        assert t.data is arr and t.dtype == np.float32
        assert (t + Tensor([1.0, 1.0, 1.0])).data[1].tolist() == [4, 5, 6]
        assert (t @ t.T).data.tolist() == [[5, 14], [14, 50]]
        assert t.sum(axis=1, keepdims=True).shape == (2, 1)
        assert t.permute(1, 0).shape == (3, 2) and t[1, 2].item() == 5

    def test_activations_core(self):
        x = Tensor([-2.0, 0.0, 3.0])
        assert ReLU()(x).data.tolist() == [0, 0, 3]
        np.testing.assert_allclose(Sigmoid()(x).data, 1 / (1 + np.exp(-x.data)), rtol=1e-6)
        np.testing.assert_allclose(Tanh()(x).data, np.tanh(x.data), rtol=1e-6)
        with np.errstate(all="raise", under="ignore"):
            s = Softmax()(Tensor([[1e4, -1e4, 0.0]])).data
        assert s.tolist() == [[1.0, 0.0, 0.0]]


# ================================================================================================
# B. This module's core
# ================================================================================================
class Block(Module):
    def __init__(self, rng):
        super().__init__()
        self.fc = Linear(3, 3, rng=rng)
        self.drop = Dropout(0.5, rng=rng)
        self.scale = Parameter(np.ones(3, dtype=np.float32))

    def forward(self, x):
        return self.drop(self.fc(x)) * self.scale


class Net(Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.embed = Linear(2, 3, rng=rng)
        self.blocks = [Block(rng), Block(rng)]          # a list of modules (PyTorch's ModuleList)
        self.head = Linear(3, 4, bias=False, rng=rng)
        self.cache = Tensor(np.zeros(3))                # a plain Tensor is not a parameter
        self.not_a_layer = "hello"

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


NET_NAMES = ["embed.weight", "embed.bias",
             "blocks.0.scale", "blocks.0.fc.weight", "blocks.0.fc.bias",
             "blocks.1.scale", "blocks.1.fc.weight", "blocks.1.fc.bias",
             "head.weight"]


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


class TestDiscovery:
    def test_parameters_found_from_attributes_nested_and_in_lists(self):
        net = Net()
        names = [n for n, _ in net.named_parameters()]
        assert sorted(names) == sorted(NET_NAMES)
        assert all(isinstance(p, Parameter) and p.requires_grad for p in net.parameters())
        assert len(list(net.parameters())) == 9
        assert net.num_parameters() == 6 + 3 + 2 * (3 + 9 + 3) + 12

    def test_named_parameters_order_is_pytorch_order(self):
        # A module's own parameters first, then each child in assignment order, depth first
        # (what torch.nn.Module.named_parameters yields for the same structure).
        class TBlock(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, 3)
                self.drop = torch.nn.Dropout(0.5)
                self.scale = torch.nn.Parameter(torch.ones(3))

        class TNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = torch.nn.Linear(2, 3)
                self.blocks = torch.nn.ModuleList([TBlock(), TBlock()])
                self.head = torch.nn.Linear(3, 4, bias=False)

        names = [n for n, _ in Net().named_parameters()]
        assert names == [n for n, _ in TNet().named_parameters()] == NET_NAMES
        lin = Linear(2, 3)
        assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
        seq = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))
        assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]

    def test_named_parameters_values_are_the_attributes(self):
        net = Net()
        named = dict(net.named_parameters())
        assert named["blocks.1.fc.weight"] is net.blocks[1].fc.weight
        assert named["head.weight"] is net.head.weight
        assert "head.bias" not in named                      # bias=False
        assert not any(p is net.cache for p in net.parameters())

    def test_shared_tensor_counted_once(self):
        net = Tied()
        names = [n for n, _ in net.named_parameters()]
        assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.bias"]
        params = list(net.parameters())
        assert len(params) == 5 and len({id(p) for p in params}) == 5
        assert net.fc3.weight is net.fc2.weight
        assert [n for n, _ in net.named_parameters(remove_duplicate=False)].count("fc3.weight") == 1

    def test_shared_module_counted_once(self):
        class Twice(Module):
            def __init__(self):
                super().__init__()
                self.a = Linear(2, 2)
                self.b = self.a
        m = Twice()
        assert len(list(m.parameters())) == 2
        assert len(list(m.modules())) == 2

    def test_modules_lists_each_module_once_depth_first(self):
        net = Net()
        mods = list(net.modules())
        assert [type(m).__name__ for m in mods] == ["Net", "Linear", "Block", "Linear", "Dropout",
                                                     "Block", "Linear", "Dropout", "Linear"]
        assert mods[0] is net and mods[2] is net.blocks[0]
        names = [n for n, _ in net.named_modules()]
        assert names == ["", "embed", "blocks.0", "blocks.0.fc", "blocks.0.drop",
                         "blocks.1", "blocks.1.fc", "blocks.1.drop", "head"]
        assert [type(m).__name__ for m in Tied().modules()] == ["Tied", "Linear", "Linear", "Linear"]

    def test_train_and_eval_recurse(self):
        net = Net()
        assert all(m.training for m in net.modules())
        assert net.eval() is net
        assert not any(m.training for m in net.modules())
        assert not net.blocks[1].drop.training
        net.train()
        assert all(m.training for m in net.modules())
        net.train(False)
        assert not net.blocks[0].drop.training

    def test_zero_grad_clears_every_parameter(self):
        net = Net().eval()
        for p in net.parameters():
            p.grad = Tensor(np.ones_like(p.data))
        assert all(p.grad is not None for p in net.parameters())
        net.zero_grad()
        assert all(p.grad is None for p in net.parameters())

    def test_call_runs_forward(self):
        class Double(Module):
            def forward(self, x):
                return x * 2
        assert Double()(Tensor([1.0, 2.0])).data.tolist() == [2, 4]
        with pytest.raises(NotImplementedError, match="forward"):
            Module()(Tensor([1.0]))

    def test_parameter_is_a_float_tensor_requiring_grad(self):
        p = Parameter([1.0, 2.0])
        assert isinstance(p, Tensor) and p.requires_grad and p.dtype == np.float32
        assert "Parameter" in repr(p)

    def test_buffers_are_saved_but_not_learned(self):
        class WithBuffer(Module):
            def __init__(self):
                super().__init__()
                self.fc = Linear(2, 2)
                self.register_buffer("running", Tensor(np.arange(2.0)))
        m = WithBuffer()
        assert [n for n, _ in m.named_parameters()] == ["fc.weight", "fc.bias"]
        sd = m.state_dict()
        assert set(sd) == {"fc.weight", "fc.bias", "running"}
        sd["running"] = np.array([5.0, 6.0])
        buf = m.running
        m.load_state_dict(sd)
        assert m.running is buf and buf.data.tolist() == [5, 6]


class TestStateDict:
    def test_keys_and_shared_storage(self):
        # as torch: state_dict() values are detached tensors sharing the parameters' storage
        net = Net()
        sd = net.state_dict()
        assert sorted(sd) == sorted(NET_NAMES)
        for name, p in net.named_parameters():
            assert isinstance(sd[name], Tensor) and not sd[name].requires_grad
            np.testing.assert_array_equal(sd[name], p.data)
            assert np.shares_memory(sd[name].data, p.data)     # a live view, as PyTorch's
        sd["embed.weight"].copy_(np.full(net.embed.weight.shape, 123.0))
        assert np.all(net.embed.weight.data == 123.0)          # the loading idiom sd[k].copy_(w)

    def test_shared_tensor_named_under_each_name(self):
        sd = Tied().state_dict()
        assert list(sd) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
        np.testing.assert_array_equal(sd["fc3.weight"], sd["fc2.weight"])

    def test_shared_module_named_under_each_name(self):
        # torch: a module assigned to two attributes appears under both prefixes in state_dict().
        class Twice(Module):
            def __init__(self):
                super().__init__()
                self.a = Linear(2, 2)
                self.b = self.a
        class TTwice(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Linear(2, 2)
                self.b = self.a
        expected = list(TTwice().state_dict())
        assert expected == ["a.weight", "a.bias", "b.weight", "b.bias"]
        assert list(Twice().state_dict()) == expected

    def test_round_trip_in_place_keeps_identity(self):
        src, dst = Net(), Net()
        for p in src.parameters():
            p.data[...] = np.random.default_rng(5).standard_normal(p.shape)
        before = {n: (p, p.data) for n, p in dst.named_parameters()}
        result = dst.load_state_dict(src.state_dict())
        assert result == {"missing_keys": [], "unexpected_keys": []}
        for n, p in dst.named_parameters():
            assert p is before[n][0] and p.data is before[n][1], n      # same Parameter, same array
            np.testing.assert_array_equal(p.data, dict(src.named_parameters())[n].data)
        x = Tensor(np.random.default_rng(6).standard_normal((3, 2)))
        src.eval(), dst.eval()
        np.testing.assert_array_equal(src(x).data, dst(x).data)

    def test_load_keeps_tied_weights_tied(self):
        net = Tied()
        sd = net.state_dict()
        sd["fc2.weight"] = np.full((2, 8), 2.0)
        sd["fc3.weight"] = np.full((2, 8), 2.0)
        net.load_state_dict(sd)
        assert net.fc3.weight is net.fc2.weight and np.all(net.fc2.weight.data == 2.0)

    def test_load_accepts_tensors_lists_and_casts_dtype(self):
        lin = Linear(2, 1)
        lin.load_state_dict({"weight": Tensor([[1.0, 2.0]]), "bias": [3]})
        assert lin.weight.data.tolist() == [[1, 2]] and lin.bias.data.tolist() == [3]
        assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32
        lin.load_state_dict({"weight": np.array([[1.5, 2.5]], dtype=np.float64), "bias": np.zeros(1)})
        assert lin.weight.dtype == np.float32 and lin.weight.data.tolist() == [[1.5, 2.5]]

    def test_missing_and_unexpected_keys(self):
        lin = Linear(2, 1)
        with pytest.raises(KeyError, match=r"missing keys \['bias'\]"):
            lin.load_state_dict({"weight": np.zeros((1, 2))})
        with pytest.raises(KeyError, match="extra"):
            lin.load_state_dict({"weight": np.zeros((1, 2)), "bias": np.zeros(1), "extra": np.zeros(1)})
        w = lin.weight.data.copy()
        result = lin.load_state_dict({"bias": np.ones(1), "extra": np.zeros(1)}, strict=False)
        assert result == {"missing_keys": ["weight"], "unexpected_keys": ["extra"]}
        assert lin.bias.data.tolist() == [1.0]
        np.testing.assert_array_equal(lin.weight.data, w)

    def test_shape_mismatch_names_key_and_shapes(self):
        lin = Linear(2, 3)
        with pytest.raises(ValueError, match=r"weight.*\(3, 2\).*\(2, 3\)"):
            lin.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)})


class TestLinear:
    def test_layout_and_formula(self):
        rng = np.random.default_rng(0)
        lin = Linear(3, 5, rng=rng)
        assert lin.weight.shape == (5, 3) and lin.bias.shape == (5,)
        assert lin.weight.dtype == np.float32 and lin.in_features == 3 and lin.out_features == 5
        x = rng.standard_normal((4, 3)).astype(np.float32)
        out = lin(Tensor(x))
        assert out.shape == (4, 5) and out.dtype == np.float32
        np.testing.assert_allclose(out.data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-5, atol=1e-6)

    def test_batch_dims_and_single_vector(self):
        lin = Linear(3, 2, rng=np.random.default_rng(1))
        x = np.random.default_rng(2).standard_normal((2, 4, 3)).astype(np.float32)
        np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-5, atol=1e-6)
        v = x[0, 0]
        np.testing.assert_allclose(lin(Tensor(v)).data, lin.weight.data @ v + lin.bias.data, rtol=1e-5, atol=1e-6)

    def test_no_bias(self):
        lin = Linear(3, 2, bias=False)
        assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]
        x = np.ones((1, 3), dtype=np.float32)
        np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T, rtol=1e-6)

    @pytest.mark.parametrize("fan_in", [1, 16, 400])
    def test_init_is_uniform_within_one_over_sqrt_fan_in(self, fan_in):
        lin = Linear(fan_in, 300, rng=np.random.default_rng(fan_in))
        bound = 1 / math.sqrt(fan_in)
        w, b = lin.weight.data, lin.bias.data
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(w).max() > 0.95 * bound                  # the whole range is used...
        assert abs(w.mean()) < 0.1 * bound                      # ...symmetrically...
        assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)   # ...uniformly
        assert lin.weight.requires_grad and lin.bias.requires_grad

    def test_rng_makes_init_reproducible(self):
        a = Linear(4, 4, rng=np.random.default_rng(9))
        b = Linear(4, 4, rng=np.random.default_rng(9))
        np.testing.assert_array_equal(a.weight.data, b.weight.data)
        assert not np.array_equal(Linear(4, 4).weight.data, Linear(4, 4).weight.data)

    def test_wrong_input_width_names_shapes(self):
        lin = Linear(3, 2)
        with pytest.raises(ValueError, match=r"3.*\(5, 4\)"):
            lin(Tensor(np.ones((5, 4))))

    @pytest.mark.parametrize("bad", [0, -1, 2.5, True])
    def test_bad_sizes(self, bad):
        with pytest.raises(ValueError, match="positive integer"):
            Linear(bad, 2)

    def test_weights_move_to_torch_unchanged(self):
        lin = Linear(3, 2, rng=np.random.default_rng(4))
        tlin = torch.nn.Linear(3, 2)
        tlin.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in lin.state_dict().items()})
        x = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
        np.testing.assert_allclose(lin(Tensor(x)).data, tlin(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)


class TestSequential:
    def test_indexing_len_iteration(self):
        a, r, b = Linear(2, 3), ReLU(), Linear(3, 1)
        seq = Sequential(a, r, b)
        assert len(seq) == 3
        assert seq[0] is a and seq[1] is r and seq[-1] is b
        assert list(seq) == [a, r, b]
        sub = seq[:2]
        assert isinstance(sub, Sequential) and len(sub) == 2 and sub[0] is a
        assert Sequential([a, b])[1] is b                                # a list works too
        with pytest.raises(IndexError):
            seq[3]

    def test_applies_layers_in_order(self):
        seq = Sequential(Linear(2, 3, rng=np.random.default_rng(0)), ReLU(), Linear(3, 1, rng=np.random.default_rng(1)))
        x = Tensor(np.random.default_rng(2).standard_normal((4, 2)))
        np.testing.assert_allclose(seq(x).data, seq[2](seq[1](seq[0](x))).data)

    def test_append_and_type_check(self):
        seq = Sequential(Linear(2, 2))
        assert seq.append(ReLU()) is seq and len(seq) == 2
        assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
        with pytest.raises(TypeError, match="item 1"):
            Sequential(Linear(2, 2), "relu")
        with pytest.raises(TypeError, match="Module"):
            seq.append(lambda x: x)

    def test_state_dict_keys_are_pytorchs(self):
        seq = Sequential(Linear(3, 4), Dropout(0.5), Linear(4, 1))
        tseq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
        assert list(seq.state_dict()) == list(tseq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


class TestDropout:
    def test_identity_in_eval(self):
        d = Dropout(0.5).eval()
        x = Tensor(np.random.default_rng(0).standard_normal((20, 30)))
        np.testing.assert_array_equal(d(x).data, x.data)

    @pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.8])
    def test_train_zeroes_fraction_p_and_scales_survivors(self, p):
        d = Dropout(p, rng=np.random.default_rng(1)).train()
        x = Tensor(np.full((400, 250), 3.0, dtype=np.float32))
        out = d(x).data
        assert out.shape == x.shape and out.dtype == np.float32
        dropped = out == 0
        assert abs(dropped.mean() - p) < 0.01
        np.testing.assert_allclose(out[~dropped], 3.0 / (1 - p), rtol=1e-6)
        assert abs(out.mean() - 3.0) < 0.05 * 3.0 / (1 - p)

    def test_masks_differ_between_calls_and_p_zero_is_identity(self):
        d = Dropout(0.5, rng=np.random.default_rng(2))
        x = Tensor(np.ones((10, 10)))
        assert not np.array_equal(d(x).data, d(x).data)
        np.testing.assert_array_equal(Dropout(0.0)(x).data, x.data)

    @pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
    def test_bad_p(self, p):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            Dropout(p)

    def test_gradient_flows_only_through_kept_units(self):
        d = Dropout(0.5, rng=np.random.default_rng(3))
        x = Tensor(np.ones((8, 8)), requires_grad=True)
        out = d(x)
        g = type(out.grad_fn).backward(out.grad_fn, np.ones((8, 8), dtype=np.float32))
        np.testing.assert_array_equal(g, out.data)                  # d out / d x is the scaled mask
        assert check_backward(DropoutFunction, np.ones((3, 4)), mask=(np.arange(12).reshape(3, 4) % 3 > 0) * 1.5)


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestLayersInTheStack:
    def _twin(self, model):
        tmodel = torch.nn.Sequential(*[
            torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, Linear)
            else {ReLU: torch.nn.ReLU, Tanh: torch.nn.Tanh, Sigmoid: torch.nn.Sigmoid}[type(m)]()
            for m in model]).double()
        tmodel.load_state_dict({k: torch.from_numpy(v.numpy().astype(np.float64)) for k, v in model.state_dict().items()})
        return tmodel

    def test_model_forward_matches_pytorch(self):
        rng = np.random.default_rng(11)
        model = Sequential(Linear(5, 7, rng=rng), Tanh(), Linear(7, 4, rng=rng), ReLU(), Linear(4, 2, rng=rng))
        tmodel = self._twin(model)
        x = rng.standard_normal((2, 3, 5)).astype(np.float32)
        out = model(Tensor(x))
        tout = tmodel(torch.from_numpy(x.astype(np.float64)))
        assert out.shape == (2, 3, 2)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("bias", [True, False])
    def test_linear_backward_matches_pytorch(self, bias):
        rng = np.random.default_rng(12)
        lin = Linear(5, 3, bias=bias, rng=rng)
        for p in lin.parameters():
            p.data = p.data.astype(np.float64)
        x = rng.standard_normal((2, 4, 5))
        v = rng.standard_normal((2, 4, 3))
        xt = Tensor(x, requires_grad=True, dtype=np.float64)
        out = lin(xt)
        grads = LinearFunction.backward(out.grad_fn, v)          # the local rule, on the recorded context
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(lin.weight.data, requires_grad=True)
        tb = torch.tensor(lin.bias.data, requires_grad=True) if bias else None
        tout = torch.nn.functional.linear(tx, tw, tb)
        tout.backward(torch.from_numpy(v))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads[1], tw.grad.numpy(), rtol=1e-9, atol=1e-12)
        if bias:
            np.testing.assert_allclose(grads[2], tb.grad.numpy(), rtol=1e-9, atol=1e-12)
        else:
            assert len(grads) < 3 or grads[2] is None

    def test_linear_backward_matches_central_differences(self):
        rng = np.random.default_rng(13)
        assert check_backward(LinearFunction, rng.standard_normal((4, 3)), rng.standard_normal((2, 3)),
                              rng.standard_normal(2))
        assert check_backward(LinearFunction, rng.standard_normal((2, 4, 3)), rng.standard_normal((5, 3)))

    def test_eval_with_recording_off_records_nothing(self):
        model = Sequential(Linear(3, 3), Dropout(0.5), ReLU(), Linear(3, 1)).eval()
        with set_grad_enabled(False):
            y = model(Tensor(np.ones((2, 3))))
        assert not y.requires_grad and y.grad_fn is None
        assert model[-1](Tensor(np.ones((2, 3)))).requires_grad
