"""Quantization details: error bounds as properties, bits below 8, observers, the sparse int8 format and
its byte count, model_size_bytes on shared and foreign arrays, quantize_model's options, the error report."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import ReLU
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Module, Sequential
from tinytorch.core.spatial import BatchNorm2d, Conv2d, Flatten
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.kernels import CSRMatrix, csr_bytes
from tinytorch.optimization.quantization import (FakeQuantize, MovingAverageMinMaxObserver, PercentileObserver,
                                                 QuantizedConv2d, QuantizedCSR, QuantizedLinear, QuantizedTensor,
                                                 compute_qparams,
                                                 dequantize, fake_quantize, format_error_report,
                                                 int8_matmul, model_size_bytes, plot_quantization_error,
                                                 qrange, quantization_error_report, quantize_model,
                                                 quantize_tensor, relative_error, size_breakdown)

floats = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=40), st.integers(2, 8), st.booleans())
def test_round_trip_error_is_at_most_half_a_step(values, bits, symmetric):
    x = np.array(values, dtype=np.float32)
    q = quantize_tensor(x, bits=bits, symmetric=symmetric)
    qmin, qmax = qrange(bits, symmetric)
    assert q.data.dtype == np.int8 and q.data.min() >= qmin and q.data.max() <= qmax
    err = np.abs(dequantize(q).data.astype(np.float64) - x)
    assert np.all(err <= float(q.scale) / 2 * (1 + 1e-5) + 1e-30)
    zero = quantize_tensor(np.append(x, 0.0), bits=bits, symmetric=symmetric)
    assert dequantize(zero).data[-1] == 0.0                            # real 0 is exact


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20), st.integers(1, 70), st.integers(1, 20), st.integers(-128, 127), st.integers(0, 2 ** 31 - 1))
def test_int8_kernels_match_int64_for_any_shape_and_zero_point(m, k, n, zx, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    b = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    exact = (a.astype(np.int64) - zx) @ b.astype(np.int64).T
    np.testing.assert_array_equal(int8_matmul(a, b, x_zero_point=zx), exact)
    b[rng.random(b.shape) < 0.7] = 0
    csr = QuantizedCSR.from_quantized(QuantizedTensor(np.clip(b, -127, 127), np.ones(n, np.float32),
                                                      np.zeros(n, np.int8), axis=0))
    np.testing.assert_array_equal(csr.matmul_t(np.ascontiguousarray(a.T), zx),
                                  np.clip(b, -127, 127).astype(np.int64) @ (a.astype(np.int64).T - zx))


def test_the_worst_case_sum_fits_in_int32():
    k = 65_000
    out = int8_matmul(np.full((1, k), -128, np.int8), np.full((1, k), -128, np.int8), x_zero_point=127)
    assert out[0, 0] == k * 255 * 128 and out.dtype == np.int32


def test_int8_matmul_accepts_non_contiguous_views():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(40, 6)).astype(np.int8)
    b = rng.integers(-128, 128, size=(40, 9)).astype(np.int8)
    assert not a.T.flags.c_contiguous
    np.testing.assert_array_equal(int8_matmul(a.T, b.T), a.T.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("bits,levels", [(8, 255), (4, 15), (3, 7), (2, 3)])
def test_fewer_bits_use_fewer_levels_in_int8_storage(bits, levels):
    x = np.linspace(-1, 1, 1001).astype(np.float32)
    q = quantize_tensor(x, bits=bits)
    assert q.data.dtype == np.int8 and len(np.unique(q.data)) == levels
    errs = [relative_error(x, dequantize(quantize_tensor(x, bits=b))) for b in (8, 4, 2)]
    assert errs[0] < errs[1] < errs[2]


def test_per_channel_along_another_axis():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32) * np.array([1, 10, 100, 1000])
    q = quantize_tensor(x, per_channel=True, axis=-1)
    assert q.axis == 2 and q.scale.shape == (4,)
    np.testing.assert_allclose(q.scale, np.abs(x).max(axis=(0, 1)) / 127, rtol=1e-6)
    assert relative_error(x, dequantize(q), axis=2).max() < 0.01


def test_asymmetric_uint8_for_non_negative_data_uses_all_levels():
    x = np.abs(np.random.default_rng(2).standard_normal(1000)).astype(np.float32)
    q = quantize_tensor(x, symmetric=False, dtype="uint8")
    assert q.data.dtype == np.uint8 and q.data.min() == 0 and q.data.max() == 255 and q.zero_point == 0
    q8 = quantize_tensor(x, symmetric=False)
    assert q8.data.min() == -128 and q8.zero_point == -128


def test_observers_update_as_documented():
    ma = MovingAverageMinMaxObserver(averaging_constant=0.1)
    ma.observe(np.array([-1.0, 1.0]))
    ma.observe(np.array([-3.0, 11.0]))
    assert ma.min_val == pytest.approx(-1.2) and ma.max_val == pytest.approx(2.0) and ma.num_batches == 2
    pc = PercentileObserver(percentile=90.0)
    pc.observe(np.arange(101.0))
    assert pc.min_val == pytest.approx(10.0) and pc.max_val == pytest.approx(90.0)
    pc.reset()
    with pytest.raises(ValueError, match="no data observed"):
        pc.calculate_qparams()


def test_fake_quantize_forward_and_straight_through_gradient():
    x = Tensor(np.array([[-2.0, -0.3, 0.1, 0.9, 3.0]], dtype=np.float32), requires_grad=True)
    y = fake_quantize(x, scale=np.array([0.5]), zero_point=np.array([0]), bits=3, axis=0)   # levels -3..3
    np.testing.assert_allclose(y.data, [[-1.5, -0.5, 0.0, 1.0, 1.5]])
    g = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=np.float32)
    y.backward(g)
    np.testing.assert_array_equal(x.grad.data, [[0.0, 2.0, 3.0, 4.0, 0.0]])
    assert issubclass(FakeQuantize, __import__("tinytorch.core.autograd", fromlist=["Function"]).Function)


def test_csr_storage_uses_compact_indices_and_counts_its_bytes():
    rng = np.random.default_rng(3)
    for cols, index_dtype in ((200, np.uint8), (300, np.uint16)):
        w = rng.standard_normal((50, cols)).astype(np.float32)
        w[rng.random(w.shape) < 0.9] = 0.0
        q = quantize_tensor(w, per_channel=True)
        csr = QuantizedCSR.from_quantized(q)
        nnz = int(np.count_nonzero(q.data))
        assert csr.nnz == nnz and csr.indices.dtype == index_dtype and csr.values.dtype == np.int8
        assert csr.indptr.dtype == np.int32 and len(csr.indptr) == 51          # the one rule: int32 offsets
        assert csr.nbytes == nnz * (1 + np.dtype(index_dtype).itemsize) + 51 * 4 + 50 * 4
        assert csr.nbytes == csr_bytes(w.shape, nnz, np.int8, scales=50)
        assert isinstance(csr, CSRMatrix) and csr.data is csr.values
        np.testing.assert_array_equal(csr.to_dense(), q.data)
        np.testing.assert_array_equal(csr.dequantize().data, dequantize(q).data)


def test_sparse_layers_match_dense_layers_exactly():
    rng = np.random.default_rng(4)
    conv = Conv2d(8, 12, 3, padding=1, rng=rng)
    conv.weight.data[rng.random(conv.weight.shape) < 0.85] = 0.0
    x = Tensor(rng.standard_normal((2, 8, 6, 6)).astype(np.float32))
    dense, sparse = QuantizedConv2d.from_float(conv), QuantizedConv2d.from_float(conv, sparse=True)
    assert sparse.sparse and not dense.sparse
    np.testing.assert_allclose(dense(x).data, sparse(x).data, rtol=1e-6, atol=1e-6)
    assert sparse.flops((2, 8, 6, 6), (2, 12, 6, 6)) == 2 * sparse.weight_nnz * 36 * 2
    lin = Linear(64, 16, rng=rng)                                 # dense weights: 'auto' keeps them dense
    assert not QuantizedLinear.from_float(lin, sparse="auto").sparse
    lin.weight.data[rng.random(lin.weight.shape) < 0.9] = 0.0     # 90 % zeros: 'auto' picks CSR
    assert QuantizedLinear.from_float(lin, sparse="auto").sparse


def test_model_size_counts_each_array_once_and_foreign_arrays_too():
    rng = np.random.default_rng(5)
    a = Linear(8, 8, bias=False, rng=rng)
    b = Linear(8, 8, bias=False, rng=rng)
    b.weight = a.weight                                           # tied
    assert model_size_bytes(Sequential(a, b)) == 8 * 8 * 4

    class CSRHolder:                                              # e.g. a sparse layer's storage object
        def __init__(self):
            self.data = np.zeros(10, dtype=np.float32)
            self.indices = np.zeros(10, dtype=np.int32)
            self.indptr = np.zeros(5, dtype=np.int32)

    class Sparse(Module):
        def __init__(self):
            super().__init__()
            self.csr = CSRHolder()
            self.view = self.csr.data[:5]                         # a view: its memory is already counted

    assert model_size_bytes(Sparse()) == 40 + 40 + 20
    bn = BatchNorm2d(3)
    assert model_size_bytes(bn) == 4 * 3 * 4 + 8                  # weight, bias, running mean, var; count
    p = a.weight
    p.grad = Tensor(np.ones((8, 8), dtype=np.float32))            # gradients are not part of the model
    assert model_size_bytes(a) == 256
    assert sum(size_breakdown(Sequential(a, b)).values()) == 256


def test_quantize_model_replaces_layers_everywhere_and_keeps_sharing():
    rng = np.random.default_rng(6)
    mha = MultiHeadAttention(16, 2, rng=rng)
    x = Tensor(rng.standard_normal((2, 5, 16)).astype(np.float32))
    q = quantize_model(mha)
    assert all(isinstance(getattr(q, n), QuantizedLinear) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
    with no_grad():
        assert relative_error(mha(x).data, q(x).data) < 0.02
    shared = Linear(6, 6, rng=rng)
    model = Sequential(shared, ReLU(), shared)
    qm = quantize_model(model)
    assert qm.layers[0] is qm.layers[2] and isinstance(qm.layers[0], QuantizedLinear)
    inplace = quantize_model(model, inplace=True)
    assert inplace is model and isinstance(model.layers[0], QuantizedLinear)
    root = quantize_model(Linear(3, 2, rng=rng))
    assert isinstance(root, QuantizedLinear)


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile", MovingAverageMinMaxObserver])
def test_calibrated_models_use_fixed_input_parameters(observer):
    rng = np.random.default_rng(7)
    model = Sequential(Linear(10, 20, rng=rng), ReLU(), Linear(20, 4, rng=rng))
    data = [(Tensor(rng.standard_normal((8, 10)).astype(np.float32)), Tensor(np.zeros(8, dtype=np.int64)))
            for _ in range(3)]                                     # (x, y) pairs, as a DataLoader yields
    q = quantize_model(model, calibration_data=data, observer=observer)
    first = q.layers[0]
    assert first.input_scale is not None and first.input_zero_point.dtype == np.int8
    x = data[0][0]
    with no_grad():
        assert relative_error(model(x).data, q(x).data) < 0.05
    assert all("forward" not in vars(m) for m in model.modules())


def test_error_report_and_plot(tmp_path):
    rng = np.random.default_rng(8)
    model = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(4 * 6 * 6, 5, rng=rng))
    model.layers[3].weight.data[0] *= 50.0                         # one row much larger than the others
    x = Tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    rows = quantization_error_report(model, bits=8, inputs=x)
    assert [r["layer"] for r in rows] == ["0", "3"]
    lin = rows[1]
    assert lin["worst_channel_error_per_tensor"] > 10 * lin["worst_channel_error_per_channel"]
    assert lin["output_error_per_channel"] < lin["output_error_per_tensor"]
    text = format_error_report(rows)
    assert "W err tensor" in text and "out err channel" in text and len(text.splitlines()) == 4
    path = tmp_path / "err.png"
    plot_quantization_error(rows, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_compute_qparams_per_channel_arrays():
    s, z = compute_qparams(np.array([-1.0, 0.0, -4.0]), np.array([1.0, 0.0, 2.0]), bits=8, symmetric=True)
    np.testing.assert_allclose(s, [1 / 127, 1.0, 4 / 127], rtol=1e-6)
    assert z.tolist() == [0, 0, 0]
    s, z = compute_qparams(np.array([1.0, -2.0]), np.array([3.0, -1.0]), symmetric=False, dtype="uint8")
    np.testing.assert_allclose(s, [3 / 255, 2 / 255], rtol=1e-6)  # ranges widened to include 0
    assert z.tolist() == [0, 255]


def test_quantized_model_copy_is_independent():
    rng = np.random.default_rng(9)
    model = Sequential(Linear(4, 4, rng=rng))
    q = quantize_model(model)
    w_before = q.layers[0].weight_int8.data.copy()
    model.layers[0].weight.data *= 2.0
    np.testing.assert_array_equal(q.layers[0].weight_int8.data, w_before)
    q2 = copy.deepcopy(q)
    assert q2.layers[0].weight_int8.data is not q.layers[0].weight_int8.data
