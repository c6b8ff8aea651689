"""The one fine-tuner and evaluate on padded language-model batches, and their stability checks.

Padded dicts from encode_batch (either side) and the (x, y, valid) triples of lm_batches are accepted by
fine_tune, evaluate and head_importance; padding changes neither the loss nor the gradient (padded targets are
ignored, padded keys never attended). A NaN gradient with a finite loss is caught with clipping off; a loss
that runs away is reported and stops training."""
import math
import warnings

import numpy as np
import pytest

from tinytorch.core.autograd import Function
from tinytorch.core.layers import Module
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.transformers import GPT
from tinytorch.optimization.compression import (evaluate, fine_tune, head_importance, lm_batches, prune_heads,
                                                training_batches)

TEXTS = ["abcabcdeh", "hgf", "ddcbaa", "ba", "cab"]


def setup(seed=0):
    tok = CharTokenizer.from_text("abcdefgh")
    return GPT(tok.vocab_size, 16, 2, 4, 16, seed=seed), tok


def test_padded_dicts_and_triples_are_accepted_everywhere():
    m, tok = setup()
    right, left = tok.encode_batch(TEXTS), tok.encode_batch(TEXTS, padding_side="left")
    alone = [np.array([tok.encode(t)]) for t in TEXTS]
    ref = evaluate(m, [(w[:, :-1], w[:, 1:]) for w in alone])
    n_targets = sum(len(t) - 1 for t in TEXTS)
    for data in (right, left, [right], lm_batches(right), lm_batches(left)[0]):
        got = evaluate(m, data)
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert got["accuracy"] == pytest.approx(ref["accuracy"])
    assert sum(int((y != -100).sum()) for _, y, _ in training_batches(right)) == n_targets
    for data in (right, lm_batches(right), left):
        assert head_importance(m, "gradient", data).shape == (2, 4)


def test_fine_tune_on_padding_equals_fine_tune_alone():
    """One step on the padded batch = one step on the same tokens with the loss averaged the same way: the
    padding contributes nothing (compare with the unpadded batch of equal-length texts)."""
    tok = CharTokenizer.from_text("abcdefgh")
    same = ["abcd", "hgfe", "ddcb"]
    padded = tok.encode_batch(same, padding="max_length", max_length=7)          # 3 pads per row
    plain = tok.encode_batch(same)
    a, b = GPT(tok.vocab_size, 16, 2, 4, 16, seed=1), GPT(tok.vocab_size, 16, 2, 4, 16, seed=1)
    ha = fine_tune(a, padded, lr=0.1, optimizer_name="sgd")      # (Adam would blow up float noise in the
    hb = fine_tune(b, plain, lr=0.1, optimizer_name="sgd")       # zero gradient of the key biases)
    assert ha[0] == pytest.approx(hb[0], rel=1e-6)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(pa.data, pb.data, atol=1e-6, err_msg=name)
    left = tok.encode_batch(["abcd", "hg"], padding_side="left")
    c = GPT(tok.vocab_size, 16, 2, 4, 16, seed=1)
    hist = fine_tune(c, [left, lm_batches(left)[0]], lr=1e-2)
    assert hist.steps == 2 and math.isfinite(hist[0])


def test_pruned_heads_stay_off_on_padded_data():
    m, tok = setup(2)
    prune_heads(m, [(0, 1), (1, 3)])
    fine_tune(m, [tok.encode_batch(TEXTS)] * 3, lr=1e-2)
    q = m.blocks[0].attn.q_proj.weight.data
    assert (q[4:8] == 0).all() and m.blocks[1].attn.head_mask.data[3] == 0


class NanGrad(Function):
    "Identity forward, NaN gradient: a finite loss whose gradient is not."
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return (np.full_like(grad, np.nan),)


class Poisoned(Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, attention_mask=None):
        return NanGrad.apply(self.inner(x, attention_mask=attention_mask))


def test_nan_gradient_is_caught_without_clipping():
    m, tok = setup()
    before = [p.data.copy() for p in m.parameters()]
    with pytest.warns(RuntimeWarning, match="gradient norm is nan"):
        with pytest.raises(FloatingPointError, match="every step"):
            fine_tune(Poisoned(m), tok.encode_batch(TEXTS), clip_grad=None)
    for b, p in zip(before, m.parameters()):
        assert np.isfinite(p.data).all() and np.array_equal(b, p.data)          # nothing was stepped


def test_divergence_is_reported_and_stops():
    m, tok = setup(3)
    data = [tok.encode_batch(TEXTS)] * 40
    with pytest.warns(RuntimeWarning, match="diverged"):
        hist = fine_tune(m, data, lr=3.0, optimizer_name="sgd")
    assert hist.diverged is not None and hist.diverged["loss"] > 2 * hist.diverged["start_loss"]
    assert hist.steps < 40
    m2, _ = setup(3)
    with pytest.raises(FloatingPointError, match="diverged"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fine_tune(m2, data, lr=3.0, optimizer_name="sgd", on_divergence="raise")
    with pytest.raises(ValueError, match="divergence_factor"):
        fine_tune(m2, data, divergence_factor=0.5)
    calm = fine_tune(setup(3)[0], data[:12], lr=1e-3)
    assert calm.diverged is None and len(calm.grad_norms) == 12


def test_bad_batches_are_named():
    m, _ = setup()
    with pytest.raises(TypeError, match="batch 0 is a str"):
        fine_tune(m, ["abc"])
    with pytest.raises(ValueError, match="one side"):
        evaluate(m, {"input_ids": np.array([[4, 5, 6]]), "attention_mask": np.array([[1, 0, 1]])})
