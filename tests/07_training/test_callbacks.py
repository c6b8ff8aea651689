"""Module 07: the Trainer as the one training loop — its hooks (order, skipping a non-finite step, stopping),
compute_loss overrides, evaluate through compute_loss, the callback errors; and the four more closed-form
schedules against torch.optim.lr_scheduler."""
import math

import numpy as np
import pytest
import torch
from lr_lockstep import step_in_lockstep

from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.activations import Tanh
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import (HOOKS, Callback, EarlyStopping, ExponentialLR, LambdaCallback, LambdaLR,
                                     LinearLR, MultiStepLR, NonFiniteLossError, Trainer)

torch.set_num_threads(1)


@pytest.mark.parametrize("ours,theirs", [
    (lambda o: ExponentialLR(o, gamma=0.7), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7)),
    (lambda o: MultiStepLR(o, [2, 5, 6], gamma=0.3),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5, 6], gamma=0.3)),
    (lambda o: LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=4),
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=4)),
    (lambda o: LambdaLR(o, lambda e: 1 / (1 + e)), lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (1 + e))),
])
def test_more_schedules_match_torch(ours, theirs):
    opt = SGD([{"params": [Parameter(np.zeros(2))], "lr": 0.1}, {"params": [Parameter(np.zeros(2))], "lr": 0.03}])
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1},
                            {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.03}])
    step_in_lockstep(opt, topt, ours(opt), theirs(topt), 9)


def data(n_batches=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8 * n_batches, 3)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    return [(Tensor(x[i:i + 8]), Tensor(y[i:i + 8])) for i in range(0, len(y), 8)]


def net(seed=0):
    r = np.random.default_rng(seed)
    return Sequential(Linear(3, 8, rng=r), Tanh(), Linear(8, 2, rng=r))


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name in HOOKS:
            calls = object.__getattribute__(self, "calls")
            base = object.__getattribute__(self, name)
            return lambda trainer, *a: (calls.append(name), base(trainer, *a))[1]
        return object.__getattribute__(self, name)


def test_hooks_run_in_loop_order():
    rec = Recorder()
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), clip_grad_norm=1.0, progress=False)
    t.fit(data(2), epochs=2, callbacks=[rec])
    step = ["on_after_backward", "on_before_optimizer_step", "on_step_end"]
    epoch = ["on_epoch_start", *step, *step, "on_epoch_end"]
    assert rec.calls == ["on_fit_start", *epoch, *epoch, "on_fit_end"]
    assert t.callbacks == [] and t.global_step == 4


def test_callbacks_see_gradients_and_can_change_them():
    m = net()
    zeroed = LambdaCallback(on_after_backward=lambda tr: [p.grad.data.fill(0) for p in tr.model.parameters()])
    before = [p.data.copy() for p in m.parameters()]
    t = Trainer(m, SGD(m.parameters(), lr=0.5), CrossEntropyLoss(), progress=False)
    t.callbacks.append(zeroed)                                   # kept for every fit
    t.fit(data(), epochs=2)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, m.parameters()))
    t.callbacks.clear()
    t.fit(data(), epochs=1)
    assert not all(np.array_equal(a, p.data) for a, p in zip(before, m.parameters()))


class SkipAll(Callback):
    def __init__(self):
        self.seen = []

    def on_nonfinite(self, trainer, what, value, epoch, step):
        self.seen.append((what, epoch, step))
        return True


def test_on_nonfinite_skips_the_step_without_touching_the_weights():
    batches = data(3)
    bad = (Tensor(np.full((8, 3), np.nan, dtype=np.float32)), batches[0][1])
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    skip = SkipAll()
    h = t.fit([batches[0], bad, batches[1]], epochs=1, callbacks=[skip])
    assert skip.seen == [("loss", 1, 2)] and t.skipped_steps == 1 and t.global_step == 2
    assert all(np.isfinite(p.data).all() for p in m.parameters()) and np.isfinite(h["train_loss"][0])
    with pytest.raises(NonFiniteLossError, match="every step of epoch 2 had a non-finite loss"):
        t.fit([bad, bad], epochs=1, callbacks=[SkipAll()])
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, step 1"):   # epoch 2 never completed
        t.fit([bad], epochs=1)                                   # no callback skips: training stops


def test_should_stop_ends_the_epoch_and_the_fit():
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)

    def stop(tr, step, loss):
        tr.should_stop = tr.global_step == 6
    h = t.fit(data(4), epochs=10, callbacks=LambdaCallback(on_step_end=stop))
    assert t.global_step == 6 and len(h["train_loss"]) == 2 and t.epoch == 2 and not t.stopped_early


class Halved(Trainer):
    "A compute_loss override: the loss of the model's output halved, averaged over twice the examples."
    def compute_loss(self, x, y):
        out = self.model(x if isinstance(x, Tensor) else Tensor(x))
        return self.loss_fn(out, y) * 0.5, out, 2 * len(y.data)


def test_compute_loss_override_drives_train_and_evaluate():
    batches = data(2)
    a, b = net(1), net(1)
    plain = Trainer(a, SGD(a.parameters(), lr=0.2), CrossEntropyLoss(), progress=False)
    half = Halved(b, SGD(b.parameters(), lr=0.4), CrossEntropyLoss(), progress=False)
    hp, hh = plain.fit(batches, batches, epochs=3), half.fit(batches, batches, epochs=3)
    for p, q in zip(a.parameters(), b.parameters()):            # lr 0.4 on half the loss = lr 0.2 on the loss
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hh["train_loss"], np.array(hp["train_loss"]) * 0.5, rtol=1e-5)
    np.testing.assert_allclose(hh["val_loss"], np.array(hp["val_loss"]) * 0.5, rtol=1e-5)


def test_nothing_to_count_skips_a_batch():
    class NoCount(Trainer):
        def compute_loss(self, x, y):
            loss, out, n = super().compute_loss(x, y)
            return loss, out, 0 if float(np.asarray(y.data).sum()) < 0 else n
    m = net()
    t = NoCount(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    t.fit(data(2), epochs=1)
    assert t.global_step == 2
    with pytest.raises(ValueError, match="no batch of epoch 2 had anything to learn from"):
        t.fit([(data(1)[0][0], Tensor(np.full(8, -100, dtype=np.int64)))], epochs=1)


def test_early_stopping_is_a_callback_and_inf_clip_measures_only():
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=1e-9), MSELoss(), clip_grad_norm=math.inf, progress=False)
    x = Tensor(np.ones((4, 3), dtype=np.float32))
    y = Tensor(np.zeros((4, 2), dtype=np.float32))
    h = t.fit([(x, y)], epochs=50, callbacks=[EarlyStopping(patience=2, min_delta=1.0)])
    assert t.stopped_early and len(h["train_loss"]) == 3
    assert t.last_grad_norm is not None and t.last_grad_norm > 0


def test_callback_errors_name_the_value():
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    with pytest.raises(TypeError, match="callbacks must be Callback objects"):
        t.fit(data(1), callbacks=[lambda tr: None])
    with pytest.raises(ValueError, match=r"unknown hooks \['on_batch'\]"):
        LambdaCallback(on_batch=print)
    with pytest.raises(TypeError, match="on_step_end must be a function, got 3"):
        LambdaCallback(on_step_end=3)


# ------------------------------------------------------------------------------------------------
# 07_training_callbacks: PeriodicEval, SkipNonFinite, DivergenceStop
# ------------------------------------------------------------------------------------------------
from tinytorch.core.callbacks import DivergenceStop, PeriodicEval, SkipNonFinite  # noqa: E402


def test_periodic_eval_records_a_curve_and_evaluations():
    m = net()
    t = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    seen = []
    watch = PeriodicEval(data(2, seed=1), every=3, curve_every=2, log=lambda tr, k, tl, v: seen.append((k, tl, v)))
    t.fit(data(4), epochs=2, callbacks=[watch])                  # 8 steps, 0-based 0..7
    assert watch.history["step"] == [0, 3, 6, 7] and watch.history["train_step"] == [0, 2, 4, 6]
    fresh = Trainer(m, SGD(m.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    assert watch.history["val_loss"][-1] == pytest.approx(fresh.evaluate(data(2, seed=1))["loss"], rel=1e-6)
    assert [k for k, _, _ in seen] == [0, 3, 6, 7] and all(np.isfinite(tl) for _, tl, _ in seen)
    assert m.training                                            # evaluate restored the mode
    with pytest.raises(ValueError, match="every must be a positive integer"):
        PeriodicEval([], every=0)


def test_skip_non_finite_lowers_the_rate_records_and_warns():
    batches = data(3)
    bad = (Tensor(np.full((8, 3), np.inf, dtype=np.float32)), batches[0][1])
    m = net()
    opt = SGD(m.parameters(), lr=0.4)
    from tinytorch.core.training import StepLR
    sched = StepLR(opt, step_size=100)
    t = Trainer(m, opt, CrossEntropyLoss(), scheduler=sched, progress=False)
    skip = SkipNonFinite(backoff=0.25, who="demo")
    with pytest.warns(RuntimeWarning, match=r"demo: epoch 1, step 2: the loss is nan; the step was skipped and the "
                                            r"learning rate lowered to 0.1"):
        t.fit([batches[0], bad, batches[1]], epochs=1, callbacks=[skip])
    assert skip.skipped == [{"epoch": 1, "step": 2, "loss": skip.skipped[0]["loss"], "grad_norm": None, "lr": [0.1]}]
    assert math.isnan(skip.skipped[0]["loss"]) and sched.base_lrs == [0.1] and t.global_step == 2
    with pytest.raises(ValueError, match=r"lr_backoff must be a finite number in \(0, 1\)"):
        SkipNonFinite(backoff=1.0)


def test_divergence_stop_stops_or_raises():
    def run(action):
        m = net()
        t = Trainer(m, SGD(m.parameters(), lr=0.01), MSELoss(), progress=False)
        x = Tensor(np.ones((4, 3), dtype=np.float32))
        grow = [(x, Tensor(np.full((4, 2), v, dtype=np.float32))) for v in (0.0,) * 3 + (10.0, 20.0, 40.0, 80.0) * 3]
        guard = DivergenceStop(factor=2.0, action=action, window=3, who="demo")
        return t, guard, t.fit(grow, epochs=1, callbacks=[guard])
    with pytest.warns(RuntimeWarning, match="demo: diverged at epoch 1, step 6"):
        t, guard, h = run("stop")
    assert guard.diverged["step"] == 6 and t.global_step == 6 and t.should_stop
    assert guard.diverged["loss"] > 2 * max(guard.diverged["start_loss"], 1.0)
    with pytest.raises(FloatingPointError, match="demo: diverged at epoch 1, step 6"):
        run("raise")
    with pytest.raises(ValueError, match="divergence_factor must be a finite number > 1"):
        DivergenceStop(factor=0.5)
    with pytest.raises(ValueError, match="unknown on_divergence 'warn'"):
        DivergenceStop(action="warn")
