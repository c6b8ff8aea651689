"""Can I store a model in real int8 and keep its accuracy?"""
import numpy as np

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam
from tinytorch.core.tensor import Tensor
from tinytorch.optimization.quantization import (MinMaxObserver, MovingAverageMinMaxObserver, QuantizedLinear,
                                                 dequantize, fake_quantize, int8_matmul, model_size_bytes,
                                                 quantize_model, quantize_tensor)


def test_round_trip_is_within_half_a_step_in_real_int8():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 48)).astype(np.float32)
    for symmetric in (True, False):
        q = quantize_tensor(x, symmetric=symmetric)
        assert q.data.dtype == np.int8 and q.data.nbytes == x.size
        assert np.abs(dequantize(q).data - x).max() <= float(q.scale) / 2 * (1 + 1e-5)
    zeros = quantize_tensor(np.zeros((3, 3), dtype=np.float32))     # a constant tensor: no division by zero
    assert float(zeros.scale) > 0 and np.all(dequantize(zeros).data == 0)


def test_per_channel_scales_beat_one_scale_for_uneven_rows():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 256)) * 10 ** rng.uniform(-2, 0, size=(64, 1))).astype(np.float32)
    err = lambda q: np.linalg.norm(dequantize(q).data - w) / np.linalg.norm(w)   # noqa: E731
    per_channel, per_tensor = err(quantize_tensor(w, per_channel=True)), err(quantize_tensor(w))
    assert per_channel < 0.01 < per_tensor and per_tensor > 2 * per_channel


def test_the_int8_product_is_exact_integer_arithmetic():
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, size=(5, 700)).astype(np.int8)
    b = rng.integers(-128, 128, size=(4, 700)).astype(np.int8)
    out = int8_matmul(a, b)
    assert out.dtype == np.int32 and np.array_equal(out, a.astype(np.int64) @ b.astype(np.int64).T)


def test_observers_and_fake_quantization():
    obs = MinMaxObserver()
    obs.observe(np.array([0.0, 3.0]))
    obs.observe(np.array([-1.0, 2.0]))
    assert (obs.min_val, obs.max_val) == (-1.0, 3.0)
    ma = MovingAverageMinMaxObserver(averaging_constant=0.5)
    ma.observe(np.array([0.0, 4.0]))
    ma.observe(np.array([-2.0, 2.0]))
    assert (ma.min_val, ma.max_val) == (-1.0, 3.0)
    x = Tensor(np.array([-1.0, 0.2, 0.9], dtype=np.float32), requires_grad=True)
    y = fake_quantize(x, scale=0.25, zero_point=0, bits=3)               # levels -3..3: range ±0.75
    assert np.allclose(y.data, [-0.75, 0.25, 0.75])
    y.backward(np.ones(3, dtype=np.float32))
    assert x.grad.data.tolist() == [0.0, 1.0, 0.0]                       # straight through, except clipped


def test_an_int8_digits_model_keeps_its_accuracy_in_a_quarter_of_the_bytes():
    (X, y), (Xt, yt) = load_digits()
    mu, sd = X.data.mean(axis=0), X.data.std(axis=0) + 0.1
    X, Xt = Tensor((X.data - mu) / sd), Tensor((Xt.data - mu) / sd)
    rng = np.random.default_rng(3)
    model = Sequential(Linear(64, 256, rng=rng), ReLU(), Linear(256, 256, rng=rng), ReLU(), Linear(256, 10, rng=rng))
    opt, loss_fn = Adam(model.parameters(), lr=3e-3), CrossEntropyLoss()
    for epoch in range(4):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=epoch):
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    q = quantize_model(model, per_channel=False)
    assert all(isinstance(m, QuantizedLinear) and m.weight_int8.dtype == np.int8 for m in q.layers[::2])
    with no_grad():
        acc_f = float((model(Xt).data.argmax(axis=1) == yt.data).mean())
        acc_q = float((q(Xt).data.argmax(axis=1) == yt.data).mean())
    assert acc_f > 0.95 and abs(acc_f - acc_q) <= 0.01
    assert model_size_bytes(q) <= 0.26 * model_size_bytes(model)
