"""Module 17: the edges of pruning.

Shared and tied weights; training after pruning with every optimizer (and the control that shows the
masks are what keeps the zeros); sparsity 0 and 1 exactly; a layer whose weights are all equal; saving,
loading, copying and un-pruning; gradient clipping that ignores pruned weights; and bad input, which must
be a clear error naming the value.
"""
import copy
import math
import sys

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential, Dropout
from tinytorch.core.activations import ReLU
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.training import Trainer, clip_grad_norm, load_checkpoint, save_checkpoint
from tinytorch.core.transformers import GPT, LayerNorm
from tinytorch.optimization.compression import (
    KnowledgeDistillation, attach_mask, compress_model, fine_tune, head_importance, is_pruned,
    load_pruned_checkpoint, load_pruned_state_dict, magnitude_prune, mask_gradients, masks, measure_sparsity,
    prunable_weights, remove_masks, sparsity_schedule, structured_prune, unstructured_mask)


def mlp(seed=0, sizes=(6, 12, 3)):
    rng = np.random.default_rng(seed)
    layers = [Linear(sizes[0], sizes[1], rng=rng)]
    for a, b in zip(sizes[1:-1], sizes[2:]):
        layers += [ReLU(), Linear(a, b, rng=rng)]
    return Sequential(*layers)


def batch(seed=0, n=32, d=6, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return Tensor(x), Tensor(y % classes)


# ---------------------------------------------------------------------------------------------- shared
def test_two_layers_sharing_one_weight_get_one_mask_and_count_once():
    rng = np.random.default_rng(1)
    a, b = Linear(8, 8, rng=rng), Linear(8, 8, rng=rng)
    b.weight = a.weight
    model = Sequential(a, ReLU(), b)
    data = a.weight.data
    assert [w.name for w in prunable_weights(model)] == ["0.weight"]
    magnitude_prune(model, 0.5)
    assert a.weight is b.weight and a.weight.data is data                  # in place, still shared
    assert a.weight_mask.data is b.weight_mask.data is a.weight.mask       # one mask, seen by both layers
    assert int((~a.weight.mask).sum()) == 32
    assert measure_sparsity(model) == 32 / (64 + 8 + 8)                   # the weight once, two biases
    opt = Adam(model.parameters(), lr=0.01)
    x = Tensor(rng.standard_normal((4, 8)).astype(np.float32))
    for _ in range(5):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    assert (a.weight.data[~a.weight.mask] == 0).all()


def test_tied_embedding_and_head_one_mask_in_place_and_saved_under_both_names(tmp_path):
    gpt = GPT(vocab_size=11, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=6, seed=0)
    w = gpt.token_embedding.weight
    data = w.data
    magnitude_prune(gpt, 0.6, scope="layer")
    assert gpt.lm_head.weight is w and w.data is data
    assert measure_sparsity(w) == round(0.6 * 88) / 88
    sd = gpt.state_dict()
    assert (sd["lm_head.weight_mask"] == sd["token_embedding.weight_mask"]).all()
    save_checkpoint(tmp_path / "g.npz", gpt)
    fresh = GPT(vocab_size=11, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=6, seed=1)
    load_pruned_checkpoint(tmp_path / "g.npz", fresh)
    assert fresh.lm_head.weight is fresh.token_embedding.weight
    assert fresh.lm_head.weight_mask.data is fresh.token_embedding.weight.mask
    ids = np.array([[1, 2, 3, 4]])
    with no_grad():
        np.testing.assert_array_equal(fresh(ids).data, gpt(ids).data)


# ---------------------------------------------------------------------------------------------- training
OPTIMIZERS = {
    "sgd": lambda ps: SGD(ps, lr=0.05),
    "sgd-momentum": lambda ps: SGD(ps, lr=0.05, momentum=0.9),
    "sgd-nesterov-wd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda ps: Adam(ps, lr=0.01),
    "adam-l2": lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
    "adamw": lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_after_pruning_keeps_every_pruned_weight_exactly_zero(name):
    model = mlp(2)
    x, y = batch(3)
    loss_fn = CrossEntropyLoss()
    opt = OPTIMIZERS[name](model.parameters())
    for _ in range(5):                                                     # state exists before pruning
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    magnitude_prune(model, 0.6)
    kept = {id(p): p.data.copy() for p in model.parameters()}
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for p in (model.layers[0].weight, model.layers[2].weight):
        assert (p.data[~p.mask] == 0).all()                                 # exactly zero
        assert (p.data[p.mask] != kept[id(p)][p.mask]).mean() > 0.5          # the others keep learning
        for key, buf in opt.state.get(p, {}).items():                      # nor any optimizer state buffer
            if key != "step":
                assert (buf[~p.mask] == 0).all(), key


def test_control_without_masks_pruned_weights_come_back():
    model = mlp(4)
    x, y = batch(5)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    magnitude_prune(model, 0.6)
    zeroed = ~model.layers[0].weight.mask
    remove_masks(model)                                                    # zeros stay, masks go
    assert (model.layers[0].weight.data[zeroed] == 0).all()
    for _ in range(3):
        opt.zero_grad()
        CrossEntropyLoss()(model(x), y).backward()
        opt.step()
    assert (model.layers[0].weight.data[zeroed] != 0).mean() > 0.5


def test_trainer_with_pruned_model_and_many_epochs():
    model = mlp(6)
    data = [batch(i) for i in range(4)]
    magnitude_prune(model, 0.8)
    opt = AdamW(model.parameters(), lr=0.02, weight_decay=0.05)
    history = Trainer(model, opt, CrossEntropyLoss(), progress=False).fit(data, epochs=30)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert measure_sparsity(model, weights_only=True) == round(0.8 * 108) / 108


def test_pruning_again_works_on_what_remains():
    model = Sequential(Linear(50, 20, rng=np.random.default_rng(7)))
    for _ in range(3):
        magnitude_prune(model, 0.2)
    assert int((model.layers[0].weight.data == 0).sum()) == 1000 - 512     # 1 - 0.8^3 = 48.8 %
    for kind in ("equal", "cubic"):
        m2 = Sequential(Linear(50, 20, rng=np.random.default_rng(7)))
        for a in sparsity_schedule(0.9, 4, kind):
            magnitude_prune(m2, a)
        assert abs(measure_sparsity(m2) - 0.9 * 1000 / 1020) < 3 / 1020


# ---------------------------------------------------------------------------------------------- 0 and 1
def test_sparsity_zero_changes_nothing():
    model = mlp(8)
    before = model.state_dict()
    result = magnitude_prune(model, 0.0)
    after = model.state_dict()
    assert list(after) == list(before) and all((after[k] == before[k]).all() for k in before)
    assert not is_pruned(model) and set(result.values()) == {0.0}
    assert structured_prune(model, 0.0) == {"0": []} and not is_pruned(model)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_sparsity_one_prunes_every_weight_and_the_model_outputs_its_biases(scope):
    model = mlp(9)
    magnitude_prune(model, 1.0, scope=scope)
    assert measure_sparsity(model, weights_only=True) == 1.0
    assert (model.layers[0].bias.data != 0).all()                          # biases are not pruned
    x, y = batch(10)
    with no_grad():
        out = model(x).data
    np.testing.assert_array_equal(out, np.broadcast_to(model.layers[2].bias.data, out.shape))
    losses = fine_tune(model, [(x, y)], epochs=30, lr=0.05)               # still a working model: biases learn
    assert losses[-1] < losses[0] and measure_sparsity(model, weights_only=True) == 1.0


def test_structured_ratio_one_removes_every_hidden_unit():
    model = mlp(11, (6, 10, 8, 3))
    report = structured_prune(model, 1.0)
    assert [len(v) for v in report.values()] == [10, 8]
    assert (model.layers[0].weight.data == 0).all() and (model.layers[0].bias.data == 0).all()


# ---------------------------------------------------------------------------------------------- ties
def test_a_layer_with_all_weights_equal_ties_by_position_exact_count():
    lin = Linear(5, 4)
    lin.weight.data[...] = 0.5
    model = Sequential(lin)
    magnitude_prune(model, 0.3)                                            # round(0.3 * 20) = 6
    pruned = np.flatnonzero(lin.weight.data.reshape(-1) == 0)
    assert pruned.tolist() == [0, 1, 2, 3, 4, 5]
    again = Linear(5, 4)
    again.weight.data[...] = -0.5
    magnitude_prune(Sequential(again), 0.3)
    np.testing.assert_array_equal(again.weight.mask, lin.weight.mask)       # deterministic
    magnitude_prune(model, 0.5)                                            # of the 14 left: 7 more, in order
    assert np.flatnonzero(lin.weight.data.reshape(-1) == 0).tolist() == list(range(13))


def test_ties_across_layers_and_structured_ties():
    a, b = Linear(2, 2), Linear(2, 2)
    a.weight.data[...] = 1.0
    b.weight.data[...] = 1.0
    magnitude_prune(Sequential(a, b), 0.5)                                 # global: 4 of 8, the first ones
    assert (a.weight.data == 0).all() and (b.weight.data != 0).all()
    c = Linear(3, 4)
    c.weight.data[...] = 2.0
    structured_prune(c, 0.5)
    assert (c.weight.data[:2] == 0).all() and (c.weight.data[2:] == 2).all()
    assert unstructured_mask(np.zeros(7), 3).tolist() == [0, 0, 0, 1, 1, 1, 1]


# ---------------------------------------------------------------------------------------------- saving
def test_state_dict_save_load_and_deepcopy_keep_the_masks(tmp_path):
    model = mlp(12)
    magnitude_prune(model, 0.7)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sd = model.state_dict()
    assert sd["0.weight_mask"].dtype == bool and (sd["0.weight_mask"] == model.layers[0].weight.mask).all()
    twin = copy.deepcopy(model)
    assert twin.layers[0].weight.mask is twin.layers[0].weight_mask.data    # still one array in the copy
    assert twin.layers[0].weight.mask is not model.layers[0].weight.mask
    fresh = mlp(13)
    load_pruned_state_dict(fresh, sd)
    save_checkpoint(tmp_path / "m.npz", model, opt)
    other = mlp(14)
    opt2 = SGD(other.parameters(), lr=0.1, momentum=0.9)
    load_pruned_checkpoint(tmp_path / "m.npz", other, opt2)
    x, y = batch(15)
    for m, o in ((twin, SGD(twin.parameters(), lr=0.1, momentum=0.9)), (fresh, SGD(fresh.parameters(), lr=0.1)),
                 (other, opt2)):
        with no_grad():
            np.testing.assert_array_equal(m(x).data, model(x).data)
        for _ in range(10):
            o.zero_grad()
            CrossEntropyLoss()(m(x), y).backward()
            o.step()
        w = m.layers[0].weight
        assert (w.data[~w.mask] == 0).all() and (w.mask == model.layers[0].weight.mask).all()
    with pytest.raises(ValueError, match="missing keys"):
        load_checkpoint(tmp_path / "m.npz", mlp(16))                      # a plain load names what is missing


def test_remove_masks_makes_it_permanent_and_the_state_dict_plain():
    model = mlp(17)
    magnitude_prune(model, 0.5)
    names = remove_masks(model)
    assert names == ["0.weight", "2.weight"] and not is_pruned(model) and masks(model) == {}
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert measure_sparsity(model, weights_only=True) == 0.5
    assert remove_masks(model) == []


def test_mask_gradients_makes_clipping_count_only_living_weights():
    model = mlp(18)
    x, y = batch(19)
    magnitude_prune(model, 0.5)
    CrossEntropyLoss()(model(x), y).backward()
    params = list(model.parameters())
    full = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in params))
    assert mask_gradients(model) == 2
    living = clip_grad_norm(params, 1e9)
    assert living < full
    w = model.layers[0].weight
    assert (w.grad.data[~w.mask] == 0).all() and (w.grad.data[w.mask] != 0).any()


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf"), -float("inf")])
def test_sparsity_outside_zero_one_or_nan_is_a_clear_error(bad):
    model = mlp(20)
    for call in (lambda: magnitude_prune(model, bad), lambda: structured_prune(model, bad),
                 lambda: compress_model(model, [batch()], sparsity=bad)):
        with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\], got " + repr(bad).replace("(", r"\(")):
            call()
    assert not is_pruned(model)


@pytest.mark.parametrize("bad", ["0.5", None, True, [0.5]])
def test_sparsity_of_the_wrong_type_is_a_clear_error(bad):
    with pytest.raises(TypeError, match="sparsity must be a finite number in \\[0, 1\\], got " + repr(bad).replace("[", "\\[")):
        magnitude_prune(mlp(21), bad)


def test_a_model_with_no_prunable_weights_is_a_clear_error():
    for model in (Sequential(ReLU(), Dropout(0.1)), Sequential(LayerNorm(4))):
        with pytest.raises(ValueError, match=f"{type(model).__name__} has no prunable weights"):
            magnitude_prune(model, 0.5)
        with pytest.raises(ValueError, match="no layer whose units can be removed"):
            structured_prune(model, 0.5)
    with pytest.raises(ValueError, match=r"parameters are \['0.weight', '0.bias'\]"):
        magnitude_prune(Sequential(LayerNorm(4)), 0.5)
    with pytest.raises(TypeError, match="expected a Module, got ndarray"):
        magnitude_prune(np.ones((3, 3)), 0.5)


def test_unknown_scope_strategy_schedule_and_optimizer_list_the_known_ones():
    model = mlp(22)
    with pytest.raises(ValueError, match="unknown scope 'local'; known: 'global', 'layer'"):
        magnitude_prune(model, 0.5, scope="local")
    gpt = GPT(vocab_size=5, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=4, seed=0)
    with pytest.raises(ValueError, match="unknown strategy 'entropyy'; known: 'magnitude'"):
        structured_prune(gpt, 0.5, strategy="entropyy")
    with pytest.raises(ValueError, match="unknown strategy 'l3'"):
        head_importance(gpt.blocks[0].attn, "l3")
    with pytest.raises(ValueError, match="unknown schedule 'linear'; known: 'equal', 'cubic'"):
        sparsity_schedule(0.9, 3, "linear")
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; known: 'sgd', 'adam', 'adamw'"):
        compress_model(model, [batch()], optimizer="rmsprop")
    assert not is_pruned(model) and not is_pruned(gpt)


def test_non_finite_weights_bad_masks_and_bad_distillation_settings():
    model = mlp(23)
    model.layers[2].weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="weight 2.weight holds NaN or infinite values"):
        magnitude_prune(model, 0.5)
    lin = Linear(3, 2)
    with pytest.raises(ValueError, match=r"the mask has shape \(3, 2\) but the parameter has shape \(2, 3\)"):
        attach_mask(lin.weight, np.ones((3, 2)))
    with pytest.raises(ValueError, match="saw the value 0.5"):
        attach_mask(lin.weight, np.full((2, 3), 0.5))
    for T in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0, got"):
            KnowledgeDistillation(lin, lin, temperature=T)
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\], got 1.5"):
        KnowledgeDistillation(lin, lin, alpha=1.5)
    kd = KnowledgeDistillation(lin, lin, alpha=0.5)
    with pytest.raises(ValueError, match="labels are needed when alpha < 1"):
        kd.distillation_loss(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"student logits \(2, 3\) and teacher logits \(2, 4\)"):
        kd.distillation_loss(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), [0, 1])


def test_quantize_requested_without_module_16_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinytorch.optimization.quantization", None)   # as if it did not exist
    model = mlp(24)
    with pytest.raises(RuntimeError, match="quantize=True needs module 16 \\(tinytorch.optimization.quantization"):
        compress_model(model, [batch()], quantize=True)
    assert not is_pruned(model)                                          # it failed before changing anything
