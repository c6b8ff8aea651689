"""Module 17's exercises, each checked on a case small enough to work by hand: the masks of magnitude and
structured pruning, global ranking, the gradual schedule, the optimizer hook, compaction's index selection,
the low-rank factorisation and the distillation loss. Student test: NumPy and tinytorch only."""
import math

import numpy as np
import pytest

from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.activations import ReLU, Sigmoid
from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.spatial import Conv2d, Flatten
from tinytorch.core.tensor import Tensor
from tinytorch.optimization import pruning as P
from tinytorch.optimization import distillation as D
from tinytorch.optimization.compression import compact


def _linear(w, b=None):
    w = np.asarray(w, dtype=np.float32)
    lin = Linear(w.shape[1], w.shape[0], bias=b is not None)
    lin.weight.data[...] = w
    if b is not None:
        lin.bias.data[...] = np.asarray(b, dtype=np.float32)
    return lin


def test_magnitude_prune_global_and_per_layer_by_hand():
    a = _linear([[0.1, 2.0], [3.0, 0.2]])
    b = _linear([[0.05, 0.3], [4.0, 5.0]])
    net = Sequential(a, ReLU(), b)
    out = P.magnitude_prune(net, 0.5)                       # 4 of 8 weights: 0.05, 0.1, 0.2, 0.3
    assert out == {"0.weight": 0.5, "2.weight": 0.5}
    assert (a.weight.mask == [[False, True], [True, False]]).all()
    assert (b.weight.mask == [[False, False], [True, True]]).all()
    out = P.magnitude_prune(net, 0.5, scope="layer")         # half of what remains in each: 2.0 and 4.0 go
    assert out == {"0.weight": 0.75, "2.weight": 0.75}
    assert a.weight.data[1, 0] == 3.0 and a.weight.data[0, 1] == 0.0 and b.weight.data[1, 1] == 5.0


def test_magnitude_prune_without_pruning_attaches_no_mask_and_keeps_shared_weights_one():
    a = _linear([[1.0, 2.0], [3.0, 4.0]])
    b = Linear(2, 2)
    b.weight = a.weight
    net = Sequential(a, b)
    assert P.magnitude_prune(net, 0.0) == {"0.weight": 0.0} and not P.is_pruned(net)
    P.magnitude_prune(net, 0.25)
    assert b.weight is a.weight and a.weight.data[0, 0] == 0 and a.weight_mask.data is b.weight_mask.data


def test_sparsity_schedules_multiply_to_the_final_sparsity():
    eq = P.sparsity_schedule(0.75, 2, "equal")
    assert len(eq) == 2 and all(abs(x - 0.5) < 1e-12 for x in eq)
    cubic = P.sparsity_schedule(0.9, 3, "cubic")
    totals = [0.9 * (1 - (1 - i / 3) ** 3) for i in range(4)]
    want = [(t1 - t0) / (1 - t0) for t0, t1 in zip(totals[:-1], totals[1:])]
    assert np.allclose(cubic, want) and cubic[0] > cubic[-1]
    assert abs(1 - np.prod([1 - x for x in cubic]) - 0.9) < 1e-12
    assert P.sparsity_schedule(1.0, 2, "cubic")[-1] == 1.0


def test_reapply_masks_zeroes_weight_and_state_of_masked_parameters_only():
    w = Parameter(np.ones((2, 3), np.float32))
    free = Parameter(np.ones(3, np.float32))
    opt = SGD([w, free], lr=0.1, momentum=0.9)
    w.mask = np.array([[True, False, True], [False, True, True]])
    opt.state[w] = {"momentum_buffer": np.full((2, 3), 2.0, np.float32), "step": 3}
    P.reapply_masks(opt)
    assert (w.data == w.mask).all() and (opt.state[w]["momentum_buffer"] == 2.0 * w.mask).all()
    assert opt.state[w]["step"] == 3 and (free.data == 1).all()
    w.mask = np.ones((3, 2), bool)
    with pytest.raises(ValueError, match="does not broadcast"):
        P.reapply_masks(opt)


def test_structured_mask_prunes_the_smallest_alive_slices():
    w = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0], [1.0, 1.0]])     # L2 norms 5, 1, 2, 1.41
    m = P.structured_mask(w, 0.5)
    assert (m == [[1, 1], [0, 0], [1, 1], [0, 0]]).all() and m.dtype == np.float32
    m2 = P.structured_mask(w, 1, default_mask=m)                        # one of the two alive: row 2
    assert (m2.sum(axis=1) == [2, 0, 0, 0]).all()
    cols = P.structured_mask(w, 1, n=1, dim=1)                          # L1 of columns: 5, 7
    assert (cols == [[0, 1]] * 4).all()
    assert (P.structured_mask(np.ones((3, 2)), 2) == [[0, 0], [0, 0], [1, 1]]).all()    # ties by position


def test_structured_prune_units_and_bias_of_a_linear():
    a = _linear([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0], [1.0, 1.0]], b=[1, 2, 3, 4])
    net = Sequential(a, ReLU(), Linear(4, 2))
    rep = P.structured_prune(net, 0.5)
    assert rep == {"0": [1, 3]}
    assert (a.weight.data[[1, 3]] == 0).all() and (a.bias.data == [1, 0, 3, 0]).all()
    assert P.structured_prune(net, 0.5) == {"0": [2]}                   # half of the two alive
    assert P.structured_prune(net, 0.0) == {"0": []}


def test_structured_prune_heads_by_their_norm():
    mha = MultiHeadAttention(8, 4, rng=np.random.default_rng(0))
    for h, scale in enumerate([3.0, 0.1, 2.0, 0.2]):
        for proj in (mha.q_proj, mha.k_proj, mha.v_proj):
            proj.weight.data[2 * h:2 * h + 2] *= scale
        mha.out_proj.weight.data[:, 2 * h:2 * h + 2] *= scale
    assert P.structured_prune(mha, 0.5) == {"MultiHeadAttention": [1, 3]}
    assert (mha.head_mask.data == [1, 0, 1, 0]).all()
    assert P.structured_prune(mha, 0.5) == {"MultiHeadAttention": [2]}


def test_removable_units_dead_unused_and_folded():
    prod = _linear([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0]], b=[0.5, 0.0, 2.0, 0.1])
    cons = _linear([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, -1.0, 0.0]], b=[0.0, 0.0])
    keep, fold = D._removable_units(prod, [ReLU()], cons)
    assert keep.tolist() == [0] and fold.tolist() == [0.0, 0.0, 2.0, 0.0]   # unit 3 unused, 1 and 2 constant
    sig = [Sigmoid()]
    keep, fold = D._removable_units(prod, sig, _linear(cons.weight.data))      # no consumer bias: cannot fold 0.5
    assert keep.tolist() == [0, 1, 2]
    conv = Conv2d(1, 3, 1)
    conv.weight.data[...] = np.array([1.0, 0.0, 2.0], np.float32).reshape(3, 1, 1, 1)
    conv.bias.data[...] = [0.0, 0.0, 1.0]
    lin = Linear(12, 2)
    keep, fold = D._removable_units(conv, [ReLU(), Flatten()], lin)
    assert keep.tolist() == [0, 2] and fold is None


def test_consumer_columns_and_compact_pair():
    conv, lin = Conv2d(1, 3, 1), Linear(12, 2)
    cols = D._consumer_columns(conv, [Flatten()], lin, np.array([0, 2]))
    assert cols.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    prod = _linear([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], b=[0.5, 2.0, 0.1])
    cons = _linear([[1.0, 1.0, 1.0], [2.0, -1.0, 0.0]], b=[0.0, 1.0])
    x = Tensor(np.array([[0.3, -0.7], [1.0, 2.0]], np.float32))
    before = cons(ReLU()(prod(x))).data
    D._compact_pair(prod, [ReLU()], cons, np.array([0, 2]), np.array([0.0, 2.0, 0.0]))
    assert prod.weight.shape == (2, 2) and prod.out_features == 2 and prod.bias.data.tolist() == pytest.approx([0.5, 0.1])
    assert cons.weight.shape == (2, 2) and cons.in_features == 2 and cons.bias.data.tolist() == [2.0, -1.0]
    assert np.allclose(cons(ReLU()(prod(x))).data, before)


def test_heads_to_keep_and_compact_attention():
    mha = MultiHeadAttention(8, 4, rng=np.random.default_rng(1))
    mha.head_mask.data[1] = 0
    mha.out_proj.weight.data[:, 6:8] = 0                                   # head 3 writes nothing
    assert D._heads_to_keep(mha).tolist() == [0, 2]
    x = Tensor(np.random.default_rng(2).standard_normal((1, 3, 8)).astype(np.float32))
    y = mha(x).data
    compact(mha)
    assert mha.num_heads == 2 and mha.head_ids == [0, 2] and np.allclose(mha(x).data, y, atol=1e-6)
    mha.head_mask.data[:] = 0
    assert D._heads_to_keep(mha).tolist() == [0]


def test_low_rank_factors_error_and_energy_rank():
    from tinytorch.optimization.distillation import low_rank_approximate
    W = np.diag([4.0, 3.0, 0.0]).astype(np.float32)[:, :2]               # singular values 4, 3
    A, B, err = low_rank_approximate(W, rank=1)
    assert A.shape == (3, 1) and B.shape == (1, 2) and A.dtype == np.float32
    assert np.allclose(A @ B, [[4, 0], [0, 0], [0, 0]]) and abs(err - 3 / 5) < 1e-12
    assert low_rank_approximate(W, energy=0.64).left.shape == (3, 1)      # 16/25 = 0.64 is enough
    assert low_rank_approximate(W, energy=0.65).left.shape == (3, 2)
    A, B, err = low_rank_approximate(np.arange(6).reshape(2, 3), rank=2)  # integers: float32 factors
    assert A.dtype == np.float32 and err < 1e-12 and np.allclose(A @ B, np.arange(6).reshape(2, 3), atol=1e-5)
    assert low_rank_approximate(np.zeros((2, 2)), energy=0.5).error == 0.0


def test_distillation_loss_value_and_gradient_by_hand():
    from tinytorch.optimization.distillation import KnowledgeDistillation
    rng = np.random.default_rng(0)
    s = rng.standard_normal((4, 3))
    t = rng.standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    T, alpha = 2.0, 0.6
    kd = KnowledgeDistillation(Linear(1, 1), Linear(1, 1), temperature=T, alpha=alpha)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    pt, ps, p1 = softmax(t / T), softmax(s / T), softmax(s)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(axis=1).mean()
    ce = -np.log(p1[np.arange(4), y]).mean()
    st = Tensor(s, requires_grad=True, dtype=np.float64)
    loss = kd.distillation_loss(st, t, y)
    assert loss.shape == () and abs(loss.item() - (alpha * T * T * kl + (1 - alpha) * ce)) < 1e-7
    loss.backward()
    onehot = np.eye(3)[y]
    want = alpha * T * (ps - pt) / 4 + (1 - alpha) * (p1 - onehot) / 4
    assert np.allclose(st.grad.data, want, atol=1e-7)
    only_kd = KnowledgeDistillation(Linear(1, 1), Linear(1, 1), temperature=T, alpha=1.0)
    assert abs(only_kd.distillation_loss(Tensor(s, dtype=np.float64), t).item() - T * T * kl) < 1e-7


def test_evaluate_counts_only_real_targets():
    from tinytorch.optimization.distillation import IGNORE_INDEX, evaluate
    lin = _linear([[1.0, 0.0], [0.0, 1.0]], b=[0.0, 0.0])                # logits = x
    x = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]], np.float32)
    y = np.array([0, 0, IGNORE_INDEX])
    out = evaluate(lin, (Tensor(x), y))
    p = np.exp(x[:2]) / np.exp(x[:2]).sum(axis=1, keepdims=True)
    assert out["accuracy"] == 0.5 and abs(out["loss"] - (-np.log(p[[0, 1], [0, 0]]).mean())) < 1e-5
    both = evaluate(lin, [(Tensor(x[:1]), y[:1]), (Tensor(x[1:]), y[1:])])  # per target, not per batch
    assert both["accuracy"] == 0.5 and abs(both["loss"] - out["loss"]) < 1e-5
    with pytest.raises(ValueError, match="yielded no batches"):
        evaluate(lin, (Tensor(x[2:]), y[2:]))


def test_model_bytes_takes_csr_only_where_smaller():
    from tinytorch.optimization.compression import csr_nbytes, model_bytes
    lin = Linear(64, 32)
    dense = lin.weight.data.nbytes + lin.bias.data.nbytes
    assert model_bytes(lin) == {"dense": dense, "sparse": dense}
    lin.weight.data[:, 1:] = 0                                           # one nonzero per row
    assert model_bytes(lin) == {"dense": dense, "sparse": csr_nbytes(lin.weight) + lin.bias.data.nbytes}
    assert csr_nbytes(lin.weight) < lin.weight.data.nbytes


def test_prune_and_fine_tune_walks_the_schedule_then_fine_tunes():
    from tinytorch.optimization import compression as C
    rng = np.random.default_rng(0)
    net = Sequential(Linear(6, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
    X = Tensor(rng.standard_normal((32, 6)).astype(np.float32))
    y = rng.integers(0, 3, 32)
    data = [(X, y)]
    cfg = C.CompressionConfig(sparsity=0.75, steps=2, epochs_per_step=1, fine_tune_epochs=2, quantize=False,
                              structured_ratio=0.25)
    stages = C._prune_and_fine_tune(net, data, data, C.CrossEntropyLoss(), cfg)
    assert [s["stage"] for s in stages] == ["pruned", "fine-tuned"]
    assert len(stages[1]["train_loss"]) == 2 and "accuracy" in stages[0]
    assert P.measure_sparsity(net, weights_only=True) >= 0.75 - 1e-9
    assert (net.layers[0].weight.data.reshape(8, -1).any(axis=1) == 0).sum() >= 2   # 2 of 8 neurons removed
    cfg = C.CompressionConfig(sparsity=0.5, steps=1, fine_tune_epochs=0, quantize=False)
    assert [s["stage"] for s in C._prune_and_fine_tune(net, data, None, C.CrossEntropyLoss(), cfg)] == ["pruned"]


def test_expand_heads_undoes_a_physical_prune():
    from tinytorch.optimization.heads import _expand_heads
    mha = MultiHeadAttention(8, 4, rng=np.random.default_rng(3))
    x = Tensor(np.random.default_rng(4).standard_normal((2, 3, 8)).astype(np.float32))
    P.mask_heads(mha, [1, 3])
    y = mha(x).data
    compact(mha)
    assert mha.num_heads == 2
    _expand_heads(mha)
    assert mha.num_heads == 4 and "head_ids" not in vars(mha)
    assert mha.q_proj.weight.shape == (8, 8) and mha.v_proj.bias.shape == (8,) and mha.out_proj.weight.shape == (8, 8)
    assert mha.q_proj.out_features == 8 and mha.out_proj.in_features == 8
    assert mha.head_mask.data.tolist() == [1, 0, 1, 0]
    rows = np.r_[2:4, 6:8]
    assert (mha.k_proj.weight.data[rows] == 0).all() and not mha.k_proj.weight.mask[rows].any()
    assert mha.k_proj.weight.mask[np.r_[0:2, 4:6]].all() and not mha.out_proj.weight.mask[:, rows].any()
    assert mha.q_proj.weight_mask.data is mha.q_proj.weight.mask
    assert np.allclose(mha(x).data, y, atol=1e-6)


def test_teacher_logits_are_constants_from_eval_mode_and_the_step_uses_them():
    from tinytorch.core.layers import Dropout
    from tinytorch.optimization.distillation import KnowledgeDistillation, _DistillTrainer
    rng = np.random.default_rng(1)
    teacher = Sequential(Linear(4, 3, rng=rng), Dropout(0.9))
    student = Linear(4, 3, rng=rng)
    kd = KnowledgeDistillation(teacher, student, temperature=2.0, alpha=1.0)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = kd.teacher_logits(Tensor(x))
    want = teacher.layers[0](Tensor(x)).data
    assert np.allclose(t.data, want) and not t.requires_grad and t.grad_fn is None   # dropout off: eval mode
    assert teacher.training                                                      # its mode restored
    t.data[...] = 0
    assert np.allclose(kd.teacher_logits(Tensor(x)).data, want)                  # a copy, not the model's array
    loss, out, n = _DistillTrainer(kd, SGD(student.parameters(), lr=0.1)).compute_loss(x, None)
    assert n == 1 and np.allclose(out.data, student(Tensor(x)).data)
    assert abs(loss.item() - kd.distillation_loss(out, want).item()) < 1e-6


def test_input_attention_mask_marks_real_inputs():
    from tinytorch.optimization.distillation import input_attention_mask
    valid = np.array([[True, True, False, False], [False, False, True, True]])
    assert input_attention_mask(valid).tolist() == [[1, 1, 1, 0], [0, 0, 1, 1]]
    assert input_attention_mask(valid).dtype == np.int64
    assert input_attention_mask(np.ones((2, 3), bool)) is None


def test_head_alive_numbers_heads_as_built():
    from tinytorch.optimization.heads import head_alive, pruned_heads
    net = Sequential(MultiHeadAttention(8, 4, rng=np.random.default_rng(0)), MultiHeadAttention(8, 2, rng=np.random.default_rng(1)))
    assert head_alive(net).tolist() == [[True] * 4, [True, True, False, False]]
    P.mask_heads(net.layers[0], [1, 2])
    compact(net.layers[0])                                            # heads 0 and 3 remain, as 0 and 1
    P.mask_heads(net.layers[0], [1])                                    # original head 3
    net.layers[1].head_mask.data[0] = 0
    assert head_alive(net).tolist() == [[True, False, False, False], [False, True, False, False]]
    assert pruned_heads(net) == [(0, 1), (0, 2), (0, 3), (1, 0)]


def test_fine_tune_warm_up_and_padded_targets():
    from tinytorch.optimization.distillation import IGNORE_INDEX, _FineTuneTrainer, fine_tune
    rng = np.random.default_rng(2)
    lin = Linear(3, 2, rng=rng)
    x = Tensor(rng.standard_normal((4, 3)).astype(np.float32))
    seen = []
    hist = fine_tune(lin, [(x, np.array([0, 1, 0, 1]))] * 4, 1, optimizer=SGD(lin.parameters(), lr=0.5),
                     warmup_steps=4, on_step=lambda step, loss, lr: seen.append(lr))
    assert seen == pytest.approx([0.125, 0.25, 0.375, 0.5]) and len(hist.grad_norms) == 4 and hist.lr == [0.5]
    y = np.array([1, IGNORE_INDEX, 0, IGNORE_INDEX])
    trainer = _FineTuneTrainer(lin, SGD(lin.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    loss, out, n = trainer.compute_loss((x, None), y)
    logp = out.data - np.log(np.exp(out.data).sum(axis=1, keepdims=True))
    assert n == 2 and abs(loss.item() + (logp[0, 1] + logp[2, 0]) / 2) < 1e-5
    assert trainer.compute_loss((x, None), np.full(4, IGNORE_INDEX))[0] is None


def test_compress_model_chains_the_stages_and_writes_the_report(tmp_path):
    import json
    from tinytorch.optimization.compression import compress_model
    rng = np.random.default_rng(3)
    net = Sequential(Linear(6, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
    X = Tensor(rng.standard_normal((24, 6)).astype(np.float32))
    data = [(X, rng.integers(0, 3, 24))]
    model, report = compress_model(net, data, data, sparsity=0.5, steps=1, fine_tune_epochs=1, distill_epochs=1,
                                   quantize=False, report_path=tmp_path / "r.json")
    assert model is net and [s["stage"] for s in report["stages"]] == ["dense", "pruned", "fine-tuned", "distilled"]
    assert report["stages"][0]["sparsity"] < 0.1 <= report["stages"][-1]["weight_sparsity"]
    assert report["config"]["sparsity"] == 0.5 and json.loads((tmp_path / "r.json").read_text())["stages"]
    assert report["path"] and report["seconds"] >= 0


def test_owners_prunable_weights_and_chains_of_a_model():
    a, b = Linear(3, 4), Linear(4, 4)
    c = Linear(4, 4)
    c.weight = b.weight                                                 # shared
    net = Sequential(a, ReLU(), b, Sigmoid(), c, MultiHeadAttention(4, 2))
    owners = P.param_owners(net)
    assert owners[id(b.weight)] == [(b, "weight"), (c, "weight")] and owners[id(a.bias)] == [(a, "bias")]
    ws = P.prunable_weights(net)
    assert [w.name for w in ws] == ["0.weight", "2.weight", "5.q_proj.weight", "5.k_proj.weight", "5.v_proj.weight",
                                    "5.out_proj.weight"]
    assert ws[1].param is b.weight and len(ws[1].owners) == 2 and {w.kind for w in ws} == {"linear"}
    chains = P.layer_chains(net)
    assert [(p, type(m[0]).__name__, q) for p, m, q in chains] == [(a, "ReLU", b), (b, "Sigmoid", c)]
    conv = Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Linear(2 * 4 * 4, 3), Linear(3, 2))
    assert [(type(p).__name__, len(m), type(q).__name__) for p, m, q in P.layer_chains(conv)] == \
        [("Conv2d", 2, "Linear"), ("Linear", 0, "Linear")]


def test_mask_gradients_zeroes_pruned_gradient_entries():
    lin = Linear(2, 2)
    P.attach_mask(lin.weight, np.array([[1, 0], [0, 1]]))
    lin.weight.grad = Tensor(np.ones((2, 2), np.float32))
    lin.bias.grad = Tensor(np.ones(2, np.float32))
    assert P.mask_gradients(lin) == 1
    assert lin.weight.grad.data.tolist() == [[1, 0], [0, 1]] and lin.bias.grad.data.tolist() == [1, 1]
    lin.weight.grad = None
    assert P.mask_gradients([lin.weight, lin.bias]) == 0


def test_head_slices_and_remove_masks():
    mha = MultiHeadAttention(8, 4)
    sl = P.head_slices(mha, 2)
    assert len(sl) == 3 * (1 + (mha.q_proj.bias is not None)) + 1
    assert [(m, a) for m, a, _ in sl][-1] == (mha.out_proj, "weight") and sl[0][:2] == (mha.q_proj, "weight")
    assert sl[0][2] == (slice(4, 6), slice(None)) and sl[-1][2] == (slice(None), slice(4, 6))
    with pytest.raises(IndexError, match="out of range"):
        P.head_slices(mha, 4)
    lin = Linear(3, 2)
    net = Sequential(lin)
    P.magnitude_prune(net, 0.5)
    zeros = lin.weight.data == 0
    assert P.remove_masks(net) == ["0.weight"] and "weight_mask" not in vars(lin)
    assert "weight_mask" not in lin._buffer_names and getattr(lin.weight, "mask", None) is None
    assert (lin.weight.data[zeros] == 0).all() and "0.weight_mask" not in net.state_dict()


def test_fits_rules():
    lin, conv = Linear(4, 3), Conv2d(2, 4, 1)
    assert P._fits(Linear(2, 4), [ReLU()], lin) and not P._fits(Linear(2, 5), [], lin)
    assert not P._fits(Linear(2, 4), [Flatten()], lin)
    assert P._fits(conv, [ReLU()], Conv2d(4, 1, 1)) and not P._fits(conv, [], Conv2d(3, 1, 1))
    assert P._fits(conv, [Flatten()], Linear(8, 2)) and not P._fits(conv, [Flatten()], Linear(6, 2))
    assert not P._fits(conv, [], Linear(8, 2))


def test_low_rank_linear_and_slice_param():
    from tinytorch.optimization.distillation import _slice_param, low_rank_linear
    rng = np.random.default_rng(7)
    lin = Linear(5, 4, rng=rng)
    lin.weight.data[...] = (rng.standard_normal((4, 2)) @ rng.standard_normal((2, 5))).astype(np.float32)
    small = low_rank_linear(lin, rank=2)
    first, second = small.layers
    assert first.weight.shape == (2, 5) and first.bias is None and second.weight.shape == (4, 2)
    x = Tensor(rng.standard_normal((3, 5)).astype(np.float32))
    assert np.allclose(small(x).data, lin(x).data, atol=1e-5)
    assert low_rank_linear(Linear(5, 4, bias=False), rank=1).layers[1].bias is None
    P.attach_mask(lin.weight, np.arange(20).reshape(4, 5) % 2, owners=[(lin, "weight")])
    old = lin.weight
    _slice_param(lin, "weight", (np.array([0, 2]),))
    assert lin.weight is not old and lin.weight.shape == (2, 5) and lin.weight.data.flags["C_CONTIGUOUS"]
    assert np.array_equal(lin.weight.data, old.data[[0, 2]]) and np.array_equal(lin.weight.mask, old.mask[[0, 2]])
    assert lin.weight_mask.data is lin.weight.mask


def test_analyzer_rows_and_totals():
    from tinytorch.optimization.compression import CompressionAnalyzer, csr_nbytes
    lin = Linear(40, 10)
    lin.weight.data[:, 1:] = 0
    an = CompressionAnalyzer(Sequential(lin))
    rows = an.layers()
    assert [r["name"] for r in rows] == ["0.weight", "0.bias"] and rows[0]["zeros"] == 390
    assert rows[0]["sparsity"] == 390 / 400 and rows[0]["prunable"] and not rows[1]["prunable"]
    assert rows[0]["bytes_csr"] == csr_nbytes(lin.weight) and rows[0]["shape"] == (10, 40)
    t = an.totals()
    best = csr_nbytes(lin.weight) + lin.bias.data.nbytes
    assert t["parameters"] == 410 and t["bytes_best"] == best
    assert t["compression"] == pytest.approx(410 * 4 / best)


def test_mask_heads_keeps_what_the_head_held():
    mha = MultiHeadAttention(8, 4, rng=np.random.default_rng(9))
    q_rows = mha.q_proj.weight.data[2:4].copy()
    out_cols = mha.out_proj.weight.data[:, 2:4].copy()
    P.attach_mask(mha.q_proj.weight, np.arange(64).reshape(8, 8) % 3 != 0)
    q_mask = mha.q_proj.weight.mask[2:4].copy()
    assert P.mask_heads(mha, [1]) == [1]
    saved = mha.pruned_head_weights[1]
    assert np.array_equal(saved["weights"]["q_proj.weight"], q_rows * q_mask)
    assert np.array_equal(saved["weights"]["out_proj.weight"], out_cols)
    assert np.array_equal(saved["masks"]["q_proj.weight"], q_mask) and saved["masks"]["k_proj.weight"] is None
    assert mha.head_mask.data.tolist() == [1, 0, 1, 1] and not mha.v_proj.weight.data[2:4].any()
    P.mask_heads(mha, [1])                                               # again: the first copy stays
    assert np.array_equal(mha.pruned_head_weights[1]["weights"]["out_proj.weight"], out_cols)


def test_prune_heads_by_list_physical_and_the_growth_probe():
    from tinytorch.optimization.heads import _growth_probe, prune_heads
    net = Sequential(MultiHeadAttention(8, 4, rng=np.random.default_rng(0)), MultiHeadAttention(8, 4, rng=np.random.default_rng(1)))
    before = net.layers[1].v_proj.weight.data[4:6].copy()
    assert prune_heads(net, [(1, 2), (0, 3)]) == [(0, 3), (1, 2)]
    assert net.layers[0].head_mask.data.tolist() == [1, 1, 1, 0] and net.layers[1].head_mask.data.tolist() == [1, 1, 0, 1]
    probe = _growth_probe(net, [(1, 2)], "test")
    assert probe is not net and np.array_equal(probe.layers[1].v_proj.weight.data[4:6], before)
    assert not net.layers[1].v_proj.weight.data[4:6].any()                    # the model itself untouched
    assert prune_heads(net, [(1, 0)], physical=True) == [(1, 0)]
    assert net.layers[1].num_heads == 2 and net.layers[1].head_ids == [1, 3] and net.layers[0].num_heads == 3


def test_the_mask_callback_of_fine_tuning_reapplies_masks_through_the_optimizer():
    from types import SimpleNamespace
    from tinytorch.core.optimizers import SGD
    from tinytorch.optimization.distillation import MaskCallback
    w, free = Parameter(np.ones((2, 2), np.float32)), Parameter(np.ones(2, np.float32))
    w.mask = np.array([[True, False], [False, True]])
    MaskCallback().on_step_end(SimpleNamespace(optimizer=SGD([w, free], lr=0.1)), 0, 0.0)
    assert w.data.tolist() == [[1, 0], [0, 1]] and free.data.tolist() == [1, 1]
