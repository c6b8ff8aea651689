"""Module 07 (training): schedulers and clip_grad_norm against PyTorch, checkpoints (round trip, resume,
atomic save, no pickle, clear errors), the non-finite-loss stop, early stopping, history, and the
Trainer on plain lists of batches."""
import math
import os

import numpy as np
import pytest
import torch

from tinytorch.core import autograd
from tinytorch.core.activations import ReLU, Tanh
from tinytorch.core.layers import Dropout, Linear, Module, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import (CosineAnnealingLR, EarlyStopping, LinearWarmup, NonFiniteLossError, StepLR,
                                     Trainer, WarmupCosine, accuracy, clip_grad_norm, load_checkpoint,
                                     save_checkpoint)

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def two_group_sgd(lrs=(0.1, 0.03)):
    ps = [Parameter(np.zeros(2)) for _ in lrs]
    tps = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    opt = SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, lrs)], lr=1.0)
    topt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tps, lrs)], lr=1.0)
    return opt, topt


def lr_sequences(opt, sched, topt, tsched, steps):
    ours, theirs = [], []
    for _ in range(steps):
        ours.append([g["lr"] for g in opt.param_groups])
        theirs.append([g["lr"] for g in topt.param_groups])
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    ours.append(sched.get_last_lr())
    theirs.append(tsched.get_last_lr())
    return np.array(ours), np.array(theirs)


def classification_data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3))
    y = (x @ w).argmax(axis=1)
    return x, y


def as_batches(x, y, size, tensors=True):
    out = []
    for i in range(0, len(y), size):
        xb, yb = x[i:i + size], y[i:i + size]
        out.append((Tensor(xb), Tensor(yb)) if tensors else (xb, yb))
    return out


def mlp(seed=0, hidden=16):
    r = np.random.default_rng(seed)
    return Sequential(Linear(4, hidden, rng=r), Tanh(), Linear(hidden, 3, rng=r))


# ------------------------------------------------------------------------------------------------
# schedulers vs torch.optim.lr_scheduler
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step_size,gamma", [(1, 0.9), (3, 0.5), (7, 0.1)])
def test_steplr_matches_torch(step_size, gamma):
    opt, topt = two_group_sgd()
    ours, theirs = lr_sequences(opt, StepLR(opt, step_size, gamma), topt,
                                torch.optim.lr_scheduler.StepLR(topt, step_size, gamma), 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    assert ours[-1, 0] < ours[0, 0]


@pytest.mark.parametrize("T_max,eta_min", [(10, 0.0), (7, 0.01), (1, 0.0)])
def test_cosine_annealing_matches_torch_including_past_T_max(T_max, eta_min):
    opt, topt = two_group_sgd()
    ours, theirs = lr_sequences(opt, CosineAnnealingLR(opt, T_max, eta_min), topt,
                                torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max, eta_min), 3 * T_max + 2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours[T_max], [eta_min, eta_min], atol=1e-15)   # the minimum at T_max


@pytest.mark.parametrize("warmup,start", [(5, 0.1), (3, 1 / 3), (1, 0.5)])
def test_linear_warmup_matches_torch_linear_lr(warmup, start):
    opt, topt = two_group_sgd()
    ours, theirs = lr_sequences(opt, LinearWarmup(opt, warmup, start_factor=start), topt,
                                torch.optim.lr_scheduler.LinearLR(topt, start_factor=start, total_iters=warmup),
                                warmup + 4)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_warmup_cosine_formula():
    opt = SGD([Parameter([0.0])], lr=0.6)
    s = WarmupCosine(opt, warmup_steps=5, total_steps=15, min_lr=0.06)
    seq = [opt.param_groups[0]["lr"]]
    for _ in range(20):
        s.step()
        seq.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(seq[:5], [0.6 * (t + 1) / 6 for t in range(5)], rtol=1e-12)
    assert seq[5] == pytest.approx(0.6)
    for t in range(5, 15):
        assert seq[t] == pytest.approx(0.06 + 0.54 * (1 + math.cos(math.pi * (t - 5) / 10)) / 2, rel=1e-12)
    assert seq[15:] == [0.06] * 6
    assert s.interval == "step" and StepLR(SGD([Parameter([0.0])], lr=1.0), 2).interval == "epoch"


def test_scheduler_state_dict_resumes_the_sequence():
    opt = SGD([Parameter([0.0])], lr=1.0)
    s = CosineAnnealingLR(opt, T_max=20, eta_min=0.1)
    for _ in range(7):
        s.step()
    sd = s.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in sd.values())
    opt2 = SGD([Parameter([0.0])], lr=1.0)
    s2 = CosineAnnealingLR(opt2, T_max=20, eta_min=0.1)
    s2.load_state_dict(sd)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    for _ in range(5):
        s.step()
        s2.step()
        assert s2.get_last_lr() == s.get_last_lr() and s2.last_epoch == s.last_epoch
    with pytest.raises(ValueError, match="missing keys"):
        StepLR(SGD([Parameter([0.0])], lr=1.0), 3).load_state_dict(sd)


@pytest.mark.parametrize("make,match", [
    (lambda o: StepLR(o, step_size=0), r"step_size must be a positive integer \(>= 1\), got 0"),
    (lambda o: StepLR(o, step_size=2.5), r"step_size must be a positive integer \(>= 1\), got 2.5"),
    (lambda o: StepLR(o, 2, gamma=0), "gamma must be a finite number > 0, got 0"),
    (lambda o: CosineAnnealingLR(o, T_max=-3), r"T_max must be a positive integer \(>= 1\), got -3"),
    (lambda o: CosineAnnealingLR(o, T_max=3, eta_min=-1.0), "eta_min must be a finite number >= 0, got -1.0"),
    (lambda o: LinearWarmup(o, 4, start_factor=1.5), r"start_factor must be a finite number in \(0, 1\], got 1.5"),
    (lambda o: WarmupCosine(o, 10, 10), r"total_steps \(10\) must be larger than warmup_steps \(10\)"),
])
def test_scheduler_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(SGD([Parameter([0.0])], lr=1.0))
    with pytest.raises(TypeError, match="expected an Optimizer, got list"):
        StepLR([Parameter([0.0])], 2)


# ------------------------------------------------------------------------------------------------
# clip_grad_norm vs torch.nn.utils.clip_grad_norm_
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (3,), (2, 2, 5), (1,)]
    grads = [rng.standard_normal(s) for s in shapes]
    ours = [Parameter(np.zeros(s), dtype=np.float64) for s in shapes]
    theirs = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = Tensor(g.copy(), dtype=np.float64)
        q.grad = torch.from_numpy(g.copy())
    ours[3].grad, theirs[3].grad = None, None                  # a parameter without a gradient is ignored
    arrays = [p.grad.data for p in ours[:3]]
    total = clip_grad_norm(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    for p, q, a in zip(ours[:3], theirs[:3], arrays):
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-12, atol=1e-15)
        assert p.grad.data is a                                # scaled in place
    clipped_norm = clip_grad_norm(ours, 1e9, norm_type=norm_type)
    assert clipped_norm == pytest.approx(min(total, max_norm), rel=1e-5)


def test_clip_grad_norm_float32_single_tensor_and_errors():
    rng = np.random.default_rng(8)
    g = rng.standard_normal((64, 32)).astype(np.float32) * 10
    p = Parameter(np.zeros((64, 32), dtype=np.float32))
    q = torch.nn.Parameter(torch.zeros(64, 32))
    p.grad, q.grad = Tensor(g.copy()), torch.from_numpy(g.copy())
    total = clip_grad_norm(p, 1.0)                            # a single Tensor, as torch accepts
    assert total == pytest.approx(float(torch.nn.utils.clip_grad_norm_(q, 1.0)), rel=1e-5)
    np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert p.grad.data.dtype == np.float32
    with pytest.raises(ValueError, match="max_norm must be a number >= 0, got -1"):
        clip_grad_norm([p], -1)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        clip_grad_norm([p], 1.0, norm_type=0)
    p.grad = Tensor(np.array([[np.nan]], dtype=np.float32).repeat(64, 0).repeat(32, 1))
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is nan"):
        clip_grad_norm([p], 1.0, error_if_nonfinite=True)


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def trained_setup(steps=3, seed=0):
    x, y = classification_data(64, seed)
    model = Sequential(Linear(4, 8, rng=np.random.default_rng(seed)), ReLU(), Linear(8, 3, rng=np.random.default_rng(seed + 1)))
    opt = AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    loss_fn = CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(Tensor(x)), Tensor(y)).backward()
        opt.step()
        sched.step()
    return model, opt, sched, (x, y)


def one_step(model, opt, batch):
    opt.zero_grad()
    CrossEntropyLoss()(model(Tensor(batch[0])), Tensor(batch[1])).backward()
    opt.step()


def test_checkpoint_round_trip_and_resumed_training_gives_identical_next_step(tmp_path):
    model, opt, sched, batch = trained_setup()
    path = tmp_path / "ckpt.npz"
    returned = save_checkpoint(path, model, opt, scheduler=sched, epoch=3, name="run-a", losses=[0.9, 0.5],
                               curve=np.arange(4.0), config={"lr": 0.01, "layers": [4, 8, 3]})
    assert returned == str(path) and path.is_file()

    model2 = Sequential(Linear(4, 8), ReLU(), Linear(8, 3))
    opt2 = AdamW(model2.parameters(), lr=0.5, weight_decay=0.0)
    sched2 = StepLR(opt2, step_size=2, gamma=0.5)
    arrays = [p.data for p in model2.parameters()]
    extra = load_checkpoint(path, model2, opt2, scheduler=sched2)
    assert extra["epoch"] == 3 and extra["name"] == "run-a" and extra["losses"] == [0.9, 0.5]
    assert extra["config"] == {"lr": 0.01, "layers": [4, 8, 3]}
    np.testing.assert_array_equal(extra["curve"], np.arange(4.0))
    assert all(p.data is a for p, a in zip(model2.parameters(), arrays))            # loaded in place
    for (k, v), (k2, v2) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert k == k2 and np.array_equal(v, v2)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.005
    assert opt2.param_groups[0]["weight_decay"] == 0.05 and sched2.last_epoch == sched.last_epoch == 3

    for _ in range(2):                                   # the next steps are identical, bit for bit
        one_step(model, opt, batch)
        one_step(model2, opt2, batch)
        sched.step()
        sched2.step()
        for p, q in zip(model.parameters(), model2.parameters()):
            assert np.array_equal(p.data, q.data)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_trainer_save_and_load_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = classification_data(96, seed=2)
    data = as_batches(x, y, 32)

    def run(epochs, resume=None, save=None):
        model = mlp(seed=4)
        opt = Adam(model.parameters(), lr=0.02)
        t = Trainer(model, opt, CrossEntropyLoss(), metrics=["accuracy"],
                    scheduler=CosineAnnealingLR(opt, T_max=8), progress=False)
        if resume:
            t.load(resume)
        t.fit(data, data, epochs=epochs - t.epoch)
        if save:
            t.save(save)
        return model, t

    straight, ts = run(8)
    run(3, save=tmp_path / "t.npz")
    resumed, tr = run(8, resume=tmp_path / "t.npz")
    assert tr.epoch == 8 and tr.global_step == ts.global_step == 24
    for k in ts.history:
        if k != "epoch_time":
            assert tr.history[k] == ts.history[k], k
    assert all(np.array_equal(p.data, q.data) for p, q in zip(straight.parameters(), resumed.parameters()))


class _FailingSavez:
    "Writes part of a zip file, then fails like a full disk or a Ctrl-C."
    def __init__(self, exc):
        self.exc, self.calls = exc, 0

    def __call__(self, file, *args, **kwargs):
        self.calls += 1
        file.write(b"PK\x03\x04" + b"\x00" * 100)
        raise self.exc


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "ctrl-c"])
def test_interrupted_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch, exc):
    model, opt, _, _ = trained_setup()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, epoch=1)
    old = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    old_bytes = path.read_bytes()
    for p in model.parameters():
        p.data[...] = 42.0
    failing = _FailingSavez(exc)
    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(type(exc)):
        save_checkpoint(path, model, opt, epoch=2)
    monkeypatch.undo()
    assert failing.calls == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]           # no temporary file left behind
    assert path.read_bytes() == old_bytes
    fresh = Sequential(Linear(4, 8), ReLU(), Linear(8, 3))
    fresh_opt = AdamW(fresh.parameters())
    assert load_checkpoint(path, fresh, fresh_opt)["epoch"] == 1
    for k, v in fresh.state_dict().items():
        assert np.array_equal(v, old[k]), k


def test_save_replaces_an_existing_checkpoint_and_keeps_the_exact_path(tmp_path):
    model, opt, _, _ = trained_setup()
    path = tmp_path / "latest"                       # no .npz suffix: the path is used as given
    save_checkpoint(path, model, epoch=1)
    save_checkpoint(path, model, opt, epoch=2)
    assert sorted(os.listdir(tmp_path)) == ["latest"]
    assert load_checkpoint(path, Sequential(Linear(4, 8), ReLU(), Linear(8, 3)))["epoch"] == 2


def test_checkpoint_needs_no_pickle_and_rejects_pickled_entries(tmp_path):
    model, opt, sched, _ = trained_setup()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, scheduler=sched, epoch=3, note="hello")
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}                     # every entry reads without pickle
    assert all(v.dtype != object for v in entries.values())
    assert any(k.startswith("model/") for k in entries) and any(k.startswith("optimizer/") for k in entries)

    crafted = tmp_path / "crafted.npz"
    entries["extra/payload"] = np.array([{"evil": 1}, None], dtype=object)
    np.savez(crafted, **entries)                                  # np.savez pickles object arrays
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(crafted, Sequential(Linear(4, 8), ReLU(), Linear(8, 3)))
    with pytest.raises(TypeError, match="extra 'obj' contains a object"):
        save_checkpoint(tmp_path / "x.npz", model, obj=object())
    with pytest.raises(TypeError, match="extra 'arr' is an object array"):
        save_checkpoint(tmp_path / "x.npz", model, arr=np.array([None, 1], dtype=object))
    assert not (tmp_path / "x.npz").exists()


def test_load_checkpoint_clear_errors(tmp_path):
    model, opt, _, _ = trained_setup()
    good = tmp_path / "good.npz"
    save_checkpoint(good, model)                                   # no optimizer saved

    plain = tmp_path / "plain.npz"
    np.savez(plain, weight=np.ones(3))
    with pytest.raises(ValueError, match="not a tinytorch checkpoint: it has no '__tinytorch__/meta' entry"):
        load_checkpoint(plain, model)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="not a tinytorch checkpoint: cannot read it as an .npz"):
        load_checkpoint(garbage, model)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_checkpoint(truncated, model)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match="single array"):
        load_checkpoint(single, model)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz", model)

    wider = Sequential(Linear(4, 9), ReLU(), Linear(9, 3))
    before = [p.data.copy() for p in wider.parameters()]
    with pytest.raises(ValueError, match=r"0.weight has shape \(9, 4\) in the model but \(8, 4\)"):
        load_checkpoint(good, wider)
    assert all(np.array_equal(p.data, b) for p, b in zip(wider.parameters(), before))    # nothing changed
    deeper = Sequential(Linear(4, 8), ReLU(), Linear(8, 3), ReLU(), Linear(3, 3))
    with pytest.raises(ValueError, match=r"missing keys \['4.weight', '4.bias'\], unexpected keys \[\]"):
        load_checkpoint(good, deeper)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(good, model, Adam(model.parameters()))

    with_opt = tmp_path / "with_opt.npz"
    save_checkpoint(with_opt, model, opt)
    other = Sequential(Linear(4, 8), ReLU(), Linear(8, 3))
    other_before = [p.data.copy() for p in other.parameters()]
    with pytest.raises(ValueError, match="holds the state of a AdamW, not of a SGD"):
        load_checkpoint(with_opt, other, SGD(other.parameters(), lr=0.1))
    assert all(np.array_equal(p.data, b) for p, b in zip(other.parameters(), other_before))


# ------------------------------------------------------------------------------------------------
# the Trainer
# ------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_loss_stops_before_the_step_naming_epoch_and_step():
    x, y = classification_data(96)
    good = as_batches(x, y, 32)
    model = mlp()
    t = Trainer(model, SGD(model.parameters(), lr=0.1, momentum=0.9), CrossEntropyLoss(), progress=False)
    t.fit(good, epochs=1)
    bad_x = x[:32].copy()
    bad_x[5, 2] = np.nan                                  # one bad value in the data -> NaN logits
    data = [good[0], good[1], (Tensor(bad_x), Tensor(y[:32]))]
    snapshot = {}

    class Spy(SGD):
        def step(self, closure=None):
            super().step(closure)
            snapshot.update({i: p.data.copy() for i, p in enumerate(model.parameters())})

    t.optimizer = Spy(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, step 3"):
        t.fit(data, epochs=3)
    for i, p in enumerate(model.parameters()):
        assert np.isfinite(p.data).all()
        assert np.array_equal(p.data, snapshot[i])       # exactly the weights after the last good step
        assert p.grad is None                            # zero_grad ran, backward did not
    assert t.global_step == 5 and t.epoch == 1
    # an inf input through tanh gives a finite loss but inf/NaN gradients: with clipping on, that stops too
    inf_x = x[:32].copy()
    inf_x[0, 0] = np.inf
    model = mlp()
    before = [p.data.copy() for p in model.parameters()]
    t = Trainer(model, SGD(model.parameters(), lr=0.1), CrossEntropyLoss(), clip_grad_norm=1.0, progress=False)
    assert math.isfinite(CrossEntropyLoss()(model(Tensor(inf_x)), Tensor(y[:32])).item())
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient norm \(nan\) at epoch 1, step 1"):
        t.fit([(Tensor(inf_x), Tensor(y[:32]))], epochs=1)
    assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        Trainer(mlp(), SGD(mlp().parameters(), lr=0.1), MSELoss(), progress=False).fit(
            [(Tensor(np.ones((2, 4))), Tensor(np.full((2, 3), np.inf, dtype=np.float32)))])


def test_early_stopping_stops_training():
    x, y = classification_data(96)
    data = as_batches(x, y, 32)
    model = mlp()
    t = Trainer(model, SGD(model.parameters(), lr=1e-7), CrossEntropyLoss(), progress=False)
    h = t.fit(data, data, epochs=100, early_stopping=EarlyStopping(patience=2, min_delta=1e-3))
    assert t.stopped_early and len(h["val_loss"]) == 3 and t.epoch == 3
    # an int is a patience; without validation data the training loss is monitored
    t2 = Trainer(mlp(), SGD(mlp().parameters(), lr=1e-7), CrossEntropyLoss(), progress=False)
    assert len(t2.fit(data, epochs=50, early_stopping=4)["train_loss"]) == 5 and t2.stopped_early
    # a real learning rate keeps improving: no early stop within 5 epochs
    model = mlp()
    t3 = Trainer(model, Adam(model.parameters(), lr=0.01), CrossEntropyLoss(), progress=False)
    assert len(t3.fit(data, data, epochs=5, early_stopping=2)["val_loss"]) == 5 and not t3.stopped_early
    with pytest.raises(ValueError, match="monitors 'val_accuracy', which is not in the history"):
        t3.fit(data, data, epochs=1, early_stopping=EarlyStopping(monitor="val_accuracy", mode="max"))


def test_early_stopping_rules():
    es = EarlyStopping(patience=2, min_delta=0.1, mode="max")
    # 0.61 beats 0.5 by more than 0.1; 0.62 and 0.7 do not beat 0.61 by more than 0.1: stop after 0.7
    assert [es(v) for v in [0.5, 0.55, 0.61, 0.62, 0.7]] == [False, False, False, False, True]
    assert es.best == 0.61 and es.best_epoch == 3 and es.num_bad_epochs == 2
    assert es(0.75) is False and es.best == 0.75 and es.num_bad_epochs == 0
    es = EarlyStopping(patience=0)
    assert [es(v) for v in [3.0, 2.0, 2.5]] == [False, False, True]
    es = EarlyStopping(patience=1)
    assert es(float("nan")) is True                        # NaN is never an improvement
    assert es.best is None and es.num_bad_epochs == 1
    with pytest.raises(ValueError, match="unknown mode 'maximum'; known: 'min', 'max'"):
        EarlyStopping(mode="maximum")
    with pytest.raises(ValueError, match="patience must be an integer >= 0, got -1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0, got -0.5"):
        EarlyStopping(min_delta=-0.5)


def test_history_contents_and_weighted_epoch_means():
    x, y = classification_data(71, seed=3)               # batches of 32, 32 and 7
    train, val = as_batches(x[:50], y[:50], 16), as_batches(x[50:], y[50:], 8)
    model = mlp(seed=1)
    opt = Adam(model.parameters(), lr=0.01)
    t = Trainer(model, opt, CrossEntropyLoss(), metrics={"acc": accuracy, "top": "accuracy"},
                scheduler=StepLR(opt, step_size=1, gamma=0.5), clip_grad_norm=1.0, progress=False)
    h = t.fit(train, val, epochs=4)
    assert set(h) == {"lr", "train_loss", "train_acc", "train_top", "val_loss", "val_acc", "val_top", "epoch_time"}
    assert all(len(v) == 4 for v in h.values())
    assert h["lr"] == [0.01, 0.005, 0.0025, 0.00125]
    assert h["train_acc"] == h["train_top"] and all(0 <= a <= 1 for a in h["val_acc"])
    assert t.last_grad_norm is not None and t.last_grad_norm > 0
    # val_loss is the mean over all examples (batches of 8, 8 and 5), not the mean of batch means
    full = CrossEntropyLoss()(model(Tensor(x[50:])), Tensor(y[50:])).item()
    assert h["val_loss"][-1] == pytest.approx(full, rel=1e-5)
    assert t.evaluate(val)["loss"] == pytest.approx(full, rel=1e-5)
    assert h["val_acc"][-1] == pytest.approx(accuracy(model(Tensor(x[50:])), y[50:]))
    # a second fit continues the history and the epoch count
    t.fit(train, val, epochs=2)
    assert len(h["train_loss"]) == 6 and t.epoch == 6


def test_trainer_with_a_plain_list_of_numpy_batches_and_with_generators():
    x, y = classification_data(160, seed=5)
    data = as_batches(x, y, 20, tensors=False)           # plain (ndarray, ndarray) tuples
    assert isinstance(data, list) and isinstance(data[0][0], np.ndarray)
    model = mlp(seed=2, hidden=32)
    t = Trainer(model, Adam(model.parameters(), lr=0.02), CrossEntropyLoss(), metrics="accuracy", progress=False)
    h = t.fit(data, data, epochs=25)
    assert h["train_loss"][-1] < 0.4 * h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    gen = (b for b in data)                               # a one-shot generator: fine for one epoch...
    t.fit(gen, epochs=1)
    gen = (b for b in data)
    with pytest.raises(ValueError, match="yielded no batches in epoch 28"):     # ...not for two
        t.fit(gen, epochs=2)
    with pytest.raises(TypeError, match="must be an \\(x, y\\) pair; batch 1"):
        t.fit([Tensor(x[:4])], epochs=1)


def test_evaluate_runs_under_no_grad_in_eval_mode_and_restores_modes():
    seen = []

    class Probe(Module):
        def __init__(self):
            super().__init__()
            self.fc = Linear(4, 3)
            self.drop = Dropout(0.5)

        def forward(self, x):
            seen.append((self.training, self.drop.training, autograd.is_grad_enabled()))
            return self.fc(self.drop(x))

    x, y = classification_data(32)
    model = Probe()
    t = Trainer(model, SGD(model.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    out = t.evaluate(as_batches(x, y, 16))
    assert seen == [(False, False, False)] * 2 and set(out) == {"loss"}
    assert model.training and model.drop.training and autograd.is_grad_enabled()
    model.drop.eval()                                     # a mixed state is restored exactly
    t.evaluate(as_batches(x, y, 16))
    assert model.training and not model.drop.training
    seen.clear()
    model.train()
    t.fit(as_batches(x, y, 16), epochs=1)
    assert seen == [(True, True, True)] * 2


def test_per_step_scheduler_and_progress_bar(capsys):
    x, y = classification_data(100)
    data = as_batches(x, y, 20)
    model = mlp()
    opt = Adam(model.parameters(), lr=0.01)
    sched = WarmupCosine(opt, warmup_steps=3, total_steps=10)
    t = Trainer(model, opt, CrossEntropyLoss(), scheduler=sched, progress=False)
    t.fit(data, epochs=2)
    assert sched.last_epoch == 10 and t.global_step == 10 and opt.param_groups[0]["lr"] == 0.0
    assert capsys.readouterr().err == ""                  # progress=False prints nothing
    t2 = Trainer(mlp(), SGD(mlp().parameters(), lr=0.01), CrossEntropyLoss(), progress=True)
    t2.fit(data, epochs=1)
    out, err = capsys.readouterr()
    assert "epoch 1/1" in err and "/5" in err               # the bar, on stderr
    assert "epoch 1: lr 0.01, train_loss" in out            # the epoch summary, on stdout


def test_trainer_bad_arguments():
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be an Optimizer, got torch.optim.sgd.SGD"):
        Trainer(model, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), CrossEntropyLoss())
    with pytest.raises(TypeError, match="model must be a Module, got function"):
        Trainer(lambda x: x, opt, CrossEntropyLoss())
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        Trainer(model, opt, CrossEntropyLoss(), metrics=["f1"])
    with pytest.raises(ValueError, match="clip_grad_norm must be a finite number > 0, got -1"):
        Trainer(model, opt, CrossEntropyLoss(), clip_grad_norm=-1)
    with pytest.raises(ValueError, match=r"epochs must be a positive integer \(>= 1\), got 0"):
        Trainer(model, opt, CrossEntropyLoss(), progress=False).fit([], epochs=0)
