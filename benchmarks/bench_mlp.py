"""Forward + backward of a 64-128-10 MLP at batch 64: tinytorch against PyTorch, one thread each.

Run: python benchmarks/bench_mlp.py [--repeats N]
Prints the median time per step of each framework, measured side by side (interleaved rounds in one
process), and the ratio tinytorch / PyTorch (goal: <= 1.0). Also prints `import tinytorch` time.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import subprocess
import sys

import numpy as np

from _versus import add_allocator_flag, tune_allocator_unless, versus_pytorch


def import_time(module: str) -> float:
    "Best of 5 fresh-interpreter import times of `module`, in seconds."
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return min(float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(5))


def make_tinytorch(w1, b1, w2, b2, x, y):
    from tinytorch.core.tensor import Tensor
    from tinytorch.core.layers import Linear, Sequential
    from tinytorch.core.activations import ReLU
    from tinytorch.core.losses import CrossEntropyLoss

    model = Sequential(Linear(64, 128), ReLU(), Linear(128, 10))
    model.load_state_dict({"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2})
    loss_fn = CrossEntropyLoss()
    xt, yt = Tensor(x), Tensor(y)

    def step():
        model.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        return loss.item(), model[0].weight.grad.data

    return step


def make_torch(w1, b1, w2, b2, x, y):
    import torch

    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in
                           {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}.items()})
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        model.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        return loss.item(), model[0].weight.grad.numpy()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved rounds (median taken)")
    parser.add_argument("--number", type=int, default=100, help="steps per round")
    add_allocator_flag(parser)
    args = parser.parse_args()
    tune_allocator_unless(args.default_allocator)

    rng = np.random.default_rng(0)
    w1 = rng.uniform(-0.125, 0.125, (128, 64)).astype(np.float32)
    b1 = rng.uniform(-0.125, 0.125, 128).astype(np.float32)
    w2 = rng.uniform(-0.088, 0.088, (10, 128)).astype(np.float32)
    b2 = rng.uniform(-0.088, 0.088, 10).astype(np.float32)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    y = rng.integers(0, 10, 64)

    tt, pt = make_tinytorch(w1, b1, w2, b2, x, y), make_torch(w1, b1, w2, b2, x, y)
    (l_tt, g_tt), (l_pt, g_pt) = tt(), pt()
    assert abs(l_tt - l_pt) < 1e-5 and np.allclose(g_tt, g_pt, atol=1e-6), "the two models disagree"
    print("MLP 64-128-10, batch 64, forward + backward, 1 thread")
    versus_pytorch(tt, pt, repeats=args.repeats, number=args.number, warmup=50, goal=1.0)
    for module in ("tinytorch", "tinytorch.core.losses"):
        print(f"import {module}: {import_time(module) * 1e3:.0f} ms  (goal < 500 ms)")


if __name__ == "__main__":
    main()
