"""Module 13 (Transformers): progressive integration tests.

  A. TestStackBelow     -- modules 01-12 still work: autograd, optimizers, checkpoints, the tokenizer,
                           embeddings with positions, multi-head attention with a causal mask.
  B. The transformer core:
       TestLayerNorm    -- statistics, parameters and their names, eps, several normalised dims, errors
       TestMLPAndBlock  -- MLP shape and hidden size, the pre-norm residual wiring computed by hand,
                           dropout only while training
       TestGPT          -- create_causal_mask, logits shape, causality, weight tying (shared once in
                           parameters(), under both names in state_dict), untied, initialisation, the
                           embed -> blocks -> unembed split, parameter names
  C. TestGPTInTheStack  -- text -> CharTokenizer -> GPT -> CrossEntropyLoss -> AdamW with clip_grad_norm:
                           the loss falls on a small text and the model memorises it (greedy generation
                           reproduces it); a checkpoint round trip (save_checkpoint / load_checkpoint)
                           gives identical logits; the tokenizer's padding mask works with the blocks.
"""
import numpy as np
import pytest

from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.autograd import no_grad
from tinytorch.core.embeddings import Embedding, PositionalEncoding
from tinytorch.core.layers import Dropout, Linear
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.training import clip_grad_norm, load_checkpoint, save_checkpoint
from tinytorch.core.transformers import GPT, MLP, LayerNorm, TransformerBlock, create_causal_mask


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_embeddings_and_attention(self):
        rng = np.random.default_rng(0)
        emb, pos = Embedding(10, 8, rng=rng), PositionalEncoding(6, 8, rng=rng)
        x = pos(emb(np.array([[1, 2, 3, 4]])))
        assert x.shape == (1, 4, 8)
        mha = MultiHeadAttention(8, 2, rng=rng)
        y = mha(x, mask=np.tril(np.ones((4, 4), dtype=bool)))
        y.sum().backward()
        assert emb.weight.grad.shape == (10, 8) and mha.q_proj.weight.grad is not None
        assert (emb.weight.grad.data[5:] == 0).all()                  # only rows that were read

    def test_tokenizer_round_trip_and_errors(self):
        tok = CharTokenizer.from_text("to be or not to be")
        assert tok.decode(tok.encode("not to be")) == "not to be"
        with pytest.raises(ValueError, match="empty"):
            CharTokenizer.from_text("")

    def test_optimizer_and_checkpoint(self, tmp_path):
        lin = Linear(3, 2, rng=np.random.default_rng(1))
        opt = AdamW(lin.parameters(), lr=0.01)
        lin(Tensor(np.ones((4, 3), dtype=np.float32))).sum().backward()
        opt.step()
        path = save_checkpoint(tmp_path / "lin.npz", lin)
        other = Linear(3, 2)
        load_checkpoint(path, other)
        np.testing.assert_array_equal(other.weight.data, lin.weight.data)


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestLayerNorm:
    def test_statistics_and_parameters(self):
        rng = np.random.default_rng(2)
        ln = LayerNorm(16)
        assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
        assert (ln.weight.data == 1).all() and (ln.bias.data == 0).all() and ln.eps == 1e-5
        x = Tensor((rng.standard_normal((3, 5, 16)) * 7 - 3).astype(np.float32))
        y = ln(x).data
        np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
        np.testing.assert_allclose(y.var(-1), 1, rtol=1e-3)
        ln.weight.data[:] = 2.0
        ln.bias.data[:] = 0.5
        np.testing.assert_allclose(ln(x).data, 2 * y + 0.5, rtol=1e-5, atol=1e-5)

    def test_eps_and_constant_input(self):
        ln = LayerNorm(4, eps=1e-2)
        x = Tensor(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.2]], dtype=np.float32), requires_grad=True)
        y = ln(x)
        assert (y.data[0] == 0).all()                                 # a constant row: 0, not NaN
        xc = np.array([-0.05, -0.05, -0.05, 0.15])
        np.testing.assert_allclose(y.data[1], xc / np.sqrt((xc ** 2).mean() + 1e-2), rtol=1e-5)
        y.sum().backward()
        assert np.isfinite(x.grad.data).all()

    def test_two_normalised_dims(self):
        rng = np.random.default_rng(3)
        ln = LayerNorm((3, 4))
        assert ln.weight.shape == (3, 4)
        y = ln(Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))).data
        np.testing.assert_allclose(y.reshape(2, -1).mean(-1), 0, atol=1e-5)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"\(8,\).*\(2, 3, 7\)"):
            LayerNorm(8)(Tensor(np.zeros((2, 3, 7), dtype=np.float32)))
        with pytest.raises(ValueError, match="normalized_shape"):
            LayerNorm(0)
        with pytest.raises(ValueError, match="eps"):
            LayerNorm(4, eps=0)


class TestMLPAndBlock:
    def test_mlp(self):
        mlp = MLP(8)
        assert mlp.fc1.weight.shape == (32, 8) and mlp.fc2.weight.shape == (8, 32)     # 4x by default
        assert MLP(8, hidden_dim=20).fc1.out_features == 20
        x = Tensor(np.random.default_rng(4).standard_normal((2, 3, 8)).astype(np.float32))
        h = x.data @ mlp.fc1.weight.data.T + mlp.fc1.bias.data
        gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
        want = gelu @ mlp.fc2.weight.data.T + mlp.fc2.bias.data
        np.testing.assert_allclose(mlp(x).data, want, rtol=1e-4, atol=1e-5)

    def test_block_is_pre_norm_residual(self):
        rng = np.random.default_rng(5)
        block = TransformerBlock(8, 2, mlp_ratio=2, rng=rng)
        for p in block.parameters():
            p.data[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3
        assert block.mlp.fc1.out_features == 16
        x = Tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
        mask = create_causal_mask(5)
        h = x + block.attn(block.ln1(x), mask=mask)
        want = h + block.mlp(block.ln2(h))
        np.testing.assert_allclose(block(x, mask=mask).data, want.data, rtol=1e-5, atol=1e-5)

    def test_dropout_only_while_training(self):
        rng = np.random.default_rng(6)
        block = TransformerBlock(8, 2, dropout=0.5, rng=rng)
        x = Tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
        block.eval()
        np.testing.assert_array_equal(block(x).data, block(x).data)
        block.train()
        assert not np.allclose(block(x).data, block(x).data)
        assert any(isinstance(m, Dropout) and m.p == 0.5 for m in block.modules())


class TestGPT:
    def test_causal_mask(self):
        m = create_causal_mask(4)
        assert isinstance(m, Tensor) and m.dtype == np.bool_ and m.shape == (4, 4)
        np.testing.assert_array_equal(m.data, np.tril(np.ones((4, 4), dtype=bool)))
        with pytest.raises(ValueError, match="positive"):
            create_causal_mask(0)

    def test_logits_and_causality(self):
        model = GPT(vocab_size=13, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=10, seed=0)
        ids = np.random.default_rng(7).integers(0, 13, (3, 10))
        logits = model(ids)
        assert logits.shape == (3, 10, 13) and logits.dtype == np.float32
        for t in (0, 4, 9):
            changed = ids.copy()
            changed[:, t] = (changed[:, t] + 1) % 13
            out = model(changed).data
            np.testing.assert_allclose(out[:, :t], logits.data[:, :t], atol=1e-6)
            assert not np.allclose(out[:, t:], logits.data[:, t:])
        short = model(ids[:, :4]).data                                  # shorter inputs use the first positions
        np.testing.assert_allclose(short, logits.data[:, :4], atol=1e-6)
        model(Tensor(ids))                                              # a Tensor of ids works too

    def test_weight_tying(self):
        tied = GPT(11, 8, 1, 2, 6, tie_weights=True, seed=0)
        untied = GPT(11, 8, 1, 2, 6, tie_weights=False, seed=0)
        assert tied.lm_head.weight is tied.token_embedding.weight
        assert untied.lm_head.weight is not untied.token_embedding.weight
        n_tied, n_untied = tied.num_parameters(), untied.num_parameters()
        assert n_untied - n_tied == 11 * 8
        names = [n for n, _ in tied.named_parameters()]
        assert "lm_head.weight" not in names and "token_embedding.weight" in names
        sd = tied.state_dict()
        np.testing.assert_array_equal(sd["lm_head.weight"], sd["token_embedding.weight"])
        # a gradient step moves the shared matrix once, from both of its uses
        ids = np.array([[1, 2, 3, 4]])
        loss = CrossEntropyLoss()(tied(ids).reshape(-1, 11), np.array([2, 3, 4, 5]))
        loss.backward()
        g = tied.token_embedding.weight.grad.data
        assert np.abs(g[7:]).sum() > 0          # rows never read as input still get the head's gradient

    def test_parameter_names_and_initialisation(self):
        model = GPT(20, 16, 2, 4, 8, seed=3)
        names = [n for n, _ in model.named_parameters()]
        assert names[:2] == ["token_embedding.weight", "position_embedding.weight"]
        for part in ("blocks.0.ln1.weight", "blocks.0.attn.q_proj.weight", "blocks.1.attn.out_proj.bias",
                     "blocks.1.ln2.bias", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.weight", "ln_f.weight"):
            assert part in names, part
        assert "blocks.0.attn.head_mask" in model.state_dict()
        w = model.blocks[0].mlp.fc1.weight.data
        assert abs(w.std() - 0.02) < 0.003                              # GPT-2's N(0, 0.02)
        assert abs(model.blocks[0].mlp.fc2.weight.data.std() - 0.02 / 2) < 0.002     # / sqrt(2 L)
        assert (model.blocks[0].attn.q_proj.bias.data == 0).all()
        same = GPT(20, 16, 2, 4, 8, seed=3)
        np.testing.assert_array_equal(same.blocks[1].mlp.fc2.weight.data, model.blocks[1].mlp.fc2.weight.data)

    def test_embed_blocks_unembed_is_forward(self):
        model = GPT(9, 8, 2, 2, 6, seed=4)
        ids = np.array([[1, 2, 3], [4, 5, 6]])
        x = model.embed(ids)
        np.testing.assert_allclose(x.data, model.token_embedding.weight.data[ids]
                                   + model.position_embedding.weight.data[:3], rtol=1e-6)
        for block in model.blocks:
            x = block(x, mask=create_causal_mask(3))
        np.testing.assert_allclose(model.unembed(x).data, model(ids).data, rtol=1e-6)


# ================================================================================================
# C. GPT wired into the stack
# ================================================================================================
class TestGPTInTheStack:
    TEXT = "to be, or not to be: that is the question. "

    def test_memorises_a_sentence_and_generates_it_back(self):
        tok = CharTokenizer.from_text(self.TEXT)
        data = np.array(tok.encode(self.TEXT * 4), dtype=np.int64)
        T = 16
        model = GPT(tok.vocab_size, 32, 2, 4, T, seed=0)
        opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        loss_fn = CrossEntropyLoss()
        rng = np.random.default_rng(0)
        losses = []
        for step in range(150):
            starts = rng.integers(0, len(data) - T - 1, 16)
            batch = data[starts[:, None] + np.arange(T + 1)]
            opt.zero_grad()
            loss = loss_fn(model(batch[:, :-1]).reshape(-1, tok.vocab_size), batch[:, 1:].reshape(-1))
            loss.backward()
            norm = clip_grad_norm(model.parameters(), 1.0)
            assert np.isfinite(norm)
            opt.step()
            losses.append(loss.item())
        assert losses[0] > 2.5 and np.mean(losses[-10:]) < 0.3, (losses[0], losses[-10:])
        prompt = tok.encode("to be, or ")
        out = model.generate(np.array(prompt), 30, temperature=0)
        assert tok.decode(out.tolist()) == (self.TEXT * 2)[:40]

    def test_checkpoint_round_trip(self, tmp_path):
        model = GPT(12, 16, 2, 2, 8, seed=5)
        for p in model.parameters():
            p.data += np.float32(0.01)
        path = save_checkpoint(tmp_path / "gpt.npz", model, config=model.config)
        extra = load_checkpoint(path, fresh := GPT(**{k: v for k, v in model.config.items()}, seed=9))
        assert extra["config"]["embed_dim"] == 16
        assert fresh.lm_head.weight is fresh.token_embedding.weight             # still tied after loading
        ids = np.array([[0, 3, 5, 7, 11]])
        np.testing.assert_array_equal(fresh(ids).data, model(ids).data)

    def test_padding_mask_through_the_blocks(self):
        tok = CharTokenizer.from_text("abcdef")
        enc = tok.encode_batch(["ab", "abcdef"])
        ids, keep = enc["input_ids"], np.asarray(enc["attention_mask"], dtype=bool)
        model = GPT(tok.vocab_size, 16, 2, 2, 8, seed=6).eval()
        mask = create_causal_mask(ids.shape[1]).data & keep[:, None, None, :]
        x = model.embed(ids)
        for block in model.blocks:
            x = block(x, mask=mask)
        logits = model.unembed(x).data
        np.testing.assert_allclose(logits[0, :2], model(ids[:1, :2]).data[0], atol=1e-5)   # padding ignored
        assert np.isfinite(logits).all()
