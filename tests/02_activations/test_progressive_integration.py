"""Module 02 (Activations): progressive integration tests.

  A. TestStackBelow            -- module 01 (Tensor) still works.
  B. TestActivationsCore       -- values against closed forms, stability at logits of +-1e4 with
                                  floating-point overflow/invalid/divide trapped, Softmax sums to 1.
  C. TestActivationsInTheStack -- activations composed with module 01's ops agree with PyTorch; each
                                  activation's backward (written here) agrees with PyTorch and with
                                  central differences (module 01's `check_backward`), called directly
                                  on the context the op recorded: the engine is module 05's.
"""
import math

import numpy as np
import pytest
import torch

from tinytorch.core.activations import (GELU, GELUFunction, Module, ReLU, ReLUFunction, Sigmoid,
                                        SigmoidFunction, Softmax, SoftmaxFunction, Tanh)
from tinytorch.core.tensor import Tensor, check_backward

RNG = np.random.default_rng(2024)
GRID = np.linspace(-8.0, 8.0, 161)

# Trap overflow, invalid operations (NaN) and division by zero. Underflow is left alone on purpose:
# e^-20000 underflowing to 0.0 is the correct answer, and NumPy's own np.exp raises on it under
# errstate(all="raise").
TRAP = dict(all="raise", under="ignore")


# ================================================================================================
# A. Module 01 still works
# ================================================================================================
class TestStackBelow:
    def test_tensor_dtypes_and_storage(self):
        arr = np.ones(3, dtype=np.float32)
        t = Tensor(arr)
        assert t.data is arr and t.dtype == np.float32
        assert Tensor([1, 2]).dtype == np.int64
        assert Tensor([1, 2], dtype=np.int8).data.nbytes == 2

    def test_tensor_arithmetic_matmul_and_reductions(self):
        a = Tensor([[1.0, 2.0], [3.0, 4.0]])
        assert (a + Tensor([10.0, 20.0])).data.tolist() == [[11, 22], [13, 24]]
        assert (a @ a).data.tolist() == [[7, 10], [15, 22]]
        assert a.sum(axis=0).data.tolist() == [4, 6] and a.max().item() == 4
        assert a.T.data.tolist() == [[1, 3], [2, 4]]
        np.testing.assert_allclose(a.tanh().data, np.tanh(a.data))


# ================================================================================================
# B. This module's core
# ================================================================================================
def _sigmoid_ref(x):
    return np.array([1.0 / (1.0 + math.exp(-v)) for v in x])


def _gelu_ref(x):
    return np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])


def _gelu_tanh_ref(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class TestActivationsCore:
    @pytest.mark.parametrize("act, ref, tol", [
        (ReLU(), lambda x: np.maximum(x, 0.0), 0.0),
        (Sigmoid(), _sigmoid_ref, 1e-7),
        (Tanh(), np.tanh, 1e-7),
        (GELU(), _gelu_ref, 1e-6),
        (GELU(approximate="tanh"), _gelu_tanh_ref, 1e-6),
    ])
    def test_values_match_closed_forms(self, act, ref, tol):
        x = Tensor(GRID.astype(np.float32))
        out = act(x)
        assert out.shape == x.shape and out.dtype == np.float32
        np.testing.assert_allclose(out.data, ref(GRID.astype(np.float32).astype(np.float64)),
                                   atol=tol * 8 + 1e-7, rtol=1e-6)

    @pytest.mark.parametrize("act", [ReLU(), Sigmoid(), Tanh(), GELU(), GELU("tanh"), Softmax()])
    def test_float64_stays_float64(self, act):
        x = Tensor(RNG.standard_normal((3, 4)), dtype=np.float64)
        assert act(x).dtype == np.float64

    def test_relu_known_values(self):
        assert ReLU()(Tensor([-2.0, -0.0, 0.0, 3.0])).data.tolist() == [0, 0, 0, 3]
        assert ReLU()(Tensor([-1, 5])).data.tolist() == [0, 5]

    def test_sigmoid_symmetry_and_known_values(self):
        x = GRID.astype(np.float32)
        s = Sigmoid()(Tensor(x)).data
        np.testing.assert_allclose(s + Sigmoid()(Tensor(-x)).data, 1.0, atol=1e-6)
        assert Sigmoid()(Tensor([0.0])).item() == 0.5
        assert np.all((s > 0) & (s < 1))

    @pytest.mark.parametrize("act, ref", [(Sigmoid(), _sigmoid_ref)])
    def test_integer_input_is_not_truncated(self, act, ref):
        # PyTorch promotes integer input to float: torch.sigmoid(torch.tensor([0, 1, 2])) is
        # [0.5, 0.7311, 0.8808], not a silent [0, 0, 0].
        out = act(Tensor([-1, 0, 1, 2]))
        assert out.dtype.kind == "f", out.dtype
        np.testing.assert_allclose(out.data, ref([-1, 0, 1, 2]), rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("act", [GELU(), Softmax()])
    def test_integer_input_is_refused_where_pytorch_refuses_it(self, act):
        # torch.nn.GELU()(torch.tensor([0, 1])) and softmax raise ("not implemented for 'Long'")
        with pytest.raises(RuntimeError, match="floating-point input, got dtype int64"):
            act(Tensor([-1, 0, 1, 2]))

    def test_gelu_known_values(self):
        assert GELU()(Tensor([1.0])).item() == pytest.approx(0.8413447, abs=1e-6)
        assert GELU()(Tensor([0.0])).item() == 0.0
        with pytest.raises(ValueError, match="approximate"):
            GELU(approximate="fast")

    @pytest.mark.parametrize("shape, dim", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((2, 3, 4), 2), ((7,), 0)])
    def test_softmax_sums_to_one_along_dim(self, shape, dim):
        x = RNG.standard_normal(shape).astype(np.float32) * 3
        s = Softmax(dim=dim)(Tensor(x)).data
        e = np.exp(x.astype(np.float64) - x.max(axis=dim, keepdims=True))
        np.testing.assert_allclose(s, e / e.sum(axis=dim, keepdims=True), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s.sum(axis=dim), 1.0, rtol=1e-6)
        assert np.all(s > 0)

    def test_softmax_default_dim_is_last_and_shift_invariant(self):
        x = Tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        s = Softmax()(x).data
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(s[1], 1.0 / 3.0, rtol=1e-6)
        np.testing.assert_allclose(Softmax()(x + 100.0).data, s, rtol=1e-5)

    def test_softmax_bad_dim(self):
        with pytest.raises(ValueError, match=r"dim 2.*\(3, 4\)"):
            Softmax(dim=2)(Tensor(np.zeros((3, 4))))

    # -- stability -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_extreme_inputs_stay_finite_without_overflow(self, dtype):
        x = Tensor(np.array([[-1e4, 1e4, 0.0, -1e4 + 1, 1e4 - 1]]), dtype=dtype)
        with np.errstate(**TRAP):
            outs = {
                "relu": ReLU()(x).data, "sigmoid": Sigmoid()(x).data, "tanh": Tanh()(x).data,
                "gelu": GELU()(x).data, "gelu_tanh": GELU("tanh")(x).data, "softmax": Softmax()(x).data,
            }
        for name, out in outs.items():
            assert np.all(np.isfinite(out)), name
        assert outs["sigmoid"][0].tolist() == [0.0, 1.0, 0.5, 0.0, 1.0]
        assert outs["tanh"][0, :3].tolist() == [-1.0, 1.0, 0.0]
        np.testing.assert_allclose(outs["gelu"][0, :3], [0.0, 1e4, 0.0], atol=1e-6)
        np.testing.assert_allclose(outs["gelu_tanh"][0, :3], [0.0, 1e4, 0.0], atol=1e-6)
        np.testing.assert_allclose(outs["softmax"].sum(), 1.0, rtol=1e-6)
        e = math.exp(-1.0)   # 1e4 and 1e4 - 1 share the mass
        np.testing.assert_allclose(outs["softmax"][0], [0, 1 / (1 + e), 0, 0, e / (1 + e)], rtol=1e-5, atol=1e-12)

    def test_softmax_of_equal_huge_logits_is_uniform(self):
        with np.errstate(**TRAP):
            s = Softmax()(Tensor([[1e4, 1e4], [-1e4, -1e4]])).data
        assert s.tolist() == [[0.5, 0.5], [0.5, 0.5]]

    def test_sigmoid_far_tails_are_accurate(self):
        # 1/(1+e^30) is ~9.4e-14: the stable form keeps it, the naive 1 - sigmoid(30) would give 0.
        with np.errstate(**TRAP):
            out = Sigmoid()(Tensor([-30.0, -80.0], dtype=np.float64)).data
        np.testing.assert_allclose(out, [1 / (1 + math.exp(30)), 1 / (1 + math.exp(80))], rtol=1e-12)

    def test_activations_are_modules_without_parameters(self):
        for act in (ReLU(), Sigmoid(), Tanh(), GELU(), Softmax()):
            assert isinstance(act, Module)
            assert list(act.parameters()) == [] and act.state_dict() == {}


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
TORCH = {ReLU: torch.relu, Sigmoid: torch.sigmoid, Tanh: torch.tanh,
         GELU: torch.nn.functional.gelu, Softmax: lambda t: torch.softmax(t, dim=-1)}


def _local_grad(out: Tensor, v: np.ndarray) -> np.ndarray:
    "The backward of the one op that made `out`, called on its recorded context (no engine)."
    ctx = out.grad_fn
    g = type(ctx).backward(ctx, v)
    return g[0] if isinstance(g, tuple) else g


class TestActivationsInTheStack:
    def test_activations_between_matmuls_match_numpy(self):
        rng = np.random.default_rng(0)
        w1, w2 = rng.standard_normal((4, 8)), rng.standard_normal((8, 3))
        x = rng.standard_normal((5, 4)).astype(np.float32)
        out = Sigmoid()(ReLU()(Tensor(x) @ Tensor(w1)) @ Tensor(w2))
        ref = 1 / (1 + np.exp(-(np.maximum(x @ w1, 0) @ w2)))
        assert out.shape == (5, 3)
        np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("act", [ReLU, Sigmoid, Tanh, GELU, Softmax])
    def test_forward_and_backward_match_pytorch(self, act):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((5, 4))
        v = rng.standard_normal((5, 4))
        xt = Tensor(x, requires_grad=True, dtype=np.float64)
        out = act()(xt)
        tx = torch.from_numpy(x).requires_grad_()
        tout = TORCH[act](tx)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-12)
        tout.backward(torch.from_numpy(v))
        np.testing.assert_allclose(_local_grad(out, v), tx.grad.numpy(), rtol=1e-7, atol=1e-10)

    @pytest.mark.parametrize("fn, params", [(ReLUFunction, {}), (SigmoidFunction, {}), (GELUFunction, {}),
                                            (GELUFunction, {"approximate": "tanh"}),
                                            (SoftmaxFunction, {"dim": -1}), (SoftmaxFunction, {"dim": 0})],
                             ids=["relu", "sigmoid", "gelu", "gelu-tanh", "softmax-last", "softmax-0"])
    def test_backward_matches_central_differences(self, fn, params):
        assert check_backward(fn, RNG.standard_normal((3, 4)), **params)

    def test_dead_relu_blocks_the_gradient(self):
        x = Tensor(-np.abs(RNG.standard_normal((4, 3))) - 1.0, requires_grad=True)   # all negative
        assert np.all(_local_grad(ReLU()(x), np.ones((4, 3))) == 0)

    def test_softmax_backward_of_sum_is_zero(self):
        x = Tensor(RNG.standard_normal((3, 5)), requires_grad=True)
        g = _local_grad(Softmax(dim=1)(x), np.ones((3, 5)))      # rows always sum to 1: flat direction
        np.testing.assert_allclose(g, 0.0, atol=1e-6)

    def test_sigmoid_gradient_at_extremes_is_finite(self):
        x = Tensor([-1e4, 0.0, 1e4], requires_grad=True)
        with np.errstate(**TRAP):
            g = _local_grad(Sigmoid()(x), np.ones(3, dtype=np.float32))
        assert g.tolist() == [0.0, 0.25, 0.0]


# ================================================================================================
# The Module base (given in this module, three of its walks and load/train/zero_grad written here)
# ================================================================================================
class _Net(Module):
    def __init__(self):
        super().__init__()
        from tinytorch.core.activations import Parameter
        self.w = Parameter(np.ones((2, 3)))
        self.act = GELU()
        self.heads = [Softmax(), Sigmoid()]
        self.heads[1].b = Parameter(np.zeros(3))
        self.act.shared = self.w                   # the same Parameter reached twice


class TestModuleBase:
    def test_discovery_in_assignment_order_shared_once(self):
        net = _Net()
        assert [n for n, _ in net.named_modules()] == ["", "act", "heads.0", "heads.1"]
        assert [n for n, _ in net.named_parameters()] == ["w", "heads.1.b"]
        assert [n for n, _ in net.named_parameters(remove_duplicate=False)] == ["w", "act.shared", "heads.1.b"]
        twice = _Net()
        twice.again = twice.act                    # a module reached twice: listed once
        assert [n for n, _ in twice.named_modules()] == ["", "act", "heads.0", "heads.1"]
        assert len(list(twice.named_modules(remove_duplicate=False))) == 5

    def test_state_dict_copies_every_name_and_load_is_in_place_and_checked_first(self):
        net = _Net()
        sd = net.state_dict()
        assert list(sd) == ["w", "act.shared", "heads.1.b"]
        assert sd["w"] is not net.w.data and np.array_equal(sd["w"], net.w.data)
        w = net.w
        net.load_state_dict({"w": np.full((2, 3), 2.0), "act.shared": np.full((2, 3), 2.0),
                             "heads.1.b": np.ones(3)})
        assert net.w is w and (net.w.data == 2).all() and (net.heads[1].b.data == 1).all()
        with pytest.raises(ValueError, match=r"heads\.1\.b.*\(3,\).*\(4,\)"):
            net.load_state_dict({"w": np.zeros((2, 3)), "act.shared": np.zeros((2, 3)), "heads.1.b": np.zeros(4)})
        assert (net.w.data == 2).all()             # nothing changed
        with pytest.raises(KeyError, match="missing keys"):
            net.load_state_dict({"w": np.zeros((2, 3))})

    def test_train_eval_and_zero_grad_reach_every_module_and_parameter(self):
        net = _Net()
        assert net.eval() is net and not any(m.training for m in net.modules())
        assert all(m.training for m in net.train().modules())
        for p in net.parameters():
            p.grad = Tensor(np.ones_like(p.data))
        net.zero_grad()
        assert all(p.grad is None for p in net.parameters())

    def test_a_parameter_can_carry_attributes_a_plain_tensor_cannot(self):
        from tinytorch.core.activations import Parameter
        p = Parameter(np.ones(2))
        p.mask = np.array([1.0, 0.0])              # what a later tool (pruning) attaches
        assert p.mask.tolist() == [1.0, 0.0] and p.requires_grad
        with pytest.raises(AttributeError):
            Tensor([1.0]).mask = 1
