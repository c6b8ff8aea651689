"""Module 16 (Quantization): progressive integration tests.

  A. TestStackBelow              -- layers, convolutions, training and module 14's profiler still work.
  B. TestQuantizationCore        -- the affine map, real int8 storage, per-channel scales, observers, the
                                    int32-accumulating kernels, QuantizedLinear / QuantizedConv2d.
  C. TestQuantizationInTheStack  -- whole models: post-training quantization of trained digit models
                                    (accuracy and real bytes), pruning then quantization, QAT through the
                                    optimizer, profiling and saving a quantized model, importing alone.
"""
import subprocess
import sys

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.spatial import Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import load_checkpoint, save_checkpoint
from tinytorch.measurement.profiling import Profiler, count_parameters
from tinytorch.optimization.quantization import (MinMaxObserver, QuantizedConv2d, QuantizedLinear,
                                                 QuantizedTensor, convert_qat, dequantize, int8_matmul,
                                                 model_size_bytes, prepare_qat, quantize_model, quantize_tensor,
                                                 relative_error)


def train(model, X, y, epochs, lr=3e-3, seed=0):
    opt, loss_fn = Adam(model.parameters(), lr=lr), CrossEntropyLoss()
    for e in range(epochs):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=seed + e):
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model, X, y):
    with no_grad():
        return float((model(X).data.argmax(axis=1) == y.data).mean())


@pytest.fixture(scope="module")
def digits():
    (X, y), (Xt, yt) = load_digits()
    mu, sd = X.data.mean(axis=0), X.data.std(axis=0) + 0.1
    return (Tensor((X.data - mu) / sd), y), (Tensor((Xt.data - mu) / sd), yt)


@pytest.fixture(scope="module")
def trained_mlp(digits):
    (X, y), _ = digits
    rng = np.random.default_rng(0)
    return train(Sequential(Linear(64, 256, rng=rng), ReLU(), Linear(256, 256, rng=rng), ReLU(),
                            Linear(256, 10, rng=rng)), X, y, epochs=8)


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_layers_and_gradients(self):
        rng = np.random.default_rng(1)
        model = Sequential(Linear(6, 5, rng=rng), ReLU(), Linear(5, 3, rng=rng))
        loss = CrossEntropyLoss()(model(Tensor(rng.standard_normal((4, 6)).astype(np.float32))),
                                  Tensor(np.array([0, 1, 2, 0])))
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())

    def test_conv_and_int8_tensors(self):
        t = Tensor(np.array([1, -2, 3], dtype=np.int8))
        assert t.dtype == np.int8 and t.data.nbytes == 3                 # Tensor keeps real int8
        conv = Conv2d(1, 2, 3, padding=1, rng=np.random.default_rng(2))
        assert conv(Tensor(np.zeros((1, 1, 4, 4), dtype=np.float32))).shape == (1, 2, 4, 4)

    def test_profiler_counts(self):
        model = Sequential(Linear(8, 4, rng=np.random.default_rng(3)))
        assert Profiler().count_flops(model, (5, 8)) == 2 * 8 * 4 * 5
        assert count_parameters(model)["bytes"] == 4 * (8 * 4 + 4)


# ================================================================================================
# B. The module's core
# ================================================================================================
class TestQuantizationCore:
    def test_round_trip_and_storage(self):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((20, 30)).astype(np.float32)
        for sym, dtype in ((True, "int8"), (False, "int8"), (False, "uint8")):
            q = quantize_tensor(x, symmetric=sym, dtype=dtype)
            assert isinstance(q, QuantizedTensor) and q.data.dtype == np.dtype(dtype)
            assert np.abs(dequantize(q).data - x).max() <= q.scale / 2 * (1 + 1e-5)
            assert q.nbytes == x.size + 4 + 1

    def test_per_channel_relative_error_below_one_percent_per_tensor_clearly_worse(self):
        rng = np.random.default_rng(5)
        spread = 10 ** rng.uniform(-2, 0, size=(128, 1))              # rows over two orders of magnitude
        w = (rng.standard_normal((128, 512)) * spread).astype(np.float32)
        qc, qt = quantize_tensor(w, per_channel=True), quantize_tensor(w)
        ec, et = float(relative_error(w, dequantize(qc))), float(relative_error(w, dequantize(qt)))
        assert ec < 0.01, ec
        assert et > 2 * ec, (et, ec)
        worst_c = relative_error(w, dequantize(qc), axis=0).max()
        worst_t = relative_error(w, dequantize(qt), axis=0).max()
        assert worst_c < 0.015 and worst_t > 0.3                     # per-tensor wrecks the small rows

    def test_int8_kernel_is_exact(self):
        rng = np.random.default_rng(6)
        a = rng.integers(-128, 128, size=(9, 333)).astype(np.int8)
        b = rng.integers(-127, 128, size=(11, 333)).astype(np.int8)
        out = int8_matmul(a, b)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, a.astype(np.int64) @ b.astype(np.int64).T)

    def test_quantized_layers_follow_the_float_layers(self):
        rng = np.random.default_rng(7)
        lin = Linear(128, 40, rng=rng)
        x = Tensor(rng.standard_normal((16, 128)).astype(np.float32))
        ql = QuantizedLinear.from_float(lin)
        assert ql.weight_int8.dtype == np.int8 and ql.weight_scale.shape == (40,)
        with no_grad():
            assert relative_error(lin(x).data, ql(x).data) < 0.01
        conv = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), rng=rng)
        xi = Tensor(rng.standard_normal((3, 4, 7, 6)).astype(np.float32))
        qc = QuantizedConv2d.from_float(conv)
        with no_grad():
            ref, got = conv(xi).data, qc(xi).data
        assert got.shape == ref.shape and relative_error(ref, got) < 0.01

    def test_observer_feeds_static_parameters(self):
        obs = MinMaxObserver()
        for b in (np.array([0.0, 2.0]), np.array([-1.0, 1.0])):
            obs(b)
        s, z = obs.calculate_qparams()
        assert np.isclose(s, 3.0 / 255) and z.dtype == np.int8


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestQuantizationInTheStack:
    def test_post_training_int8_keeps_accuracy_in_a_quarter_of_the_bytes(self, digits, trained_mlp):
        (X, _), (Xt, yt) = digits
        acc_f = accuracy(trained_mlp, Xt, yt)
        q = quantize_model(trained_mlp, calibration_data=[X[:256], X[256:512]])
        acc_q = accuracy(q, Xt, yt)
        assert acc_f > 0.95 and abs(acc_q - acc_f) <= 0.005, (acc_f, acc_q)
        assert all(isinstance(m, QuantizedLinear) for m in q.layers if not isinstance(m, ReLU))
        assert all(isinstance(m, Linear) for m in trained_mlp.layers if not isinstance(m, ReLU))   # untouched
        # bytes: int8 weights + float32 per-channel scales + float32 biases + calibrated input scale/zero point
        n_w, n_out = 64 * 256 + 256 * 256 + 256 * 10, 256 + 256 + 10
        assert model_size_bytes(q) == n_w + 4 * n_out + 4 * n_out + 3 * (4 + 1)
        assert model_size_bytes(trained_mlp) == 4 * (n_w + n_out)

    def test_a_cnn_quantized_is_at_most_026_of_its_float_bytes(self):
        (X, y), (Xt, yt) = load_digits(flatten=False)
        rng = np.random.default_rng(8)
        cnn = Sequential(Conv2d(1, 16, 3, padding=1, rng=rng), ReLU(), Conv2d(16, 32, 3, padding=1, rng=rng),
                         ReLU(), MaxPool2d(2), Flatten(), Linear(512, 64, rng=rng), ReLU(),
                         Linear(64, 10, rng=rng))
        train(cnn, X, y, epochs=2)
        q = quantize_model(cnn)
        assert model_size_bytes(q) <= 0.26 * model_size_bytes(cnn)
        assert abs(accuracy(q, Xt, yt) - accuracy(cnn, Xt, yt)) <= 0.01

    def test_prune_then_quantize_keeps_the_zeros_zero(self, digits, trained_mlp):
        (X, y), (Xt, yt) = digits
        import copy
        pruned = copy.deepcopy(trained_mlp)
        weights = [m.weight for m in pruned.layers if isinstance(m, Linear)]
        allw = np.concatenate([np.abs(w.data).ravel() for w in weights])
        cut = np.quantile(allw, 0.8)                                     # global magnitude pruning, 80 %
        keep = {id(w): (np.abs(w.data) > cut).astype(np.float32) for w in weights}
        for w in weights:
            w.data *= keep[id(w)]

        def keep_zeros(o, args, kwargs):                                 # module 06's step post-hook
            for w in weights:
                w.data *= keep[id(w)]
                for buf in o.state.get(w, {}).values():
                    buf *= keep[id(w)]
        opt = SGD(pruned.parameters(), lr=0.02, momentum=0.9)           # fine-tune: the hook keeps the zeros
        opt.register_step_post_hook(keep_zeros)
        loss_fn = CrossEntropyLoss()
        pruned.train()
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=1):
            loss = loss_fn(pruned(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        pruned.eval()
        for sparse in (False, True):
            q = quantize_model(pruned, sparse=sparse)
            for m, w in zip([m for m in q.layers if isinstance(m, QuantizedLinear)], weights):
                deq = m.dequantized_weight()
                assert np.all(deq[w.data == 0] == 0)                     # every pruned weight is exactly 0
                assert m.sparse == sparse
            assert accuracy(q, Xt, yt) >= accuracy(pruned, Xt, yt) - 0.01
        dense_q, sparse_q = quantize_model(pruned), quantize_model(pruned, sparse=True)
        assert model_size_bytes(sparse_q) < 0.5 * model_size_bytes(dense_q)
        with no_grad():
            np.testing.assert_allclose(dense_q(Xt).data, sparse_q(Xt).data, rtol=1e-5, atol=1e-5)

    def test_qat_trains_through_the_optimizer(self, digits, trained_mlp):
        (X, y), (Xt, yt) = digits
        calib = [X[:512]]
        ptq = quantize_model(trained_mlp, bits=2, act_bits=4, calibration_data=calib)
        qat = prepare_qat(trained_mlp, bits=2, act_bits=4, averaging_constant=0.1)
        opt, loss_fn = Adam(qat.parameters(), lr=5e-4), CrossEntropyLoss()
        losses = []
        qat.train()
        for epoch in range(3):
            total = 0.0
            for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=10 + epoch):
                loss = loss_fn(qat(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            losses.append(total)
        assert losses[-1] < losses[0]
        q = convert_qat(qat)
        assert all(isinstance(m, QuantizedLinear) and m.weight_bits == 2 and m.input_scale is not None
                   for m in q.layers if not isinstance(m, ReLU))
        acc_ptq, acc_qat = accuracy(ptq, Xt, yt), accuracy(q, Xt, yt)
        assert acc_qat > acc_ptq + 0.01, (acc_ptq, acc_qat)
        assert acc_qat == accuracy(qat.eval(), Xt, yt)          # the fake-quantized model is what int8 computes

    def test_profile_and_checkpoint_a_quantized_model(self, digits, trained_mlp, tmp_path):
        (X, _), (Xt, yt) = digits
        q = quantize_model(trained_mlp, calibration_data=[X[:128]])
        report = Profiler(warmup=1, repeats=2).profile(q, Xt[:32])
        assert report.flops == 2 * 32 * (64 * 256 + 256 * 256 + 256 * 10) and not report.uncounted
        path = save_checkpoint(tmp_path / "q.npz", q)
        fresh = quantize_model(trained_mlp, calibration_data=[X[128:256]])
        for m in fresh.layers:
            if isinstance(m, QuantizedLinear):
                m.weight_int8.data[...] = 0
        load_checkpoint(path, fresh)
        for a, b in zip(q.layers, fresh.layers):
            if isinstance(a, QuantizedLinear):
                assert b.weight_int8.dtype == np.int8
                np.testing.assert_array_equal(a.weight_int8.data, b.weight_int8.data)
                assert a.input_scale.item() == b.input_scale.item()
        assert accuracy(fresh, Xt, yt) == accuracy(q, Xt, yt)

    def test_quantization_imports_alone_and_fast(self):
        code = ("import sys, time; t = time.perf_counter(); import tinytorch.optimization.quantization as q; "
                "dt = time.perf_counter() - t; print('numba' in sys.modules, "
                "q.quantize_tensor([1.0, -4.0]).data.tolist())")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "False [32, -127]"                 # numba is imported only when needed
