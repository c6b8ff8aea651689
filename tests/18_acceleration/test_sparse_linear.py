"""Module 18 (sparse kernels), SparseLinear and to_sparse: same outputs as the pruned Linear, gradients equal to PyTorch's
for the dense equivalent (random cotangents), training with the optimizers keeps the pattern, conversion
of whole models (shared and nested layers), state dicts, bad input."""
import numpy as np
import pytest
import torch

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.optimization import sparse
from tinytorch.optimization.pruning import magnitude_prune
from tinytorch.optimization.sparse import CSRMatrix, SparseLinear, sparse_plan, to_sparse


def prune_(layer, sparsity, seed=0):
    "Module 17's magnitude pruning of one layer: the smallest weights zeroed in place, weight.mask kept by every optimizer."
    magnitude_prune(layer, sparsity, scope="layer")
    return layer


@pytest.fixture(autouse=True)
def fixed_crossover(monkeypatch):
    "Decisions in these tests come from a fixed crossover (the dispatcher's measurement is tested elsewhere)."
    monkeypatch.setenv("TINYTORCH_SPARSE_CROSSOVER", "0.3")


@pytest.mark.parametrize("shape", [(5, 40), (1, 40), (40,), (2, 3, 40), (64, 40)])
@pytest.mark.parametrize("bias", [True, False])
def test_outputs_equal_the_pruned_linear(shape, bias):
    rng = np.random.default_rng(0)
    lin = prune_(Linear(40, 24, bias=bias, rng=rng), 0.85)
    sp = SparseLinear.from_linear(lin)
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    y = sp(x)
    assert y.shape == shape[:-1] + (24,) and y.dtype == np.float32
    np.testing.assert_allclose(y.data, lin(x).data, rtol=1e-5, atol=1e-5)
    assert sp.nnz == int(lin.weight.mask.sum()) and np.array_equal(sp.to_dense(), lin.weight.data)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("batch", [1, 7])
def test_gradients_equal_pytorch_for_the_dense_equivalent(dtype, tol, batch):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 9)).astype(dtype)
    w[rng.random(w.shape) < 0.7] = 0
    w[4] = 0                                                       # an empty row
    b = rng.standard_normal(12).astype(dtype)
    sp = SparseLinear(w, b)
    x = rng.standard_normal((batch, 9)).astype(dtype)
    G = rng.standard_normal((batch, 12)).astype(dtype)             # random cotangent, not a plain sum
    xt = Tensor(x, requires_grad=True, dtype=dtype)
    y = sp(xt)
    y.backward(G)

    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(G))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=tol, atol=tol)
    rows = np.repeat(np.arange(12), np.diff(sp.indptr.data))
    np.testing.assert_allclose(sp.values.grad.data, tw.grad.numpy()[rows, sp.indices.data], rtol=tol, atol=tol)
    np.testing.assert_allclose(sp.bias.grad.data, tb.grad.numpy(), rtol=tol, atol=tol)
    assert sp.values.grad.shape == (sp.nnz,)                       # only the stored values have a gradient


def test_gradient_flows_through_a_stack_of_sparse_layers_like_pytorch():
    rng = np.random.default_rng(2)
    dense = [prune_(Linear(20, 16, rng=rng), 0.8), prune_(Linear(16, 8, rng=rng), 0.6)]
    model = Sequential(SparseLinear.from_linear(dense[0]), ReLU(), SparseLinear.from_linear(dense[1]))
    x = rng.standard_normal((5, 20)).astype(np.float32)
    G = rng.standard_normal((5, 8)).astype(np.float32)
    xt = Tensor(x, requires_grad=True)
    model(xt).backward(G)
    tws = [torch.tensor(l.weight.data, requires_grad=True) for l in dense]
    tbs = [torch.tensor(l.bias.data, requires_grad=True) for l in dense]
    tx = torch.tensor(x, requires_grad=True)
    h = torch.relu(torch.nn.functional.linear(tx, tws[0], tbs[0]))
    torch.nn.functional.linear(h, tws[1], tbs[1]).backward(torch.tensor(G))
    np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for layer, tw in zip((model[0], model[2]), tws):
        rows = np.repeat(np.arange(layer.out_features), np.diff(layer.indptr.data))
        np.testing.assert_allclose(layer.values.grad.data, tw.grad.numpy()[rows, layer.indices.data],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt_cls,kwargs", [
    (SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    (Adam, dict(lr=0.01)),
    (AdamW, dict(lr=0.01, weight_decay=0.1)),
])
def test_training_matches_the_masked_dense_layer_and_keeps_the_pattern(opt_cls, kwargs):
    rng = np.random.default_rng(3)
    dense = prune_(Linear(30, 20, rng=np.random.default_rng(4)), 0.8)
    sparse_layer = SparseLinear.from_linear(dense)
    indptr, indices = sparse_layer.indptr.data.copy(), sparse_layer.indices.data.copy()
    opt_d = opt_cls(dense.parameters(), **kwargs)
    opt_s = opt_cls(sparse_layer.parameters(), **kwargs)
    losses = []
    target = rng.standard_normal((16, 20)).astype(np.float32)
    for _ in range(8):
        x = Tensor(rng.standard_normal((16, 30)).astype(np.float32))
        for model, opt in ((dense, opt_d), (sparse_layer, opt_s)):
            opt.zero_grad()
            loss = ((model(x) - Tensor(target)) ** 2).mean()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    np.testing.assert_allclose(sparse_layer.to_dense(), dense.weight.data, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sparse_layer.bias.data, dense.bias.data, rtol=1e-4, atol=1e-5)
    assert np.array_equal(sparse_layer.indptr.data, indptr) and np.array_equal(sparse_layer.indices.data, indices)
    assert np.count_nonzero(sparse_layer.to_dense()) <= sparse_layer.nnz == int(dense.weight.mask.sum())
    assert losses[-1] < losses[0]


def test_a_sparse_mlp_learns_the_digits():
    from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
    (X, y), (Xt, yt) = load_digits()
    rng = np.random.default_rng(5)
    model = Sequential(prune_(Linear(64, 128, rng=rng), 0.9), ReLU(), prune_(Linear(128, 10, rng=rng), 0.5))
    to_sparse(model, mode="always")
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    opt = Adam(model.parameters(), lr=0.01)
    loss_fn = CrossEntropyLoss()
    for _ in range(3):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=0):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    acc = float((model(Xt).data.argmax(axis=1) == yt.data).mean())
    assert acc > 0.85, acc


def test_to_sparse_converts_the_pruned_layers_of_a_model():
    rng = np.random.default_rng(6)

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.body = Sequential(prune_(Linear(32, 32, rng=rng), 0.9), ReLU(),
                                   prune_(Linear(32, 32, rng=rng), 0.5))
            self.head = prune_(Linear(32, 4, rng=rng), 0.95)
            self.dense = Linear(4, 4, rng=rng)                     # never pruned

        def forward(self, x):
            return self.dense(self.head(self.body(x)))

    net = Net()
    x = Tensor(rng.standard_normal((10, 32)).astype(np.float32))
    before = net(x).data
    plan = {p["name"]: (p["format"], round(p["density"], 2)) for p in sparse_plan(net, batch_size=64)}
    assert plan == {"body.0": ("sparse", 0.1), "body.2": ("dense", 0.5), "head": ("sparse", 0.05),
                    "dense": ("dense", 1.0)}
    assert to_sparse(net) is net
    assert isinstance(net.body[0], SparseLinear) and isinstance(net.head, SparseLinear)
    assert type(net.body[2]) is Linear and type(net.dense) is Linear
    np.testing.assert_allclose(net(x).data, before, rtol=1e-5, atol=1e-5)

    every = Net()
    to_sparse(every, mode="always")
    assert isinstance(every.body[2], SparseLinear) and type(every.dense) is Linear


def test_a_shared_layer_is_converted_once_and_stays_shared():
    shared = prune_(Linear(8, 8, rng=np.random.default_rng(7)), 0.9)
    model = Sequential(shared, ReLU(), shared)
    to_sparse(model, mode="always")
    assert isinstance(model[0], SparseLinear) and model[0] is model[2]
    assert len(list(model.parameters())) == 2                      # values and bias, once
    assert isinstance(to_sparse(prune_(Linear(4, 4), 0.9), mode="always"), SparseLinear)


def test_state_dict_round_trip_and_a_loaded_pattern_is_used_by_backward():
    rng = np.random.default_rng(8)
    a = Sequential(SparseLinear.from_linear(prune_(Linear(10, 6, rng=rng), 0.7)))
    b = Sequential(SparseLinear.from_linear(prune_(Linear(10, 6, rng=np.random.default_rng(9)), 0.7)))
    assert list(a.state_dict()) == ["0.values", "0.bias", "0.indptr", "0.indices"]
    x = rng.standard_normal((4, 10)).astype(np.float32)
    G = rng.standard_normal((4, 6)).astype(np.float32)
    xb = Tensor(x, requires_grad=True)
    b(xb).backward(G)                                              # builds b's transposed pattern
    b.load_state_dict(a.state_dict())
    np.testing.assert_allclose(b(Tensor(x)).data, a(Tensor(x)).data, rtol=1e-6)
    xa, xb = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    a(xa).backward(G)
    b(xb).backward(G)                                              # must use the loaded pattern's transpose
    np.testing.assert_allclose(xb.grad.data, xa.grad.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xa.grad.data, G @ a[0].to_dense(), rtol=1e-5, atol=1e-6)


def test_to_linear_memory_and_repr():
    lin = prune_(Linear(100, 50, rng=np.random.default_rng(10)), 0.9)
    sp = SparseLinear.from_linear(lin)
    back = sp.to_linear()
    assert np.array_equal(back.weight.data, lin.weight.data) and np.array_equal(back.weight.mask, lin.weight.mask)
    assert sp.nbytes == sp.nnz * (4 + 1) + 51 * 4     # float32 value + uint8 index (100 columns), int32 offsets
    assert sp.dense_nbytes == 100 * 50 * 4
    assert sp.density == pytest.approx(0.1) and "density=0.100" in repr(sp)
    csr = sp.csr
    assert isinstance(csr, CSRMatrix) and csr.shape == (50, 100) and csr.nbytes == sp.nbytes


def test_bad_input_is_refused_with_the_values_seen():
    sp = SparseLinear.from_linear(prune_(Linear(6, 3), 0.5))
    with pytest.raises(ValueError, match=r"last dimension 6, got shape \(2, 5\)"):
        sp(Tensor(np.ones((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(4,\)"):
        SparseLinear(np.eye(3, dtype=np.float32), bias=np.ones(4))
    with pytest.raises(TypeError, match="expected a Linear, got ReLU"):
        SparseLinear.from_linear(ReLU())
    with pytest.raises(ValueError, match="unknown mode 'sometimes'"):
        to_sparse(Sequential(Linear(2, 2)), mode="sometimes")
    with pytest.raises(TypeError, match="expected a Module, got ndarray"):
        to_sparse(np.ones((2, 2)))
    with pytest.raises(ValueError, match="density must be a finite number in \\[0, 1\\], got 1.5"):
        sparse.choose_format(1.5, 10, 10)
