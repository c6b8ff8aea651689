"""Module 05 (Autograd): progressive integration tests.

  A. TestStackBelow           -- modules 01-04 (Tensor, Activations, Layers, Losses) still work.
  B. Autograd core:
       TestGradMode           -- no_grad / enable_grad as context managers and decorators
       TestEngine             -- topological order, shared sub-expressions, deep chains,
                                 accumulation, errors, custom Functions
       TestUnbroadcast
       TestGradcheck          -- accepts right gradients, rejects wrong ones, input checks
       TestGradientsThroughTheStack -- gradcheck of every op of modules 01-04
  C. TestAutogradInTheStack   -- a small MLP trained by hand with SGD; weights moved to and from
                                 PyTorch through state_dict give identical outputs and gradients.
"""
import threading

import numpy as np
import pytest
import torch

from tinytorch.core import autograd
from tinytorch.core.activations import GELU, ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.autograd import (Function, GradcheckError, enable_grad, gradcheck, is_grad_enabled,
                                     no_grad, set_grad_enabled, unbroadcast)
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss, log_softmax
from tinytorch.core.tensor import Tensor


@pytest.fixture(autouse=True)
def _recording_on():
    """Every test starts with recording on, even if an earlier test (a grad-mode bug) left it off."""
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


def t64(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    return Tensor(np.abs(a) + 0.5 if positive else a, requires_grad=True, dtype=np.float64)


# ================================================================================================
# A. Modules 01-04 still work
# ================================================================================================
class TestStackBelow:
    def test_tensor(self):
        t = Tensor(np.arange(6.0).reshape(2, 3))
        assert t.dtype == np.float32 and Tensor([1, 2], dtype=np.int8).data.nbytes == 2
        assert (t + Tensor([1.0, 2.0, 3.0])).data[0].tolist() == [1, 3, 5]
        assert (t @ t.T).data.tolist() == [[5, 14], [14, 50]]
        assert t.max(axis=0).data.tolist() == [3, 4, 5] and t.reshape(3, 2)[2, 1].item() == 5

    def test_activations(self):
        with np.errstate(all="raise", under="ignore"):
            assert Sigmoid()(Tensor([-1e4, 1e4])).data.tolist() == [0.0, 1.0]
            np.testing.assert_allclose(Softmax()(Tensor([[0.0, 0.0]])).data, [[0.5, 0.5]])
        assert GELU()(Tensor([1.0])).item() == pytest.approx(0.8413447, abs=1e-6)

    def test_layers(self):
        seq = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
        assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert seq[0].weight.shape == (2, 3) and len(seq) == 3
        assert seq.eval() is seq and not seq[1].training

    def test_losses(self):
        assert CrossEntropyLoss()(Tensor([[1e4, -1e4]]), Tensor([1])).item() == pytest.approx(2e4)
        assert MSELoss()(Tensor([1.0, 2.0]), Tensor([1.0, 4.0])).item() == pytest.approx(2.0)
        assert BinaryCrossEntropyLoss()(Tensor([0.0]), Tensor([1.0])).item() == pytest.approx(100.0)


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestGradMode:
    def test_context_managers_nest_and_restore(self):
        x = Tensor([1.0], requires_grad=True)
        with no_grad():
            assert not is_grad_enabled()
            y = x * 2
            with enable_grad():
                assert is_grad_enabled()
                z = x * 2
            assert not is_grad_enabled()
        assert is_grad_enabled()
        assert not y.requires_grad and y.grad_fn is None
        assert z.requires_grad and z.grad_fn is not None

    def test_restored_after_an_exception(self):
        with pytest.raises(ZeroDivisionError):
            with no_grad():
                1 / 0
        assert is_grad_enabled()

    def test_decorator(self):
        @no_grad()
        def evaluate(x):
            return x * 2, is_grad_enabled()

        y, mode = evaluate(Tensor([1.0], requires_grad=True))
        assert mode is False and not y.requires_grad
        assert is_grad_enabled()

    def test_set_grad_enabled(self):
        with set_grad_enabled(False):
            assert not is_grad_enabled()
            with set_grad_enabled(True):
                assert is_grad_enabled()
        assert is_grad_enabled()

    def test_recursive_decorated_function_restores_the_mode(self):
        # torch.no_grad() as a decorator may be re-entered (recursion, or two threads calling the
        # same decorated function); leaving it must restore the mode of *that* entry.
        @no_grad()
        def depth(n):
            return depth(n - 1) if n else is_grad_enabled()

        assert depth(3) is False
        assert is_grad_enabled(), "recording is still off after the decorated function returned"

    def test_mode_is_per_thread(self):
        seen = []
        entered, release = threading.Event(), threading.Event()

        def worker():
            with no_grad():
                entered.set()
                release.wait(5)

        th = threading.Thread(target=worker)
        th.start()
        entered.wait(5)
        seen.append(is_grad_enabled())
        release.set()
        th.join(5)
        assert seen == [True]


class TestEngine:
    def test_chain_rule_known_values(self):
        x = Tensor([2.0, -1.0], requires_grad=True)
        y = Tensor([3.0, 4.0], requires_grad=True)
        ((x * y + x ** 2) / y).sum().backward()       # d/dx = 1 + 2x/y ; d/dy = -x^2/y^2
        np.testing.assert_allclose(x.grad.data, [1 + 4 / 3, 1 - 2 / 4], rtol=1e-6)
        np.testing.assert_allclose(y.grad.data, [-4 / 9, -1 / 16], rtol=1e-6)

    def test_shared_subexpressions_sum_their_gradients(self):
        x = Tensor([3.0], requires_grad=True)
        a = x * 2          # used three times below
        b = a * a
        c = a + b          # diamond: a feeds c directly and through b
        d = c * a
        d.backward()       # d = (2x + 4x^2) * 2x = 4x^2 + 8x^3  ->  8x + 24x^2
        assert x.grad.item() == pytest.approx(8 * 3 + 24 * 9)

    def test_same_tensor_twice_in_one_op(self):
        x = Tensor([1.5, -2.0], requires_grad=True)
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad.data, [3.0, -4.0])
        z = Tensor([2.0], requires_grad=True)
        (z + z + z).backward()
        assert z.grad.item() == 3.0

    def test_deep_chain_does_not_hit_the_recursion_limit(self):
        x = Tensor([1.0], requires_grad=True)
        y = x
        for _ in range(5000):
            y = y * 1.0001
        y.backward()
        assert x.grad.item() == pytest.approx(1.0001 ** 5000, rel=1e-3)

    def test_topological_order_puts_inputs_first(self):
        x = Tensor([1.0], requires_grad=True)
        a = x * 2
        b = a + 1
        c = a * b
        order = autograd._topological_order(c)
        assert order[-1] is c and set(map(id, order)) == {id(a), id(b), id(c)}
        pos = {id(t): i for i, t in enumerate(order)}
        assert pos[id(a)] < pos[id(b)] < pos[id(c)]
        assert all(t.grad_fn is not None for t in order)      # leaves are not listed

    def test_gradients_accumulate_until_zeroed(self):
        x = Tensor([2.0, 3.0], requires_grad=True)
        (x * x).sum().backward()
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad.data, 2 * 2 * x.data)
        x.grad = None
        (x * 5).sum().backward()
        assert x.grad.data.tolist() == [5, 5]

    def test_only_leaves_that_require_grad_get_grad(self):
        x = Tensor([1.0, 2.0], requires_grad=True)
        c = Tensor([3.0, 4.0])
        h = x * c
        (h * 2).sum().backward()
        assert x.grad.data.tolist() == [6, 8]
        assert c.grad is None and h.grad is None

    def test_backward_from_a_leaf_and_with_explicit_grad(self):
        x = Tensor([1.0, 2.0], requires_grad=True)
        x.backward(Tensor([0.5, 0.25]))
        assert x.grad.data.tolist() == [0.5, 0.25]
        y = Tensor(np.ones((2, 2)), requires_grad=True)
        (y * 3).backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
        assert y.grad.data.tolist() == [[3, 6], [9, 12]]

    def test_backward_errors(self):
        x = Tensor([1.0, 2.0], requires_grad=True)
        with pytest.raises(RuntimeError, match=r"single-element.*\(2,\)"):
            (x * 2).backward()
        with pytest.raises(RuntimeError, match=r"\(3,\).*\(2,\)"):
            (x * 2).backward(np.ones(3))
        with pytest.raises(RuntimeError, match="does not require grad"):
            Tensor([1.0]).sum().backward()
        with no_grad():
            y = x * 2
        with pytest.raises(RuntimeError, match="no_grad"):
            y.sum().backward()

    def test_detach_stops_the_gradient(self):
        x = Tensor([3.0], requires_grad=True)
        (x * x.detach()).backward()
        assert x.grad.item() == 3.0

    def test_custom_function(self):
        class ScaleAdd(Function):
            @staticmethod
            def forward(ctx, a, b, scale):
                ctx.scale = scale
                return a * scale + b

            @staticmethod
            def backward(ctx, grad):
                need_a, need_b = ctx.needs_input_grad
                return (grad * ctx.scale if need_a else None), (grad if need_b else None)

        a = Tensor(np.ones((2, 3)), requires_grad=True)
        b = Tensor(np.zeros(3))                        # data, not a weight: its gradient is not needed
        out = ScaleAdd.apply(a, b, scale=4.0)
        assert repr(out.grad_fn) == "<ScaleAddBackward>"
        out.sum().backward()
        assert a.grad.data.tolist() == [[4, 4, 4]] * 2 and b.grad is None
        b2 = Tensor(np.zeros(3), requires_grad=True)
        ScaleAdd.apply(a, b2, scale=1.0).sum().backward()
        assert b2.grad.data.tolist() == [2, 2, 2]      # (2, 3) gradient unbroadcast to (3,)

    def test_requires_grad_rules(self):
        x = Tensor([1.0])
        assert x.requires_grad_() is x and x.requires_grad
        y = x * 2
        with pytest.raises(RuntimeError, match="leaf"):
            y.requires_grad = False
        with pytest.raises(ValueError, match="int64"):
            Tensor([1]).requires_grad_()


class TestUnbroadcast:
    @pytest.mark.parametrize("grad_shape, shape", [((64, 3), (3,)), ((2, 4, 3), (4, 1)), ((2, 4, 3), (1, 1, 3)),
                                                   ((5,), ()), ((), ()), ((3, 4), (3, 4)), ((2, 3), (2, 1))])
    def test_sums_back_to_the_input_shape(self, grad_shape, shape):
        g = np.random.default_rng(0).standard_normal(grad_shape)
        out = unbroadcast(g, shape)
        assert out.shape == shape
        ref = torch.from_numpy(g).sum_to_size(shape).numpy() if shape else np.asarray(g.sum())
        np.testing.assert_allclose(out, ref, rtol=1e-12)

    def test_impossible_shapes(self):
        with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
            unbroadcast(np.ones(3), (2, 3))


class BadSquare(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * a                     # wrong: should be 2 * a * grad


class BadTranspose(Function):
    "Transposes in forward, forgets to transpose back in backward: invisible to a check of f(x).sum()."
    @staticmethod
    def forward(ctx, a):
        return a.T.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


class TestGradcheck:
    def test_accepts_correct_gradients(self):
        rng = np.random.default_rng(0)
        assert gradcheck(lambda a, b: (a @ b).tanh() * a.sum(), [t64(rng, 3, 4), t64(rng, 4, 3)]) is True

    def test_rejects_a_wrong_factor_and_names_the_input(self):
        with pytest.raises(GradcheckError, match=r"input 0.*analytic.*numeric"):
            gradcheck(lambda a: BadSquare.apply(a), [t64(np.random.default_rng(1), 3)])

    def test_rejects_a_wrong_permutation(self):
        a = t64(np.random.default_rng(2), 3, 3)
        # the sum-projection would not notice: every output gets the same upstream gradient
        a.grad = None
        BadTranspose.apply(a).sum().backward()
        np.testing.assert_allclose(a.grad.data, np.ones((3, 3)))
        a.grad = None
        with pytest.raises(GradcheckError, match="input 0"):
            gradcheck(lambda x: BadTranspose.apply(x), [a])

    def test_checks_only_inputs_that_require_grad_and_restores_grads(self):
        rng = np.random.default_rng(3)
        a = t64(rng, 2, 2)
        c = Tensor(rng.standard_normal((2, 2)), dtype=np.float64)
        a.grad = Tensor(np.full((2, 2), 7.0), dtype=np.float64)
        assert gradcheck(lambda x, y: x * y, [a, c])
        assert a.grad.data.tolist() == [[7, 7], [7, 7]]

    def test_input_errors(self):
        with pytest.raises(ValueError, match="float64"):
            gradcheck(lambda a: a * 2, [Tensor([1.0], requires_grad=True)])
        with pytest.raises(ValueError, match="requires_grad"):
            gradcheck(lambda a: a * 2, [Tensor([1.0], dtype=np.float64)])

    def test_non_contiguous_input(self):
        # A float64 tensor made from a transposed array is a strided view; the op is correct,
        # so gradcheck must pass.
        base = np.random.default_rng(4).standard_normal((4, 3))
        a = Tensor(base.T, requires_grad=True, dtype=np.float64)
        assert not a.data.flags["C_CONTIGUOUS"]
        assert gradcheck(lambda x: x * 2.0, [a])


def _checks(rng):
    c43, c423, c32 = (Tensor(rng.standard_normal(s), dtype=np.float64) for s in [(4, 3), (4, 2, 3), (3, 2)])
    return {
        "add (broadcast)": (lambda a, b: a + b, [t64(rng, 3, 4), t64(rng, 4)]),
        "sub (broadcast)": (lambda a, b: a - b, [t64(rng, 3, 1), t64(rng, 1, 4)]),
        "mul (broadcast)": (lambda a, b: a * b, [t64(rng, 2, 3, 4), t64(rng, 3, 1)]),
        "div": (lambda a, b: a / b, [t64(rng, 3, 4), t64(rng, 3, 4, positive=True)]),
        "pow scalar": (lambda a: a ** 3, [t64(rng, 5)]),
        "pow tensor": (lambda a, b: a ** b, [t64(rng, 4, positive=True), t64(rng, 4)]),
        "neg": (lambda a: -a, [t64(rng, 3)]),
        "matmul": (lambda a, b: a @ b, [t64(rng, 3, 4), t64(rng, 4, 2)]),
        "matmul batched": (lambda a, b: a @ b, [t64(rng, 2, 3, 4), t64(rng, 4, 5)]),
        "matmul vector": (lambda a, b: a @ b, [t64(rng, 4), t64(rng, 4, 3)]),
        "sum axis": (lambda a: a.sum(axis=1), [t64(rng, 3, 4)]),
        "mean keepdims": (lambda a: a.mean(axis=0, keepdims=True), [t64(rng, 3, 4)]),
        "max axis": (lambda a: a.max(axis=1), [t64(rng, 3, 4)]),
        "min": (lambda a: a.min(), [t64(rng, 3, 4)]),
        "reshape": (lambda a: a.reshape(4, 3) * c43, [t64(rng, 3, 4)]),
        "permute": (lambda a: a.permute(2, 0, 1) * c423, [t64(rng, 2, 3, 4)]),
        "transpose": (lambda a: a.T @ c32, [t64(rng, 3, 4)]),
        "getitem": (lambda a: a[1:, ::2] * 2, [t64(rng, 3, 4)]),
        "getitem fancy": (lambda a: a[np.array([0, 2, 0])], [t64(rng, 3, 4)]),
        "exp log sqrt": (lambda a: a.exp() + a.log() + a.sqrt(), [t64(rng, 3, positive=True)]),
        "tanh abs": (lambda a: a.tanh() * a.abs(), [t64(rng, 3, 4)]),
        "relu": (lambda a: ReLU()(a), [t64(rng, 3, 4)]),
        "sigmoid": (lambda a: Sigmoid()(a), [t64(rng, 3, 4)]),
        "Tanh": (lambda a: Tanh()(a), [t64(rng, 3, 4)]),
        "gelu": (lambda a: GELU()(a), [t64(rng, 3, 4)]),
        "gelu tanh": (lambda a: GELU(approximate="tanh")(a), [t64(rng, 3, 4)]),
        "softmax dim 0": (lambda a: Softmax(dim=0)(a), [t64(rng, 3, 4)]),
        "log_softmax": (lambda a: log_softmax(a, dim=1), [t64(rng, 3, 4)]),
        "mse": (lambda a, b: MSELoss()(a, b), [t64(rng, 3, 4), t64(rng, 3, 4)]),
        "cross entropy": (lambda a: CrossEntropyLoss()(a, Tensor([0, 3, -100])), [t64(rng, 3, 4)]),
        "cross entropy (N, C, d)": (lambda a: CrossEntropyLoss()(a, Tensor([[0, 2], [1, 1]])), [t64(rng, 2, 3, 2)]),
        "bce": (lambda a: BinaryCrossEntropyLoss()(Sigmoid()(a), Tensor(np.array([0., 1., 1.]))), [t64(rng, 3)]),
        "linear": (lambda x, w, b: _linear(x, w, b), [t64(rng, 5, 4), t64(rng, 3, 4), t64(rng, 3)]),
        "linear 3-d input": (lambda x, w, b: _linear(x, w, b), [t64(rng, 2, 5, 4), t64(rng, 3, 4), t64(rng, 3)]),
        "dropout": (lambda a: _dropout(a), [t64(rng, 4, 5)]),
    }


def _linear(x, w, b):
    lin = Linear(w.shape[1], w.shape[0])
    lin.weight, lin.bias = w, b
    return lin(x)


def _dropout(a):
    d = Dropout(0.5, rng=np.random.default_rng(0))       # same mask on every call
    return d(a)


CHECK_NAMES = list(_checks(np.random.default_rng(0)))


class TestGradientsThroughTheStack:
    @pytest.mark.parametrize("name", CHECK_NAMES)
    def test_gradcheck_every_op(self, name):
        fn, xs = _checks(np.random.default_rng(42))[name]
        assert gradcheck(fn, xs) is True

    def test_whole_model_against_central_differences(self):
        rng = np.random.default_rng(5)
        model = Sequential(Linear(3, 4, rng=rng), GELU(), Linear(4, 4, rng=rng), Tanh(), Linear(4, 3, rng=rng))
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        x = Tensor(rng.standard_normal((6, 3)), dtype=np.float64)
        y = Tensor(rng.integers(0, 3, 6))
        params = list(model.parameters())
        names = [n for n, _ in model.named_parameters()]

        def loss_of(*ps):
            for p_model, p_given in zip(params, ps):
                assert p_model is p_given
            return CrossEntropyLoss()(model(x), y)

        assert gradcheck(loss_of, params), names


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
def _dataset():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((128, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)                  # XOR-like: needs the hidden layer
    return X, y


class TestAutogradInTheStack:
    def test_mlp_trains_with_manual_sgd(self):
        X, y = _dataset()
        model = Sequential(Linear(2, 16, rng=np.random.default_rng(0)), Tanh(),
                           Linear(16, 2, rng=np.random.default_rng(1)))
        loss_fn = CrossEntropyLoss()
        losses = []
        for _ in range(300):
            loss = loss_fn(model(Tensor(X)), Tensor(y))
            model.zero_grad()
            loss.backward()
            with no_grad():
                for p in model.parameters():
                    p.data -= 0.5 * p.grad.data
            losses.append(loss.item())
        assert losses[0] > 0.6
        assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
        with no_grad():
            acc = (model(Tensor(X)).data.argmax(axis=1) == y).mean()
        assert acc > 0.9

    def _models(self, seed):
        rng = np.random.default_rng(seed)
        ours = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
        torch.manual_seed(seed)
        theirs = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        return ours, theirs

    def test_tinytorch_weights_in_pytorch_give_identical_outputs(self):
        ours, theirs = self._models(0)
        result = theirs.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})
        assert not result.missing_keys and not result.unexpected_keys
        x = np.random.default_rng(2).standard_normal((7, 4)).astype(np.float32)
        out = ours(Tensor(x)).data
        tout = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(out, tout, rtol=1e-5, atol=1e-6)

    def test_pytorch_weights_in_tinytorch_give_identical_outputs_and_gradients(self):
        ours, theirs = self._models(1)
        held = list(ours.parameters())
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        assert all(a is b for a, b in zip(held, ours.parameters()))
        x = np.random.default_rng(3).standard_normal((7, 4)).astype(np.float32)
        y = np.array([0, 1, 2, 2, 1, 0, 1])
        loss = CrossEntropyLoss()(ours(Tensor(x)), Tensor(y))
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-5)
        loss.backward()
        tloss.backward()
        tparams = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad.data, tparams[name].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)

    def test_one_sgd_step_matches_pytorch(self):
        ours, theirs = self._models(2)
        theirs.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})
        X, y = _dataset()
        X4 = np.concatenate([X, X ** 2], axis=1)
        for _ in range(3):
            loss = CrossEntropyLoss()(ours(Tensor(X4)), Tensor(y))
            ours.zero_grad()
            loss.backward()
            with no_grad():
                for p in ours.parameters():
                    p.data -= 0.1 * p.grad.data
            tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(X4)), torch.from_numpy(y))
            theirs.zero_grad()
            tloss.backward()
            with torch.no_grad():
                for p in theirs.parameters():
                    p -= 0.1 * p.grad
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-5)
        tsd = theirs.state_dict()
        for k, v in ours.state_dict().items():
            np.testing.assert_allclose(v, tsd[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)

    def test_custom_module_composes_with_the_engine(self):
        class Residual(Module):
            def __init__(self):
                super().__init__()
                self.fc = Linear(3, 3, rng=np.random.default_rng(0))

            def forward(self, x):
                return x + self.fc(x).tanh()

        block = Residual()
        for p in block.parameters():
            p.data = p.data.astype(np.float64)
        x = t64(np.random.default_rng(1), 4, 3)
        assert gradcheck(lambda x, w, b: block(x), [x, block.fc.weight, block.fc.bias])
