"""Module 14 (Profiling): progressive integration tests.

  A. TestStackBelow          -- the modules the profiler reads still work: tensors and autograd, layers,
                                convolutions, attention and a GPT, state dicts.
  B. TestProfilerCore        -- parameters and non-zeros, FLOPs against hand formulas, memory against
                                .nbytes, latency as the median of real repeats, no invented accuracy.
  C. TestProfilerInTheStack  -- profiling trained and training models: a CNN on the digits, a GPT with a
                                KV cache, a model mid-training (modes, gradients and classes untouched),
                                and the module importing alone.
"""
import subprocess
import sys
import time

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam
from tinytorch.core.spatial import BatchNorm2d, Conv2d, Flatten, MaxPool2d
from tinytorch.core.tensor import Tensor
from tinytorch.core.transformers import GPT
from tinytorch.measurement.profiling import (Profiler, attention_flops, conv2d_flops, count_parameters,
                                              linear_flops, measure_latency, measure_memory, trace_forward)


def lenet(rng):
    return Sequential(Conv2d(1, 8, 3, padding=1, rng=rng), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                      Conv2d(8, 16, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(16 * 2 * 2, 32, rng=rng), ReLU(), Dropout(0.1, rng=rng), Linear(32, 10, rng=rng))


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_tensor_autograd_and_layers(self):
        rng = np.random.default_rng(0)
        model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng))
        x = Tensor(rng.standard_normal((5, 4)).astype(np.float32))
        loss = CrossEntropyLoss()(model(x), Tensor(np.array([0, 1, 2, 1, 0])))
        loss.backward()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
        assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        with no_grad():
            assert not model(x).requires_grad

    def test_conv_and_attention_shapes(self):
        rng = np.random.default_rng(1)
        conv = Conv2d(3, 4, 3, stride=2, padding=1, rng=rng)
        assert conv(Tensor(np.zeros((2, 3, 9, 9), dtype=np.float32))).shape == (2, 4, 5, 5)
        mha = MultiHeadAttention(16, 4, rng=rng)
        assert mha(Tensor(rng.standard_normal((2, 5, 16)).astype(np.float32))).shape == (2, 5, 16)

    def test_gpt_forward(self):
        gpt = GPT(vocab_size=11, embed_dim=16, num_layers=1, num_heads=2, max_seq_len=8, seed=0)
        assert gpt(np.array([[1, 2, 3]])).shape == (1, 3, 11)


# ================================================================================================
# B. The profiler's core
# ================================================================================================
class TestProfilerCore:
    def test_parameters_nonzeros_and_bytes(self):
        rng = np.random.default_rng(2)
        model = lenet(rng)
        c = count_parameters(model)
        expected = sum(p.numel() for p in model.parameters())
        assert c["total"] == expected and c["trainable"] == expected and c["bytes"] == 4 * expected
        assert c["nonzero"] == expected - 8                    # BatchNorm2d's bias starts at zero
        assert c["buffer_bytes"] == 8 * 4 + 8 * 4 + 8          # BatchNorm2d: running mean/var (f32), count (i64)
        model.layers[8].weight.data[:5] = 0.0
        model.layers[0].weight.requires_grad = False
        c2 = count_parameters(model)
        assert c2["nonzero"] == expected - 8 - 5 * 64 and c2["trainable"] == expected - 72

    def test_flops_match_hand_formulas_for_a_cnn(self):
        rng = np.random.default_rng(3)
        model = lenet(rng)
        n = 6
        hand = (2 * 1 * 3 * 3 * 8 * 8 * 8 * n            # conv1: Cin kh kw Cout Hout Wout per image
                + 2 * 8 * 3 * 3 * 16 * 4 * 4 * n         # conv2 on the pooled 4x4 maps
                + 2 * 64 * 32 * n + 2 * 32 * 10 * n)     # the two Linear layers: 2 in out per example
        assert Profiler().count_flops(model, (n, 1, 8, 8)) == hand
        records, _ = trace_forward(model, Tensor(np.zeros((n, 1, 8, 8), dtype=np.float32)))
        assert [r.flops for r in records if r.kind in ("Conv2d", "Linear")] == [
            conv2d_flops(1, 8, 3, (8, 8), n), conv2d_flops(8, 16, 3, (4, 4), n),
            linear_flops(64, 32, n), linear_flops(32, 10, n)]
        assert all(r.flops == 0 for r in records if r.kind in ("ReLU", "MaxPool2d", "BatchNorm2d", "Flatten"))

    def test_attention_flops_grow_with_the_square_of_the_sequence(self):
        mha = MultiHeadAttention(32, 4, rng=np.random.default_rng(4))
        for T in (4, 8):
            records, _ = trace_forward(mha, Tensor(np.zeros((3, T, 32), dtype=np.float32)))
            attn = [r for r in records if r.kind == "MultiHeadAttention"][0]
            proj = [r for r in records if r.kind == "Linear"]
            assert attn.flops == attention_flops(3, 4, T, T, 8) == 4 * 3 * T * T * 32
            assert len(proj) == 4 and all(r.flops == 2 * 32 * 32 * 3 * T for r in proj)

    def test_memory_counts_outputs_and_measures_a_peak(self):
        rng = np.random.default_rng(5)
        model = Sequential(Linear(100, 200, rng=rng), ReLU(), Linear(200, 50, rng=rng))
        x = Tensor(rng.standard_normal((32, 100)).astype(np.float32))
        mem = measure_memory(model, x)
        assert mem["activation_bytes"] == 32 * (200 + 200 + 50) * 4
        assert mem["parameter_bytes"] == 4 * (100 * 200 + 200 + 200 * 50 + 50)
        assert mem["input_bytes"] == x.data.nbytes
        assert 32 * 50 * 4 <= mem["peak_forward_bytes"] < 4 * mem["activation_bytes"]
        assert mem["retained_for_backward_bytes"] >= 32 * 200 * 4

    def test_latency_is_the_median_of_real_repeats(self):
        class Varying(Module):
            "Sleeps 1 ms on most calls and 30 ms on every fourth: the median must ignore the slow ones."
            def __init__(self):
                super().__init__()
                self.calls = 0

            def forward(self, x):
                self.calls += 1
                time.sleep(0.030 if self.calls % 4 == 0 else 0.001)
                return x

        m = Varying()
        lat = measure_latency(m, Tensor([0.0]), warmup=1, repeats=8)
        assert m.calls == 9 and lat.repeats == 8 and lat.warmup == 1
        assert lat.median == pytest.approx(float(np.median(lat.times)))
        assert sum(t >= 0.030 for t in lat.times) == 2               # calls 4 and 8 were the slow ones
        assert 0.001 <= lat.median < 0.030 <= lat.max and lat.mean > lat.median

    def test_no_invented_accuracy(self):
        rng = np.random.default_rng(6)
        model = Sequential(Linear(4, 3, rng=rng))
        report = Profiler(warmup=0, repeats=2).profile(model, (2, 4))
        assert report.accuracy is None and "not measured" in report.summary()
        assert report.to_dict()["accuracy"] is None

    def test_bad_arguments_are_named(self):
        with pytest.raises(ValueError, match=r"repeats must be a positive integer \(>= 1\), got 0"):
            Profiler(repeats=0)
        with pytest.raises(ValueError, match="warmup must be an integer >= 0, got -1"):
            measure_latency(Sequential(), Tensor([1.0]), warmup=-1)
        with pytest.raises(TypeError, match="expected a Module, got list"):
            count_parameters([1, 2])
        with pytest.raises(TypeError, match="evaluate must be a function"):
            Profiler(repeats=1).profile(Sequential(Linear(2, 2)), (1, 2), evaluate=0.97)


# ================================================================================================
# C. Wired into the stack
# ================================================================================================
class TestProfilerInTheStack:
    def test_profiling_a_trained_cnn_with_its_evaluate(self):
        (X, y), (Xt, yt) = load_digits(flatten=False)
        rng = np.random.default_rng(7)
        model = lenet(rng)
        opt, loss_fn = Adam(model.parameters(), lr=3e-3), CrossEntropyLoss()
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=0):
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def evaluate(m):
            with no_grad():
                return {"accuracy": float((m(Xt).data.argmax(axis=1) == yt.data).mean())}

        model.train()
        report = Profiler(warmup=1, repeats=3).profile(model, Xt[:32], evaluate=evaluate, name="lenet")
        assert report.accuracy == evaluate(model.eval())["accuracy"] > 0.5
        model.train()
        assert report.flops == Profiler().count_flops(model, Xt[:32]) > 0
        assert report.memory["input_bytes"] == 32 * 64 * 4
        assert all(m.training for m in model.modules())               # modes restored after profiling
        assert "lenet" in report.summary() and "Conv2d" in report.table()

    def test_attention_flops_count_the_keys_a_kv_hook_adds(self):
        "module 12's kv_hook may attend over more keys than the call computed: the FLOPs follow the keys."
        gpt = GPT(vocab_size=20, embed_dim=16, num_layers=2, num_heads=2, max_seq_len=16, seed=1)
        attn = gpt.blocks[0].attn
        earlier = np.random.default_rng(0).standard_normal((1, 2, 5, 8)).astype(np.float32)

        def with_five_earlier(k, v):                                     # five earlier positions, kept
            return (Tensor(np.concatenate([earlier, k.data], axis=2)),
                    Tensor(np.concatenate([earlier, v.data], axis=2)))
        records, _ = trace_forward(attn, Tensor(np.zeros((1, 1, 16), dtype=np.float32)),
                                   kv_hook=with_five_earlier)
        r = [r for r in records if r.kind == "MultiHeadAttention"][0]
        assert r.flops == attention_flops(1, 2, 1, 6, 8)                 # one query over 6 keys
        records, _ = trace_forward(attn, Tensor(np.zeros((1, 1, 16), dtype=np.float32)))
        r = [r for r in records if r.kind == "MultiHeadAttention"][0]
        assert r.flops == attention_flops(1, 2, 1, 1, 8)                 # without the hook: its own key only

    def test_profiling_mid_training_changes_nothing(self):
        rng = np.random.default_rng(8)
        model = lenet(rng)
        x = Tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
        y = Tensor(np.array([1, 2, 3, 4]))
        before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        Profiler(warmup=1, repeats=2).profile(model, x)
        after = model.state_dict()
        for k in before:                       # batch-norm statistics not updated, weights untouched
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
        assert all("forward" not in vars(m) for m in model.modules())
        assert Linear.forward.__qualname__ == "Linear.forward"
        loss = CrossEntropyLoss()(model(x), y)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())

    def test_profiling_imports_alone(self):
        code = ("import tinytorch.measurement.profiling as p, numpy as np; "
                "from tinytorch.core.layers import Linear; "
                "print(p.Profiler().count_flops(Linear(3, 5), (7, 3)))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(2 * 3 * 5 * 7)
