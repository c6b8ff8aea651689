"""SGD, Adam, AdamW, RMSprop and Adadelta against torch.optim: the same parameters, the same sequence of random gradients
set directly on .grad, 20 steps, parameters compared after every step (1e-6; float64 makes it tight).
Also: a state_dict round trip (through an .npz, allow_pickle=False) continues identically."""

import numpy as np
import pytest
import torch

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD, Adadelta, Adam, AdamW, RMSprop
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)

SHAPES = [(5, 3), (3,), (2, 2, 2)]

CONFIGS = [
    ("sgd plain", SGD, torch.optim.SGD, dict(lr=0.1)),
    ("sgd momentum", SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    ("sgd dampening", SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3)),
    ("sgd nesterov", SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd weight decay", SGD, torch.optim.SGD, dict(lr=0.05, weight_decay=0.1)),
    ("sgd all", SGD, torch.optim.SGD, dict(lr=0.03, momentum=0.7, weight_decay=0.02, nesterov=True)),
    ("adam", Adam, torch.optim.Adam, dict(lr=0.01)),
    ("adam betas eps", Adam, torch.optim.Adam, dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6)),
    ("adam weight decay", Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1)),
    ("adamw default decay", AdamW, torch.optim.AdamW, dict(lr=0.01)),
    ("adamw weight decay", AdamW, torch.optim.AdamW, dict(lr=0.02, weight_decay=0.3, betas=(0.85, 0.99))),
    ("rmsprop", RMSprop, torch.optim.RMSprop, dict(lr=0.01)),
    ("rmsprop centered momentum wd", RMSprop, torch.optim.RMSprop,
     dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.5, centered=True)),
    ("adadelta", Adadelta, torch.optim.Adadelta, dict(lr=1.0)),
    ("adadelta rho wd", Adadelta, torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
]


def make_pair(ours_cls, theirs_cls, kwargs, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [Parameter(a.copy(), dtype=dtype) for a in init]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    return ours, ours_cls(ours, **kwargs), theirs, theirs_cls(theirs, **kwargs)


def set_grads(ours, theirs, grads):
    for p, q, g in zip(ours, theirs, grads):
        if g is None:
            p.grad, q.grad = None, None
        else:
            p.grad = Tensor(g.copy(), dtype=g.dtype)
            q.grad = torch.from_numpy(g.copy())


def gradient_sequence(steps, dtype, seed=1, with_none=True):
    rng = np.random.default_rng(seed)
    seq = []
    for t in range(steps):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        if with_none and t % 7 == 3:
            grads[1] = None            # a parameter without a gradient this step: skipped by both
        seq.append(grads)
    return seq


def assert_close(ours, theirs, atol, step, name):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=atol,
                                   err_msg=f"{name}: parameter {i} differs after step {step}")


@pytest.mark.parametrize("name,ours_cls,theirs_cls,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_matches_torch_over_20_steps_float64(name, ours_cls, theirs_cls, kwargs):
    ours, opt, theirs, topt = make_pair(ours_cls, theirs_cls, kwargs)
    arrays = [p.data for p in ours]
    for step, grads in enumerate(gradient_sequence(20, np.float64)):
        set_grads(ours, theirs, grads)
        opt.step()
        topt.step()
        assert_close(ours, theirs, 1e-6, step, name)
    # the updates happened in place, and really moved the weights
    assert all(p.data is a for p, a in zip(ours, arrays))
    init = make_pair(ours_cls, theirs_cls, kwargs)[0]
    assert all(np.abs(p.data - q.data).max() > 1e-3 for p, q in zip(ours, init))


@pytest.mark.parametrize("name,ours_cls,theirs_cls,kwargs",
                         [CONFIGS[3], CONFIGS[8], CONFIGS[10]], ids=["sgd nesterov", "adam wd", "adamw"])
def test_matches_torch_float32(name, ours_cls, theirs_cls, kwargs):
    ours, opt, theirs, topt = make_pair(ours_cls, theirs_cls, kwargs, dtype=np.float32)
    for step, grads in enumerate(gradient_sequence(20, np.float32)):
        set_grads(ours, theirs, grads)
        opt.step()
        topt.step()
        assert_close(ours, theirs, 1e-6, step, name)
    assert all(p.data.dtype == np.float32 for p in ours)
    assert all(v.dtype == np.float32 for st in opt.state.values() for v in st.values() if isinstance(v, np.ndarray))


def test_param_groups_and_lr_changes_match_torch():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    ours = [Parameter(a.copy(), dtype=np.float64), Parameter(b.copy(), dtype=np.float64)]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())), torch.nn.Parameter(torch.from_numpy(b.copy()))]
    opt = AdamW([{"params": [ours[0]]}, {"params": [ours[1]], "lr": 0.1, "weight_decay": 0.0}], lr=0.01)
    topt = torch.optim.AdamW([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": 0.1, "weight_decay": 0.0}],
                             lr=0.01)
    for step in range(20):
        g = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
        set_grads(ours, theirs, g)
        if step == 10:                       # what a scheduler does
            for og, tg in zip(opt.param_groups, topt.param_groups):
                og["lr"] *= 0.5
                tg["lr"] *= 0.5
        opt.step()
        topt.step()
        assert_close(ours, theirs, 1e-6, step, "groups")


@pytest.mark.parametrize("name,ours_cls,theirs_cls,kwargs", [CONFIGS[5], CONFIGS[8], CONFIGS[10]],
                         ids=["sgd all", "adam wd", "adamw"])
def test_state_dict_round_trip_through_npz_continues_identically(tmp_path, name, ours_cls, theirs_cls, kwargs):
    ours, opt, theirs, topt = make_pair(ours_cls, theirs_cls, kwargs)
    seq = gradient_sequence(20, np.float64, with_none=False)
    for grads in seq[:10]:
        set_grads(ours, theirs, grads)
        opt.step()
        topt.step()
    sd = opt.state_dict()
    assert sd and all(type(v) is np.ndarray and v.dtype != object for v in sd.values())
    path = tmp_path / "opt.npz"
    np.savez(path, **sd)
    with np.load(path, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    # a fresh optimizer, with different hyper-parameters, on a copy of the parameters
    resumed = [Parameter(p.data.copy(), dtype=np.float64) for p in ours]
    other_kwargs = dict(kwargs, lr=kwargs["lr"] * 7)
    opt2 = ours_cls(resumed, **other_kwargs)
    opt2.load_state_dict(loaded)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    # the saved state is a copy: stepping the original does not change what was saved
    for grads in seq[10:]:
        set_grads(ours, theirs, grads)
        set_grads(resumed, theirs, grads)
        opt.step()
        opt2.step()
        topt.step()
        for p, q in zip(ours, resumed):
            assert np.array_equal(p.data, q.data)
    assert_close(resumed, theirs, 1e-6, 20, name)


def test_load_state_dict_rejects_mismatches_and_changes_nothing():
    ours, opt, _, _ = make_pair(Adam, torch.optim.Adam, dict(lr=0.01))
    for grads in gradient_sequence(3, np.float64, with_none=False):
        for p, g in zip(ours, grads):
            p.grad = Tensor(g, dtype=np.float64)
        opt.step()
    sd = opt.state_dict()
    before = {k: v.copy() for k, v in opt.state_dict().items()}

    wrong_shape = [Parameter(np.zeros(s), dtype=np.float64) for s in [(5, 3), (4,), (2, 2, 2)]]
    with pytest.raises(ValueError, match=r"state\.1\.exp_avg has shape \(3,\) but parameter 1 has shape \(4,\)"):
        Adam(wrong_shape).load_state_dict(sd)
    with pytest.raises(ValueError, match="3 parameters in the state dict but 2"):
        Adam(ours[:2]).load_state_dict(sd)
    with pytest.raises(ValueError, match="unexpected key 'model.weight'"):
        opt.load_state_dict({"model.weight": np.zeros(3)})
    bad = dict(sd)
    bad["param_groups.0.lr"] = np.array(-1.0)
    with pytest.raises(ValueError, match=r"lr \(learning rate\) must be a finite number > 0, got -1.0"):
        opt.load_state_dict(bad)
    bad = dict(sd)
    bad["state.0.exp_avg"] = np.array([object()] * 15, dtype=object).reshape(5, 3)
    with pytest.raises(TypeError, match="object array"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert sorted(after) == sorted(before) and all(np.array_equal(after[k], before[k]) for k in before)
