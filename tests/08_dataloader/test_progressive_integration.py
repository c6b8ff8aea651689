"""Module 08 (Data): progressive integration tests.

  A. TestStackBelow      -- modules 01-05 still work: tensor construction and indexing (what batching
                            relies on), layers, losses, autograd.
  B. TestDataCore        -- TensorDataset / DataLoader batching, shuffling and epochs; the shipped
                            digits (fixed 1437/360 split) and tiny-shakespeare.
  C. TestDataInTheStack  -- a model trained on digits from a shuffled DataLoader learns (loss falls,
                            held-out accuracy high) and the run is reproducible from its seeds; the
                            module imports alone.
"""
import subprocess
import sys

import re

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.tensor import Tensor
from tinytorch.core.dataloader import DataLoader, Dataset, TensorDataset, load_digits, load_tinyshakespeare


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_dtypes_and_fancy_indexing(self):
        t = Tensor(np.arange(12, dtype=np.float32).reshape(6, 2))
        idx = np.array([5, 0, 3])
        assert t[idx].data.tolist() == [[10.0, 11.0], [0.0, 1.0], [6.0, 7.0]]
        assert Tensor([1, 2]).dtype == np.int64 and Tensor([1.0]).dtype == np.float32
        assert Tensor(np.zeros(2), dtype=np.float64).dtype == np.float64
        assert len(t) == 6

    def test_autograd_through_an_indexed_batch(self):
        w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
        x = Tensor(np.arange(12, dtype=np.float32).reshape(6, 2))
        (x[np.array([0, 0, 1])] @ w).sum().backward()
        assert w.grad.data.tolist() == [[2.0] * 3, [5.0] * 3]     # rows 0, 0, 1 summed

    def test_linear_and_loss(self):
        model = Sequential(Linear(3, 4, rng=np.random.default_rng(0)), ReLU(), Linear(4, 2, rng=np.random.default_rng(1)))
        loss = CrossEntropyLoss()(model(Tensor(np.ones((5, 3)))), Tensor(np.array([0, 1, 0, 1, 1])))
        loss.backward()
        assert loss.item() > 0 and all(p.grad is not None for p in model.parameters())


# ================================================================================================
# B. The module's core
# ================================================================================================
class TestDataCore:
    def test_batches_and_len(self):
        ds = TensorDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
        loader = DataLoader(ds, batch_size=4)
        assert len(loader) == 3
        got = [(xb.shape, yb.data.tolist()) for xb, yb in loader]
        assert got == [((4, 1), [0, 1, 2, 3]), ((4, 1), [4, 5, 6, 7]), ((2, 1), [8, 9])]
        assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2

    def test_shuffling_is_seeded_and_changes_per_epoch(self):
        ds = TensorDataset(np.arange(30))
        runs = []
        for _ in range(2):
            loader = DataLoader(ds, batch_size=7, shuffle=True, seed=42)
            runs.append([np.concatenate([b[0].data for b in loader]).tolist() for _ in range(3)])
        assert runs[0] == runs[1]
        assert runs[0][0] != runs[0][1] != runs[0][2]
        assert all(sorted(e) == list(range(30)) for e in runs[0])

    def test_digits_and_text(self):
        (X, y), (Xt, yt) = load_digits()
        assert (len(X), len(Xt)) == (1437, 360)
        assert X.dtype == np.float32 and 0.0 <= X.data.min() and X.data.max() <= 1.0
        (Xi, _), _ = load_digits(flatten=False)
        assert Xi.shape == (1437, 1, 8, 8)
        np.testing.assert_array_equal(load_digits()[1][1].data, yt.data)     # the same split each call
        assert len(load_tinyshakespeare()) == 1_115_394

    def test_bad_input(self):
        ds = TensorDataset(np.zeros(3))
        with pytest.raises(ValueError, match=re.escape("batch_size must be a positive integer (>= 1), got 0")):
            DataLoader(ds, batch_size=0)
        with pytest.raises(ValueError, match=re.escape("batch_size must be a positive integer (>= 1), got -3")):
            DataLoader(ds, batch_size=-3)
        with pytest.raises(ValueError, match=re.escape("batch_size must be a positive integer (>= 1), got 2.0")):
            DataLoader(ds, batch_size=2.0)
        with pytest.raises(ValueError, match="dataset is empty"):
            DataLoader(TensorDataset(np.zeros((0, 2))))
        with pytest.raises(ValueError, match=r"got lengths \[3, 2\]"):
            TensorDataset(np.zeros(3), np.zeros(2))


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
def train_digits(seed: int, epochs: int = 4):
    (X, y), (Xt, yt) = load_digits()
    rng = np.random.default_rng(seed)
    model = Sequential(Linear(64, 48, rng=rng), ReLU(), Linear(48, 10, rng=rng))
    loss_fn = CrossEntropyLoss()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=seed)
    with no_grad():
        first = loss_fn(model(Xt), yt).item()
    losses = []
    for _ in range(epochs):
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            model.zero_grad()
            loss.backward()
            with no_grad():
                for p in model.parameters():
                    p.data -= 0.2 * p.grad.data
            losses.append(loss.item())
    with no_grad():
        logits = model(Xt)
    acc = float((logits.data.argmax(axis=1) == yt.data).mean())
    return first, loss_fn(logits, yt).item(), acc, losses


class TestDataInTheStack:
    def test_mlp_learns_digits_from_minibatches(self):
        first, last, acc, losses = train_digits(seed=0)
        assert len(losses) == 4 * 45                       # 1437 / 32 -> 45 batches per epoch
        assert last < 0.3 * first, (first, last)
        assert acc > 0.9, acc

    def test_training_is_reproducible_from_the_seeds(self):
        a = train_digits(seed=3, epochs=1)
        b = train_digits(seed=3, epochs=1)
        assert a[3] == b[3]
        c = train_digits(seed=4, epochs=1)
        assert a[3] != c[3]

    def test_a_generic_dataset_feeds_a_model(self):
        class Noisy(Dataset):
            "Computed examples: x ~ N(label, 0.1) in 2-D."
            def __len__(self):
                return 64

            def __getitem__(self, i):
                r = np.random.default_rng(i)
                return (r.normal(i % 2, 0.1, 2).astype(np.float32), i % 2)

        model = Linear(2, 2, rng=np.random.default_rng(0))
        loss_fn = CrossEntropyLoss()
        losses = []
        for _ in range(30):
            for xb, yb in DataLoader(Noisy(), batch_size=16, shuffle=True, seed=1):
                loss = loss_fn(model(xb), yb)
                model.zero_grad()
                loss.backward()
                with no_grad():
                    for p in model.parameters():
                        p.data -= 0.5 * p.grad.data
                losses.append(loss.item())
        assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])

    def test_dataloader_imports_alone(self):
        code = ("import tinytorch.core.dataloader as d; (X, y), (Xt, yt) = d.load_digits(); "
                "print(len(d.DataLoader(d.TensorDataset(X, y), batch_size=100)))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "15"
