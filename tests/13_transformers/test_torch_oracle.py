"""Module 13 (transformers) against PyTorch.

LayerNorm against torch.nn.LayerNorm (one and two normalised dimensions, with and without the affine
parameters, non-contiguous input), then MLP, TransformerBlock and the whole GPT against the same model
written in PyTorch (same module names, so the state dict moves unchanged; the weight tie included):
logits, the cross-entropy loss and the gradient of every parameter, in float64 to ~1e-9 and float32 to
~1e-4. Random cotangents where a loss would hide a wrong permutation.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import GPT, MLP, LayerNorm, TransformerBlock

TOL = {np.float64: dict(rtol=1e-8, atol=1e-10), np.float32: dict(rtol=2e-3, atol=2e-5)}


def close(got, want, dtype, what=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == tuple(want.shape), (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, err_msg=what, **TOL[dtype])


def to_dtype(module, dtype):
    for p in module.parameters():
        p.data = p.data.astype(dtype)
    return module


# ------------------------------------------------------------------------------------------------
# LayerNorm
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 8), 8), ((2, 3, 4, 5), (4, 5)), ((7,), 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, normalized, affine, dtype):
    rng = np.random.default_rng(len(shape))
    ln = to_dtype(LayerNorm(normalized, eps=1e-5, elementwise_affine=affine), dtype)
    ref = nn.LayerNorm(normalized, eps=1e-5, elementwise_affine=affine, dtype=torch.float64 if dtype == np.float64
                       else torch.float32)
    if affine:
        ln.weight.data[...] = rng.standard_normal(ln.weight.shape)
        ln.bias.data[...] = rng.standard_normal(ln.bias.shape)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(ln.weight.data))
            ref.bias.copy_(torch.from_numpy(ln.bias.data))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    tx = Tensor(x, requires_grad=True, dtype=dtype)
    out = ln(tx)
    G = rng.standard_normal(out.shape).astype(dtype)
    out.backward(G)
    px = torch.tensor(x, requires_grad=True)
    y = ref(px)
    y.backward(torch.from_numpy(G))
    assert out.dtype == dtype
    close(out.data, y, dtype, "output")
    close(tx.grad.data, px.grad, dtype, "grad x")
    if affine:
        close(ln.weight.grad.data, ref.weight.grad, dtype, "grad weight")
        close(ln.bias.grad.data, ref.bias.grad, dtype, "grad bias")
        assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    else:
        assert list(ln.parameters()) == []


def test_layer_norm_non_contiguous_input_and_constant_rows():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 4)).transpose(1, 0, 2)            # (3, 5, 4), not contiguous
    x[0, 0] = 2.5                                                     # a constant row: variance 0
    ln = to_dtype(LayerNorm(4), np.float64)
    tx = Tensor(x, requires_grad=True, dtype=np.float64)
    out = ln(tx)
    G = rng.standard_normal(out.shape)
    out.backward(G)
    px = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    ref = F.layer_norm(px, (4,), torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    ref.backward(torch.from_numpy(G))
    close(out.data, ref, np.float64, "output")
    close(tx.grad.data, px.grad, np.float64, "grad x")
    assert np.isfinite(tx.grad.data).all()


# ------------------------------------------------------------------------------------------------
# The same GPT in PyTorch
# ------------------------------------------------------------------------------------------------
class TorchAttention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask=None):
        B, T, D = x.shape
        split = lambda t: t.view(B, T, self.h, D // self.h).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                           attn_mask=mask)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, D))


class TorchMLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchBlock(nn.Module):
    def __init__(self, d, h, ratio):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), TorchAttention(d, h)
        self.ln2, self.mlp = nn.LayerNorm(d), TorchMLP(d, int(round(ratio * d)))

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class TorchPositions(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, d))


class TorchGPT(nn.Module):
    def __init__(self, V, d, L, h, T, tie=True, ratio=4):
        super().__init__()
        self.token_embedding = nn.Embedding(V, d)
        self.position_embedding = TorchPositions(T, d)
        self.blocks = nn.ModuleList(TorchBlock(d, h, ratio) for _ in range(L))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, V, bias=False)
        if tie:
            self.lm_head.weight = self.token_embedding.weight

    def forward(self, ids):
        T = ids.shape[1]
        x = self.token_embedding(ids) + self.position_embedding.weight[:T]
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for block in self.blocks:
            x = block(x, mask)
        return self.lm_head(self.ln_f(x))


def torch_copy(module, torch_module, dtype):
    "Load `module`'s weights into `torch_module` (buffers such as head_mask are tinytorch's own)."
    state = {k: torch.from_numpy(np.array(v, dtype=dtype)) for k, v in module.state_dict().items()
             if not k.endswith("head_mask")}
    torch_module = torch_module.to(torch.float64 if dtype == np.float64 else torch.float32)
    torch_module.load_state_dict(state, strict=True)          # after .to(): loading casts to the module's dtype
    return torch_module


def assert_grads_match(module, torch_module, dtype):
    theirs = dict(torch_module.named_parameters())          # a tied weight appears once, under its first name
    for name, p in module.named_parameters():
        assert name in theirs, name
        assert p.grad is not None, name
        close(p.grad.data, theirs[name].grad, dtype, f"grad {name}")


def test_mlp_and_block_against_torch():
    rng = np.random.default_rng(2)
    D, H, T, B = 12, 3, 5, 2
    for make, make_ref, args in ((lambda: MLP(D, 20, rng=rng), lambda: TorchMLP(D, 20), ()),
                                 (lambda: TransformerBlock(D, H, mlp_ratio=2, rng=rng),
                                  lambda: TorchBlock(D, H, 2), ("mask",))):
        mod = to_dtype(make(), np.float64)
        for p in mod.parameters():                          # LayerNorm starts at (1, 0): make it generic
            p.data[...] = rng.standard_normal(p.shape) * 0.5
        ref = torch_copy(mod, make_ref(), np.float64)
        x = rng.standard_normal((B, T, D))
        mask = np.tril(np.ones((T, T), dtype=bool))
        tx = Tensor(x, requires_grad=True, dtype=np.float64)
        out = mod(tx, mask=mask) if args else mod(tx)
        G = rng.standard_normal(out.shape)
        out.backward(G)
        px = torch.tensor(x, requires_grad=True)
        y = ref(px, torch.from_numpy(mask)) if args else ref(px)
        y.backward(torch.from_numpy(G))
        close(out.data, y, np.float64, f"{type(mod).__name__} output")
        close(tx.grad.data, px.grad, np.float64, f"{type(mod).__name__} grad x")
        assert_grads_match(mod, ref, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tie", [True, False])
def test_gpt_logits_loss_and_every_gradient_against_torch(tie, dtype):
    rng = np.random.default_rng(3)
    V, D, L, H, T = 17, 16, 2, 4, 9
    model = to_dtype(GPT(V, D, L, H, T, tie_weights=tie, seed=0), dtype)
    for p in model.parameters():                        # perturb everything, LayerNorms and biases included
        p.data += (rng.standard_normal(p.shape) * 0.05).astype(dtype)
    assert (model.lm_head.weight is model.token_embedding.weight) == tie
    ref = torch_copy(model, TorchGPT(V, D, L, H, T, tie=tie), dtype)
    ids = rng.integers(0, V, (3, T))
    targets = rng.integers(0, V, (3, T))

    logits = model(ids)
    loss = CrossEntropyLoss()(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    ref_logits = ref(torch.from_numpy(ids))
    ref_loss = F.cross_entropy(ref_logits.reshape(-1, V), torch.from_numpy(targets.reshape(-1)))
    ref_loss.backward()
    close(logits.data, ref_logits, dtype, "logits")
    close(np.asarray(loss.data), ref_loss, dtype, "loss")
    assert_grads_match(model, ref, dtype)


def test_gpt_gradients_under_a_random_cotangent_float64():
    "A random cotangent on the logits (not a loss): catches gradients that are right only on average."
    rng = np.random.default_rng(4)
    V, D, L, H, T = 11, 8, 2, 2, 6
    model = to_dtype(GPT(V, D, L, H, T, seed=1), np.float64)
    for p in model.parameters():
        p.data += rng.standard_normal(p.shape) * 0.1
    ref = torch_copy(model, TorchGPT(V, D, L, H, T), np.float64)
    ids = rng.integers(0, V, (2, 5))                     # shorter than max_seq_len: positions 0..4 only
    out = model(ids)
    G = rng.standard_normal(out.shape)
    out.backward(G)
    y = ref(torch.from_numpy(ids))
    y.backward(torch.from_numpy(G))
    close(out.data, y, np.float64, "logits")
    assert_grads_match(model, ref, np.float64)
    assert (model.position_embedding.weight.grad.data[5:] == 0).all()    # unused positions get nothing
