"""Bad input to quantization: clear errors naming the value, or defined results (never a silent NaN)."""
import re

import numpy as np
import pytest

from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.quantization import (MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver,
                                                 QuantizedCSR, QuantizedLinear, QuantizedTensor, compute_qparams,
                                                 dequantize, int8_matmul, prepare_qat, qrange, quantize_model,
                                                 quantize_tensor, convert_qat)


@pytest.mark.parametrize("bits", [0, 1, 9, 16, -8, 8.0, "8", True, None])
def test_bits_out_of_range_are_refused_with_the_value(bits):
    with pytest.raises(ValueError, match=r"bits must be an integer from 2 to 8.*got " + re.escape(repr(bits))):
        quantize_tensor(np.ones(3), bits=bits)
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        quantize_model(Sequential(Linear(2, 2)), bits=bits)
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        qrange(bits)


@pytest.mark.parametrize("value", [0.0, 1e-30, 7.25, -3.0])
@pytest.mark.parametrize("symmetric", [True, False])
def test_constant_tensors_have_a_positive_scale_and_round_trip(value, symmetric):
    x = np.full((4, 5), value, dtype=np.float32)
    with np.errstate(all="raise"):                                 # no division by zero anywhere
        q = quantize_tensor(x, symmetric=symmetric)
        qc = quantize_tensor(x, symmetric=symmetric, per_channel=True)
        back = dequantize(q).data
    assert np.all(q.scale > 0) and np.all(qc.scale > 0) and np.all(np.isfinite(back))
    np.testing.assert_allclose(back, value, rtol=1e-6, atol=1e-30 if value == 1e-30 else 0)
    np.testing.assert_allclose(dequantize(qc).data, value, rtol=1e-6, atol=1e-30 if value == 1e-30 else 0)


def test_an_all_zero_channel_does_not_break_per_channel_quantization():
    w = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    w[1] = 0.0
    with np.errstate(all="raise"):
        q = quantize_tensor(w, per_channel=True)
    assert q.scale[1] == 1.0 and np.all(q.data[1] == 0)
    lin = Linear(8, 3)
    lin.weight.data[...] = w
    out = QuantizedLinear.from_float(lin)(Tensor(np.ones((2, 8), dtype=np.float32)))
    assert np.all(np.isfinite(out.data))


@pytest.mark.parametrize("bad,count", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")])
def test_nan_and_inf_are_refused(bad, count):
    x = np.array([1.0, bad, 2.0], dtype=np.float32)
    with pytest.raises(ValueError, match=count):
        quantize_tensor(x)
    with pytest.raises(ValueError, match=count):
        MinMaxObserver().observe(x)
    ql = QuantizedLinear.from_float(Linear(3, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ql(Tensor(x.reshape(1, 3)))
    with pytest.raises(ValueError, match="must be finite"):
        compute_qparams(0.0, bad)


def test_empty_calibration_set_and_empty_tensors():
    model = Sequential(Linear(3, 2))
    for empty in ([], (), iter([])):
        with pytest.raises(ValueError, match="calibration data yielded no batches"):
            quantize_model(model, calibration_data=empty)
    assert all("forward" not in vars(m) for m in model.modules())    # wrappers removed after the error
    with pytest.raises(ValueError, match=r"cannot quantize an empty tensor \(shape \(0, 3\)\)"):
        quantize_tensor(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no data observed"):
        MinMaxObserver().calculate_qparams()
    with pytest.raises(ValueError, match="cannot quantize an empty tensor"):
        MovingAverageMinMaxObserver().observe(np.array([]))


def test_other_bad_arguments_name_what_was_wrong():
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor of shape \\(3, 4\\)"):
        quantize_tensor(np.ones((3, 4)), per_channel=True, axis=2)
    with pytest.raises(ValueError, match="symmetric quantization needs signed storage"):
        quantize_tensor(np.ones(3), dtype="uint8")
    with pytest.raises(ValueError, match="dtype must be 'int8' or 'uint8', got 'int16'"):
        quantize_tensor(np.ones(3), dtype="int16")
    with pytest.raises(ValueError, match="min must not exceed max"):
        compute_qparams(2.0, 1.0)
    with pytest.raises(TypeError, match="data must be int8 or uint8, got dtype float32"):
        QuantizedTensor(np.ones(3, dtype=np.float32), 1.0, 0)
    with pytest.raises(TypeError, match="x must be a 2-D int8 array, got float64"):
        int8_matmul(np.ones((2, 2)), np.ones((2, 2), dtype=np.int8))
    with pytest.raises(ValueError, match=r"x \(2, 3\) and w \(2, 4\) must have the same number of columns"):
        int8_matmul(np.ones((2, 3), np.int8), np.ones((2, 4), np.int8))
    with pytest.raises(ValueError, match=r"x_zero_point must be an integer in \[-128, 127\], got 200"):
        int8_matmul(np.ones((2, 3), np.int8), np.ones((2, 3), np.int8), x_zero_point=200)
    with pytest.raises(ValueError, match="sparse must be False, True or 'auto', got 'yes'"):
        quantize_model(Sequential(Linear(2, 2)), sparse="yes")
    with pytest.raises(ValueError, match="unknown observer 'median'"):
        quantize_model(Sequential(Linear(2, 2)), calibration_data=[np.ones((1, 2), np.float32)], observer="median")
    with pytest.raises(ValueError, match="percentile must be a finite number in \\(50, 100\\], got 40"):
        PercentileObserver(percentile=40)
    with pytest.raises(ValueError, match="averaging_constant must be a finite number in \\(0, 1\\], got 0"):
        MovingAverageMinMaxObserver(averaging_constant=0)
    with pytest.raises(ValueError, match="no QAT layers"):
        convert_qat(Sequential(Linear(2, 2)))
    with pytest.raises(ValueError, match="column index 5 is out of range for 4 columns"):
        QuantizedCSR(np.ones(1, np.int8), np.array([5], np.uint8), np.array([0, 1], np.uint16), 1.0, (1, 4))


def test_quantized_layers_refuse_wrong_shapes_and_training():
    ql = QuantizedLinear.from_float(Linear(4, 2))
    with pytest.raises(ValueError, match="expected input with last dimension 4, got shape \\(3, 5\\)"):
        ql(Tensor(np.ones((3, 5), dtype=np.float32)))
    with pytest.raises(RuntimeError, match="for inference"):
        ql(Tensor(np.ones((1, 4), dtype=np.float32), requires_grad=True))
    with pytest.raises(TypeError, match="expected a floating-point input, got dtype int64"):
        ql(Tensor(np.ones((1, 4), dtype=np.int64)))
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        prepare_qat(Sequential(Linear(2, 2)), bits=12)


def test_corrupted_sparse_buffers_are_refused_not_read_out_of_bounds():
    rng = np.random.default_rng(1)
    lin = Linear(40, 6, rng=rng)
    lin.weight.data[rng.random(lin.weight.shape) < 0.8] = 0.0
    x = Tensor(rng.standard_normal((3, 40)).astype(np.float32))
    for name, index, value, message in (("weight_indices", 0, 200, "column index is out of range"),
                                        ("weight_indptr", 2, 0, "row pointers decrease")):
        q = QuantizedLinear.from_float(lin, sparse=True)
        getattr(q, name).data[index] = value          # what a corrupted checkpoint could load into the buffers
        with pytest.raises(ValueError, match=message):
            q(x)
