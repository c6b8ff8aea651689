"""GPT's general options (bias, layer_norm_eps, activation — what a GPT-2 checkpoint needs, usable by any model)
and padded inputs: with an attention mask, a padded row gives exactly the logits of the unpadded sequence (either
side), and batched generation of left-padded prompts equals generating each prompt alone."""
import numpy as np
import pytest

from tinytorch.core.activations import GELU
from tinytorch.core.autograd import no_grad
from tinytorch.core.transformers import GPT


def test_options_change_the_model_and_are_saved_in_its_config():
    m = GPT(20, 16, 2, 4, 8, bias=False, layer_norm_eps=1e-6, activation="gelu", seed=0)
    attn = m.blocks[0].attn
    assert attn.q_proj.bias is None and attn.out_proj.bias is None and m.blocks[0].mlp.fc1.bias is None
    assert m.blocks[1].ln2.eps == 1e-6 and m.ln_f.eps == 1e-6
    assert isinstance(m.blocks[0].mlp.act, GELU) and m.blocks[0].mlp.act.approximate == "none"
    again = GPT(**m.config)
    assert sorted(again.state_dict()) == sorted(m.state_dict())
    assert GPT(20, 16, 2, 4, 8).num_parameters() > m.num_parameters()
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        GPT(20, 16, 2, 4, 8, activation="swish")


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_is_invisible_with_the_mask(side):
    m = GPT(20, 16, 2, 4, 12, seed=1)
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13]]
    T = max(map(len, seqs))
    ids = np.zeros((3, T), dtype=np.int64)
    mask = np.zeros((3, T), dtype=np.int64)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        ids[i, cols], mask[i, cols] = s, 1
    with no_grad():
        out = m(ids, attention_mask=mask).data
        for i, s in enumerate(seqs):
            alone = m(np.array([s])).data[0]
            got = out[i][mask[i] == 1]
            np.testing.assert_allclose(got, alone, atol=1e-5)
    with pytest.raises(ValueError, match="attention_mask must be a \\(B, 6\\) array of 0/1"):
        m(ids, attention_mask=mask[:, :3])


def test_batched_generation_needs_left_padding_and_matches_alone():
    m = GPT(20, 16, 2, 4, 12, seed=2)
    ids = np.array([[0, 0, 5, 6], [1, 2, 3, 4]])
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    out = m.generate(ids, 5, temperature=0, attention_mask=mask)
    assert out[0, 2:].tolist() == m.generate(np.array([5, 6]), 5, temperature=0).tolist()
    assert out[1].tolist() == m.generate(np.array([1, 2, 3, 4]), 5, temperature=0).tolist()
    with pytest.raises(ValueError, match="padded on the LEFT"):
        m.generate(ids, 2, attention_mask=np.array([[1, 1, 0, 0], [1, 1, 1, 1]]))
