"""Step a tinytorch optimizer and scheduler and their PyTorch twins together, checking every group's learning rate
before each step (module 07's schedule oracle tests)."""
import pytest


def step_in_lockstep(opt, topt, ours, theirs, steps: int) -> None:
    "`steps` times: every group's lr of `opt` equals `topt`'s (rel 1e-12), then both optimizers and schedulers step."
    for _ in range(steps):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups], rel=1e-12)
        opt.step()
        topt.step()
        ours.step()
        theirs.step()
