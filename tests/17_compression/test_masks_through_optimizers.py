"""Masks persist through every optimizer (SPEC section 4) by module 06's extension point: pruning registers
one global optimizer step post-hook (`reapply_masks`) that re-applies each parameter's mask to the weight
and to all of its state buffers, for optimizers made before or after pruning."""
import numpy as np
import pytest

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.compression import attach_mask, keep_masks_in_optimizers, reapply_masks


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.01, weight_decay=1e-2),
    lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
], ids=["sgd momentum wd", "sgd nesterov", "adam wd", "adamw"])
@pytest.mark.parametrize("made_before_pruning", [True, False])
def test_mask_keeps_pruned_entries_exactly_zero_for_50_steps(make, made_before_pruning):
    rng = np.random.default_rng(5)
    w = Parameter(rng.standard_normal((6, 8)).astype(np.float32))
    b = Parameter(rng.standard_normal(8).astype(np.float32))
    opt = make([w, b]) if made_before_pruning else None
    attach_mask(w, (rng.random((6, 8)) > 0.6).astype(np.float32))     # 0 = pruned
    attach_mask(b, np.array([True, False] * 4))                         # a boolean mask works too
    opt = opt or make([w, b])
    start_w, start_b = w.data.copy(), b.data.copy()
    arrays = (w.data, b.data)
    for _ in range(50):
        w.grad = Tensor(rng.standard_normal((6, 8)).astype(np.float32))
        b.grad = Tensor(rng.standard_normal(8).astype(np.float32))
        opt.step()
        assert (w.data[~w.mask] == 0).all() and (b.data[~b.mask] == 0).all()
    assert w.data is arrays[0] and b.data is arrays[1]
    assert w.mask.sum() > 5 and (w.data[w.mask] != start_w[w.mask]).all()
    assert (b.data[b.mask] != start_b[b.mask]).all()
    for p in (w, b):
        bufs = [v for v in opt.state[p].values() if isinstance(v, np.ndarray)]
        assert bufs and all((buf[~p.mask] == 0).all() for buf in bufs)


def test_the_hook_is_registered_once():
    from tinytorch.core import optimizers
    keep_masks_in_optimizers()
    keep_masks_in_optimizers()
    assert list(optimizers._global_step_post_hooks.values()).count(reapply_masks) == 1


def test_mask_with_a_wrong_shape_is_a_clear_error():
    keep_masks_in_optimizers()
    p = Parameter(np.ones((3, 4)))
    p.mask = np.ones((5,))
    p.grad = Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"mask of shape \(5,\) does not broadcast to its parameter of shape \(3, 4\)"):
        SGD([p], lr=0.1).step()
