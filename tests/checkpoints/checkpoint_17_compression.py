"""Can I remove 90 % of a network's weights and keep its accuracy?"""
import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.activations import ReLU
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.spatial import Conv2d
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.optimization.compression import (
    KnowledgeDistillation, attach_mask, evaluate, fine_tune, global_masks, head_norms, load_pruned_state_dict,
    magnitude_prune, measure_sparsity, sparsity_schedule, structured_prune, unit_norms, unstructured_mask)


def test_ninety_percent_of_a_digits_mlp_removed_and_its_accuracy_kept():
    (xtr, ytr), (xte, yte) = load_digits()
    mean, spread = xtr.data.mean(axis=0), xtr.data.std(axis=0) + 0.1
    xtr, xte = Tensor((xtr.data - mean) / spread), Tensor((xte.data - mean) / spread)
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=64, shuffle=True, seed=0)
    rng = np.random.default_rng(0)
    model = Sequential(Linear(64, 128, rng=rng), ReLU(), Linear(128, 10, rng=rng))
    fine_tune(model, loader, epochs=12, lr=3e-3, cosine=True)
    dense = evaluate(model, [(xte, yte)])["accuracy"]
    opt = Adam(model.parameters(), lr=2e-3)
    for amount in sparsity_schedule(0.9, 4, "cubic"):            # prune gradually, retrain in between
        magnitude_prune(model, amount)
        fine_tune(model, loader, epochs=2, optimizer=opt)
    fine_tune(model, loader, epochs=6, optimizer=opt)
    assert abs(measure_sparsity(model, weights_only=True) - 0.9) < 0.002
    for layer in (model.layers[0], model.layers[2]):
        assert (layer.weight.data[~layer.weight.mask] == 0).all()
    pruned = evaluate(model, [(xte, yte)])["accuracy"]
    assert dense > 0.95 and pruned > dense - 0.03, (dense, pruned)


def test_the_smallest_weights_go_exact_counts_ties_by_position_global_ranking():
    m = unstructured_mask(np.abs([[0.3, -0.05], [0.2, -0.4]]), 0.5)
    assert m.tolist() == [[1, 0], [0, 1]]
    assert unstructured_mask(np.ones(6), 0.5).tolist() == [0, 0, 0, 1, 1, 1]
    assert unstructured_mask(np.arange(6.0), 2, default_mask=np.array([0, 0, 1, 1, 1, 1])).tolist() == \
        [0, 0, 0, 0, 1, 1]                                        # acts on what remains
    small, large = np.full((2, 3), 0.01), np.full(4, 5.0)
    a, b = global_masks([small, large], 0.6)                      # 6 of the 10 entries: all the small ones
    assert a.shape == (2, 3) and b.shape == (4,) and a.sum() == 0 and b.sum() == 4
    model = Sequential(Linear(10, 10, rng=np.random.default_rng(1)), ReLU(), Linear(10, 10, rng=np.random.default_rng(2)))
    w2 = model.layers[2].weight.data
    w2[...] = np.sign(w2) * (5 + np.abs(w2))                      # every weight of layer 2 is larger
    magnitude_prune(model, 0.5)                                   # globally: the small layer goes first
    assert (model.layers[0].weight.data == 0).sum() == 100 and (model.layers[2].weight.data == 0).sum() == 0
    for _ in range(2):
        magnitude_prune(model, 0.5, scope="layer")
    assert (model.layers[2].weight.data == 0).sum() == 75


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.05)])
def test_pruned_weights_stay_exactly_zero_while_the_rest_learns(make):
    rng = np.random.default_rng(3)
    layer = Linear(6, 4, rng=rng)
    x, y = Tensor(rng.standard_normal((16, 6)).astype(np.float32)), Tensor(rng.standard_normal((16, 4)).astype(np.float32))
    opt = make(layer.parameters())

    def train(steps):
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = ((layer(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    train(3)                                                      # the optimizer remembers these weights
    mask = np.arange(24).reshape(4, 6) % 3 != 0
    data = layer.weight.data
    attach_mask(layer.weight, mask, owners=[(layer, "weight")])
    assert layer.weight.data is data and (data[~mask] == 0).all()
    kept = data[mask].copy()
    losses = train(40)
    assert (layer.weight.data[~mask] == 0).all()
    assert (layer.weight.data[mask] != kept).all() and losses[-1] < losses[0]
    fresh = Linear(6, 4)
    load_pruned_state_dict(fresh, layer.state_dict())             # saved and loaded with its mask
    assert (fresh.weight.mask == mask).all() and (fresh.weight.data == layer.weight.data).all()


def test_whole_neurons_filters_and_heads_go_by_their_norm():
    w = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0], [1.0, 1.0]])
    assert np.allclose(unit_norms(w, 2), [5, 1, 2, np.sqrt(2)]) and np.allclose(unit_norms(w, 1), [7, 1, 2, 2])
    assert np.allclose(unit_norms(w, float("inf"), dim=1), [3, 4])
    rng = np.random.default_rng(4)
    model = Sequential(Linear(5, 8, rng=rng), ReLU(), Linear(8, 2, rng=rng))
    norms = np.linalg.norm(model.layers[0].weight.data, axis=1)
    report = structured_prune(model, 0.25)
    assert report == {"0": sorted(np.argsort(norms)[:2].tolist())}
    assert (model.layers[0].weight.data[report["0"]] == 0).all() and (model.layers[0].bias.data[report["0"]] == 0).all()
    conv = Conv2d(2, 6, 3, rng=rng)
    fnorms = np.sqrt((conv.weight.data.reshape(6, -1) ** 2).sum(1))
    assert structured_prune(conv, 0.5) == {"Conv2d": sorted(np.argsort(fnorms)[:3].tolist())}
    mha = MultiHeadAttention(8, 4, rng=rng)
    for proj in (mha.q_proj, mha.k_proj, mha.v_proj):
        proj.weight.data[6:8] *= 0.1                              # head 3 owns rows 6:8 ...
    mha.out_proj.weight.data[:, 6:8] *= 0.1                       # ... and columns 6:8
    norms = head_norms(mha)
    assert norms.shape == (4,) and np.argmin(norms) == 3
    q = mha.q_proj.weight.data
    assert norms[0] == pytest.approx(np.sqrt((q[0:2] ** 2).sum() + (mha.k_proj.weight.data[0:2] ** 2).sum()
                                             + (mha.v_proj.weight.data[0:2] ** 2).sum()
                                             + (mha.out_proj.weight.data[:, 0:2] ** 2).sum()), rel=1e-5)
    structured_prune(mha, 0.25)
    assert mha.head_mask.data.tolist() == [1, 1, 1, 0] and (mha.v_proj.weight.data[6:8] == 0).all()


def test_a_student_learns_from_a_teacher_through_the_distillation_loss():
    rng = np.random.default_rng(5)
    teacher = Sequential(Linear(4, 16, rng=rng), ReLU(), Linear(16, 3, rng=rng))
    student = Sequential(Linear(4, 3, rng=rng))
    kd = KnowledgeDistillation(teacher, student, temperature=2.0, alpha=0.75)
    x = Tensor(rng.standard_normal((10, 4)).astype(np.float32))
    zt = kd.teacher_logits(x)
    y = zt.data.argmax(-1)                                        # labels the teacher agrees with
    zs = student(x)
    loss = kd.distillation_loss(zs, zt, y)

    def log_softmax(z):
        z = z.astype(np.float64) - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    lt, ls = log_softmax(zt.data / 2), log_softmax(zs.data / 2)
    expected = 0.75 * 4 * (np.exp(lt) * (lt - ls)).sum(-1).mean() + 0.25 * -log_softmax(zs.data)[np.arange(10), y].mean()
    assert loss.shape == () and loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert student.layers[0].weight.grad is not None and teacher.layers[0].weight.grad is None
    opt = Adam(student.parameters(), lr=0.05)
    first = kd.train_step(x, y, opt)
    for _ in range(60):
        last = kd.train_step(x, y, opt)
    assert last < 0.5 * first
    with no_grad():
        agree = (student(x).data.argmax(-1) == teacher(x).data.argmax(-1)).mean()
    assert agree >= 0.7
