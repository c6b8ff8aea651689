"""Can I feed a model real data in reproducible, shuffled batches?"""
import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.activations import ReLU
from tinytorch.core.dataloader import DataLoader, Dataset, TensorDataset, load_digits
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.tensor import Tensor


def test_a_tensor_dataset_gives_examples_and_batches_in_order():
    X = Tensor(np.arange(20, dtype=np.float32).reshape(10, 2))
    y = Tensor(np.arange(10) % 3)
    ds = TensorDataset(X, y)
    x4, y4 = ds[4]
    assert x4.data.tolist() == [8.0, 9.0] and y4.item() == 1
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [xb.shape for xb, _ in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate([xb.data for xb, _ in batches]), X.data)
    np.testing.assert_array_equal(np.concatenate([yb.data for _, yb in batches]), y.data)
    assert batches[0][1].dtype == np.int64
    assert [len(yb) for _, yb in DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]


def test_shuffling_is_reproducible_and_new_every_epoch():
    ds = TensorDataset(np.arange(40, dtype=np.float32)[:, None] * 10, np.arange(40))
    def epochs(seed, n=3):
        loader = DataLoader(ds, batch_size=8, shuffle=True, seed=seed)
        out = []
        for _ in range(n):
            order = []
            for xb, yb in loader:
                np.testing.assert_array_equal(xb.data[:, 0], yb.data * 10)      # pairs stay together
                order += yb.data.tolist()
            out.append(order)
        return out
    a, b = epochs(0), epochs(0)
    assert a == b                                              # same seed: same batches, every epoch
    assert all(sorted(e) == list(range(40)) for e in a)        # each example once per epoch
    assert a[0] != a[1] and a[1] != a[2] and a[0] != list(range(40))
    assert epochs(1, 1)[0] != a[0]


def test_a_computed_dataset_is_collated_into_batches():
    class Table(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, -i], dtype=np.float32), i % 2

    xs, ys = next(iter(DataLoader(Table(), batch_size=5)))
    assert xs.shape == (5, 2) and xs.data[:, 1].tolist() == [0, -1, -2, -3, -4]
    assert ys.data.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Table(), batch_size=0)


def test_a_model_learns_the_digits_from_shuffled_minibatches():
    (X, y), (Xt, yt) = load_digits()
    assert (len(X), len(Xt)) == (1437, 360)
    model = Sequential(Linear(64, 32, rng=np.random.default_rng(0)), ReLU(), Linear(32, 10, rng=np.random.default_rng(1)))
    loss_fn = CrossEntropyLoss()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0)
    seen = 0
    for _ in range(5):
        for xb, yb in loader:
            seen += len(yb)
            loss = loss_fn(model(xb), yb)
            model.zero_grad()
            loss.backward()
            with no_grad():
                for p in model.parameters():
                    p.data -= 0.2 * p.grad.data
    assert seen == 5 * 1437
    with no_grad():
        acc = float((model(Xt).data.argmax(axis=1) == yt.data).mean())
    assert acc > 0.85, acc
