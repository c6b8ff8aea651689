"""Can I train a model end to end, schedule its learning rate, and save and resume it safely?"""
import math
import os

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import (CosineAnnealingLR, EarlyStopping, LinearWarmup, NonFiniteLossError, StepLR,
                                     Trainer, WarmupCosine, clip_grad_norm, load_checkpoint, save_checkpoint)


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, n)
    x = (centers[y] + 0.7 * rng.standard_normal((n, 2))).astype(np.float32)
    return [(Tensor(x[i:i + 30]), Tensor(y[i:i + 30])) for i in range(0, n, 30)]


def _model(seed=0):
    r = np.random.default_rng(seed)
    return Sequential(Linear(2, 16, rng=r), ReLU(), Linear(16, 3, rng=r))


def test_clip_grad_norm_scales_all_gradients_by_one_factor():
    a, b = Parameter([0.0, 0.0]), Parameter([0.0])
    a.grad, b.grad = Tensor([3.0, 0.0]), Tensor([4.0])
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.r_[a.grad.data, b.grad.data], [0.6, 0.0, 0.8], rtol=1e-5)
    a.grad, b.grad = Tensor([3.0, -12.0]), Tensor([4.0])
    assert clip_grad_norm([a, b], 100.0) == pytest.approx(13.0)
    np.testing.assert_allclose(a.grad.data, [3.0, -12.0])              # below the bound: unchanged
    assert clip_grad_norm([a, b], 6.0, norm_type=float("inf")) == 12.0
    np.testing.assert_allclose(a.grad.data, [1.5, -6.0], rtol=1e-5)


def test_learning_rate_schedules_follow_their_formulas():
    def run(make, steps):
        opt = SGD([Parameter([0.0])], lr=0.8)
        sched = make(opt)
        seq = [opt.param_groups[0]["lr"]]
        for _ in range(steps):
            opt.step()
            sched.step()
            seq.append(opt.param_groups[0]["lr"])
        return seq

    np.testing.assert_allclose(run(lambda o: StepLR(o, 3, gamma=0.5), 7), [0.8] * 3 + [0.4] * 3 + [0.2] * 2)
    np.testing.assert_allclose(run(lambda o: CosineAnnealingLR(o, T_max=6, eta_min=0.2), 6),
                               [0.2 + 0.6 * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(7)])
    np.testing.assert_allclose(run(lambda o: LinearWarmup(o, 4, start_factor=0.25), 5),
                               [0.2, 0.35, 0.5, 0.65, 0.8, 0.8])
    wc = run(lambda o: WarmupCosine(o, warmup_steps=3, total_steps=9, min_lr=0.08), 10)
    np.testing.assert_allclose(wc[:3], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(wc[3:10], [0.08 + 0.72 * (1 + math.cos(math.pi * (t - 3) / 6)) / 2 for t in range(3, 10)])
    assert wc[10] == 0.08


def test_trainer_trains_end_to_end_and_keeps_a_history():
    data = _data()
    train, val = data[:6], data[6:]
    model = _model()
    opt = Adam(model.parameters(), lr=0.02)
    t = Trainer(model, opt, CrossEntropyLoss(), metrics=["accuracy"], scheduler=StepLR(opt, 10, 0.5),
                clip_grad_norm=5.0, progress=False)
    h = t.fit(train, val, epochs=20)
    assert len(h["train_loss"]) == len(h["val_loss"]) == 20
    assert h["train_loss"][-1] < 0.3 * h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    assert h["lr"][0] == 0.02 and h["lr"][-1] == 0.01
    assert model.training and t.evaluate(val)["loss"] == pytest.approx(h["val_loss"][-1])


def test_a_bad_loss_stops_training_before_the_weights_change():
    data = _data()
    model = _model()
    t = Trainer(model, SGD(model.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    t.fit(data[:1], epochs=1)
    before = [p.data.copy() for p in model.parameters()]
    nan_x = Tensor(np.full((4, 2), np.nan, dtype=np.float32))
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 1"):
        t.fit([(nan_x, Tensor(np.zeros(4, dtype=np.int64)))], epochs=1)
    assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))
    es = EarlyStopping(patience=2, min_delta=0.05)
    assert [es(v) for v in [1.0, 0.9, 0.88, 0.87, 0.5]] == [False, False, False, True, False]


def test_checkpoints_resume_exactly_and_survive_an_interrupted_save(tmp_path, monkeypatch):
    data = _data()
    model = _model(1)
    opt = Adam(model.parameters(), lr=0.01)
    t = Trainer(model, opt, CrossEntropyLoss(), progress=False)
    t.fit(data, epochs=2)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, epoch=2)
    with np.load(path, allow_pickle=False) as z:          # a plain .npz: no pickle needed
        assert all(z[k].dtype != object for k in z.files)

    def broken_savez(file, **arrays):                     # a full disk, half-way through the write
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    saved = [p.data.copy() for p in model.parameters()]
    t.fit(data, epochs=1)
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        save_checkpoint(path, model, opt, epoch=3)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]

    model2 = _model(5)
    opt2 = Adam(model2.parameters(), lr=0.5)
    assert load_checkpoint(path, model2, opt2)["epoch"] == 2
    assert all(np.array_equal(p.data, s) for p, s in zip(model2.parameters(), saved))
    Trainer(model2, opt2, CrossEntropyLoss(), progress=False).fit(data, epochs=1)    # resumed epoch 3
    assert all(np.array_equal(p.data, q.data) for p, q in zip(model2.parameters(), model.parameters()))
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(path, Sequential(Linear(2, 8), ReLU(), Linear(8, 3)))
