"""Module 13's sampling steps (top-k, top-p, inverse-CDF draw), GPTConfig, the language-modelling objective
(next_token_targets, lm_loss), nanoGPT's parameter groups and generate's use of eval_mode, against torch and
Hugging Face's logits warpers where they define the same thing."""
import math

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from tinytorch.core.transformers import (GPT, GPTConfig, IGNORE_INDEX, beam_search, beam_step, lm_loss,
                                         next_token_targets, perplexity, sample_from_logits, sample_next_token,
                                         top_k_filter, top_p_filter)


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(vocab_size=13, embed_dim=16, num_layers=2, num_heads=2, max_seq_len=10), seed=0)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_top_p_keeps_the_same_tokens_as_hugging_face(p):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 50)) * 2.0
    ours = np.isfinite(top_p_filter(z, p))
    theirs = torch.isfinite(TopPLogitsWarper(p)(None, torch.tensor(z))).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert ours.any(axis=1).all()                               # the likeliest token always stays


@pytest.mark.parametrize("k", [1, 3, 7, 50])
def test_top_k_keeps_the_same_tokens_as_hugging_face(k):
    z = np.random.default_rng(1).standard_normal((32, 50))
    ours = np.isfinite(top_k_filter(z, k))
    theirs = torch.isfinite(TopKLogitsWarper(k)(None, torch.tensor(z))).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_filters_leave_their_input_alone():
    z = np.random.default_rng(2).standard_normal((4, 9))
    before = z.copy()
    top_k_filter(z, 2), top_p_filter(z, 0.5)
    np.testing.assert_array_equal(z, before)
    assert top_k_filter(z, None) is z and top_p_filter(z, None) is z


def test_nucleus_sampling_frequencies_follow_the_renormalised_softmax():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    picks = sample_next_token(np.repeat(logits, 20000, 0), 1.0, None, np.random.default_rng(0), top_p=0.85)
    kept = p[:2] / p[:2].sum()                                  # 0.64 + 0.24 >= 0.85: two tokens
    np.testing.assert_allclose(np.bincount(picks, minlength=4) / 20000, [kept[0], kept[1], 0, 0], atol=0.015)


def test_sample_from_logits_is_inverse_cdf_with_one_draw_per_row():
    z = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]]) + 1e-300)
    u = np.random.default_rng(5).random((2, 1))
    got = sample_from_logits(z, np.random.default_rng(5))
    cdf = np.cumsum(np.exp(z - z.max(1, keepdims=True)), 1)
    want = (cdf <= u * cdf[:, -1:]).sum(1)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64


def test_generate_top_p_is_repeatable_and_greedy_when_tiny(model):
    prompt = np.array([1, 2, 3])
    a = model.generate(prompt, 8, seed=3, top_p=0.7)
    np.testing.assert_array_equal(a, model.generate(prompt, 8, seed=3, top_p=0.7))
    np.testing.assert_array_equal(model.generate(prompt, 8, seed=4, top_p=1e-9),
                                  model.generate(prompt, 8, temperature=0))
    with pytest.raises(ValueError, match=r"generate: top_p must be a finite number in \(0, 1\], got 0"):
        model.generate(prompt, 2, top_p=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(prompt, 2, top_p=1.5)


def test_generate_restores_every_submodule_mode(model):
    model.train()
    model.blocks[1].eval()                                      # a mixed state, as eval_mode must keep it
    model.generate(np.array([1, 2]), 3, seed=0)
    assert model.training and model.blocks[0].training and not model.blocks[1].training
    assert not model.blocks[1].attn.training
    model.train()


def test_gpt_config_and_keyword_calls_build_the_same_model():
    cfg = GPTConfig(20, 16, 2, 4, 8, bias=False, activation="gelu")
    a, b = GPT(cfg, seed=1), GPT(20, 16, 2, 4, 8, bias=False, activation="gelu", seed=1)
    assert a.config == b.config and a.config["bias"] is False
    ids = np.random.default_rng(0).integers(0, 20, (2, 6))
    np.testing.assert_array_equal(a(ids).data, b(ids).data)
    assert GPT(**a.config, seed=1).config == a.config
    with pytest.raises(ValueError, match=r"GPT: max_seq_len must be a positive integer \(>= 1\), got 0"):
        GPTConfig(20, 16, 2, 4, 0)
    with pytest.raises(ValueError, match="GPT: dropout must be a finite number in"):
        GPTConfig(20, 16, 2, 4, 8, dropout=1.0)
    with pytest.raises(TypeError):
        GPT(cfg, bias=True)                                     # a config and options together: ambiguous


def test_next_token_targets_ignore_padding():
    ids = np.array([[4, 5, 6, 7], [9, 8, 0, 0]])
    am = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    x, y = next_token_targets(ids, am)
    assert x.tolist() == [[4, 5, 6], [9, 8, 0]]
    assert y.tolist() == [[5, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]] and y.dtype == np.int64
    assert ids[1, 2] == 0                                       # the input is not modified
    x, y = next_token_targets(ids)
    assert y.tolist() == [[5, 6, 7], [8, 0, 0]]


def test_lm_loss_matches_torch_cross_entropy(model):
    ids = np.random.default_rng(3).integers(0, 13, (3, 7))
    loss = lm_loss(model, ids)
    logits = torch.tensor(model(ids[:, :-1]).data)
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 13), torch.tensor(ids[:, 1:]).reshape(-1))
    assert abs(loss.item() - want.item()) < 1e-5
    model.zero_grad()
    loss.backward()
    assert np.abs(model.token_embedding.weight.grad.data).sum() > 0
    with pytest.raises(ValueError, match=r"lm_loss: expected token ids of shape \(B, T\) with T >= 2"):
        lm_loss(model, np.array([[1]]))


def test_lm_loss_of_a_padded_batch_equals_the_rows_alone(model):
    rows = [np.array([3, 4, 5, 6]), np.array([7, 8])]
    batch = np.array([[3, 4, 5, 6], [0, 0, 7, 8]])
    am = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])
    total = sum(lm_loss(model, r[None]).item() * (len(r) - 1) for r in rows)
    assert abs(lm_loss(model, batch, attention_mask=am).item() - total / 4) < 1e-5


def test_param_groups_split_matrices_from_vectors(model):
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in model.named_parameters() if p.ndim == 1}
    assert sum(1 for p in decay["params"] if p is model.token_embedding.weight) == 1     # the tied matrix once
    assert [id(p) for p in decay["params"] + no_decay["params"]] != []
    order = [id(p) for p in model.parameters()]
    assert [id(p) for p in decay["params"]] == [i for i in order if i in {id(p) for p in decay["params"]}]


def test_beam_step_picks_the_best_candidates_in_order():
    scores = np.array([-0.5, -0.1, -3.0])
    logp = np.log(np.random.default_rng(0).dirichlet(np.ones(6), size=3))
    beam, token, total = beam_step(scores, logp, 5)
    flat = (scores[:, None] + logp).ravel()
    want = np.argsort(-flat, kind="stable")[:5]
    np.testing.assert_array_equal(beam * 6 + token, want)
    np.testing.assert_allclose(total, flat[want])
    assert len(beam_step(np.zeros(1), logp[:1], 10)[0]) == 6                  # no more than K * V


def _logp(model, seq, start):
    total = 0.0
    for t in range(start, len(seq)):
        z = model(seq[None, :t]).data[0, -1].astype(np.float64)
        total += z[seq[t]] - z.max() - np.log(np.exp(z - z.max()).sum())
    return total


def test_beam_search_is_greedy_with_one_beam_and_exact_with_enough(model):
    prompt = np.array([2, 7])
    np.testing.assert_array_equal(beam_search(model, prompt, 5, num_beams=1), model.generate(prompt, 5, temperature=0))
    V = 13
    best = max((np.array([2, 7, i, j]) for i in range(V) for j in range(V)), key=lambda s: _logp(model, s, 2))
    np.testing.assert_array_equal(beam_search(model, prompt, 2, num_beams=V), best)
    wide = beam_search(model, prompt, 4, num_beams=6)
    assert _logp(model, wide, 2) >= _logp(model, beam_search(model, prompt, 4, num_beams=1), 2) - 1e-9
    assert beam_search(model, [[2, 7]], 3).shape == (1, 5)
    with pytest.raises(ValueError, match="one prompt"):
        beam_search(model, np.array([[1, 2], [3, 4]]), 2)
    with pytest.raises(ValueError, match=r"num_beams must be a positive integer \(>= 1\), got 0"):
        beam_search(model, prompt, 2, num_beams=0)


def test_perplexity_is_exp_of_the_loss_in_eval_mode(model):
    ids = np.random.default_rng(4).integers(0, 13, (2, 6))
    model.train()
    assert abs(perplexity(model, ids) - math.exp(lm_loss(model, ids).item())) < 1e-4
    assert model.training
    assert 1.0 <= perplexity(model, ids) < 13 * 3
