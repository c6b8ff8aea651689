"""Attention heads (module 17, section 11): importance by "random", "magnitude", "entropy" and "gradient", pruning by
mask or physically, growth by four strategies, and the one fine-tuning routine — on tiny GPTs, fast. Written so
that the failures seen elsewhere fail here: masks not re-applied (pruned heads come back), an entropy strategy
that is magnitude in disguise, growth strategies that return constants."""
import copy
import math
import warnings

import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW, Optimizer
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.transformers import GPT
from tinytorch.optimization.compression import (GROWTH_STRATEGIES, HEAD_STRATEGIES, attention_entropy,
                                                attention_layers, fine_tune, grow_heads, growth_scores, head_alive,
                                                head_gate_gradients, head_importance, head_norms, head_slices,
                                                lm_batches, mask_heads, prune_heads, pruned_heads)


def tiny_gpt(seed=0, layers=2, heads=4, sharpen=8.0):
    "A tiny GPT whose attention is sharper than at initialisation (so heads differ), and whose heads differ in size."
    m = GPT(vocab_size=12, embed_dim=16, num_layers=layers, num_heads=heads, max_seq_len=10, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for b in m.blocks:
        a = b.attn
        a.q_proj.weight.data *= sharpen
        a.k_proj.weight.data *= sharpen
        for h in range(heads):
            rows = slice(h * a.head_dim, (h + 1) * a.head_dim)
            a.v_proj.weight.data[rows] *= rng.uniform(0.3, 3.0)
    return m


def windows(seed=7, n=3, B=3, T=9):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 12, (B, T)) for _ in range(n)]


def outputs(model, x):
    with no_grad():
        return model(x).data


def ranking(scores):
    return np.argsort(scores, axis=None, kind="stable").tolist()


# -- importance -------------------------------------------------------------------------------------------------
def test_every_strategy_gives_a_layers_by_heads_matrix_of_its_own():
    m, data = tiny_gpt(), windows()
    scores = {s: head_importance(m, s, data) for s in HEAD_STRATEGIES}
    for s, imp in scores.items():
        assert imp.shape == (2, 4) and imp.dtype == np.float64 and np.isfinite(imp).all(), s
        assert np.ptp(imp) > 0, f"{s} returned a constant"
    for a in HEAD_STRATEGIES:                             # no strategy is another one in disguise
        for b in HEAD_STRATEGIES:
            if a < b:
                assert not np.allclose(scores[a], scores[b]) and ranking(scores[a]) != ranking(scores[b]), (a, b)
    assert np.array_equal(scores["magnitude"][0], head_norms(m.blocks[0].attn))
    assert head_importance(m.blocks[1].attn, "magnitude").shape == (4,)


def test_importance_is_deterministic_and_leaves_the_model_as_it_was():
    m, data = tiny_gpt(), windows()
    m.train()
    state = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    for s in HEAD_STRATEGIES:
        assert np.array_equal(head_importance(m, s, data, seed=5), head_importance(m, s, data, seed=5)), s
    assert not np.array_equal(head_importance(m, "random", seed=5), head_importance(m, "random", seed=6))
    assert all(np.array_equal(state[k], v) for k, v in m.state_dict().items())
    assert all(mod.training for mod in m.modules())
    for a in attention_layers(m):
        assert not a.store_attention and a.last_attention_weights is None
        assert not a.head_mask.requires_grad and a.head_mask.grad is None
    assert all(p.requires_grad and p.grad is None for p in m.parameters())


def test_unknown_strategies_and_missing_data_are_clear_errors():
    m, data = tiny_gpt(), windows()
    with pytest.raises(ValueError, match="unknown strategy 'fisher'; known: 'random', 'magnitude', 'entropy', 'gradient'"):
        head_importance(m, "fisher", data)
    with pytest.raises(ValueError, match="unknown strategy 'fisher'"):
        prune_heads(m, 0.5, "fisher", data)
    for s in ("entropy", "gradient"):
        with pytest.raises(ValueError, match=f"strategy '{s}' needs data"):
            head_importance(m, s)
        with pytest.raises(ValueError, match="pass the model"):
            head_importance(m.blocks[0].attn, s, data)
    assert head_alive(m).all()                            # nothing pruned by a failed call
    with pytest.raises(ValueError, match="no head of the model is pruned"):
        grow_heads(m, 1, "random")
    prune_heads(m, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="unknown strategy 'greedy'; known: 'gradient_sensitivity', 'entropy_gap', "
                                         "'balanced', 'random'"):
        grow_heads(m, 1, "greedy")
    with pytest.raises(ValueError, match=r"n must be an integer from 1 to the number of pruned heads \(2\), got 3"):
        grow_heads(m, 3, "random")
    with pytest.raises(ValueError, match="strategy 'entropy_gap' needs data"):
        grow_heads(m, 1, "entropy_gap")
    with pytest.raises(ValueError, match=r"heads \[\(0, 1\)\] are already pruned"):
        prune_heads(m, [(0, 1)])
    with pytest.raises(IndexError, match=r"head \(2, 0\) does not exist"):
        prune_heads(m, [(2, 0)])
    with pytest.raises(ValueError, match="has no MultiHeadAttention layer"):
        head_importance(CrossEntropyLoss(), "magnitude")


def test_entropy_of_a_uniform_head_and_of_a_one_hot_head():
    m, data = tiny_gpt(layers=1), windows()
    a = m.blocks[0].attn
    a.q_proj.weight.data[:a.head_dim] = 0              # head 0: q = 0 -> every visible key gets the same weight
    a.q_proj.bias.data[:a.head_dim] = 0
    ent, uniform = attention_entropy(m, data, return_max=True)
    T = data[0].shape[1] - 1
    assert np.isclose(uniform, np.mean(np.log(np.arange(1, T + 1))))
    assert np.isclose(ent[0, 0], uniform, rtol=1e-6)
    imp = head_importance(m, "entropy", data)
    assert abs(imp[0, 0]) < 1e-6 and (imp[0, 1:] > 1e-3).all()
    hd = a.head_dim                                     # head 1: huge scores -> (almost) one key per query
    a.q_proj.weight.data[hd:2 * hd] *= 1e4
    assert attention_entropy(m, data)[0, 1] < 0.05


def test_padding_changes_no_statistic():
    m = tiny_gpt()
    tok = CharTokenizer.from_text("abcdefgh")
    texts = ["abcabcdeh", "hgf", "ddcbaa", "ba"]
    padded = tok.encode_batch(texts)
    assert padded["attention_mask"].sum(axis=1).tolist() == [9, 3, 6, 2]
    alone = [np.array([tok.encode(t)]) for t in texts]
    np.testing.assert_allclose(attention_entropy(m, padded), attention_entropy(m, alone), rtol=1e-6)
    np.testing.assert_allclose(head_importance(m, "entropy", padded), head_importance(m, "entropy", alone),
                               rtol=1e-5, atol=1e-9)
    one = tok.encode_batch(["hgfedc"], padding="max_length", max_length=10)             # one sequence, 4 pads
    np.testing.assert_allclose(head_gate_gradients(m, one), head_gate_gradients(m, np.array([tok.encode("hgfedc")])),
                               rtol=1e-5, atol=1e-9)
    x, y, valid = lm_batches(one)[0]
    assert valid.sum() == 5 and (y[~valid] == -100).all()
    left = tok.encode_batch(texts, padding_side="left")             # padding kept out of attention too
    np.testing.assert_allclose(attention_entropy(m, left), attention_entropy(m, alone), rtol=1e-6)
    np.testing.assert_allclose(head_importance(m, "gradient", left), head_importance(m, "gradient", padded),
                               rtol=1e-5, atol=1e-9)
    holes = {"input_ids": np.array([[4, 0, 5, 6]]), "attention_mask": np.array([[1, 0, 1, 1]])}
    with pytest.raises(ValueError, match="one side"):
        attention_entropy(m, holes)


def test_gradient_importance_equals_finite_differences():
    m, data = tiny_gpt(seed=3), windows(seed=9)
    for p in m.parameters():                            # float64, so that central differences are exact enough
        p.data = p.data.astype(np.float64)
    for a in attention_layers(m):
        a.head_mask.data = a.head_mask.data.astype(np.float64)
    loss_fn = CrossEntropyLoss()

    def loss(batch):
        with no_grad():
            logits = m(batch[:, :-1])
            return loss_fn(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)).item()

    eps = 1e-5
    fd = np.zeros((2, 4))
    for l, a in enumerate(attention_layers(m)):
        for h in range(4):
            for w in data:
                a.head_mask.data[h] = 1 + eps
                up = loss(w)
                a.head_mask.data[h] = 1 - eps
                down = loss(w)
                a.head_mask.data[h] = 1.0
                fd[l, h] += abs(up - down) / (2 * eps) / len(data)
    grad = head_importance(m, "gradient", data)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-10)
    assert (fd > 1e-6).all()


# -- pruning ----------------------------------------------------------------------------------------------------
def test_prune_fraction_count_and_list_rank_the_least_important_first():
    m, data = tiny_gpt(), windows()
    imp = head_importance(m, "gradient", data)
    a = copy.deepcopy(m)
    gone = prune_heads(a, 0.25, "gradient", data)
    expected = sorted(tuple(int(v) for v in np.unravel_index(i, imp.shape)) for i in ranking(imp)[:2])
    assert gone == expected == pruned_heads(a)
    more = prune_heads(a, 0.5, "gradient", data)         # half of the 6 still on
    assert len(more) == 3 and not set(more) & set(gone) and head_alive(a).sum() == 3
    b = copy.deepcopy(m)
    assert prune_heads(b, 3, "random", seed=1) == prune_heads(copy.deepcopy(m), 3, "random", seed=1)
    assert head_alive(b).sum() == 5
    c = copy.deepcopy(m)
    assert prune_heads(c, [(1, 3), (0, 0)]) == [(0, 0), (1, 3)]
    assert head_alive(c).tolist() == [[False, True, True, True], [True, True, True, False]]


def test_a_masked_head_contributes_exactly_nothing():
    m, data = tiny_gpt(), windows()
    x = data[0][:, :-1]
    prune_heads(m, [(0, 2), (1, 0)])
    y = outputs(m, x)
    for l, h in [(0, 2), (1, 0)]:
        a = attention_layers(m)[l]
        assert a.head_mask.data[h] == 0
        for module, attr, index in head_slices(a, h):
            assert not getattr(module, attr).data[index].any()
    a = attention_layers(m)[0]                          # scribble on all the pruned head owns (not its gate)
    rows = slice(2 * a.head_dim, 3 * a.head_dim)
    rng = np.random.default_rng(0)
    for proj in (a.q_proj, a.k_proj, a.v_proj):
        proj.weight.data[rows] = rng.standard_normal(proj.weight.data[rows].shape)
    a.out_proj.weight.data[:, rows] = rng.standard_normal(a.out_proj.weight.data[:, rows].shape)
    assert np.array_equal(outputs(m, x), y)
    a.head_mask.data[2] = 1                             # the gate is what switches it off
    assert not np.allclose(outputs(m, x), y)


@pytest.mark.parametrize("strategy", HEAD_STRATEGIES)
def test_mask_and_physical_pruning_give_the_same_outputs(strategy):
    m, data = tiny_gpt(), windows()
    x = data[1][:, :-1]
    masked, physical = copy.deepcopy(m), copy.deepcopy(m)
    gone = prune_heads(masked, 0.5, strategy, data, seed=2)
    assert prune_heads(physical, 0.5, strategy, data, seed=2, physical=True) == gone
    np.testing.assert_allclose(outputs(physical, x), outputs(masked, x), atol=1e-5, rtol=0)
    assert physical.num_parameters() < masked.num_parameters()
    empty = int((head_alive(masked).sum(axis=1) == 0).sum())      # a fully pruned layer keeps one (gated) head
    assert sum(a.num_heads for a in attention_layers(physical)) == 4 + empty
    assert pruned_heads(physical) == gone and np.array_equal(head_alive(physical), head_alive(masked))
    imp = head_importance(physical, "magnitude")        # a removed head has no score (NaN); the others do
    assert np.isnan(imp).sum() == sum(4 - a.num_heads for a in attention_layers(physical))
    assert np.isfinite(imp[head_alive(physical)]).all()


def test_a_fully_pruned_layer_physically_and_by_mask():
    m, data = tiny_gpt(), windows()
    x = data[0][:, :-1]
    masked, physical = copy.deepcopy(m), copy.deepcopy(m)
    layer0 = [(0, h) for h in range(4)]
    prune_heads(masked, layer0)
    prune_heads(physical, layer0, physical=True)
    np.testing.assert_allclose(outputs(physical, x), outputs(masked, x), atol=1e-5, rtol=0)
    assert attention_layers(physical)[0].num_heads == 1 and head_alive(physical)[0].sum() == 0


class DriftingSGD(Optimizer):
    "A careless optimizer: it ignores masks and adds a drift to every weight (a pruned one would come back)."
    def __init__(self, params, lr=0.05):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data -= group["lr"] * (p.grad.data + 0.01)


@pytest.mark.parametrize("make_opt", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                      lambda ps: Adam(ps, lr=0.01),
                                      lambda ps: AdamW(ps, lr=0.01, weight_decay=0.5),
                                      lambda ps: DriftingSGD(ps)],
                         ids=["sgd-momentum", "adam", "adamw-decay", "careless-optimizer"])
def test_fine_tuning_never_revives_a_pruned_head(make_opt):
    m, data = tiny_gpt(), windows()
    batches = [(w[:, :-1], w[:, 1:]) for w in data]
    opt = make_opt(list(m.parameters()))
    fine_tune(m, batches, 2, optimizer=opt)             # momentum and moments built up before pruning
    gone = prune_heads(m, 0.5, "magnitude")
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    x = data[0][:, :-1]
    fine_tune(m, batches * 2, 3, optimizer=opt, clip_grad=1.0)
    for l, h in gone:
        a = attention_layers(m)[l]
        assert a.head_mask.data[h] == 0
        for module, attr, index in head_slices(a, h):
            assert not getattr(module, attr).data[index].any(), (l, h, attr)
    assert pruned_heads(m) == gone
    changed = [n for n, p in m.named_parameters() if not np.array_equal(before[n], p.data)]
    assert any("attn" in n for n in changed) and any("mlp" in n for n in changed)
    y = outputs(m, x)
    a = attention_layers(m)[gone[0][0]]
    h = gone[0][1]
    a.v_proj.weight.data[h * a.head_dim:(h + 1) * a.head_dim] = 1.0
    assert np.array_equal(outputs(m, x), y)


# -- growth -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", GROWTH_STRATEGIES)
def test_growth_restores_heads_with_their_old_weights_and_they_learn(strategy):
    m, data = tiny_gpt(), windows()
    original = copy.deepcopy(m)
    prune_heads(m, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 3)])
    grown = grow_heads(m, 3, strategy, data, seed=4)
    assert len(grown) == 3 and head_alive(m).sum() == 5 and not set(grown) & set(pruned_heads(m))
    for l, h in grown:
        pairs = zip(head_slices(attention_layers(m)[l], h), head_slices(attention_layers(original)[l], h))
        for (module, attr, index), (orig, _, _) in pairs:
            assert np.array_equal(getattr(module, attr).data[index], getattr(orig, attr).data[index])
            assert getattr(module, attr).mask[index].all()
    snapshot = {(l, h): attention_layers(m)[l].v_proj.weight.data.copy() for l, h in grown}
    fine_tune(m, [(w[:, :-1], w[:, 1:]) for w in data], 2, lr=0.01, warmup_steps=2)
    for (l, h), before in snapshot.items():
        a = attention_layers(m)[l]
        rows = slice(h * a.head_dim, (h + 1) * a.head_dim)
        assert not np.array_equal(a.v_proj.weight.data[rows], before[rows])          # a regrown head learns
    for l, h in pruned_heads(m):
        for module, attr, index in head_slices(attention_layers(m)[l], h):
            assert not getattr(module, attr).data[index].any()                       # the others stay pruned


def test_growth_scores_are_measurements_not_constants():
    m, data = tiny_gpt(), windows()
    gone = [(0, 0), (0, 3), (1, 1), (1, 2), (1, 3)]
    pruned = copy.deepcopy(m)
    prune_heads(pruned, gone)
    # what the pruned heads would do if switched on: the original weights, gates of the pruned heads at 0
    gated = copy.deepcopy(m)
    for l, h in gone:
        attention_layers(gated)[l].head_mask.data[h] = 0
    sens = growth_scores(pruned, "gradient_sensitivity", data)
    expected = head_gate_gradients(gated, data)
    cand = tuple(np.array(gone).T)
    np.testing.assert_allclose(sens[cand], expected[cand], rtol=1e-5)
    assert np.isnan(sens[head_alive(pruned)]).all() and len(set(np.round(sens[cand], 12))) == len(gone)
    gap = growth_scores(pruned, "entropy_gap", data)
    ent = attention_entropy(gated, data)
    alive = head_alive(pruned)
    for l, h in gone:
        assert np.isclose(gap[l, h], np.abs(ent[l][alive[l]] - ent[l, h]).min(), rtol=1e-6)
    assert len(set(np.round(gap[cand], 12))) == len(gone)
    r1, r2 = growth_scores(pruned, "random", seed=1), growth_scores(pruned, "random", seed=2)
    assert not np.array_equal(r1[cand], r2[cand]) and np.array_equal(r1[cand], growth_scores(pruned, "random", seed=1)[cand])
    best = sorted(gone, key=lambda lh: -sens[lh])[:2]
    assert grow_heads(copy.deepcopy(pruned), 2, "gradient_sensitivity", data) == sorted(best)


def test_balanced_growth_fills_the_emptiest_layer_first():
    m = tiny_gpt(layers=3)
    prune_heads(m, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (2, 2)])       # layer heads on: 0, 2, 3
    prio = growth_scores(m, "balanced")
    assert prio[0][~np.isnan(prio[0])].min() > np.nanmax(prio[1]) > np.nanmax(prio[2])  # emptiest layer first
    assert len(set(prio[0])) == 4                        # within a layer: by the size of the kept weights
    grown = grow_heads(m, 4, "balanced")                 # 0,2,3 -> 1,2,3 -> 2,2,3 -> 3,2,3 (ties: lower layer) -> 3,3,3
    assert sorted(l for l, _ in grown) == [0, 0, 0, 1]
    assert head_alive(m).sum(axis=1).tolist() == [3, 3, 3]
    picked = [h for l, h in grown if l == 0]            # in layer 0: the three heads whose kept weights are largest
    kept = tiny_gpt(layers=3)
    sizes = {h: np.sqrt(sum(float((getattr(mod, attr).data[index].astype(np.float64) ** 2).sum())
                            for mod, attr, index in head_slices(attention_layers(kept)[0], h))) for h in range(4)}
    assert sorted(picked) == sorted(sorted(sizes, key=lambda h: -sizes[h])[:3])


def test_growth_after_a_physical_prune_widens_the_layer_again():
    m, data = tiny_gpt(), windows()
    x = data[0][:, :-1]
    y = outputs(m, x)
    p = copy.deepcopy(m)
    prune_heads(p, [(0, 1), (0, 2), (1, 0)], physical=True)
    assert [a.num_heads for a in attention_layers(p)] == [2, 3]
    grown = grow_heads(p, 3, "gradient_sensitivity", data)
    assert grown == [(0, 1), (0, 2), (1, 0)] and [a.num_heads for a in attention_layers(p)] == [4, 4]
    np.testing.assert_allclose(outputs(p, x), y, atol=1e-6)


def test_random_initialisation_of_a_regrown_head():
    m = tiny_gpt()
    prune_heads(m, [(1, 2)])
    grow_heads(m, 1, "random", init="random", init_std=0.01, seed=0)
    a = attention_layers(m)[1]
    rows = slice(2 * a.head_dim, 3 * a.head_dim)
    w = np.concatenate([a.q_proj.weight.data[rows].ravel(), a.v_proj.weight.data[rows].ravel(),
                        a.out_proj.weight.data[:, rows].ravel()])
    assert 0.007 < w.std() < 0.013 and a.head_mask.data[2] == 1 and not a.v_proj.bias.data[rows].any()
    prune_heads(m, [(1, 2)])
    with pytest.raises(ValueError, match="init_std must be a finite number > 0, got 0"):
        grow_heads(m, 1, "random", init="random", init_std=0)
    mask_heads(a, [3])                                  # pruned by hand: weights kept all the same
    assert (1, 3) in pruned_heads(m) and 3 in a.pruned_head_weights


# -- the one fine-tuning routine ------------------------------------------------------------------------------
class NaNOnCalls(CrossEntropyLoss):
    "Cross-entropy that returns NaN on the given calls (1-based)."
    def __init__(self, bad):
        super().__init__()
        self.bad, self.calls = set(bad), 0

    def forward(self, logits, targets):
        self.calls += 1
        loss = super().forward(logits, targets)
        return loss * float("nan") if self.calls in self.bad else loss


def test_a_non_finite_loss_skips_the_step_lowers_the_rate_and_says_so():
    m, data = tiny_gpt(), windows()
    batches = [(w[:, :-1], w[:, 1:]) for w in data]
    reference = copy.deepcopy(m)
    opt = Adam(list(m.parameters()), lr=0.01)
    seen = []
    with pytest.warns(RuntimeWarning, match=r"epoch 1, step 2: the loss is nan; the step was skipped and the learning "
                                            r"rate lowered to 0.005"):
        hist = fine_tune(m, batches, 1, optimizer=opt, loss_fn=NaNOnCalls({2}),
                         on_step=lambda step, loss, lr: seen.append((step, lr)))
    assert hist.steps == 3 and [s["step"] for s in hist.skipped] == [2] and hist.skipped[0]["lr"] == [0.005]
    assert seen == [(1, 0.01), (3, 0.005)] and hist.lr == [0.005] and math.isfinite(hist[0])
    ref_opt = Adam(list(reference.parameters()), lr=0.01)          # the same run without the bad batch
    fine_tune(reference, [batches[0]], 1, optimizer=ref_opt)
    ref_opt.param_groups[0]["lr"] = 0.005
    fine_tune(reference, [batches[2]], 1, optimizer=ref_opt)
    for (n, p), q in zip(m.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7, err_msg=n)


def test_an_epoch_of_only_non_finite_losses_is_an_error_and_the_weights_stay():
    m, data = tiny_gpt(), windows()
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="every step of epoch 1 had a non-finite loss"):
            fine_tune(m, [(w[:, :-1], w[:, 1:]) for w in data], 1, lr=0.01, loss_fn=NaNOnCalls({1, 2, 3}))
    assert all(np.array_equal(before[n], p.data) for n, p in m.named_parameters())


def test_warm_up_ramps_the_learning_rate_and_max_steps_stops():
    m, data = tiny_gpt(), windows()
    lrs = []
    hist = fine_tune(m, [(w[:, :-1], w[:, 1:]) for w in data] * 3, 2, lr=0.02, warmup_steps=4, max_steps=6,
                     on_step=lambda step, loss, lr: lrs.append(lr))
    assert np.allclose(lrs, [0.005, 0.01, 0.015, 0.02, 0.02, 0.02]) and hist.steps == 6 and len(hist) == 1
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0, got -1"):
        fine_tune(m, [(data[0][:, :-1], data[0][:, 1:])], 1, warmup_steps=-1)


def test_lm_batches_reads_pairs_windows_and_padded_dicts():
    w = np.arange(12).reshape(2, 6) % 10
    (x, y, v), = lm_batches(w)
    assert np.array_equal(x, w[:, :-1]) and np.array_equal(y, w[:, 1:]) and v.all()
    (x2, y2, v2), = lm_batches((w[:, :-1], w[:, 1:]))
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    assert len(lm_batches([w, w])) == 2
    with pytest.raises(TypeError, match="must hold integer token ids"):
        lm_batches(np.ones((2, 3)))
    with pytest.raises(ValueError, match="x .* and y .* must have one shape"):
        lm_batches((w[:, :-1], w[:, :-2]))
