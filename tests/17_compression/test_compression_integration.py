"""Module 17: compression wired into the models of the course.

Pruning happens in place; sparsity measured three ways (measure_sparsity, the masks, zeros in the
state_dict) agrees exactly; a pruned model still infers (same shape, finite, a bounded change); structured
pruning after unstructured never lowers sparsity; the distillation loss is a scalar that trains the
student; and all of it works with attention (heads) and convolutions (filters), compaction included.
"""
import copy
import json
import os

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential, Dropout
from tinytorch.core.activations import ReLU, Tanh, Sigmoid
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.spatial import Conv2d, MaxPool2d, Flatten
from tinytorch.core.embeddings import Embedding
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.transformers import GPT
from tinytorch.optimization.compression import (
    CompressionAnalyzer, KnowledgeDistillation, compact, compress_model, evaluate, fine_tune, head_norms,
    head_slices, layer_chains, low_rank_approximate, low_rank_linear, magnitude_prune, masks, measure_sparsity,
    model_bytes, prunable_weights, structured_prune)


def mlp(seed=0, sizes=(12, 16, 8, 3), act=ReLU):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            layers.append(act())
    return Sequential(*layers)


def x_of(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def mixed_model(seed=0):
    "Every kind of prunable weight (only measured, never run): an embedding, a shared Linear weight, a conv."
    rng = np.random.default_rng(seed)
    emb = Embedding(20, 8, rng=rng)
    l1, l2, l3 = Linear(8, 8, rng=rng), Linear(8, 8, rng=rng), Linear(8, 4, rng=rng)
    l2.weight = l1.weight                                   # shared
    conv = Conv2d(1, 3, 3, rng=rng)
    return Sequential(emb, l1, ReLU(), l2, ReLU(), l3, conv)


# ================================================================================================
def test_pruning_happens_in_place():
    model = mlp()
    w = model.layers[0].weight
    data = w.data
    magnitude_prune(model, 0.6)
    assert model.layers[0].weight is w and w.data is data              # the same Parameter, the same array
    assert (data[~w.mask] == 0).all() and w.mask.shape == w.shape
    assert model.layers[0].weight_mask.data is w.mask                   # the buffer is the mask


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.77, 1.0])
def test_sparsity_measured_three_ways_agrees_exactly(scope, amount):
    model = mixed_model(1)
    magnitude_prune(model, amount, scope=scope)
    magnitude_prune(model, 0.1, scope=scope)                            # twice: masks combine
    params = dict(model.named_parameters())                            # unique: a shared weight once
    total = sum(p.numel() for p in params.values())
    # 1. measure_sparsity on the model
    way1 = measure_sparsity(model)
    # 2. the masks (a parameter without a mask has no pruned entry; these random weights have no other zero)
    pruned = sum(int((~m).sum()) for m in masks(model).values())
    way2 = pruned / total
    # 3. zeros in the state_dict arrays of the (unique) parameters
    sd = model.state_dict()
    way3 = sum(int((sd[name] == 0).sum()) for name in params) / total
    assert way1 == way2 == way3
    prunable = sum(w.param.numel() for w in prunable_weights(model))
    expected_pruned = round(amount * prunable)
    expected_pruned += round(0.1 * (prunable - expected_pruned)) if scope == "global" else 0
    if scope == "global":
        assert pruned == expected_pruned
    assert measure_sparsity(model, weights_only=True) == pruned / prunable


def test_pruned_inference_same_shape_finite_and_bounded_change():
    model = mlp(2, (20, 64, 64, 5))
    x = x_of((32, 20), 3)
    with no_grad():
        y0 = model(x).data
    changes = []
    for s in (0.2, 0.5, 0.9):
        pruned = copy.deepcopy(model)
        magnitude_prune(pruned, s)
        with no_grad():
            y = pruned(x).data
        assert y.shape == y0.shape and np.isfinite(y).all()
        changes.append(np.linalg.norm(y - y0) / np.linalg.norm(y0))
    assert changes[0] < 0.25                                            # small weights carry little
    assert changes[0] < changes[1] < changes[2]


@pytest.mark.parametrize("first", [0.0, 0.3, 0.6, 0.9])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_structured_after_unstructured_never_lowers_sparsity(first, ratio):
    rng = np.random.default_rng(4)
    model = Sequential(Conv2d(2, 6, 3, rng=rng), ReLU(), Conv2d(6, 4, 3, rng=rng), ReLU(), Flatten(),
                       Linear(4 * 2 * 2, 8, rng=rng), Tanh(), Linear(8, 3, rng=rng))
    magnitude_prune(model, first)
    before = measure_sparsity(model)
    weights_before = {n: p.data.copy() for n, p in model.named_parameters()}
    structured_prune(model, ratio)
    assert measure_sparsity(model) >= before
    for n, p in model.named_parameters():                               # no zero became nonzero
        assert ((weights_before[n] == 0) <= (p.data == 0)).all()


def test_structured_prune_targets_hidden_units_only():
    model = mlp(5, (12, 16, 8, 3))
    report = structured_prune(model, 0.5)
    assert set(report) == {"0", "2"}                                    # not the output layer
    assert len(report["0"]) == 8 and len(report["2"]) == 4
    assert (model.layers[0].bias.data[report["0"]] == 0).all()          # a removed neuron loses its bias
    assert (model.layers[4].weight.data != 0).all()
    assert [type(p).__name__ + "->" + type(c).__name__ for p, _, c in layer_chains(model)] == \
        ["Linear->Linear", "Linear->Linear"]


def test_distillation_loss_scalar_positive_finite_and_formula():
    rng = np.random.default_rng(6)
    teacher, student = mlp(7, (6, 10, 4)), mlp(8, (6, 5, 4))
    x, y = x_of((9, 6), 9), rng.integers(0, 4, 9)
    kd = KnowledgeDistillation(teacher, student, temperature=3.0, alpha=0.7)
    zs, zt = student(x), kd.teacher_logits(x)
    loss = kd.distillation_loss(zs, zt, y)
    assert loss.shape == () and np.isfinite(loss.item()) and loss.item() > 0

    def log_softmax(z):
        z = z.astype(np.float64) - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    lt, ls = log_softmax(zt.data / 3), log_softmax(zs.data / 3)
    kl = (np.exp(lt) * (lt - ls)).sum(-1).mean()
    ce = -log_softmax(zs.data)[np.arange(9), y].mean()
    assert loss.item() == pytest.approx(0.7 * 9 * kl + 0.3 * ce, rel=1e-5)
    other = KnowledgeDistillation(teacher, student, temperature=3.0, alpha=0.2).distillation_loss(zs, zt, y)
    assert abs(other.item() - loss.item()) > 1e-3                       # alpha changes it
    assert KnowledgeDistillation(teacher, student, 3.0, 1.0).distillation_loss(zt, zt).item() == pytest.approx(0, abs=1e-6)


def test_distillation_backprop_reaches_the_student_only():
    teacher, student = mlp(10, (6, 10, 4)), mlp(11, (6, 5, 4))
    teacher.train()
    kd = KnowledgeDistillation(teacher, student, 2.0, 0.5)
    x, y = x_of((8, 6), 12), np.arange(8) % 4
    t = kd.teacher_logits(x)
    assert teacher.training                                             # its mode is restored
    assert not t.requires_grad
    kd.distillation_loss(student(x), t, y).backward()
    assert all(p.grad is not None and np.abs(p.grad.data).sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_distillation_gradient_size_does_not_depend_on_temperature():
    z_s = np.random.default_rng(13).standard_normal((32, 10)).astype(np.float32)
    z_t = (z_s + np.random.default_rng(14).standard_normal((32, 10))).astype(np.float32)
    t, s = Linear(2, 10), Linear(2, 10)
    norms = {}
    for T in (4.0, 8.0, 16.0, 32.0):
        z = Tensor(z_s, requires_grad=True)
        KnowledgeDistillation(t, s, T, 1.0).distillation_loss(z, z_t).backward()
        norms[T] = np.linalg.norm(z.grad.data)
    assert max(norms.values()) / min(norms.values()) < 1.25             # with T^2: about constant
    assert norms[32.0] / 32 ** 2 < 0.02 * norms[4.0] / 4 ** 2            # without T^2: 64 times smaller


def test_distillation_trains_a_student():
    rng = np.random.default_rng(15)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    teacher = mlp(16, (6, 32, 4))
    fine_tune(teacher, [(Tensor(X), Tensor(y))], epochs=150, lr=0.02)
    student = mlp(17, (6, 8, 4))
    kd = KnowledgeDistillation(teacher, student, 2.0, 0.5)
    history = kd.fit([(Tensor(X[i:i + 50]), Tensor(y[i:i + 50])) for i in range(0, 200, 50)],
                     Adam(student.parameters(), lr=0.02), epochs=40)
    assert history[-1] < 0.5 * history[0]
    assert evaluate(student, [(Tensor(X), Tensor(y))])["accuracy"] > 0.85


def test_compression_with_attention_heads_and_tied_weights():
    gpt = GPT(vocab_size=13, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=8, seed=0)
    assert gpt.lm_head.weight is gpt.token_embedding.weight
    ids = np.random.default_rng(18).integers(0, 13, (4, 8))
    magnitude_prune(gpt, 0.5)
    report = structured_prune(gpt, 0.5)
    assert gpt.lm_head.weight is gpt.token_embedding.weight             # still tied, one mask
    assert gpt.lm_head.weight_mask.data is gpt.token_embedding.weight_mask.data is gpt.lm_head.weight.mask
    for block in gpt.blocks:
        assert (block.attn.head_mask.data == 0).sum() == 2
        for h in np.flatnonzero(block.attn.head_mask.data == 0):
            for module, attr, index in head_slices(block.attn, h):
                assert (getattr(module, attr).data[index] == 0).all()
    assert sorted(report) == ["blocks.0.attn", "blocks.0.mlp.fc1", "blocks.1.attn", "blocks.1.mlp.fc1"]
    opt = AdamW(gpt.parameters(), lr=3e-3, weight_decay=0.1)
    loss_fn, losses = CrossEntropyLoss(), []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(gpt(ids[:, :-1]).reshape(-1, 13), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for p in gpt.parameters():
        if getattr(p, "mask", None) is not None:
            assert (p.data[~p.mask] == 0).all()
    gpt.eval()
    with no_grad():
        before = gpt(ids).data
    info = compact(gpt)
    with no_grad():
        after = gpt(ids).data
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert all(b.attn.num_heads == 2 for b in gpt.blocks) and info["parameters_after"] < info["parameters_before"]


def test_head_norms_rank_what_each_head_owns():
    mha = MultiHeadAttention(8, 4, rng=np.random.default_rng(19))
    mha.v_proj.weight.data[2:4] *= 0.01                                  # head 1's value rows
    mha.q_proj.weight.data[2:4] *= 0.01
    mha.k_proj.weight.data[2:4] *= 0.01
    mha.out_proj.weight.data[:, 2:4] *= 0.01
    norms = head_norms(mha)
    assert norms.shape == (4,) and np.argmin(norms) == 1
    assert structured_prune(mha, 0.25) == {"MultiHeadAttention": [1]}               # 1 of 4 heads
    assert mha.head_mask.data.tolist() == [1, 0, 1, 1]


def test_compression_with_convolutions_train_and_compact():
    rng = np.random.default_rng(20)
    model = Sequential(Conv2d(1, 8, 3, rng=rng), ReLU(), MaxPool2d(2), Conv2d(8, 6, 3, rng=rng), ReLU(), Flatten(),
                       Linear(6, 4, rng=rng))
    x = x_of((16, 1, 8, 8), 21)
    y = np.random.default_rng(22).integers(0, 4, 16)
    magnitude_prune(model, 0.3)
    report = structured_prune(model, 0.5)
    assert len(report["0"]) == 4 and len(report["3"]) == 3
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = fine_tune(model, [(x, Tensor(y))], epochs=20, optimizer=opt)
    assert losses[-1] < losses[0]
    for p in model.parameters():
        if getattr(p, "mask", None) is not None:
            assert (p.data[~p.mask] == 0).all()
    with no_grad():
        before = model(x).data
    compact(model)
    assert model.layers[0].weight.shape == (4, 1, 3, 3) and model.layers[3].weight.shape == (3, 4, 3, 3)
    assert model.layers[6].weight.shape == (4, 3)
    with no_grad():
        np.testing.assert_allclose(model(x).data, before, atol=1e-5)


def test_compact_folds_constant_units_behind_a_sigmoid():
    model = mlp(23, (6, 10, 4), act=Sigmoid)
    x = x_of((5, 6), 24)
    structured_prune(model, 0.5)                                         # sigmoid(0) = 0.5: not zero
    with no_grad():
        before = model(x).data
    compact(model)
    assert model.layers[0].out_features == 5
    with no_grad():
        np.testing.assert_allclose(model(x).data, before, atol=1e-6)


def test_compress_model_report_and_json(tmp_path):
    rng = np.random.default_rng(25)
    X = rng.standard_normal((256, 10)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64)
    data = [(Tensor(X[i:i + 64]), Tensor(y[i:i + 64])) for i in range(0, 256, 64)]
    model = Sequential(Linear(10, 32, rng=rng), ReLU(), Dropout(0.1, rng=rng), Linear(32, 2, rng=rng))
    fine_tune(model, data, epochs=20, lr=0.01)
    path = tmp_path / "sub" / "report.json"
    out, report = compress_model(model, data, data, sparsity=0.8, steps=3, epochs_per_step=1, fine_tune_epochs=5,
                                 distill_epochs=2, lr=0.01, report_path=path)
    assert out is model and [r["stage"] for r in report["stages"]] == ["dense", "pruned", "fine-tuned", "distilled"]
    saved = json.loads(path.read_text())
    assert report["path"] == str(path) and saved == json.loads(json.dumps({k: v for k, v in report.items() if k != "path"}))
    assert os.listdir(path.parent) == ["report.json"]                   # no temporary file left
    dense, last = report["stages"][0], report["stages"][-1]
    assert last["nonzeros"] < 0.3 * dense["nonzeros"] and abs(last["weight_sparsity"] - 0.8) < 0.01
    assert last["bytes_sparse"] < dense["bytes_sparse"] == dense["bytes"]
    assert last["accuracy"] > 0.8
    assert model.layers[2].p == 0.1                                     # dropout restored after retraining


def test_analyzer_table_numbers_and_plots(tmp_path):
    model = mlp(26, (16, 32, 4))
    an = CompressionAnalyzer(model)
    magnitude_prune(model, 0.75)
    rows = {r["name"]: r for r in an.layers()}
    w = model.layers[0].weight.data
    nnz = int(np.count_nonzero(w))
    assert rows["0.weight"]["zeros"] == w.size - nnz and rows["0.weight"]["masked"]
    assert rows["0.weight"]["bytes_csr"] == nnz * (4 + 1) + 33 * 4 and rows["0.weight"]["bytes_dense"] == w.size * 4
    assert not rows["0.bias"]["prunable"] and rows["2.weight"]["prunable"]
    t = an.totals()
    assert t["bytes_best"] < t["bytes_dense"] and t["sparsity"] == measure_sparsity(model)
    assert "0.weight" in an.table() and "total" in an.table()
    for name, fig in (("s.png", an.plot_sparsity(tmp_path / "s.png")),
                      ("h.png", an.plot_weight_histograms(tmp_path / "h.png"))):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes[1].get_title() == f"weights after: {measure_sparsity(model, weights_only=True):.1%} zero"
    assert fig.axes[0].get_title() == "weights before: 0.0% zero"       # the snapshot was dense


def test_low_rank_factors_error_and_a_smaller_linear():
    rng = np.random.default_rng(27)
    W = rng.standard_normal((30, 20))
    A, B, err = low_rank_approximate(W, rank=5)
    assert A.shape == (30, 5) and B.shape == (5, 20)
    assert err == pytest.approx(np.linalg.norm(W - A @ B) / np.linalg.norm(W), rel=1e-5)
    errs = [low_rank_approximate(W, rank=r).error for r in (1, 5, 10, 20)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-6
    lin = Linear(20, 30, rng=rng)
    small = low_rank_linear(lin, rank=4)
    x = x_of((2000, 20), 28)                                             # many inputs: the error concentrates
    err4 = low_rank_approximate(lin, rank=4).error
    rel = np.linalg.norm(small(x).data - lin(x).data) / np.linalg.norm(lin(x).data - lin.bias.data)
    assert 0.8 * err4 < rel < 1.25 * err4 and small.num_parameters() == 4 * 50 + 30 < lin.num_parameters()
    with pytest.raises(ValueError, match="rank must be an integer in \\[1, 20\\].*got 21"):
        low_rank_approximate(W, rank=21)


def test_model_bytes_csr_only_when_smaller():
    model = mlp(29, (40, 50, 10))
    b0 = model_bytes(model)
    magnitude_prune(model, 0.1)
    assert model_bytes(model) == b0                                      # 10 %: dense is smaller than CSR
    magnitude_prune(model, 0.9)
    b = model_bytes(model)
    assert b["dense"] == b0["dense"] and b["sparse"] < 0.35 * b["dense"]
