"""tinytorch.nn.utils.prune against torch.nn.utils.prune on the same weights.

Every deterministic method must produce the same mask as PyTorch: l1_unstructured (fractions, with
Python's half-to-even rounding, and integer counts), ln_structured (n = 1, 2, inf; dims 0, 1 and -1; on
Linear and Conv2d), global_unstructured, repeated and mixed pruning (PyTorch's PruningContainer acts on
what remains), importance scores, remove and is_pruned. Random pruning cannot give the same mask across
two random generators: its count, its subset property and its reproducibility are checked instead.
"""
import numpy as np
import pytest
import torch
from torch.nn.utils import prune as tprune

from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.activations import ReLU
from tinytorch.core.spatial import Conv2d
from tinytorch.nn.utils import prune


def linear_pair(i, o, seed):
    ours = Linear(i, o, rng=np.random.default_rng(seed))
    theirs = torch.nn.Linear(i, o)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data.copy()))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data.copy()))
    return ours, theirs


def conv_pair(c_in, c_out, k, seed):
    ours = Conv2d(c_in, c_out, k, rng=np.random.default_rng(seed))
    theirs = torch.nn.Conv2d(c_in, c_out, k)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data.copy()))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data.copy()))
    return ours, theirs


def assert_same(ours, theirs, name="weight"):
    "Same mask, and our pruned weight equals PyTorch's weight_orig * weight_mask."
    our_mask = getattr(ours, name).mask
    their_mask = getattr(theirs, name + "_mask").detach().numpy()
    assert our_mask.dtype == bool
    np.testing.assert_array_equal(our_mask.astype(np.float32), their_mask)
    np.testing.assert_array_equal(getattr(ours, name).data, getattr(theirs, name).detach().numpy())
    np.testing.assert_array_equal(getattr(ours, name + "_mask").data, our_mask)     # the buffer is the mask


@pytest.mark.parametrize("amount", [0.0, 0.13, 0.25, 0.35, 0.5, 0.999, 1.0, 0, 1, 7, 20])
def test_l1_unstructured_same_mask(amount):
    ours, theirs = linear_pair(5, 4, seed=1)               # 20 weights
    prune.l1_unstructured(ours, "weight", amount=amount)
    tprune.l1_unstructured(theirs, "weight", amount=amount)
    assert_same(ours, theirs)


def test_fraction_rounds_half_to_even_like_pytorch():
    for size, amount in ((10, 0.25), (10, 0.35), (6, 0.25), (2, 0.25)):   # 2.5 -> 2, 3.5 -> 4, 1.5 -> 2, 0.5 -> 0
        ours, theirs = linear_pair(size, 1, seed=size)
        prune.l1_unstructured(ours, "weight", amount=amount)
        tprune.l1_unstructured(theirs, "weight", amount=amount)
        assert_same(ours, theirs)
        assert (ours.weight.data == 0).sum() == round(amount * size)


def test_repeated_pruning_acts_on_what_remains():
    ours, theirs = linear_pair(50, 20, seed=2)              # 1000 weights
    for _ in range(3):
        prune.l1_unstructured(ours, "weight", amount=0.2)
        tprune.l1_unstructured(theirs, "weight", amount=0.2)
        assert_same(ours, theirs)
    assert (ours.weight.data == 0).sum() == 1000 - 512    # 1 - 0.8^3 = 48.8 %, exactly


@pytest.mark.parametrize("n", [1, 2, float("inf")])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("amount", [0.3, 2])
def test_ln_structured_linear_same_mask(n, dim, amount):
    ours, theirs = linear_pair(6, 5, seed=3)
    prune.ln_structured(ours, "weight", amount=amount, n=n, dim=dim)
    tprune.ln_structured(theirs, "weight", amount=amount, n=n, dim=dim)
    assert_same(ours, theirs)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("dim", [0, 1])
def test_ln_structured_conv_same_mask(n, dim):
    ours, theirs = conv_pair(4, 6, 3, seed=4)
    prune.ln_structured(ours, "weight", amount=0.5, n=n, dim=dim)
    tprune.ln_structured(theirs, "weight", amount=0.5, n=n, dim=dim)
    assert_same(ours, theirs)
    dead = ~ours.weight.data.any(axis=tuple(d for d in range(4) if d != dim))
    assert dead.sum() == (3 if dim == 0 else 2)


def test_mixed_and_repeated_structured_pruning_matches_the_pruning_container():
    ours, theirs = conv_pair(5, 8, 3, seed=5)
    steps = [("l1", dict(amount=0.3)), ("ln", dict(amount=0.5, n=2, dim=0)), ("l1", dict(amount=5)),
             ("ln", dict(amount=1, n=1, dim=1)), ("ln", dict(amount=0.5, n=2, dim=0))]
    for kind, kw in steps:
        if kind == "l1":
            prune.l1_unstructured(ours, "weight", **kw)
            tprune.l1_unstructured(theirs, "weight", **kw)
        else:
            prune.ln_structured(ours, "weight", **kw)
            tprune.ln_structured(theirs, "weight", **kw)
        assert_same(ours, theirs)
    assert (~ours.weight.data.reshape(8, -1).any(axis=1)).sum() == 6      # 8 -> 4 -> 2 filters alive


def test_importance_scores_same_mask():
    ours, theirs = linear_pair(6, 4, seed=6)
    scores = np.random.default_rng(7).random((4, 6)).astype(np.float32)
    prune.l1_unstructured(ours, "weight", amount=0.5, importance_scores=scores)
    tprune.l1_unstructured(theirs, "weight", amount=0.5, importance_scores=torch.from_numpy(scores))
    assert_same(ours, theirs)
    prune.ln_structured(ours, "weight", amount=1, n=2, dim=0, importance_scores=scores)
    tprune.ln_structured(theirs, "weight", amount=1, n=2, dim=0, importance_scores=torch.from_numpy(scores))
    assert_same(ours, theirs)


@pytest.mark.parametrize("amount", [0.4, 57])
def test_global_unstructured_same_masks(amount):
    (a, ta), (b, tb), (c, tc) = linear_pair(10, 8, 8), linear_pair(8, 6, 9), conv_pair(2, 3, 3, 10)
    b.weight.data *= 3                                       # different scales: the ranking is global
    with torch.no_grad():
        tb.weight.mul_(3)
    prune.l1_unstructured(a, "weight", amount=0.25)          # and one of them pruned before
    tprune.l1_unstructured(ta, "weight", amount=0.25)
    prune.global_unstructured([(a, "weight"), (b, "weight"), (c, "weight")],
                              pruning_method=prune.L1Unstructured, amount=amount)
    tprune.global_unstructured([(ta, "weight"), (tb, "weight"), (tc, "weight")],
                               pruning_method=tprune.L1Unstructured, amount=amount)
    for ours, theirs in ((a, ta), (b, tb), (c, tc)):
        assert_same(ours, theirs)
    assert (b.weight.data == 0).mean() < (a.weight.data == 0).mean()


def test_global_unstructured_includes_biases_when_asked():
    (a, ta) = linear_pair(4, 3, 11)
    prune.global_unstructured([(a, "weight"), (a, "bias")], pruning_method=prune.L1Unstructured, amount=6)
    tprune.global_unstructured([(ta, "weight"), (ta, "bias")], pruning_method=tprune.L1Unstructured, amount=6)
    assert_same(a, ta, "weight")
    assert_same(a, ta, "bias")


def test_random_unstructured_count_subset_and_seed():
    ours, theirs = linear_pair(10, 10, 12)
    torch.manual_seed(0)
    for amount in (0.3, 0.3, 5):
        prune.random_unstructured(ours, "weight", amount=amount, seed=1)
        before = theirs.weight_mask.clone() if hasattr(theirs, "weight_mask") else torch.ones(10, 10)
        tprune.random_unstructured(theirs, "weight", amount=amount)
        their_zeros = int((theirs.weight_mask == 0).sum())
        assert int((ours.weight.mask == 0).sum()) == their_zeros          # the same count
        assert not (theirs.weight_mask > before).any()                     # (and PyTorch's is a subset too)
    assert int((ours.weight.mask == 0).sum()) == 30 + 21 + 5                # 30 % of 100, 30 % of 70, then 5
    again, _ = linear_pair(10, 10, 12)
    prune.random_unstructured(again, "weight", amount=0.3, seed=1)
    first, _ = linear_pair(10, 10, 12)
    prune.random_unstructured(first, "weight", amount=0.3, seed=1)
    np.testing.assert_array_equal(again.weight.mask, first.weight.mask)   # a seed repeats
    other, _ = linear_pair(10, 10, 12)
    prune.random_unstructured(other, "weight", amount=0.3, seed=2)
    assert (other.weight.mask != first.weight.mask).any()


def test_random_pruning_never_revives_and_acts_on_what_remains():
    ours, _ = linear_pair(8, 8, 13)
    prune.l1_unstructured(ours, "weight", amount=0.5)
    pruned_before = ~ours.weight.mask.copy()
    prune.random_unstructured(ours, "weight", amount=0.5, seed=0)
    assert (~ours.weight.mask)[pruned_before].all()                        # what was pruned stays pruned
    assert (~ours.weight.mask).sum() == 32 + 16
    prune.random_structured(ours, "weight", amount=2, dim=0, seed=0)
    assert (~ours.weight.data.any(axis=1)).sum() >= 2


def test_remove_and_is_pruned_like_pytorch():
    ours, theirs = linear_pair(6, 4, 14)
    net, tnet = Sequential(ours, ReLU()), torch.nn.Sequential(theirs, torch.nn.ReLU())
    assert not prune.is_pruned(net) and not tprune.is_pruned(tnet)
    prune.l1_unstructured(ours, "weight", amount=0.5)
    tprune.l1_unstructured(theirs, "weight", amount=0.5)
    assert prune.is_pruned(net) and tprune.is_pruned(tnet)
    assert set(ours.state_dict()) == {"weight", "bias", "weight_mask"}
    assert set(theirs.state_dict()) == {"weight_orig", "bias", "weight_mask"}
    np.testing.assert_array_equal(ours.state_dict()["weight_mask"].astype(np.float32),
                                  theirs.state_dict()["weight_mask"].numpy())
    prune.remove(ours, "weight")
    tprune.remove(theirs, "weight")
    assert not prune.is_pruned(net) and not tprune.is_pruned(tnet)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight", "bias"}
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    with pytest.raises(ValueError, match="has to be pruned before pruning can be removed"):
        prune.remove(ours, "weight")
    with pytest.raises(ValueError, match="has to be pruned before pruning can be removed"):
        tprune.remove(theirs, "weight")


def test_identity_and_custom_from_mask():
    ours, theirs = linear_pair(3, 2, 15)
    prune.identity(ours, "bias")
    tprune.identity(theirs, "bias")
    assert_same(ours, theirs, "bias")
    mask = np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32)
    prune.custom_from_mask(ours, "weight", mask)
    tprune.custom_from_mask(theirs, "weight", torch.from_numpy(mask))
    assert_same(ours, theirs)


@pytest.mark.parametrize("amount", [-1, -0.5, 1.5])
def test_bad_amounts_are_refused_by_both(amount):
    ours, theirs = linear_pair(3, 2, 16)
    with pytest.raises(ValueError, match="amount"):
        prune.l1_unstructured(ours, "weight", amount=amount)
    with pytest.raises(ValueError):
        tprune.l1_unstructured(theirs, "weight", amount=amount)
    assert not prune.is_pruned(ours)


def test_a_count_larger_than_the_tensor_is_refused_by_both():
    ours, theirs = linear_pair(3, 2, 17)
    with pytest.raises(ValueError, match="amount=7 should be smaller than the number of parameters to prune=6"):
        prune.l1_unstructured(ours, "weight", amount=7)
    with pytest.raises(ValueError, match="should be smaller"):
        tprune.l1_unstructured(theirs, "weight", amount=7)


def test_nan_amount_and_unknown_parameter_are_clear_errors():
    ours, _ = linear_pair(3, 2, 18)
    with pytest.raises(ValueError, match="nan"):
        prune.l1_unstructured(ours, "weight", amount=float("nan"))
    with pytest.raises(AttributeError, match="'wieght'.*\\['weight', 'bias'\\]"):
        prune.l1_unstructured(ours, "wieght", amount=0.5)
    with pytest.raises(TypeError, match="unstructured"):
        prune.global_unstructured([(ours, "weight")], pruning_method=prune.LnStructured, amount=1, n=2, dim=0)


# ------------------------------------------------------------------------------------------------
# Property: any sequence of l1_unstructured / ln_structured calls gives PyTorch's masks, step by step
from hypothesis import given, settings, strategies as st  # noqa: E402

_step = st.one_of(
    st.tuples(st.just("l1"), st.one_of(st.floats(0, 1), st.integers(0, 4)), st.just(None), st.just(None)),
    st.tuples(st.just("ln"), st.one_of(st.floats(0, 1), st.integers(0, 2)), st.sampled_from([1, 2]),
              st.sampled_from([0, 1, -1])),
)


@settings(max_examples=60, deadline=None)
@given(out=st.integers(1, 9), inp=st.integers(1, 9), seed=st.integers(0, 10_000),
       steps=st.lists(_step, min_size=1, max_size=4))
def test_any_sequence_of_pruning_calls_matches_pytorch(out, inp, seed, steps):
    ours, theirs = linear_pair(inp, out, seed)
    for kind, amount, n, dim in steps:
        def run(mod, api):
            if kind == "l1":
                return api.l1_unstructured(mod, "weight", amount=amount)
            return api.ln_structured(mod, "weight", amount=amount, n=n, dim=dim)
        try:
            run(theirs, tprune)
        except ValueError:                                   # an int amount larger than what remains
            before = ours.weight.mask.copy() if prune.is_pruned(ours) else None
            with pytest.raises(ValueError, match="should be smaller than the number of parameters"):
                run(ours, prune)
            if before is not None:                           # ours is unchanged by the failed call
                np.testing.assert_array_equal(ours.weight.mask, before)
            return                                           # (PyTorch's module is left half-pruned: stop)
        run(ours, prune)
        assert_same(ours, theirs)
