"""Optimizer step hooks (PyTorch's register_step_pre_hook / register_step_post_hook and the global
register_optimizer_step_*_hook): the order they run in against torch.optim, pre-hooks replacing step's
arguments, removable handles, and a post-hook that keeps entries frozen through momentum and Adam."""
import numpy as np
import pytest
import torch
import torch.optim.optimizer as torch_optimizer

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import (SGD, Adam, AdamW, Optimizer, RemovableHandle,
                                       register_optimizer_step_post_hook, register_optimizer_step_pre_hook)
from tinytorch.core.tensor import Tensor


def _calls(opt, register_global_pre, register_global_post, grad):
    log = []
    h = [opt.register_step_pre_hook(lambda o, a, k: log.append(("pre", type(o).__name__))),
         opt.register_step_post_hook(lambda o, a, k: log.append(("post", type(o).__name__))),
         register_global_pre(lambda o, a, k: log.append(("global pre", type(o).__name__))),
         register_global_post(lambda o, a, k: log.append(("global post", type(o).__name__)))]
    grad()
    opt.step()
    for handle in h:
        handle.remove()
    grad()
    opt.step()                                   # every hook removed: nothing logged
    return log


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_hooks_run_in_the_same_order_as_torch(name):
    ours_p, theirs_p = Parameter(np.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]([ours_p], lr=0.1)
    theirs = getattr(torch.optim, name)([theirs_p], lr=0.1)

    def g_ours():
        ours_p.grad = Tensor(np.ones(3))

    def g_theirs():
        theirs_p.grad = torch.ones(3)
    got = _calls(ours, register_optimizer_step_pre_hook, register_optimizer_step_post_hook, g_ours)
    want = _calls(theirs, torch_optimizer.register_optimizer_step_pre_hook,
                  torch_optimizer.register_optimizer_step_post_hook, g_theirs)
    assert got == want and len(got) == 4


def test_a_pre_hook_can_replace_the_step_arguments_and_post_hooks_see_them():
    p = Parameter(np.ones(2))
    p.grad = Tensor(np.ones(2))
    opt = SGD([p], lr=0.1)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: ((), {"closure": lambda: 7.0}))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append(sorted(kwargs)))
    assert opt.step() == 7.0 and seen == [["closure"]]
    opt.register_step_pre_hook(lambda o, args, kwargs: "nonsense")
    with pytest.raises(RuntimeError, match="must return None or \\(args, kwargs\\), got 'nonsense'"):
        opt.step()


def test_handles_remove_once_and_work_as_context_managers():
    p = Parameter(np.ones(2))
    opt = Adam([p])
    count = []
    with opt.register_step_post_hook(lambda o, a, k: count.append(1)) as handle:
        assert isinstance(handle, RemovableHandle)
        p.grad = Tensor(np.ones(2))
        opt.step()
    opt.step()
    handle.remove()                              # a second remove is harmless
    assert count == [1]
    with pytest.raises(TypeError, match="a hook must be a callable hook\\(optimizer, args, kwargs\\), got 3"):
        opt.register_step_pre_hook(3)


def test_a_subclass_gets_hooks_and_a_super_step_runs_them_once():
    class Doubling(SGD):
        def step(self, closure=None):
            super().step(closure)
            return super().step(closure)
    p = Parameter(np.zeros(2))
    opt = Doubling([p], lr=1.0)
    log = []
    opt.register_step_post_hook(lambda o, a, k: log.append(p.data.copy()))
    p.grad = Tensor(np.ones(2))
    opt.step()
    assert len(log) == 1 and log[0].tolist() == [-2.0, -2.0]


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.01, weight_decay=1e-2),
    lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
], ids=["sgd momentum wd", "sgd nesterov", "adam wd", "adamw"])
def test_a_post_hook_keeps_frozen_entries_zero_in_weights_and_state(make):
    rng = np.random.default_rng(5)
    w = Parameter(rng.standard_normal((6, 8)).astype(np.float32))
    keep = (rng.random((6, 8)) > 0.6).astype(np.float32)
    w.data *= keep
    start = w.data.copy()
    opt = make([w])

    def freeze(o, args, kwargs):
        w.data *= keep
        for buf in o.state[w].values():
            if isinstance(buf, np.ndarray):
                buf *= keep
    opt.register_step_post_hook(freeze)
    for _ in range(30):
        w.grad = Tensor(rng.standard_normal((6, 8)).astype(np.float32))
        opt.step()
        assert (w.data[keep == 0] == 0).all()
    assert (w.data[keep == 1] != start[keep == 1]).all()
    assert all((buf[keep == 0] == 0).all() for buf in opt.state[w].values() if isinstance(buf, np.ndarray))


def test_an_optimizer_without_hooks_moves_every_entry():
    "Without a hook nothing is frozen: the optimizers themselves know of no masks."
    w = Parameter(np.zeros((3, 3)))
    w.mask = np.zeros((3, 3))                    # an attribute the optimizer must not read
    opt = SGD([w], lr=0.1)
    w.grad = Tensor(np.ones((3, 3)))
    opt.step()
    assert (w.data == -0.1).all()
    assert not hasattr(Optimizer, "_apply_mask")
