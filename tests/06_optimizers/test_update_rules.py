"""Module 06's update rules and state loading from their formulas, with NumPy only (no PyTorch: this file
ships with the student copy). SGD and Adam are checked by the checkpoint; here RMSprop (plain, centered,
momentum, weight decay) and Adadelta step by step against the formulas of the notebook, the loop of every
step (lazy state, skipped parameters), and loading a saved state dict (groups and per-parameter state)."""
import numpy as np
import pytest

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD, Adadelta, Adam, RMSprop
from tinytorch.core.tensor import Tensor


def _grads(steps, shape, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


@pytest.mark.parametrize("alpha,eps,wd,mu,centered", [
    (0.99, 1e-8, 0.0, 0.0, False), (0.9, 1e-6, 0.05, 0.0, False), (0.9, 1e-8, 0.0, 0.5, False),
    (0.8, 1e-8, 0.0, 0.0, True), (0.9, 1e-7, 0.02, 0.3, True)])
def test_rmsprop_follows_its_formulas(alpha, eps, wd, mu, centered):
    lr = 0.01
    w0 = np.random.default_rng(1).standard_normal((3, 4))
    p = Parameter(w0.copy(), dtype=np.float64)
    opt = RMSprop([p], lr=lr, alpha=alpha, eps=eps, weight_decay=wd, momentum=mu, centered=centered)
    w, v, g_avg, buf = w0.copy(), np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 4))
    for g in _grads(10, (3, 4), seed=2):
        p.grad = Tensor(g.copy(), dtype=np.float64)
        opt.step()
        g = g + wd * w
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            avg = np.sqrt(v - g_avg * g_avg) + eps
        else:
            avg = np.sqrt(v) + eps
        if mu > 0:
            buf = mu * buf + g / avg
            w = w - lr * buf
        else:
            w = w - lr * g / avg
        np.testing.assert_allclose(p.data, w, rtol=0, atol=1e-12)
    keys = {"step", "square_avg"} | ({"momentum_buffer"} if mu > 0 else set()) | ({"grad_avg"} if centered else set())
    assert set(opt.state[p]) == keys and opt.state[p]["step"] == 10


@pytest.mark.parametrize("lr,rho,eps,wd", [(1.0, 0.9, 1e-6, 0.0), (0.5, 0.8, 1e-5, 0.1)])
def test_adadelta_follows_its_formulas(lr, rho, eps, wd):
    w0 = np.random.default_rng(3).standard_normal(5)
    p = Parameter(w0.copy(), dtype=np.float64)
    opt = Adadelta([p], lr=lr, rho=rho, eps=eps, weight_decay=wd)
    w, v, u = w0.copy(), np.zeros(5), np.zeros(5)
    for g in _grads(10, 5, seed=4):
        p.grad = Tensor(g.copy(), dtype=np.float64)
        opt.step()
        g = g + wd * w
        v = rho * v + (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        w = w - lr * delta
        np.testing.assert_allclose(p.data, w, rtol=0, atol=1e-12)
    assert set(opt.state[p]) == {"step", "square_avg", "acc_delta"} and opt.state[p]["step"] == 10


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.1),
                                  lambda ps: RMSprop(ps, lr=0.1, momentum=0.5), lambda ps: Adadelta(ps)],
                         ids=["sgd", "adam", "rmsprop", "adadelta"])
def test_the_step_loop_updates_in_place_and_skips_parameters_without_a_gradient(make):
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = make([a, b])
    array = a.data
    a.grad = Tensor(np.full(3, 0.5))
    assert opt.step() is None and opt.step(lambda: 7.0) == 7.0
    assert a.data is array and (a.data < 1).all()
    assert b.data.tolist() == [1.0, 1.0] and b not in opt.state     # no gradient: no step, no state
    assert a.grad.data.tolist() == [0.5] * 3                         # the gradient itself is never changed


@pytest.mark.parametrize("make", [lambda ps: RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
                                  lambda ps: Adadelta(ps, lr=0.5, weight_decay=0.01)],
                         ids=["rmsprop", "adadelta"])
def test_state_dict_round_trip_through_npz_continues_identically(tmp_path, make):
    rng = np.random.default_rng(5)
    a = Parameter(rng.standard_normal((4, 3)), dtype=np.float64)
    b = Parameter(rng.standard_normal(3), dtype=np.float64)
    opt = make([{"params": [a]}, {"params": [b], "weight_decay": 0.2}])
    grads = [(rng.standard_normal((4, 3)), rng.standard_normal(3)) for _ in range(8)]
    for ga, gb in grads[:4]:
        a.grad, b.grad = Tensor(ga, dtype=np.float64), Tensor(gb, dtype=np.float64)
        opt.step()
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    a2, b2 = Parameter(a.data.copy(), dtype=np.float64), Parameter(b.data.copy(), dtype=np.float64)
    opt2 = make([{"params": [a2]}, {"params": [b2]}])
    opt2.load_state_dict(loaded)
    assert opt2.param_groups[1]["weight_decay"] == 0.2 and opt2.state[a2]["step"] == 4
    assert isinstance(opt2.state[a2]["step"], int)
    for ga, gb in grads[4:]:
        a.grad, b.grad = Tensor(ga, dtype=np.float64), Tensor(gb, dtype=np.float64)
        a2.grad, b2.grad = Tensor(ga.copy(), dtype=np.float64), Tensor(gb.copy(), dtype=np.float64)
        opt.step()
        opt2.step()
    assert np.array_equal(a.data, a2.data) and np.array_equal(b.data, b2.data)


def test_a_bad_state_dict_is_refused_and_changes_nothing():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = RMSprop([a, b], lr=0.1)
    a.grad, b.grad = Tensor(np.ones(3)), Tensor(np.ones(2))
    opt.step()
    sd = opt.state_dict()
    bad = dict(sd, **{"state.1.square_avg": np.zeros(5)})
    with pytest.raises(ValueError, match=r"state\.1\.square_avg has shape \(5,\) but parameter 1 has shape \(2,\)"):
        opt.load_state_dict(bad)
    bad = dict(sd, **{"state.2.square_avg": np.zeros(2)})
    with pytest.raises(ValueError, match="state for parameter 2, but this optimizer has only 2 parameters"):
        opt.load_state_dict(bad)
    bad = dict(sd, **{"param_groups.0.params": np.array([0])})
    with pytest.raises(ValueError, match="parameter group 0 has 1 parameters in the state dict but 2"):
        opt.load_state_dict(bad)
    bad = dict(sd, **{"param_groups.0.params": np.array([1, 0])})
    with pytest.raises(ValueError, match=r"lists indices \[1, 0\], expected \[0, 1\]"):
        opt.load_state_dict(bad)
    bad = dict(sd, **{"param_groups.0.alpha": np.array(1.5)})
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\], got 1.5"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["alpha"] == 0.99 and opt.state[a]["step"] == 1   # nothing changed
