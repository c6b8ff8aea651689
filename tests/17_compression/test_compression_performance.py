"""Module 17: compression really makes models smaller (counts and bytes, ratios with wide margins).

Masks alone change no size: a zeroed row costs what it did. After `compact`, structured pruning has
physically removed rows, filters and heads (and the matching input columns of the next layer), and the
parameter and byte counts fall in proportion, while the function is unchanged. Unstructured sparsity
pays in CSR only past about 50 %; low rank pays when r < mn / (m + n). No timing here: speed is shown by
benchmark scripts, side by side, not by timed tests.
"""
import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.activations import ReLU, GELU
from tinytorch.core.spatial import Conv2d, MaxPool2d, Flatten
from tinytorch.core.transformers import GPT
from tinytorch.optimization.compression import (CompressionAnalyzer, compact, csr_nbytes, low_rank_linear,
                                                magnitude_prune, model_bytes, structured_prune)


def nbytes(model):
    return sum(p.data.nbytes for p in model.parameters())


def test_masks_alone_change_no_size_compaction_does():
    rng = np.random.default_rng(0)
    model = Sequential(Linear(64, 256, rng=rng), ReLU(), Linear(256, 256, rng=rng), GELU(), Linear(256, 10, rng=rng))
    x = Tensor(rng.standard_normal((8, 64)).astype(np.float32))
    n0, b0 = model.num_parameters(), nbytes(model)
    structured_prune(model, 0.75)
    assert model.num_parameters() == n0 and nbytes(model) == b0        # zeroed, not removed
    with no_grad():
        y = model(x).data
    info = compact(model)
    assert info["parameters_before"] == n0 and info["parameters_after"] == model.num_parameters()
    assert model.num_parameters() / n0 < 0.15                          # 64*64 + 64*64 + 64*10 of 64*256 + 256*256 + ...
    assert nbytes(model) / b0 < 0.15
    assert [c["after"] for c in info["changes"]] == [64, 64]
    with no_grad():
        np.testing.assert_allclose(model(x).data, y, atol=1e-5)


def test_conv_filters_compacted_shrink_every_following_layer():
    rng = np.random.default_rng(1)
    model = Sequential(Conv2d(3, 32, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Conv2d(32, 32, 3, padding=1, rng=rng),
                       ReLU(), MaxPool2d(2), Flatten(), Linear(32 * 2 * 2, 10, rng=rng))
    n0 = model.num_parameters()
    structured_prune(model, 0.5)
    compact(model)
    assert model.layers[0].out_channels == 16 and model.layers[3].in_channels == 16
    assert model.layers[3].out_channels == 16 and model.layers[7].in_features == 16 * 4
    assert model.num_parameters() / n0 < 0.45                           # the middle conv shrinks 4x
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert model(x).shape == (2, 10)


def test_attention_heads_and_mlp_units_compacted_in_a_gpt():
    gpt = GPT(vocab_size=20, embed_dim=32, num_layers=2, num_heads=8, max_seq_len=8, seed=0)
    ids = np.random.default_rng(2).integers(0, 20, (2, 8))
    gpt.eval()
    n0 = gpt.num_parameters()
    structured_prune(gpt, 0.75)
    with no_grad():
        before = gpt(ids).data
    info = compact(gpt)
    kinds = sorted((c["kind"], c["before"], c["after"]) for c in info["changes"])
    assert kinds == [("heads", 8, 2)] * 2 + [("neurons", 128, 32)] * 2
    block_params = n0 - gpt.num_parameters()
    # per block: q/k/v/out lose 3/4 of 4*32*32 weights (+ 3 biases of 24), the MLP 3/4 of 2*32*128 (+ 96)
    assert block_params == 2 * (3 * 32 * 32 + 3 * 24 + 2 * 3 * 32 * 32 + 96)
    with no_grad():
        np.testing.assert_allclose(gpt(ids).data, before, atol=1e-5)


def test_unstructured_sparsity_pays_in_csr_only_past_about_a_fifth():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    ratios = {}
    for s in (0.0, 0.3, 0.5, 0.7, 0.9, 0.99):
        pruned = w * (np.abs(w) > np.quantile(np.abs(w), s)) if s else w
        ratios[s] = csr_nbytes(pruned) / pruned.nbytes
    # module 16's one byte model: 4-byte value + 1-byte column index (256 columns) per nonzero, 4 per row
    assert ratios[0.0] > 1.2 and ratios[0.3] > 0.85                    # 5 bytes per nonzero vs 4
    assert ratios[0.5] < 0.7 and ratios[0.9] < 0.14 and ratios[0.99] < 0.03
    assert ratios[0.0] == pytest.approx((w.size * 5 + 257 * 4) / w.nbytes)
    model = Sequential(Linear(256, 256, rng=rng), ReLU(), Linear(256, 10, rng=rng))
    magnitude_prune(model, 0.95)
    b = model_bytes(model)
    assert b["sparse"] / b["dense"] < 0.15
    t = CompressionAnalyzer(model).totals()
    assert t["bytes_best"] == b["sparse"] and t["compression"] > 6


@pytest.mark.parametrize("rank, smaller", [(4, True), (16, True), (32, False)])
def test_low_rank_pays_below_mn_over_m_plus_n(rank, smaller):
    lin = Linear(64, 64, rng=np.random.default_rng(4))                   # break-even at r = 64 * 64 / 128 = 32
    factored = low_rank_linear(lin, rank=rank)
    ratio = factored.num_parameters() / lin.num_parameters()
    assert (ratio < 1) == smaller
    if rank == 4:
        assert ratio < 0.15
