"""Can I stack attention into a GPT that predicts the next token, and sample text from it?"""
import numpy as np

from tinytorch.core.autograd import gradcheck
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import (GPT, MLP, LayerNorm, LayerNormFunction, TransformerBlock,
                                         create_causal_mask, sample_next_token)


def test_layer_norm_normalises_and_its_backward_is_right():
    rng = np.random.default_rng(0)
    ln = LayerNorm(6)
    y = ln(Tensor((rng.standard_normal((4, 6)) * 5 + 3).astype(np.float32))).data
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-3)
    x = Tensor(rng.standard_normal((3, 6)), requires_grad=True, dtype=np.float64)
    w = Tensor(rng.standard_normal(6), requires_grad=True, dtype=np.float64)
    b = Tensor(rng.standard_normal(6), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda a, c, d: LayerNormFunction.apply(a, c, d, eps=1e-5, ndim=1), [x, w, b])


def test_mlp_and_pre_norm_residual_block():
    rng = np.random.default_rng(1)
    mlp = MLP(4, 8, rng=rng)
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    h = x.data @ mlp.fc1.weight.data.T + mlp.fc1.bias.data
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    np.testing.assert_allclose(mlp(x).data, h @ mlp.fc2.weight.data.T + mlp.fc2.bias.data, rtol=1e-4, atol=1e-5)
    block = TransformerBlock(4, 2, mlp_ratio=2, rng=rng)
    mask = create_causal_mask(3)
    np.testing.assert_array_equal(mask.data, np.tril(np.ones((3, 3), dtype=bool)))
    mid = x + block.attn(block.ln1(x), mask=mask)
    np.testing.assert_allclose(block(x, mask=mask).data, (mid + block.mlp(block.ln2(mid))).data, rtol=1e-5, atol=1e-6)


def test_gpt_shapes_causality_and_tied_head():
    model = GPT(vocab_size=11, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=8, seed=0)
    ids = np.random.default_rng(2).integers(0, 11, (2, 8))
    logits = model(ids).data
    assert logits.shape == (2, 8, 11)
    later = ids.copy()
    later[:, 6] = (later[:, 6] + 1) % 11
    np.testing.assert_allclose(model(later).data[:, :6], logits[:, :6], atol=1e-6)
    assert model.lm_head.weight is model.token_embedding.weight
    x = model.embed(ids)
    for block in model.blocks:
        x = block(x, mask=create_causal_mask(8))
    np.testing.assert_allclose(model.unembed(x).data, logits, rtol=1e-5, atol=1e-6)


def test_gpt_learns_a_repeating_pattern():
    model = GPT(vocab_size=5, embed_dim=16, num_layers=1, num_heads=2, max_seq_len=8, seed=1)
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    seq = (np.arange(5)[:, None] + np.arange(9)) % 5                      # every rotation of 0 1 2 3 4
    for _ in range(60):
        opt.zero_grad()
        loss = CrossEntropyLoss()(model(seq[:, :-1]).reshape(-1, 5), seq[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    out = model.generate(np.array([2, 3]), 6, temperature=0)
    assert out.tolist() == [2, 3, 4, 0, 1, 2, 3, 4]


def test_sampling_is_repeatable_and_respects_top_k():
    model = GPT(vocab_size=9, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=6, seed=2)
    a = model.generate(np.array([1, 2]), 10, temperature=1.0, seed=5)
    np.testing.assert_array_equal(a, model.generate(np.array([1, 2]), 10, temperature=1.0, seed=5))
    assert a.shape == (12,)
    z = np.random.default_rng(3).standard_normal((1000, 9))
    picks = sample_next_token(z, 1.0, 3, np.random.default_rng(4))
    assert all(p in np.argsort(row)[-3:] for p, row in zip(picks, z))
    np.testing.assert_array_equal(sample_next_token(z, 0.0), z.argmax(-1))
    freq = np.bincount(sample_next_token(np.zeros((4000, 4)), 1.0, None, np.random.default_rng(5)), minlength=4)
    assert freq.min() > 850                                                   # uniform logits: every token drawn
