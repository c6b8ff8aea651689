"""GPT.from_pretrained against Hugging Face transformers, on a tiny random GPT-2 saved offline (tests/tiny_gpt2.py):
the same logits (float32, atol 1e-4), the same greedy continuations (one prompt and a left-padded batch), and
clear errors for what is refused (PyTorch pickles, unsupported configs). transformers is a test-only dependency:
without it these tests fail at import, they are not skipped."""
import json
import shutil

import numpy as np
import pytest
import torch

from tiny_gpt2 import checkpoint_dir, hf_model
from tinytorch.core.transformers import GPT, gpt2_config


@pytest.fixture(scope="module")
def pair():
    d = checkpoint_dir()
    return GPT.from_pretrained(d), hf_model(d)


def test_logits_match_transformers(pair):
    ours, ref = pair
    ids = np.random.default_rng(1).integers(0, ours.vocab_size, (3, 32))
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    got = ours(ids).data
    assert got.dtype == np.float32 and np.abs(want).max() > 1.0       # logits of a size where errors would show
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_structure_is_gpt2(pair):
    ours, ref = pair
    assert ours.lm_head.weight is ours.token_embedding.weight                     # tied head
    assert ours.blocks[0].ln1.eps == 1e-5 and ours.config["activation"] == "gelu_tanh"
    w = ref.transformer.h[1].attn.c_attn.weight.detach().numpy()                  # (in, out) = (D, 3D)
    D = ours.embed_dim
    np.testing.assert_array_equal(ours.blocks[1].attn.k_proj.weight.data, w[:, D:2 * D].T)
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())


def test_greedy_generation_matches(pair):
    ours, ref = pair
    prompt = np.array([5, 17, 42, 7])
    with torch.no_grad():
        want = ref.generate(torch.tensor(prompt[None]), max_new_tokens=12, do_sample=False,
                            pad_token_id=0).numpy()[0]
    got = ours.generate(prompt, 12, temperature=0)
    assert got.tolist() == want.tolist()


def test_left_padded_batch_matches_transformers(pair):
    ours, ref = pair
    ids = np.array([[0, 0, 0, 9, 3], [4, 8, 15, 16, 23]])
    mask = np.array([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        want = ref.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=6,
                            do_sample=False, pad_token_id=0).numpy()
    got = ours.generate(ids, 6, temperature=0, attention_mask=mask)
    assert got.tolist() == want.tolist()
    assert got[0, 3:].tolist() == ours.generate(np.array([9, 3]), 6, temperature=0).tolist()


def test_pickles_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin.*pickle"):
        GPT.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        GPT.from_pretrained(tmp_path / "nowhere")


def test_unsupported_config_is_named(tmp_path):
    base = {"vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 8}
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        gpt2_config(dict(base, activation_function="relu"))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        gpt2_config(dict(base, scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(ValueError, match="n_head"):
        gpt2_config({k: v for k, v in base.items() if k != "n_head"})
    d = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir(), d)
    (d / "config.json").write_text(json.dumps(dict(json.loads((d / "config.json").read_text()), n_layer=3)))
    with pytest.raises(ValueError, match="h.2"):                      # a layer the file does not hold
        GPT.from_pretrained(d)
