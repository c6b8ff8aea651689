"""PyTorch's semantics where tinytorch used to differ silently: in-place ops, size(), state_dict storage,
dim and dtype checks, 0-d tensors, float16, all-or-nothing loading. Each checked against torch where
torch has an answer."""

import numpy as np
import pytest
import torch

import tinytorch
import tinytorch.nn as nn
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import load_checkpoint, save_checkpoint


# -- in place ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_augmented_assignment_changes_the_array_itself(op):
    a = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    t, ref = Tensor(a.copy()), torch.tensor(a.copy())
    arr, tid = t.data, id(t)
    exec(f"t {op} Tensor(np.array([1.0, 2.0, 4.0], dtype=np.float32))")
    exec(f"ref {op} torch.tensor([1.0, 2.0, 4.0])")
    assert id(t) == tid and t.data is arr and t.dtype == np.float32
    np.testing.assert_allclose(t.data, ref.numpy())


@pytest.mark.parametrize("ours_call, theirs_call", [
    ("zero_()", "zero_()"), ("fill_(2.5)", "fill_(2.5)"), ("copy_(np.ones((2, 3)))", "copy_(torch.ones(2, 3))"),
    ("copy_(np.arange(3))", "copy_(torch.arange(3))"), ("clamp_(0.0, 2.0)", "clamp_(0.0, 2.0)"),
    ("mul_(3)", "mul_(3)"), ("add_(1.5)", "add_(1.5)"), ("sub_(1, alpha=2)", "sub_(1, alpha=2)"),
    ("div_(4)", "div_(4)"), ("masked_fill_(np.eye(2, 3, dtype=bool), 9.0)", "masked_fill_(torch.eye(2, 3, dtype=torch.bool), 9.0)"),
])
def test_in_place_methods_match_pytorch(ours_call, theirs_call):
    a = np.linspace(-1, 3, 6, dtype=np.float32).reshape(2, 3)
    ours, theirs = Tensor(a.copy()), torch.tensor(a.copy())
    arr = ours.data
    assert eval("ours." + ours_call) is ours
    eval("theirs." + theirs_call)
    assert ours.data is arr and ours.dtype == np.float32
    np.testing.assert_allclose(ours.data, theirs.numpy())


def test_in_place_on_a_leaf_that_requires_grad_raises_like_pytorch():
    w, tw = Tensor(np.ones(3, dtype=np.float32), requires_grad=True), torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        tw -= 1
    for bad in (lambda: w.__isub__(1), lambda: w.zero_(), lambda: w.copy_(np.zeros(3)), lambda: w.mul_(2)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad is being used in an in-place"):
            bad()
    np.testing.assert_array_equal(w.data, 1)                      # nothing changed


def test_in_place_inside_no_grad_updates_the_leaf_hand_written_sgd():
    w = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (w * w).sum().backward()
    arr = w.data
    with tinytorch.no_grad():
        w -= 0.1 * w.grad
        w.grad.zero_()
    assert w.data is arr and w.requires_grad and w.is_leaf
    np.testing.assert_allclose(w.data, 0.8)
    np.testing.assert_array_equal(w.grad.data, 0)


def test_in_place_on_a_graph_tensor_raises_clearly():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="computation graph"):
        y += 1


def test_in_place_keeps_dtype_and_shape_like_pytorch():
    i = Tensor(np.array([1, 2, 3]))
    with pytest.raises(RuntimeError, match="int64"):
        i += 0.5                                                   # torch: result type Float can't be cast to Long
    with pytest.raises(RuntimeError):
        torch.tensor([1, 2, 3]).__iadd__(0.5)
    t = Tensor(np.ones(3, dtype=np.float32))
    with pytest.raises(RuntimeError, match="broadcast"):
        t += np.ones((2, 3))


# -- sizes ------------------------------------------------------------------------------------------
def test_size_and_numel_are_pytorchs():
    a = np.zeros((2, 3, 4), dtype=np.float32)
    ours, theirs = Tensor(a), torch.from_numpy(a)
    assert ours.size() == tuple(theirs.size()) and ours.numel() == theirs.numel() == 24
    assert [ours.size(d) for d in (0, 1, 2, -1, -3)] == [theirs.size(d) for d in (0, 1, 2, -1, -3)]
    assert ours.dim() == theirs.dim() and Tensor(np.float32(1)).size() == ()
    with pytest.raises(IndexError, match="dim 3 .* 3 dimension"):
        ours.size(3)


def test_no_tinytorch_module_uses_size_as_numpys_count():
    # the package's own code: every parameter count goes through numel()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2


# -- state_dict -------------------------------------------------------------------------------------
def test_state_dict_values_share_storage_and_load_with_copy_():
    model, ref = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    sd = model.state_dict()
    assert all(isinstance(v, Tensor) and not v.requires_grad for v in sd.values())
    assert np.shares_memory(sd["weight"].data, model.weight.data)
    for k, v in ref.state_dict().items():
        sd[k].copy_(v.numpy())                                     # the loading idiom
    np.testing.assert_array_equal(model.weight.data, ref.weight.detach().numpy())
    assert list(sd) == list(ref.state_dict())


def test_non_persistent_buffers_are_left_out_as_in_pytorch():
    def build(T):
        m = T.nn.Module()
        m.lin = T.nn.Linear(2, 2)
        m.register_buffer("kept", T.zeros(2))
        m.register_buffer("scratch", T.ones(2), persistent=False)
        return m
    ours, theirs = build(tinytorch), build(torch)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == ["kept", "lin.bias", "lin.weight"]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()] == ["kept", "scratch"]


# -- dims and dtypes --------------------------------------------------------------------------------
@pytest.mark.parametrize("expr", ["x.permute(1, 2)", "x.squeeze(5)", "x.flatten(7)", "x.transpose(0, 2)",
                                  "x.unsqueeze(4)", "x.size(2)", "x.split(1, dim=2)", "x.gather(3, idx)",
                                  "T.cat([x, x], dim=2)", "T.stack([x, x], dim=4)", "x.topk(1, dim=-3)",
                                  "x.roll(1, 2)", "T.flatten(x, 0, 5)"])
def test_out_of_range_dims_raise_index_error_naming_dim_and_rank(expr):
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    ns_t = {"x": torch.from_numpy(a), "T": torch, "idx": torch.zeros(2, 3, dtype=torch.long)}
    ns_o = {"x": Tensor(a), "T": tinytorch, "idx": np.zeros((2, 3), dtype=np.int64)}
    with pytest.raises((IndexError, RuntimeError)):                # torch's own verdict: out of range
        eval(expr, ns_t)
    with pytest.raises(IndexError, match=r"dim -?\d+ is out of range for a tensor of 2 dimension"):
        eval(expr, ns_o)


def test_cross_entropy_refuses_integer_logits_and_0d_input():
    with pytest.raises(RuntimeError):
        torch.nn.functional.cross_entropy(torch.tensor([[1, 2, 3]]), torch.tensor([0]))
    with pytest.raises(RuntimeError, match="floating point, got dtype int64"):
        nn.CrossEntropyLoss()(Tensor([[1, 2, 3]]), [0])
    with pytest.raises(ValueError, match="0-d"):
        nn.CrossEntropyLoss()(Tensor(np.float32(1.0)), np.array(0))


def test_gelu_of_a_0d_tensor_and_its_gradient_match_pytorch():
    for approximate in ("none", "tanh"):
        x, tx = Tensor(np.float32(0.7), requires_grad=True), torch.tensor(0.7, requires_grad=True)
        y, ty = nn.GELU(approximate)(x), torch.nn.GELU(approximate=approximate)(tx)
        y.backward(), ty.backward()
        assert y.shape == () and np.isclose(y.item(), ty.item(), rtol=1e-6)
        assert np.isclose(x.grad.item(), tx.grad.item(), rtol=1e-6)


def test_gelu_tanh_float16_stays_finite_where_pytorch_is():
    a = np.array([-300.0, -256.0, -3.0, 0.0, 2.0, 256.0, 300.0, 1000.0], dtype=np.float16)
    x, tx = Tensor(a, dtype=np.float16, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = nn.GELU("tanh")(x), torch.nn.GELU(approximate="tanh")(tx)
    y.sum().backward(), ty.sum().backward()
    assert y.dtype == np.float16 and x.grad.dtype == np.float16
    assert np.isfinite(x.grad.data).all() and np.isfinite(y.data).all()
    np.testing.assert_allclose(y.data.astype(np.float32), ty.detach().numpy().astype(np.float32), rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(x.grad.data.astype(np.float32), tx.grad.numpy().astype(np.float32), rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adadelta"])
def test_optimizers_step_a_0d_parameter_like_pytorch(name):
    kwargs = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=0.1), "AdamW": dict(lr=0.1, weight_decay=0.1),
              "RMSprop": dict(lr=0.01, momentum=0.5), "Adadelta": dict(lr=1.0)}[name]
    p, tp = nn.Parameter(np.float32(1.5)), torch.nn.Parameter(torch.tensor(1.5))
    opt, topt = getattr(tinytorch.optim, name)([p], **kwargs), getattr(torch.optim, name)([tp], **kwargs)
    for _ in range(3):
        opt.zero_grad(), topt.zero_grad()
        (p * p * 3).backward(), (tp * tp * 3).backward()
        opt.step(), topt.step()
    assert p.shape == () and np.isclose(p.item(), tp.item(), rtol=1e-5)


@pytest.mark.parametrize("name", ["RMSprop", "Adadelta"])
def test_new_optimizers_match_pytorch_on_a_model(name):
    kwargs = {"RMSprop": dict(lr=0.01, alpha=0.9, momentum=0.3, weight_decay=0.01, centered=True),
              "Adadelta": dict(lr=0.5, rho=0.8, weight_decay=0.01)}[name]
    rng = np.random.default_rng(0)
    ref, model = torch.nn.Linear(4, 3), nn.Linear(4, 3)
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    opt, topt = getattr(tinytorch.optim, name)(model.parameters(), **kwargs), getattr(torch.optim, name)(ref.parameters(), **kwargs)
    for _ in range(4):
        x = rng.standard_normal((5, 4)).astype(np.float32)
        opt.zero_grad(), topt.zero_grad()
        (model(Tensor(x)) ** 2).mean().backward(), (ref(torch.from_numpy(x)) ** 2).mean().backward()
        opt.step(), topt.step()
    np.testing.assert_allclose(model.weight.data, ref.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    opt2 = getattr(tinytorch.optim, name)(model.parameters(), **kwargs)
    opt2.load_state_dict(opt.state_dict())                         # its state round-trips
    assert opt2.state_dict().keys() == opt.state_dict().keys()


# -- all-or-nothing loading -------------------------------------------------------------------------
def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("break_it, match", [
    (lambda sd: sd.__setitem__("2.bias", np.zeros(5)), "2.bias"),                       # shape, in a later key
    (lambda sd: sd.__setitem__("2.weight", [[1.0, 2.0], [3.0]]), "2.weight"),             # ragged
    (lambda sd: sd.__setitem__("2.bias", np.array(["a", "b"])), "2.bias"),               # not numbers
    (lambda sd: sd.pop("2.bias"), "2.bias"),                                             # missing
    (lambda sd: sd.__setitem__("3.weight", np.zeros(1)), "3.weight"),                    # unexpected
])
def test_failed_load_state_dict_changes_nothing_and_names_the_key(break_it, match):
    model, donor = _net(), _net()
    before = _snapshot(model)
    sd = {k: v.numpy().copy() for k, v in donor.state_dict().items()}
    break_it(sd)
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        model.load_state_dict(sd)
    for k, v in _snapshot(model).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_failed_load_checkpoint_changes_neither_weights_nor_optimizer_state(tmp_path):
    model = _net()
    opt = tinytorch.optim.Adam(model.parameters(), lr=0.1)
    (model(Tensor(np.ones((2, 3), dtype=np.float32))) ** 2).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "a.npz", model, opt)
    other = _net()
    other_opt = tinytorch.optim.Adam(other.parameters(), lr=0.5)
    (other(Tensor(np.ones((2, 3), dtype=np.float32))) ** 2).sum().backward()
    other_opt.step()
    sched = tinytorch.optim.lr_scheduler.StepLR(other_opt, step_size=2)
    before, opt_before = _snapshot(other), {k: np.array(v) for k, v in other_opt.state_dict().items()}
    with pytest.raises(ValueError, match="scheduler"):              # the checkpoint has no scheduler state
        load_checkpoint(path, other, other_opt, scheduler=sched)
    for k, v in _snapshot(other).items():
        np.testing.assert_array_equal(v, before[k])
    after = other_opt.state_dict()
    assert after.keys() == opt_before.keys() and all(np.array_equal(after[k], opt_before[k]) for k in after)
    load_checkpoint(path, other, other_opt)                         # the good load still works
    for k, v in _snapshot(other).items():
        np.testing.assert_array_equal(v, _snapshot(model)[k])


@pytest.mark.parametrize("expr", ["F.softmax(x, dim=-1)", "F.log_softmax(x, dim=-1)", "F.gelu(x)", "F.mse_loss(x, x)",
                                  "T.nn.Linear(3, 2)(x)", "F.cross_entropy(x, T.tensor([0]))"])
def test_floating_ops_refuse_integer_input_as_pytorch_does(expr):
    with pytest.raises((RuntimeError, NotImplementedError)):
        eval(expr, {"T": torch, "F": torch.nn.functional, "x": torch.tensor([[1, 2, 3]])})
    with pytest.raises(RuntimeError, match="floating.point"):
        eval(expr, {"T": tinytorch, "F": tinytorch.nn.functional, "x": tinytorch.tensor([[1, 2, 3]])})


def test_log_softmax_of_a_0d_tensor_is_zero_as_in_pytorch():
    x, tx = Tensor(np.float32(3.0), requires_grad=True), torch.tensor(3.0, requires_grad=True)
    y, ty = tinytorch.nn.functional.log_softmax(x, dim=0), torch.nn.functional.log_softmax(tx, dim=0)
    (y * 2).backward(), (ty * 2).backward()
    assert y.shape == () and y.item() == ty.item() == 0.0 and x.grad.item() == tx.grad.item()


F16 = np.array([[-300.0, -60000.0, -3.0, 0.0, 2.0, 300.0, 60000.0, 1000.0]], dtype=np.float16)


@pytest.mark.parametrize("expr", ["T.sigmoid(x)", "T.tanh(x)", "F.relu(x)", "F.gelu(x)", "F.gelu(x, approximate='tanh')",
                                  "F.softmax(x, dim=-1)", "F.cross_entropy(x, T.tensor([3]))", "x.sum()", "x.mean()",
                                  "F.linear(x, T.ones(2, 8, dtype=T.float16))", "x.clamp(-1.0, 1.0)", "x.max()"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_float16_stays_finite_wherever_pytorch_does(expr):
    def run(T):
        x = T.tensor(F16, requires_grad=True)
        y = eval(expr, {"T": T, "F": T.nn.functional, "x": x})
        (y.sum() if y.ndim else y).backward()
        vals = y.detach().float().numpy() if T is torch else y.data.astype(np.float32)
        grads = x.grad.float().numpy() if T is torch else x.grad.data.astype(np.float32)
        return vals, grads, str(y.dtype).removeprefix("torch.")
    tv, tg, tdt = run(torch)
    ov, og, odt = run(tinytorch)
    assert np.isfinite(tv).all() and np.isfinite(tg).all()             # PyTorch is finite here...
    assert np.isfinite(ov).all() and np.isfinite(og).all(), expr       # ...and so is tinytorch
    assert odt == tdt == "float16"
