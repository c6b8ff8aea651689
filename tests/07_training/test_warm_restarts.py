"""Module 07's CosineAnnealingWarmRestarts without PyTorch: the cosine inside each period, the restarts after
T_0, T_0·T_mult, ... epochs, and bad settings named."""
import math

import numpy as np
import pytest

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD
from tinytorch.core.training import CosineAnnealingWarmRestarts


def _rates(n, **kw):
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    s = CosineAnnealingWarmRestarts(opt, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        s.step()
    return out


def half_cos(t, period, eta=0.0):
    return eta + (1 - eta) * (1 + math.cos(math.pi * t / period)) / 2


def test_periods_grow_by_t_mult():
    want = [half_cos(t, 2) for t in range(2)] + [half_cos(t, 6) for t in range(6)] + [half_cos(t, 18) for t in range(3)]
    assert _rates(11, T_0=2, T_mult=3) == pytest.approx(want, rel=1e-12)


def test_fixed_period_and_eta_min():
    rates = _rates(9, T_0=3, eta_min=0.1)
    assert rates == pytest.approx([half_cos(t % 3, 3, 0.1) for t in range(9)], rel=1e-12)
    assert rates[3] == rates[6] == 1.0 and min(rates) > 0.1


@pytest.mark.parametrize("kw, words", [(dict(T_0=0), "T_0"), (dict(T_0=2, T_mult=0), "T_mult"),
                                       (dict(T_0=2, eta_min=-1.0), "eta_min")])
def test_bad_settings(kw, words):
    with pytest.raises(ValueError, match=words):
        CosineAnnealingWarmRestarts(SGD([Parameter(np.zeros(1))], lr=1.0), **kw)
