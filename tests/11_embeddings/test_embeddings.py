"""Embeddings against PyTorch and against direct formulas: lookups and their gradients (random
cotangents, repeated ids, padding_idx), positional tables, the sinusoidal formula, gradcheck."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytorch.core import autograd
from tinytorch.core.autograd import gradcheck
from tinytorch.core.embeddings import (Embedding, EmbeddingFunction, PositionalEncoding,
                                       SinusoidalPositionalEncoding, sinusoidal_table, token_ids)
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _recording_on():
    autograd._grad_mode.enabled = True
    yield
    autograd._grad_mode.enabled = True


def torch_lookup(weight, ids, cotangent, padding_idx=None):
    w = torch.tensor(weight, requires_grad=True)
    out = F.embedding(torch.tensor(ids), w, padding_idx=padding_idx)
    out.backward(torch.tensor(cotangent))
    return out.detach().numpy(), w.grad.numpy()


# -------------------------------------------------------------------------------------------------
# Embedding against torch.nn.functional.embedding
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4)])
def test_forward_and_backward_match_torch(shape):
    rng = np.random.default_rng(len(shape))
    emb = Embedding(11, 6, rng=rng)
    ids = rng.integers(0, 11, size=shape)
    out = emb(ids)
    assert out.shape == shape + (6,) and out.dtype == np.float32
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    t_out, t_grad = torch_lookup(emb.weight.data, ids, g)
    np.testing.assert_array_equal(out.data, t_out)
    np.testing.assert_allclose(emb.weight.grad.data, t_grad, rtol=1e-5, atol=1e-6)
    unused = np.setdiff1d(np.arange(11), ids)
    assert (emb.weight.grad.data[unused] == 0).all()                     # exactly zero, not small


def test_repeated_ids_accumulate():
    rng = np.random.default_rng(0)
    emb = Embedding(5, 3, rng=rng)
    ids = np.array([[2, 2, 2], [4, 2, 0]])
    g = rng.standard_normal((2, 3, 3)).astype(np.float32)
    emb(ids).backward(g)
    np.testing.assert_allclose(emb.weight.grad.data[2], g[0, 0] + g[0, 1] + g[0, 2] + g[1, 1], rtol=1e-6)
    np.testing.assert_allclose(emb.weight.grad.data[4], g[1, 0], rtol=1e-6)
    _, t_grad = torch_lookup(emb.weight.data, ids, g)
    np.testing.assert_allclose(emb.weight.grad.data, t_grad, rtol=1e-5, atol=1e-6)
    emb(ids).backward(g)                                                  # a second backward adds
    np.testing.assert_allclose(emb.weight.grad.data, 2 * t_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding_idx", [0, 3, -1])
def test_padding_idx_matches_torch(padding_idx):
    rng = np.random.default_rng(5)
    emb = Embedding(6, 4, padding_idx=padding_idx, rng=rng)
    ref = torch.nn.Embedding(6, 4, padding_idx=padding_idx)
    row = padding_idx % 6
    assert emb.padding_idx == ref.padding_idx == row
    assert (emb.weight.data[row] == 0).all() and (ref.weight.detach().numpy()[row] == 0).all()   # zero at init
    emb.weight.data[row] = 1.5                          # like torch, forward returns the row as it is
    ids = np.array([[row, 1, row], [2, row, 1]])
    g = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out = emb(ids)
    out.backward(g)
    t_out, t_grad = torch_lookup(emb.weight.data, ids, g, padding_idx=row)
    np.testing.assert_array_equal(out.data, t_out)
    np.testing.assert_allclose(emb.weight.grad.data, t_grad, rtol=1e-5, atol=1e-6)
    assert (emb.weight.grad.data[row] == 0).all()


def test_weights_move_to_and_from_torch():
    ref = torch.nn.Embedding(9, 5)
    emb = Embedding(9, 5)
    emb.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    ids = np.array([[8, 0, 3]])
    np.testing.assert_array_equal(emb(ids).data, ref(torch.tensor(ids)).detach().numpy())
    assert list(emb.state_dict()) == list(ref.state_dict()) == ["weight"]


def test_init_is_standard_normal_float32():
    emb = Embedding(400, 250, rng=np.random.default_rng(0))
    w = emb.weight.data
    assert w.shape == (400, 250) and w.dtype == np.float32 and emb.weight.requires_grad
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01          # N(0, 1), as torch.nn.Embedding
    assert [n for n, _ in emb.named_parameters()] == ["weight"]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.lists(st.integers(1, 4), min_size=0, max_size=3),
       st.integers(0, 2**31 - 1))
def test_lookup_is_a_one_hot_matmul(V, D, shape, seed):
    rng = np.random.default_rng(seed)
    emb = Embedding(V, D, rng=rng)
    ids = rng.integers(0, V, size=tuple(shape))
    out = emb(ids)
    onehot = np.eye(V)[ids]
    np.testing.assert_allclose(out.data, onehot @ emb.weight.data, rtol=1e-6, atol=1e-6)
    g = rng.standard_normal(out.shape)
    out.backward(g.astype(np.float32))
    want = onehot.reshape(-1, V).T @ g.reshape(-1, D)                    # the matmul's weight gradient
    np.testing.assert_allclose(emb.weight.grad.data, want, rtol=1e-4, atol=1e-5)


def test_gradcheck_float64():
    rng = np.random.default_rng(3)
    w = Tensor(rng.standard_normal((7, 3)), requires_grad=True, dtype=np.float64)
    ids = np.array([[1, 6, 1], [0, 1, 4]])
    assert gradcheck(lambda w: EmbeddingFunction.apply(w, ids=ids), [w])
    assert gradcheck(lambda w: (EmbeddingFunction.apply(w, ids=ids) * w[:2, None, :]).sum(axis=1), [w])
    # padding_idx deliberately departs from the true derivative (that row's gradient is forced to 0)


def test_ids_of_every_integer_kind():
    emb = Embedding(300, 2, rng=np.random.default_rng(0))
    for ids in ([3, 299], np.array([3, 299], dtype=np.int32), np.array([3, 299], dtype=np.uint16),
                Tensor(np.array([3, 299])), (3, 299)):
        np.testing.assert_array_equal(emb(ids).data, emb.weight.data[[3, 299]])
    assert emb(7).shape == (2,) and emb([]).shape == (0, 2)
    assert token_ids(np.array([[1, 2]], dtype=np.uint8), 3).dtype == np.uint8


# -------------------------------------------------------------------------------------------------
# Positional encodings
# -------------------------------------------------------------------------------------------------
def direct_sinusoid(L, d, base=10000.0):
    table = np.zeros((L, d))
    for pos in range(L):
        for j in range(d):
            i = j // 2
            angle = pos / base ** (2 * i / d)
            table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("L, d", [(50, 16), (17, 7), (3, 1), (128, 64)])
def test_sinusoidal_table_matches_the_formula(L, d):
    np.testing.assert_allclose(sinusoidal_table(L, d), direct_sinusoid(L, d), atol=2e-6)
    spe = SinusoidalPositionalEncoding(L, d)
    assert spe.pe.shape == (L, d) and spe.pe.dtype == np.float32 and spe.table is spe.pe
    np.testing.assert_allclose(spe.pe.data, direct_sinusoid(L, d), atol=2e-6)
    np.testing.assert_allclose(sinusoidal_table(L, d, base=100.0), direct_sinusoid(L, d, base=100.0), atol=2e-6)


def test_sinusoidal_dot_products_depend_only_on_the_offset():
    P = sinusoidal_table(200, 32).astype(np.float64)
    for k in (1, 5, 40):
        dots = np.einsum("pd,pd->p", P[:-k], P[k:])
        np.testing.assert_allclose(dots, dots[0], atol=1e-4)
    assert np.abs(P).max() <= 1.0
    assert len({tuple(np.round(r, 5)) for r in P}) == 200                # every position is distinct


@pytest.mark.parametrize("start_pos", [0, 3, 9])
@pytest.mark.parametrize("batched", [True, False])
def test_learned_positions_match_torch_forward_and_backward(start_pos, batched):
    rng = np.random.default_rng(start_pos)
    pe = PositionalEncoding(12, 5, rng=rng)
    assert pe.weight.shape == (12, 5) and pe.table is pe.weight
    shape = (3, 3, 5) if batched else (3, 5)
    x = Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    out = pe(x, start_pos=start_pos)
    g = rng.standard_normal(shape).astype(np.float32)
    out.backward(g)
    tw = torch.tensor(pe.weight.data, requires_grad=True)
    tx = torch.tensor(x.data, requires_grad=True)
    t_out = tx + tw[start_pos:start_pos + 3]
    t_out.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(pe.weight.grad.data, tw.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-6)
    outside = np.r_[0:start_pos, start_pos + 3:12]
    assert (pe.weight.grad.data[outside] == 0).all()


def test_learned_positions_init_is_small():
    w = PositionalEncoding(512, 64, rng=np.random.default_rng(0)).weight.data
    assert w.dtype == np.float32 and abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002


def test_sinusoidal_is_a_buffer_that_never_trains():
    spe = SinusoidalPositionalEncoding(10, 4)
    assert list(spe.parameters()) == [] and list(spe.state_dict()) == ["pe"]
    before = spe.pe.data.copy()
    x = Tensor(np.zeros((2, 6, 4), dtype=np.float32), requires_grad=True)
    out = spe(x, start_pos=2)
    np.testing.assert_allclose(out.data, np.broadcast_to(before[2:8], (2, 6, 4)))
    out.sum().backward()
    assert spe.pe.grad is None and (x.grad.data == 1).all()
    np.testing.assert_array_equal(spe.pe.data, before)


def test_positional_parameters_train_with_optimizers():
    pe = PositionalEncoding(8, 3, rng=np.random.default_rng(0))
    target = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    opt = Adam(pe.parameters(), lr=0.05)
    x = Tensor(np.zeros((5, 3), dtype=np.float32))
    untouched = pe.weight.data[5:].copy()
    for _ in range(300):
        loss = ((pe(x) - Tensor(target)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(pe.weight.data[:5], target, atol=1e-2)   # learned the first 5 rows
    np.testing.assert_array_equal(pe.weight.data[5:], untouched)       # never-used rows: zero grad, no move


def test_sgd_moves_only_the_rows_that_were_used():
    emb = Embedding(10, 4, rng=np.random.default_rng(0))
    before = emb.weight.data.copy()
    opt = SGD(emb.parameters(), lr=0.1)
    ids = np.array([[1, 7, 7]])
    emb(ids).sum().backward()
    opt.step()
    changed = np.flatnonzero((emb.weight.data != before).any(axis=1))
    assert changed.tolist() == [1, 7]
    np.testing.assert_allclose(emb.weight.data[7], before[7] - 0.1 * 2, rtol=1e-6)
