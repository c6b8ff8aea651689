"""The PyTorch-shaped faces (`import tinytorch as torch`) and the API they expose: factories,
devices, randomness, casts, Module methods, containers, nn.init, DataLoader arguments."""

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import tinytorch
import tinytorch.nn as nn
from tinytorch.core.tensor import Tensor

ROOT = Path(__file__).resolve().parents[2]
FACES = tomllib.loads((ROOT / "modules" / "manifest.toml").read_text())["faces"]["exports"]


@pytest.mark.parametrize("face", FACES)
def test_every_name_of_every_face_resolves(face):
    mod = __import__(face, fromlist=["_"])
    names = [n for n in dir(mod) if not n.startswith("__")]
    assert len(names) > 1
    for n in names:
        assert getattr(mod, n) is not None, f"{face}.{n}"


@pytest.mark.parametrize("face", FACES)
def test_faces_define_nothing(face):
    import ast
    from tito.manifest import module_file
    path = module_file(face, ROOT / "tinytorch")
    path = path if path.is_file() else path.with_suffix("") / "__init__.py"
    defs = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defs == ([] if face != "tinytorch" else ["_table", "lazy_face"]), f"{path} defines {defs}"


@pytest.mark.parametrize("face", FACES)
def test_importing_a_face_imports_no_chapter(face):
    code = (f"import sys, importlib; importlib.import_module({face!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('tinytorch.core') or m.startswith('tinytorch.optimization')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"{face} imported chapters at import time: {r.stdout}"


def test_names_are_pytorchs():
    F = tinytorch.nn.functional
    for name in ("cross_entropy nll_loss mse_loss relu gelu softmax log_softmax tanh sigmoid dropout linear "
                 "embedding max_pool2d avg_pool2d pad scaled_dot_product_attention").split():
        assert callable(getattr(F, name)) and callable(getattr(torch.nn.functional, name)), name
    for name in "Module ModuleList ModuleDict Linear Sequential AdaptiveAvgPool2d LayerNorm Embedding".split():
        assert isinstance(getattr(nn, name), type), name
    for name in "SGD Adam AdamW RMSprop Adadelta".split():
        assert issubclass(getattr(tinytorch.optim, name), tinytorch.optim.Optimizer)
    assert tinytorch.utils.data.DataLoader.__module__ == "tinytorch.core.dataloader"
    assert tinytorch.nn.Linear.__module__ == "tinytorch.core.layers"            # defined once, in its chapter
    with pytest.raises(AttributeError, match="does not provide"):
        tinytorch.fft


# -- devices ----------------------------------------------------------------------------------------
def test_device_plumbing():
    assert tinytorch.cuda.is_available() is False and tinytorch.cuda.device_count() == 0
    x = tinytorch.ones(2, 3)
    assert x.device == tinytorch.device("cpu") == "cpu" and str(x.device) == "cpu" and x.is_cuda is False
    assert x.to("cpu") is x and x.cpu() is x and x.to(tinytorch.device("cpu:0")) is x
    m = nn.Linear(2, 2)
    assert m.to("cpu") is m and m.cpu() is m
    for bad in ("cuda", "cuda:0", "mps", "cpu:1", "tpu"):
        with pytest.raises(RuntimeError, match=bad.split(":")[0]):
            tinytorch.device(bad)
    with pytest.raises(RuntimeError, match="cuda"):
        x.to("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        m.to("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        tinytorch.zeros(2, device="cuda")


# -- factories and randomness -----------------------------------------------------------------------
@pytest.mark.parametrize("expr", [
    "T.tensor([1, 2, 3])", "T.tensor([1.0, 2.0])", "T.tensor([[True, False]])", "T.tensor(3.5)",
    "T.zeros(2, 3)", "T.zeros((2, 3), dtype=T.long)", "T.ones(4)", "T.full((2, 2), 7)", "T.full((2,), 0.5)",
    "T.arange(5)", "T.arange(1, 4, 0.5)", "T.arange(0.0, 1.0, 0.25)", "T.linspace(0, 1, 5)", "T.eye(3)",
    "T.zeros_like(T.ones(2, 3, dtype=T.float64))", "T.ones_like(T.arange(3))", "T.full_like(T.ones(2), 3.0)",
    "T.tril(T.ones(3, 3))", "T.triu(T.ones(3, 4), diagonal=1)", "T.empty(2, 2).shape",
    "T.ones(2, 3).float()", "T.ones(2, 3).double()", "T.ones(2, 3).long()", "T.ones(2, 3).int()",
    "T.ones(2, 3).bool()", "T.ones(2, 3).half()", "T.arange(3).type_as(T.ones(1))", "T.arange(3).to(T.float32)",
    "T.ones(2) == T.tensor([1.0, 2.0])", "T.eq(T.arange(3), 1)", "T.arange(3).ne(1)", "T.arange(3).ge(1)",
    "T.argmax(T.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]]), dim=1)", "T.arange(6).view(2, 3).tolist()",
    "T.arange(6).reshape(2, 3).size(1)", "T.arange(6).numel()", "T.where(T.arange(4) > 1)[0]",
    "T.randint(0, 10, (3, 4)).shape", "T.randn(2, 3).shape", "T.rand(2, 3).dtype", "T.randperm(5).dtype",
    "T.arange(6).reshape(2, 3).flatten()", "T.max(T.tensor([[1.0, 5.0], [7.0, 0.0]]), 1).indices",
    "T.ones(2, 3).new_zeros(4)", "T.tensor([2, 3]).sum()", "T.abs(T.tensor([-1.0, 2.0]))",
])
def test_factory_and_small_api_matches_pytorch(expr):
    ours, theirs = eval(expr, {"T": tinytorch}), eval(expr, {"T": torch})
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, Tensor), expr
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch."), expr
        assert ours.shape == tuple(theirs.shape), expr
        if expr.split("(")[0] not in ("T.randint", "T.randn", "T.rand", "T.randperm"):
            np.testing.assert_array_equal(np.asarray(ours.data, dtype=np.float64), theirs.double().numpy())
    elif isinstance(theirs, torch.dtype):
        assert str(ours) == str(theirs).removeprefix("torch."), expr
    else:
        assert ours == (tuple(theirs) if isinstance(theirs, torch.Size) else theirs), expr


def test_manual_seed_and_generators_make_draws_reproducible():
    tinytorch.manual_seed(123)
    a, p = tinytorch.randn(3), tinytorch.randperm(6)
    tinytorch.manual_seed(123)
    assert np.array_equal(a.data, tinytorch.randn(3).data) and np.array_equal(p.data, tinytorch.randperm(6).data)
    g1, g2 = tinytorch.Generator().manual_seed(7), tinytorch.Generator().manual_seed(7)
    assert np.array_equal(tinytorch.rand(4, generator=g1).data, tinytorch.rand(4, generator=g2).data)
    assert sorted(tinytorch.randperm(6).tolist()) == list(range(6))
    r = tinytorch.randint(3, 5, (1000,))
    assert r.dtype == np.int64 and set(np.unique(r.data)) == {3, 4}


def test_multinomial_draws_follow_the_probabilities():
    tinytorch.manual_seed(0)
    probs = tinytorch.tensor([[0.1, 0.0, 0.9], [1.0, 1.0, 2.0]])           # rows need not sum to 1
    draws = tinytorch.multinomial(probs, 2000, replacement=True)
    assert draws.shape == (2, 2000) and draws.dtype == np.int64
    assert (draws.data[0] != 1).all() and abs((draws.data[0] == 2).mean() - 0.9) < 0.03
    assert abs((draws.data[1] == 2).mean() - 0.5) < 0.04
    no_repeat = probs[1:].multinomial(3)
    assert sorted(no_repeat.data[0].tolist()) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="non-zero"):
        probs.multinomial(3)                                           # row 0 has two non-zero entries
    with pytest.raises(RuntimeError, match="without replacement"):
        tinytorch.multinomial(probs, 4)
    with pytest.raises(RuntimeError, match="inf, nan or element < 0"):
        tinytorch.multinomial(tinytorch.tensor([0.5, -0.1]), 1)


def test_inference_mode_and_no_grad_decorator():
    x = tinytorch.ones(2, requires_grad=True)
    with tinytorch.inference_mode():
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad

    @tinytorch.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_casts_are_differentiable_between_floating_dtypes():
    x = tinytorch.ones(3, requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float32 and np.array_equal(x.grad.data, [2, 2, 2])
    assert not x.long().requires_grad


# -- Module methods, containers, nn.init --------------------------------------------------------------
def test_module_list_dict_and_apply_match_pytorch_names():
    def build(T):
        m = T.nn.Module()
        m.blocks = T.nn.ModuleList([T.nn.Linear(2, 3), T.nn.Linear(3, 2)])
        m.heads = T.nn.ModuleDict({"a": T.nn.Linear(2, 1), "b": T.nn.Linear(2, 4, bias=False)})
        return m
    ours, theirs = build(tinytorch), build(torch)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert len(ours.blocks) == 2 and ours.blocks[-1] is list(ours.blocks)[1] and "a" in ours.heads
    seen = []
    ours.apply(lambda mod: seen.append(type(mod).__name__))
    theirs_seen = []
    theirs.apply(lambda mod: theirs_seen.append(type(mod).__name__))
    assert seen == theirs_seen
    with pytest.raises(TypeError, match="Module"):
        ours.blocks.append(3)


def test_zero_grad_set_to_none_false_keeps_zeroed_arrays():
    m = nn.Linear(2, 2)
    m(tinytorch.ones(1, 2)).sum().backward()
    g = m.weight.grad
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is g and not g.data.any()
    opt = tinytorch.optim.SGD(m.parameters(), lr=0.1)
    opt.zero_grad(set_to_none=True)
    assert m.weight.grad is None


def test_module_casts_change_parameters_in_place():
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    w = m[0].weight
    assert m.double() is m and w.dtype == np.float64 and m[0].weight is w
    assert m(tinytorch.ones(1, 2, dtype=tinytorch.float64)).dtype == np.float64
    m.float()
    assert w.dtype == np.float32


@pytest.mark.parametrize("init, kwargs, std", [
    ("xavier_uniform_", {}, np.sqrt(2.0 / (200 + 300))), ("xavier_normal_", {}, np.sqrt(2.0 / (200 + 300))),
    ("kaiming_uniform_", {"nonlinearity": "relu"}, np.sqrt(2.0 / 200)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, np.sqrt(2.0 / 300)),
    ("normal_", {"std": 0.02}, 0.02), ("trunc_normal_", {"std": 0.5, "a": -1.0, "b": 1.0}, None),
])
def test_nn_init_has_pytorchs_statistics(init, kwargs, std):
    w = nn.Parameter(np.zeros((300, 200), dtype=np.float32))
    arr = w.data
    out = getattr(tinytorch.nn.init, init)(w, **kwargs)
    assert out is w and w.data is arr and w.dtype == np.float32
    ref = getattr(torch.nn.init, init)(torch.empty(300, 200), **kwargs).numpy()
    assert abs(w.data.std() - ref.std()) < 0.05 * ref.std()
    if std is not None:
        assert abs(w.data.std() - std) < 0.05 * std
    else:
        assert w.data.min() >= -1.0 and w.data.max() <= 1.0
    assert np.isclose(tinytorch.nn.init.calculate_gain("leaky_relu", 0.2), torch.nn.init.calculate_gain("leaky_relu", 0.2))


def test_dataloader_accepts_pytorchs_arguments():
    ds = tinytorch.utils.data.TensorDataset(tinytorch.arange(10).float(), tinytorch.arange(10))
    dl = tinytorch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, pin_memory=True,
                                         drop_last=True, persistent_workers=False, timeout=0,
                                         generator=tinytorch.Generator().manual_seed(0))
    batches = list(dl)
    assert len(batches) == 2 and all(b[0].shape == (4,) for b in batches)
    seen = np.concatenate([b[1].data for b in batches])
    assert len(set(seen.tolist())) == 8
    dl2 = tinytorch.utils.data.DataLoader(ds, batch_size=3, collate_fn=lambda items: len(items))
    assert list(dl2) == [3, 3, 3, 1]
    picked = [b[1].data.tolist() for b in tinytorch.utils.data.DataLoader(ds, sampler=[3, 0, 1], batch_size=2)]
    assert picked == [[3, 0], [1]]                                   # a sampler, as PyTorch's
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        tinytorch.utils.data.DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.raises(ValueError, match="num_workers"):
        tinytorch.utils.data.DataLoader(ds, num_workers=-1)


def test_losses_reduction_rejects_unknown_values():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_manual_seed_seeds_the_layers_initial_weights_and_dropout():
    def draw():
        tinytorch.manual_seed(42)
        model = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 3), nn.Embedding(5, 2), nn.Dropout(0.5))
        mask = model[3](tinytorch.ones(50)).data
        return [p.data.copy() for p in model.parameters()] + [mask]
    first, second = draw(), draw()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    tinytorch.manual_seed(43)
    assert not np.array_equal(nn.Linear(3, 4).weight.data, first[0])


def test_functional_dropout_in_training_keeps_the_expected_fraction_and_scales():
    tinytorch.manual_seed(0)
    x = tinytorch.ones(20000, requires_grad=True)
    y = tinytorch.nn.functional.dropout(x, p=0.3)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.02 and np.allclose(y.data[kept], 1 / 0.7)
    y.sum().backward()
    assert np.allclose(x.grad.data, y.data)                       # the gradient goes through the same mask


@pytest.mark.parametrize("make", [
    lambda S, opt: S.StepLR(opt, step_size=2, gamma=0.5),
    lambda S, opt: S.CosineAnnealingLR(opt, T_max=5, eta_min=0.01),
    lambda S, opt: S.ExponentialLR(opt, gamma=0.9),
    lambda S, opt: S.MultiStepLR(opt, milestones=[2, 5], gamma=0.3),
    lambda S, opt: S.LinearLR(opt, start_factor=0.25, total_iters=4),
    lambda S, opt: S.LambdaLR(opt, lr_lambda=lambda e: 1.0 / (1 + e)),
], ids=["StepLR", "CosineAnnealingLR", "ExponentialLR", "MultiStepLR", "LinearLR", "LambdaLR"])
def test_lr_schedules_match_pytorch(make, tmp_path):
    ours_opt = tinytorch.optim.SGD([nn.Parameter(np.zeros(2, dtype=np.float32))], lr=0.1)
    theirs_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    ours, theirs = make(tinytorch.optim.lr_scheduler, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
    for _ in range(8):
        ours_opt.step(), theirs_opt.step(), ours.step(), theirs.step()
        assert np.isclose(ours.get_last_lr()[0], theirs.get_last_lr()[0], rtol=1e-9)
    from tinytorch.core.training import load_checkpoint, save_checkpoint
    model = nn.Linear(1, 1)
    path = save_checkpoint(tmp_path / "s.npz", model, scheduler=ours)        # no pickle, even for LambdaLR
    again = make(tinytorch.optim.lr_scheduler, tinytorch.optim.SGD([nn.Parameter(np.zeros(2, dtype=np.float32))], lr=0.1))
    load_checkpoint(path, model, scheduler=again)
    assert again.last_epoch == ours.last_epoch and np.isclose(again.get_last_lr()[0], ours.get_last_lr()[0])


def test_one_hot_and_size_match_pytorch():
    idx = np.array([[0, 3], [2, 1]])
    ours = tinytorch.nn.functional.one_hot(tinytorch.tensor(idx), num_classes=5)
    theirs = torch.nn.functional.one_hot(torch.tensor(idx), num_classes=5)
    assert ours.dtype == np.int64 and np.array_equal(ours.data, theirs.numpy())
    assert tinytorch.nn.functional.one_hot(tinytorch.tensor([1, 2])).shape == (2, 3)
    with pytest.raises(RuntimeError, match="class values"):
        tinytorch.nn.functional.one_hot(tinytorch.tensor([5]), num_classes=3)
    assert tinytorch.ones(2, 3).size() == tinytorch.Size([2, 3]) == tuple(torch.Size([2, 3]))
    with pytest.raises(NotImplementedError, match=r"\.\.\."):
        tinytorch.einsum("...ij->...ji", tinytorch.ones(2, 2))
