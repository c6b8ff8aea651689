"""Weights move between tinytorch and PyTorch unchanged, both ways, for an MLP and a CNN
(Sequential of Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear): the same keys, shapes and
dtypes (BatchNorm2d's num_batches_tracked is an int64 buffer in both), strict loading, and the same
outputs in eval mode (to 1e-5), and in train mode the same batch-statistics outputs and running stats.
"""
import numpy as np
import pytest
import torch

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.spatial import AvgPool2d, BatchNorm2d, Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor


def tt_mlp(rng):
    return Sequential(Linear(64, 32, rng=rng), ReLU(), Linear(32, 16, rng=rng), ReLU(), Linear(16, 10, rng=rng))


def pt_mlp():
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


def tt_cnn(rng):
    return Sequential(Conv2d(1, 6, 3, padding=1, rng=rng), BatchNorm2d(6), ReLU(), MaxPool2d(2),
                      Conv2d(6, 16, (3, 2), stride=1, padding=(1, 0), rng=rng), BatchNorm2d(16), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(16 * 2 * 1, 24, rng=rng), ReLU(), Linear(24, 10, rng=rng))


def pt_cnn():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, (3, 2), stride=1, padding=(1, 0)), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 1, 24), nn.ReLU(), nn.Linear(24, 10))


def tt_to_torch(sd):
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


def torch_to_tt(sd):
    return {k: v.detach().numpy() for k, v in sd.items()}


def train_tt(model, x, y, steps=3, lr=0.05):
    "A few plain gradient steps in train mode, so that weights and batch-norm running stats move."
    loss_fn = CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        loss = loss_fn(model(Tensor(x)), Tensor(y))
        model.zero_grad()
        loss.backward()
        with no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data


def train_torch(model, x, y, steps=3, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    return x, y


def assert_same_keys_shapes_dtypes(tt_sd, pt_sd):
    assert set(tt_sd) == set(pt_sd)
    for k, v in pt_sd.items():
        assert tt_sd[k].shape == tuple(v.shape), k
        assert tt_sd[k].dtype == v.detach().numpy().dtype, (k, tt_sd[k].dtype, v.dtype)


def eval_outputs(tt_model, pt_model, x):
    tt_model.eval()
    pt_model.eval()
    with no_grad():
        a = tt_model(Tensor(x)).data
    with torch.no_grad():
        b = pt_model(torch.from_numpy(x)).numpy()
    return a, b


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_tinytorch_weights_load_into_torch(kind, data):
    x, y = data
    if kind == "mlp":
        x = x.reshape(len(x), -1)
    rng = np.random.default_rng(1)
    mine = tt_mlp(rng) if kind == "mlp" else tt_cnn(rng)
    train_tt(mine, x, y)
    sd = mine.state_dict()
    theirs = pt_mlp() if kind == "mlp" else pt_cnn()
    assert_same_keys_shapes_dtypes(sd, theirs.state_dict())
    result = theirs.load_state_dict(tt_to_torch(sd), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    a, b = eval_outputs(mine, theirs, x)
    assert a.shape == (len(x), 10)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    if kind == "cnn":
        assert int(theirs[1].num_batches_tracked) == 3 and theirs[1].num_batches_tracked.dtype == torch.int64
        assert not np.allclose(theirs[1].running_mean.numpy(), 0.0)        # the trained stats arrived


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_torch_weights_load_into_tinytorch(kind, data):
    x, y = data
    if kind == "mlp":
        x = x.reshape(len(x), -1)
    torch.manual_seed(0)
    theirs = pt_mlp() if kind == "mlp" else pt_cnn()
    train_torch(theirs, x, y)
    mine = tt_mlp(np.random.default_rng(2)) if kind == "mlp" else tt_cnn(np.random.default_rng(2))
    before = {n: p for n, p in mine.named_parameters()}
    result = mine.load_state_dict(torch_to_tt(theirs.state_dict()), strict=True)
    assert result["missing_keys"] == [] and result["unexpected_keys"] == []
    assert all(p is before[n] for n, p in mine.named_parameters())          # loaded in place
    a, b = eval_outputs(mine, theirs, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and straight from torch tensors, as load_state_dict also accepts them
    mine2 = tt_mlp(np.random.default_rng(3)) if kind == "mlp" else tt_cnn(np.random.default_rng(3))
    mine2.load_state_dict(theirs.state_dict(), strict=True)
    np.testing.assert_allclose(eval_outputs(mine2, theirs, x)[0], b, rtol=1e-5, atol=1e-5)
    if kind == "cnn":
        assert mine[1].num_batches_tracked.dtype == np.int64 and int(mine[1].num_batches_tracked.item()) == 3
        np.testing.assert_allclose(mine[5].running_var.data, theirs[5].running_var.numpy(), rtol=1e-6)


def test_cnn_round_trip_keeps_training_in_step_with_torch(data):
    """tinytorch -> torch, then one training step in each framework: same loss, same gradients,
    same running statistics. Then torch -> tinytorch again: identical state dicts."""
    x, y = data
    mine = tt_cnn(np.random.default_rng(4))
    theirs = pt_cnn()
    theirs.load_state_dict(tt_to_torch(mine.state_dict()))
    mine.train()
    theirs.train()
    loss = CrossEntropyLoss()(mine(Tensor(x)), Tensor(y))
    loss.backward()
    ref = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
    ref.backward()
    assert abs(loss.item() - ref.item()) < 1e-5
    grads = dict(theirs.named_parameters())
    for name, p in mine.named_parameters():
        np.testing.assert_allclose(p.grad.data, grads[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    for k in ("1.running_mean", "1.running_var", "5.running_mean", "5.running_var"):
        np.testing.assert_allclose(mine.state_dict()[k], theirs.state_dict()[k].numpy(), rtol=1e-5, atol=1e-6)
    back = tt_cnn(np.random.default_rng(5))
    back.load_state_dict(torch_to_tt(theirs.state_dict()))
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v, theirs.state_dict()[k].numpy(), err_msg=k)


def test_state_dict_keys_match_torch_order_independent_and_include_buffers():
    mine = Sequential(Conv2d(3, 4, 3), BatchNorm2d(4), AvgPool2d(2), Flatten(), Linear(4, 2))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AvgPool2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert mine.state_dict()["1.num_batches_tracked"].shape == ()
    bad = tt_to_torch(mine.state_dict())
    del bad["1.num_batches_tracked"]
    with pytest.raises(KeyError, match="num_batches_tracked"):
        mine.load_state_dict(torch_to_tt(bad))
