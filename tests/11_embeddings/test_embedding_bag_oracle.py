"""Module 11's EmbeddingBag against torch.nn.functional.embedding_bag (float64): modes sum/mean/max, 2-D
inputs and offsets (empty bags, include_last_offset), per_sample_weights, padding_idx; the output and the
gradients at the weight and the per-sample weights, and the torch-named faces."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tinytorch.nn as tnn
import tinytorch.nn.functional as TF
from tinytorch.core.embeddings import embedding_bag
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)
CASES = [  # (input, offsets, include_last_offset)
    (np.array([[1, 2, 3], [4, 4, 0], [9, 8, 1]]), None, False),
    (np.array([1, 2, 4, 5, 4, 3, 2, 9]), np.array([0, 2, 2, 5]), False),
    (np.array([1, 2, 4, 5, 4, 3, 2, 9]), np.array([0, 3, 3, 8]), True),
    (np.array([0, 0, 7, 0]), np.array([0, 1, 4]), False),
]


def _grads(mode, inp, off, last, padding_idx, with_psw, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((10, 4))
    psw = rng.standard_normal(inp.shape) if with_psw else None
    wt = torch.tensor(w, requires_grad=True)
    pt = None if psw is None else torch.tensor(psw, requires_grad=True)
    theirs = F.embedding_bag(torch.tensor(inp), wt, None if off is None else torch.tensor(off), mode=mode,
                             per_sample_weights=pt, include_last_offset=last, padding_idx=padding_idx)
    ours_w = Tensor(w, dtype=np.float64, requires_grad=True)
    ours_p = None if psw is None else Tensor(psw, dtype=np.float64, requires_grad=True)
    ours = embedding_bag(inp, ours_w, off, mode, ours_p, last, padding_idx)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    up = rng.standard_normal(ours.shape)
    theirs.backward(torch.tensor(up))
    ours.backward(up)
    np.testing.assert_allclose(ours_w.grad.data, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    if psw is not None:
        np.testing.assert_allclose(ours_p.grad.data, pt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ("sum", "mean", "max"))
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("padding_idx", (None, 0))
def test_embedding_bag_matches_torch(mode, case, padding_idx):
    inp, off, last = CASES[case]
    _grads(mode, inp, off, last, padding_idx, False, seed=case)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_per_sample_weights_match_torch(case):
    inp, off, last = CASES[case]
    _grads("sum", inp, off, last, None, True, seed=10 + case)


def test_faces():
    rng = np.random.default_rng(0)
    bag = tnn.EmbeddingBag(6, 3, mode="max", rng=rng)
    ref = torch.nn.EmbeddingBag(6, 3, mode="max")
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(bag.weight.data))
    ids, off = np.array([1, 5, 2, 2, 0]), np.array([0, 2])
    np.testing.assert_allclose(bag(ids, off).data, ref(torch.tensor(ids), torch.tensor(off)).detach().numpy(), rtol=1e-6)
    assert TF.embedding_bag is embedding_bag


@pytest.mark.parametrize("norm_type", (2.0, 1.0, 3.0))
def test_max_norm_matches_torch(norm_type):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 5)) * 2
    ids = np.array([[1, 3, 3], [7, 1, 0]])
    wt = torch.tensor(w.copy())
    theirs = F.embedding(torch.tensor(ids), wt, max_norm=1.5, norm_type=norm_type)
    ours_w = Tensor(w.copy(), dtype=np.float64)
    ours = TF.embedding(ids, ours_w, max_norm=1.5, norm_type=norm_type)
    np.testing.assert_allclose(ours_w.data, wt.numpy(), rtol=1e-12, atol=1e-12)   # the same rows renormalised
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12, atol=1e-12)
