"""Module 09 (spatial): bad input raises a clear error that names what was wrong and the values seen."""
import re

import numpy as np
import pytest

from tinytorch.core.spatial import AvgPool2d, BatchNorm2d, Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor


def zeros(*shape):
    return Tensor(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("got", [1, 2, 5])
def test_conv_wrong_number_of_input_channels(got):
    with pytest.raises(ValueError, match=re.escape(f"expected 3 input channels, got {got} (input shape (2, {got}, 8, 8))")):
        Conv2d(3, 4, 3)(zeros(2, got, 8, 8))


@pytest.mark.parametrize("layer", [Conv2d(1, 2, 3), MaxPool2d(2), AvgPool2d(2), BatchNorm2d(1)])
@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 1, 1, 8, 8), ()])
def test_input_must_be_4d(layer, shape):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected a 4-D input (N, C, H, W), got shape {shape}")):
        layer(zeros(*shape))


@pytest.mark.parametrize("layer", [Conv2d(1, 2, 3), MaxPool2d(2), AvgPool2d(2), BatchNorm2d(1)])
def test_integer_images_are_rejected(layer):
    with pytest.raises(TypeError, match="floating-point input, got dtype int64"):
        layer(Tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)))


@pytest.mark.parametrize("kernel,padding,shape,expected", [
    (5, 0, (1, 1, 4, 4), "kernel size (5, 5) is larger than the padded input (4, 4)"),
    (5, 1, (1, 1, 2, 6), "kernel size (5, 5) is larger than the padded input (4, 8)"),
    ((2, 7), (0, 1), (1, 1, 3, 4), "kernel size (2, 7) is larger than the padded input (3, 6)"),
])
def test_conv_kernel_larger_than_padded_input(kernel, padding, shape, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        Conv2d(1, 1, kernel, padding=padding)(zeros(*shape))


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pool_kernel_larger_than_padded_input(cls):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: kernel size (3, 3) is larger than the padded input (2, 2)")):
        cls(3)(zeros(1, 1, 2, 2))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(kernel_size=0), "kernel_size must be positive, got 0"),
    (dict(kernel_size=(3, -1)), "kernel_size must be positive, got (3, -1)"),
    (dict(kernel_size=3, stride=0), "stride must be positive, got 0"),
    (dict(kernel_size=3, stride=(-2, 1)), "stride must be positive, got (-2, 1)"),
    (dict(kernel_size=3, padding=-1), "padding must be non-negative, got -1"),
    (dict(kernel_size=3, padding=(0, -2)), "padding must be non-negative, got (0, -2)"),
])
def test_conv_bad_geometry(kwargs, expected):
    with pytest.raises(ValueError, match=re.escape(f"Conv2d: {expected}")):
        Conv2d(1, 1, **kwargs)


@pytest.mark.parametrize("value", [2.5, "3", (1, 2, 3), True, None])
def test_conv_kernel_size_must_be_int_or_pair(value):
    with pytest.raises(TypeError, match=re.escape(f"kernel_size must be an int or a pair of ints, got {value!r}")):
        Conv2d(1, 1, value)


@pytest.mark.parametrize("name,args", [("in_channels", (0, 2, 3)), ("out_channels", (2, -1, 3)),
                                       ("in_channels", (2.0, 2, 3))])
def test_conv_channel_counts(name, args):
    with pytest.raises(ValueError, match=re.escape(f"Conv2d: {name} must be a positive integer (>= 1), got {args[0] if name == 'in_channels' else args[1]!r}")):
        Conv2d(*args)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("kwargs,expected", [
    (dict(kernel_size=0), "kernel_size must be positive, got 0"),
    (dict(kernel_size=2, stride=0), "stride must be positive, got 0"),
    (dict(kernel_size=2, padding=-1), "padding must be non-negative, got -1"),
    (dict(kernel_size=2, padding=2), "padding (2, 2) must be at most half the kernel size (2, 2)"),
])
def test_pool_bad_geometry(cls, kwargs, expected):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: {expected}")):
        cls(**kwargs)


def test_batchnorm_bad_input():
    with pytest.raises(ValueError, match=re.escape("expected 4 channels (num_features), got 3 (input shape (2, 3, 5, 5))")):
        BatchNorm2d(4)(zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match=re.escape("more than 1 value per channel when training, got input shape (1, 2, 1, 1)")):
        BatchNorm2d(2)(zeros(1, 2, 1, 1))
    bn = BatchNorm2d(2).eval()                       # a single value is fine with running statistics
    assert bn(zeros(1, 2, 1, 1)).shape == (1, 2, 1, 1)
    with pytest.raises(ValueError, match=re.escape("BatchNorm2d: num_features must be a positive integer (>= 1), got 0")):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match=re.escape("BatchNorm2d: momentum must be a finite number in [0, 1], got 1.5")):
        BatchNorm2d(2, momentum=1.5)
    with pytest.raises(ValueError, match=re.escape("BatchNorm2d: eps must be a finite number > 0, got 0")):
        BatchNorm2d(2, eps=0)


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match=re.escape("start_dim 2 comes after end_dim 1 for shape (2, 3, 4)")):
        Flatten(2, 1)(zeros(2, 3, 4))


def test_no_silent_nan_from_bad_shapes_after_errors():
    "A failed call leaves the layer usable and its statistics untouched."
    bn = BatchNorm2d(3)
    with pytest.raises(ValueError):
        bn(zeros(2, 4, 3, 3))
    assert int(bn.num_batches_tracked.item()) == 0 and np.all(bn.running_var.data == 1.0)
    out = bn(Tensor(np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)))
    assert np.isfinite(out.data).all() and int(bn.num_batches_tracked.item()) == 1
