"""PyTorch as the oracle: the same integers as torch's quantize_per_tensor / quantize_per_channel for the same
scale and zero point, the same fake quantization forward and straight-through gradient, and an int8 layer
that agrees with torch's float layer built from the same weights."""
import numpy as np
import pytest
import torch

from tinytorch.core.layers import Linear
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.quantization import (QuantizedLinear, fake_quantize, qrange, quantize_array,
                                                 quantize_tensor, relative_error)


@pytest.mark.parametrize("symmetric", [True, False])
def test_per_tensor_integers_match_torch(symmetric):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(500) * 3 + (0 if symmetric else 1)).astype(np.float32)
    q = quantize_tensor(x, symmetric=symmetric)
    ref = torch.quantize_per_tensor(torch.from_numpy(x), float(q.scale), int(q.zero_point), torch.qint8)
    np.testing.assert_array_equal(q.data, ref.int_repr().numpy())
    np.testing.assert_allclose(q.dequantize().data, ref.dequantize().numpy(), rtol=1e-6, atol=1e-7)


def test_per_channel_integers_match_torch():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((12, 40)) * rng.uniform(0.01, 2, size=(12, 1))).astype(np.float32)
    q = quantize_tensor(w, per_channel=True, axis=0)
    ref = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(q.scale.astype(np.float64)),
                                     torch.zeros(12, dtype=torch.int64), 0, torch.qint8)
    np.testing.assert_array_equal(q.data, ref.int_repr().numpy())


def test_uint8_matches_torch_quint8():
    x = np.random.default_rng(2).uniform(0, 6, 300).astype(np.float32)
    q = quantize_tensor(x, symmetric=False, dtype="uint8")
    ref = torch.quantize_per_tensor(torch.from_numpy(x), float(q.scale), int(q.zero_point), torch.quint8)
    np.testing.assert_array_equal(q.data, ref.int_repr().numpy())


def test_fake_quantize_matches_torch_forward_and_gradient():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(200) * 2).astype(np.float32)
    g = rng.standard_normal(200).astype(np.float32)
    scale, zp = 0.05, 3
    qmin, qmax = qrange(8, symmetric=False)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.fake_quantize_per_tensor_affine(xt, scale, zp, qmin, qmax)
    ref.backward(torch.from_numpy(g))
    ours_x = Tensor(x, requires_grad=True)
    ours = fake_quantize(ours_x, scale, zp, bits=8, symmetric=False)
    ours.backward(g)
    np.testing.assert_allclose(ours.data, ref.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours_x.grad.data, xt.grad.numpy())
    assert 0 < (ours_x.grad.data == 0).sum() < 200                     # some values were clipped


def test_quantized_linear_close_to_torch_float_linear():
    rng = np.random.default_rng(4)
    lin = Linear(96, 24, rng=rng)
    tlin = torch.nn.Linear(96, 24)
    with torch.no_grad():
        tlin.weight.copy_(torch.from_numpy(lin.weight.data))
        tlin.bias.copy_(torch.from_numpy(lin.bias.data))
    x = rng.standard_normal((10, 96)).astype(np.float32)
    ours = QuantizedLinear.from_float(lin)(Tensor(x)).data
    with torch.no_grad():
        ref = tlin(torch.from_numpy(x)).numpy()
    assert relative_error(ref, ours) < 0.01
    q = quantize_array(x, np.float32(0.1), np.int8(0), -128, 127, np.int8)
    ref_q = torch.quantize_per_tensor(torch.from_numpy(x), 0.1, 0, torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(q, ref_q)
