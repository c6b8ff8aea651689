"""Module 07's CosineAnnealingWarmRestarts against torch.optim.lr_scheduler.CosineAnnealingWarmRestarts: every
group's rate, epoch by epoch, through several restarts (T_mult 1, 2, 3), resumed from a state dict."""
import numpy as np
import pytest
import torch
from lr_lockstep import step_in_lockstep

import tinytorch.optim.lr_scheduler as tls
from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD
from tinytorch.core.training import CosineAnnealingWarmRestarts

torch.set_num_threads(1)


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(3, 1, 0.0), (2, 2, 0.001), (1, 3, 0.01), (5, 2, 0.0)])
def test_matches_torch(T_0, T_mult, eta_min):
    opt = SGD([{"params": [Parameter(np.zeros(2))], "lr": 0.1}, {"params": [Parameter(np.zeros(2))], "lr": 0.03}])
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1},
                            {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.03}])
    ours = CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0, T_mult, eta_min)
    step_in_lockstep(opt, topt, ours, theirs, 40)
    again = CosineAnnealingWarmRestarts(SGD([{"params": [Parameter(np.zeros(2))], "lr": 0.1},
                                             {"params": [Parameter(np.zeros(2))], "lr": 0.03}]), T_0, T_mult, eta_min)
    again.load_state_dict(ours.state_dict())
    assert again.get_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    assert tls.CosineAnnealingWarmRestarts is CosineAnnealingWarmRestarts
