"""Rotary positions (RoPE): the tables, the rotation against complex multiplication, relative positions,
the backward pass against central differences, buffers and errors."""
import math

import numpy as np
import pytest

from tinytorch.core.autograd import gradcheck
from tinytorch.core.embeddings import RotaryFunction, RotaryPositionalEncoding, rotary_tables
from tinytorch.core.tensor import Tensor


def reference(x, start, base=10000.0):
    d = x.shape[-1]
    t = np.arange(start, start + x.shape[-2])[:, None]
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * t / base ** (np.arange(0, d, 2) / d))
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def test_tables():
    cos, sin = rotary_tables(6, 10, base=100.0)
    assert cos.shape == sin.shape == (6, 5) and cos.dtype == sin.dtype == np.float32
    angles = np.arange(6)[:, None] / 100.0 ** (np.arange(0, 10, 2) / 10)
    np.testing.assert_allclose(cos, np.cos(angles), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sin, np.sin(angles), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,start", [((5, 4), 0), ((2, 7, 6), 3), ((2, 3, 4, 8), 10)])
def test_rotation_is_complex_multiplication(shape, start):
    rope = RotaryPositionalEncoding(16, shape[-1])
    x = np.random.default_rng(0).standard_normal(shape)
    y = rope(Tensor(x, dtype=np.float64), start_pos=start)
    assert y.shape == shape and y.dtype == np.float64
    np.testing.assert_allclose(y.data, reference(x, start), atol=1e-6)


def test_dot_products_depend_on_the_offset_only():
    rope = RotaryPositionalEncoding(64, 16)
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    rq = rope(Tensor(np.tile(q, (64, 1)), dtype=np.float64)).data
    rk = rope(Tensor(np.tile(k, (64, 1)), dtype=np.float64)).data
    for offset in (0, 3, 17):
        scores = [rq[p + offset] @ rk[p] for p in range(0, 64 - offset, 5)]
        np.testing.assert_allclose(scores, scores[0], atol=1e-9)


def test_backward_against_central_differences():
    rope = RotaryPositionalEncoding(12, 6)
    x = Tensor(np.random.default_rng(2).standard_normal((2, 2, 4, 6)), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda a: rope(a, start_pos=5), [x])
    cos, sin = rotary_tables(4, 6)
    x = Tensor(np.random.default_rng(3).standard_normal((4, 6)), requires_grad=True, dtype=np.float64)
    g = np.random.default_rng(4).standard_normal((4, 6))
    RotaryFunction.apply(x, cos=cos, sin=sin).backward(g)
    np.testing.assert_allclose(x.grad.data, _unrotate(g, cos, sin), atol=1e-6)


def _unrotate(g, cos, sin):
    "The rotation by minus the angle: what the transpose of a rotation is."
    out = np.empty_like(g)
    out[:, 0::2] = g[:, 0::2] * cos + g[:, 1::2] * sin
    out[:, 1::2] = g[:, 1::2] * cos - g[:, 0::2] * sin
    return out


def test_buffers_and_errors():
    rope = RotaryPositionalEncoding(8, 4)
    assert list(rope.parameters()) == [] and set(rope.state_dict()) == {"cos", "sin"}
    with pytest.raises(ValueError, match="dim must be even"):
        RotaryPositionalEncoding(8, 3)
    with pytest.raises(ValueError, match=r"length 5 starting at position 4 needs 9 positions, more than max_seq_len 8"):
        rope(Tensor(np.zeros((1, 5, 4))), start_pos=4)
    with pytest.raises(ValueError, match="the input's last dimension is 6"):
        rope(Tensor(np.zeros((2, 3, 6))))
    with pytest.raises(ValueError, match=r"start_pos must be an integer >= 0, got -1"):
        rope(Tensor(np.zeros((2, 3, 4))), start_pos=-1)
    assert math.isclose(float(np.linalg.norm(rope(Tensor(np.ones((3, 4)))).data[2])), 2.0, rel_tol=1e-6)
