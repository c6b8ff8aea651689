"""Module 07's ReduceLROnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau: the learning rate of
every group after each step, for modes min/max, relative/absolute thresholds, patience, cooldown, per-group
min_lr and eps, on random and flat metric sequences; and its torch-named face."""
import numpy as np
import pytest
import torch

import tinytorch.optim.lr_scheduler as tls
from tinytorch.core.callbacks import ReduceLROnPlateau
from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD

torch.set_num_threads(1)


def _pair(**kw):
    opt = SGD([{"params": [Parameter(np.zeros(2))], "lr": 0.1}, {"params": [Parameter(np.zeros(2))], "lr": 0.03}])
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1},
                            {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.03}])
    return opt, ReduceLROnPlateau(opt, **kw), topt, torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)


SETTINGS = [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(factor=0.3, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2),
    dict(mode="max", threshold=0.2, threshold_mode="rel", patience=0, cooldown=1, min_lr=[0.02, 0.001]),
    dict(factor=0.5, patience=0, min_lr=0.029, eps=1e-3),
]


@pytest.mark.parametrize("kw", SETTINGS)
@pytest.mark.parametrize("seed", (0, 1))
def test_plateau_matches_torch(kw, seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([np.cumsum(rng.normal(0, 1, 25)), np.full(10, 3.0), rng.normal(0, 0.01, 15)])
    opt, ours, topt, theirs = _pair(**kw)
    cuts = 0
    for v in values:
        ours.step(float(v))
        theirs.step(float(v))
        want = [g["lr"] for g in topt.param_groups]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(want, rel=1e-12)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert ours.num_bad_epochs == theirs.num_bad_epochs and ours.cooldown_counter == theirs.cooldown_counter
        cuts += want[0] < 0.1
    assert cuts > 0                                    # the sequences do make the rate drop


def test_face_is_the_class():
    assert tls.ReduceLROnPlateau is ReduceLROnPlateau
