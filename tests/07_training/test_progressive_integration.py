"""Module 07 (Training): progressive integration tests.

  A. TestStackBelow         -- modules 01-06 still work (a hand-written loop with an optimizer trains).
  B. Training core:
       TestTrainingCore     -- Trainer.fit / evaluate / history, schedules, clipping, early stopping,
                               checkpoints, each on its own
  C. TestTrainingInTheStack -- a real model trained end to end with AdamW, warm-up + cosine, clipping,
                               early stopping and a re-iterable shuffling loader (a stand-in for module
                               08's DataLoader, which this module must not need); its best checkpoint,
                               loaded into a fresh model, evaluates identically.
"""
import numpy as np
import pytest

from tinytorch.core import autograd
from tinytorch.core.activations import GELU, ReLU, Tanh
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dropout, Linear, Sequential
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss
from tinytorch.core.activations import Sigmoid
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import (CosineAnnealingLR, EarlyStopping, StepLR, Trainer, WarmupCosine, accuracy,
                                     clip_grad_norm, load_checkpoint, save_checkpoint)


@pytest.fixture(autouse=True)
def _recording_on():
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


def blobs(n=300, classes=3, dim=2, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-3, 3, (classes, dim))
    y = rng.integers(0, classes, n)
    x = (centers[y] + spread * rng.standard_normal((n, dim))).astype(np.float32)
    return x, y


def batches(x, y, size):
    return [(Tensor(x[i:i + size]), Tensor(y[i:i + size])) for i in range(0, len(y), size)]


# ================================================================================================
# A. Modules 01-06 still work
# ================================================================================================
class TestStackBelow:
    def test_tensor_layers_losses_autograd(self):
        seq = Sequential(Linear(3, 4), GELU(), Linear(4, 2))
        x = Tensor(np.ones((5, 3)))
        out = seq(x)
        assert out.shape == (5, 2) and out.dtype == np.float32
        loss = CrossEntropyLoss()(out, Tensor(np.zeros(5, dtype=np.int64)))
        loss.backward()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in seq.parameters())
        with no_grad():
            assert not seq(x).requires_grad

    def test_an_optimizer_trains_in_a_hand_written_loop(self):
        x, y = blobs(120)
        model = Sequential(Linear(2, 16), Tanh(), Linear(16, 3))
        opt, loss_fn = Adam(model.parameters(), lr=0.05), CrossEntropyLoss()
        xt, yt = Tensor(x), Tensor(y)
        losses = []
        for _ in range(60):
            opt.zero_grad()
            loss = loss_fn(model(xt), yt)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.2 * losses[0]
        sd = opt.state_dict()
        assert all(isinstance(v, np.ndarray) for v in sd.values()) and "state.0.exp_avg" in sd


# ================================================================================================
# B. Training core
# ================================================================================================
class TestTrainingCore:
    def test_fit_evaluate_history(self):
        x, y = blobs(200)
        train, val = batches(x[:150], y[:150], 25), batches(x[150:], y[150:], 50)
        model = Sequential(Linear(2, 16), ReLU(), Linear(16, 3))
        t = Trainer(model, SGD(model.parameters(), lr=0.1, momentum=0.9), CrossEntropyLoss(),
                    metrics=["accuracy"], progress=False)
        h = t.fit(train, val, epochs=10)
        assert h is t.history and {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr"} <= set(h)
        assert len(h["train_loss"]) == len(h["val_accuracy"]) == 10
        assert h["train_loss"][-1] < h["train_loss"][0] and h["val_accuracy"][-1] > 0.9
        ev = t.evaluate(val)
        assert ev["loss"] == pytest.approx(h["val_loss"][-1]) and ev["accuracy"] == h["val_accuracy"][-1]

    def test_schedules_in_the_trainer(self):
        x, y = blobs(100)
        data = batches(x, y, 20)
        model = Sequential(Linear(2, 3))
        opt = SGD(model.parameters(), lr=1.0)
        t = Trainer(model, opt, CrossEntropyLoss(), scheduler=StepLR(opt, step_size=2, gamma=0.1), progress=False)
        assert t.fit(data, epochs=5)["lr"] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
        opt = SGD(model.parameters(), lr=1.0)
        sched = CosineAnnealingLR(opt, T_max=10)
        Trainer(model, opt, CrossEntropyLoss(), scheduler=sched, scheduler_interval="step", progress=False).fit(data, epochs=2)
        assert sched.last_epoch == 10 and opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)

    def test_clip_grad_norm_bounds_the_update(self):
        lin = Linear(4, 4)
        lin(Tensor(np.full((8, 4), 100.0))).sum().backward()
        total = clip_grad_norm(lin.parameters(), 1.0)
        assert total > 100
        norm = np.sqrt(sum(float((q.grad.data.astype(np.float64) ** 2).sum()) for q in lin.parameters()))
        assert norm == pytest.approx(1.0, rel=1e-5)

    def test_early_stopping_and_checkpoint_functions(self, tmp_path):
        es = EarlyStopping(patience=1)
        assert [es(v) for v in (1.0, 0.5, 0.6)] == [False, False, True]
        model = Sequential(Linear(2, 3))
        save_checkpoint(tmp_path / "c.npz", model, step=7)
        other = Sequential(Linear(2, 3))
        assert load_checkpoint(tmp_path / "c.npz", other) == {"step": 7}
        assert np.array_equal(other[0].weight.data, model[0].weight.data)

    def test_binary_classification_and_regression(self):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((200, 3)).astype(np.float32)
        yb = (x.sum(axis=1) > 0).astype(np.float32).reshape(-1, 1)
        model = Sequential(Linear(3, 8), Tanh(), Linear(8, 1), Sigmoid())
        t = Trainer(model, Adam(model.parameters(), lr=0.05), BinaryCrossEntropyLoss(), metrics=["accuracy"],
                    progress=False)
        h = t.fit(batches(x, yb, 40), epochs=30)
        assert h["train_accuracy"][-1] > 0.95
        yr = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
        reg = Sequential(Linear(3, 1))
        t = Trainer(reg, SGD(reg.parameters(), lr=0.1), MSELoss(), progress=False)
        assert t.fit(batches(x, yr, 50), epochs=40)["train_loss"][-1] < 1e-4


# ================================================================================================
# C. Training wired into the stack
# ================================================================================================
class ShufflingLoader:
    "A re-iterable loader with a length, a new order every epoch: what module 08's DataLoader provides."
    def __init__(self, x, y, batch_size, seed=0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.y))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield Tensor(self.x[idx]), Tensor(self.y[idx])


class TestTrainingInTheStack:
    def test_end_to_end_training_with_best_checkpoint(self, tmp_path):
        x, y = blobs(600, classes=4, dim=5, spread=1.2, seed=3)
        train = ShufflingLoader(x[:480], y[:480], 32, seed=1)
        val = ShufflingLoader(x[480:], y[480:], 60, seed=2)
        model = Sequential(Linear(5, 64), GELU(), Dropout(0.1), Linear(64, 4))
        opt = AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
        epochs = 30
        sched = WarmupCosine(opt, warmup_steps=len(train), total_steps=epochs * len(train), min_lr=1e-4)
        trainer = Trainer(model, opt, CrossEntropyLoss(), metrics=["accuracy"], scheduler=sched,
                          clip_grad_norm=1.0, progress=False)
        stopper = EarlyStopping(patience=5, min_delta=1e-4)
        best = tmp_path / "best.npz"
        best_loss = np.inf
        for _ in range(epochs):
            trainer.fit(train, val, epochs=1)
            if trainer.history["val_loss"][-1] < best_loss:
                best_loss = trainer.history["val_loss"][-1]
                trainer.save(best)
            if stopper(trainer.history["val_loss"][-1]):
                break
        h = trainer.history
        assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
        assert max(h["val_accuracy"]) > 0.9, h["val_accuracy"]
        assert trainer.global_step == len(h["train_loss"]) * len(train)
        assert h["lr"][0] < 0.01 and max(h["lr"]) == pytest.approx(0.01, rel=0.05)   # warm-up, then decay
        assert trainer.last_grad_norm is not None and np.isfinite(trainer.last_grad_norm)

        fresh = Sequential(Linear(5, 64), GELU(), Dropout(0.1), Linear(64, 4))
        fresh_opt = AdamW(fresh.parameters())
        fresh_trainer = Trainer(fresh, fresh_opt, CrossEntropyLoss(), metrics=["accuracy"],
                                scheduler=WarmupCosine(fresh_opt, 1, 10), progress=False)
        fresh_trainer.load(best)
        assert fresh_trainer.evaluate(batches(x[480:], y[480:], 60))["loss"] == pytest.approx(best_loss, rel=1e-6)
        assert min(fresh_trainer.history["val_loss"]) == pytest.approx(best_loss)
        assert 0 < fresh_trainer.epoch <= trainer.epoch

    def test_accuracy_metric_shapes(self):
        assert accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5
        assert accuracy(Tensor([[0.7], [0.2], [0.6]]), Tensor([[1.0], [0.0], [0.0]])) == pytest.approx(2 / 3)
        with pytest.raises(ValueError, match=r"predictions of shape \(2,\) .* targets of shape \(3,\)"):
            accuracy(np.ones((2, 3)), np.ones(3))
