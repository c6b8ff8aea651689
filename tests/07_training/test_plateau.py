"""Module 07's ReduceLROnPlateau without PyTorch: the plateau rule step by step (patience, cooldown, min_lr,
eps, relative and absolute thresholds in both modes), its state dict, and the Trainer stepping it on the
validation loss as a callback."""
import math

import numpy as np
import pytest

from tinytorch.core.activations import Tanh
from tinytorch.core.callbacks import ReduceLROnPlateau
from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import LRScheduler, Trainer


def _opt(lr=1.0):
    return SGD([Parameter(np.zeros(2))], lr=lr)


def _lrs(sched, values):
    out = []
    for v in values:
        sched.step(v)
        out.append(sched.optimizer.param_groups[0]["lr"])
    return out


def test_patience_and_cooldown():
    s = ReduceLROnPlateau(_opt(), factor=0.5, patience=1, cooldown=1)
    assert _lrs(s, [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5]) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert s.best == 0.5 and s.last_epoch == 9 and isinstance(s, LRScheduler)


def test_thresholds_in_both_modes():
    rel = ReduceLROnPlateau(_opt(), threshold=0.1)
    assert rel.is_better(0.89, 1.0) and not rel.is_better(0.91, 1.0)
    ab = ReduceLROnPlateau(_opt(), threshold=0.1, threshold_mode="abs")
    assert ab.is_better(0.89, 1.0) and not ab.is_better(0.95, 1.0)
    up = ReduceLROnPlateau(_opt(), mode="max", threshold=0.1)
    assert up.is_better(1.11, 1.0) and not up.is_better(1.09, 1.0)
    up_abs = ReduceLROnPlateau(_opt(), mode="max", threshold=0.5, threshold_mode="abs")
    assert up_abs.is_better(1.6, 1.0) and not up_abs.is_better(1.4, 1.0)
    assert up.best == -math.inf and ReduceLROnPlateau(_opt()).best == math.inf


def test_min_lr_and_eps():
    s = ReduceLROnPlateau(_opt(), factor=0.1, patience=0, min_lr=0.05)
    assert _lrs(s, [1.0, 1.0, 1.0, 1.0]) == [1.0, 0.1, 0.05, 0.05]
    tiny = ReduceLROnPlateau(_opt(1e-9), factor=0.5, patience=0)          # a cut below eps is skipped
    assert _lrs(tiny, [1.0, 1.0]) == [1e-9, 1e-9]


def test_max_mode_counts_bad_epochs():
    s = ReduceLROnPlateau(_opt(), mode="max", factor=0.5, patience=2)
    assert _lrs(s, [0.1, 0.2, 0.2, 0.2, 0.2, 0.3]) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert s.num_bad_epochs == 0 and s.best == 0.3


def test_state_dict_round_trip():
    s = ReduceLROnPlateau(_opt(), factor=0.5, patience=0)
    _lrs(s, [1.0, 2.0, 3.0])
    t = ReduceLROnPlateau(_opt(), factor=0.5, patience=0)
    t.load_state_dict(s.state_dict())
    assert t.best == 1.0 and t.num_bad_epochs == s.num_bad_epochs and t.last_epoch == 3


def test_errors():
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(_opt(), factor=1.0)
    with pytest.raises(ValueError, match="threshold_mode"):
        ReduceLROnPlateau(_opt(), threshold_mode="relative")
    with pytest.raises(ValueError, match="min_lrs"):
        ReduceLROnPlateau(_opt(), min_lr=[0.1, 0.2])
    with pytest.raises(TypeError, match="monitored value"):
        ReduceLROnPlateau(_opt()).step()


def test_trainer_steps_it_on_the_validation_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    batches = [(Tensor(x[i:i + 8]), Tensor(y[i:i + 8])) for i in range(0, 32, 8)]
    m = Sequential(Linear(3, 8, rng=rng), Tanh(), Linear(8, 2, rng=rng))
    opt = SGD(m.parameters(), lr=0.5)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10.0, threshold_mode="abs")  # only the first is better
    history = Trainer(m, opt, CrossEntropyLoss(), progress=False).fit(batches, batches, epochs=4, callbacks=[plateau])
    assert history["lr"] == [0.5, 0.5, 0.25, 0.125]
    assert plateau.last_epoch == 4 and plateau.best == history["val_loss"][0]
    with pytest.raises(ValueError, match="'val_acc'"):
        Trainer(m, opt, CrossEntropyLoss(), progress=False).fit(batches, batches, epochs=1,
                                                               callbacks=[ReduceLROnPlateau(opt, monitor="val_acc")])
