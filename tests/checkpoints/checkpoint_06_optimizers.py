"""Can I update a model's weights from its gradients the way PyTorch's optimizers do?"""
import numpy as np

from tinytorch.core.activations import Tanh
from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor


def _grads(steps, shape, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


def test_sgd_with_momentum_dampening_nesterov_and_weight_decay():
    "PyTorch's SGD: d = g + wd*w; b = d (first step) else mu*b + (1-tau)*d; d = d + mu*b (Nesterov) or b."
    for mu, tau, wd, nesterov in [(0.0, 0.0, 0.0, False), (0.9, 0.0, 0.0, False), (0.8, 0.3, 0.0, False),
                                  (0.9, 0.0, 0.01, True), (0.0, 0.0, 0.1, False)]:
        w0 = np.random.default_rng(1).standard_normal((3, 4))
        p = Parameter(w0.copy(), dtype=np.float64)
        opt = SGD([p], lr=0.05, momentum=mu, dampening=tau, weight_decay=wd, nesterov=nesterov)
        w, buf = w0.copy(), None
        for g in _grads(10, (3, 4), seed=2):
            p.grad = Tensor(g, dtype=np.float64)
            opt.step()
            d = g + wd * w
            if mu:
                buf = d.copy() if buf is None else mu * buf + (1 - tau) * d
                d = d + mu * buf if nesterov else buf
            w = w - 0.05 * d
            np.testing.assert_allclose(p.data, w, rtol=0, atol=1e-12, err_msg=f"{mu=} {tau=} {wd=} {nesterov=}")


def test_adam_with_l2_and_adamw_with_decoupled_decay():
    "Adam: L2 in the gradient; AdamW: w *= 1 - lr*wd first. Bias-corrected moments, eps outside the sqrt."
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    for cls, wd in [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)]:
        w0 = np.random.default_rng(3).standard_normal(5)
        p = Parameter(w0.copy(), dtype=np.float64)
        opt = cls([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        w, m, v = w0.copy(), np.zeros(5), np.zeros(5)
        for t, g in enumerate(_grads(10, 5, seed=4), start=1):
            p.grad = Tensor(g, dtype=np.float64)
            opt.step()
            if cls is AdamW:
                w = w * (1 - lr * wd)
            else:
                g = g + wd * w
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
            np.testing.assert_allclose(p.data, w, rtol=0, atol=1e-12, err_msg=f"{cls.__name__} wd={wd} step {t}")
        assert opt.state[p]["step"] == 10


def test_optimizers_train_a_model_in_place():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((128, 2)))
    y = Tensor((x.data[:, 0] * x.data[:, 1] > 0).astype(np.int64))
    for make in (lambda ps: SGD(ps, lr=0.2, momentum=0.9), lambda ps: Adam(ps, lr=0.02), lambda ps: AdamW(ps, lr=0.02)):
        model = Sequential(Linear(2, 16, rng=np.random.default_rng(1)), Tanh(), Linear(16, 2, rng=np.random.default_rng(2)))
        arrays = [p.data for p in model.parameters()]
        opt, loss_fn = make(model.parameters()), CrossEntropyLoss()
        losses = []
        for _ in range(200):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.3 * losses[0], (type(opt).__name__, losses[0], losses[-1])
        assert all(p.data is a for p, a in zip(model.parameters(), arrays))
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())


def test_state_dict_is_plain_arrays_and_resumes_identically():
    rng = np.random.default_rng(5)
    a = Parameter(rng.standard_normal((4, 3)), dtype=np.float64)
    opt = Adam([a], lr=0.03, weight_decay=0.01)
    grads = _grads(8, (4, 3), seed=6)
    for g in grads[:4]:
        a.grad = Tensor(g, dtype=np.float64)
        opt.step()
    sd = opt.state_dict()
    assert all(type(v) is np.ndarray and v.dtype != object for v in sd.values())
    b = Parameter(a.data.copy(), dtype=np.float64)
    opt_b = Adam([b], lr=1.0)
    opt_b.load_state_dict(sd)
    for g in grads[4:]:
        a.grad, b.grad = Tensor(g, dtype=np.float64), Tensor(g.copy(), dtype=np.float64)
        opt.step()
        opt_b.step()
    assert np.array_equal(a.data, b.data) and opt_b.param_groups[0]["lr"] == 0.03


def test_a_step_post_hook_keeps_frozen_entries_exactly_zero():
    "A post-step hook runs after every step; handle.remove() unregisters it."
    rng = np.random.default_rng(7)
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), lambda ps: AdamW(ps, lr=0.01)):
        p = Parameter(rng.standard_normal((5, 5)))
        keep = (rng.random((5, 5)) > 0.5).astype(np.float32)
        p.data *= keep
        start = p.data.copy()
        opt = make([p])

        def freeze(o, args, kwargs):
            p.data *= keep
            for buf in o.state[p].values():
                if isinstance(buf, np.ndarray):
                    buf *= keep
        handle = opt.register_step_post_hook(freeze)
        for _ in range(50):
            p.grad = Tensor(rng.standard_normal((5, 5)))
            opt.step()
        assert (p.data[keep == 0] == 0).all()
        assert (p.data[keep == 1] != start[keep == 1]).all()
        handle.remove()
        p.grad = Tensor(rng.standard_normal((5, 5)))
        opt.step()
        assert (p.data[keep == 0] != 0).any()
