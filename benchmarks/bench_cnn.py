"""Forward + backward of a LeNet-style CNN at batch 64: tinytorch against PyTorch, one thread each.

Run: python benchmarks/bench_cnn.py [--repeats N] [--profile]
Two models, measured side by side (interleaved rounds in one process), median time per step:
  8x8   (the digits): Conv2d(1,6,3,p=1)-ReLU-MaxPool2d(2)-Conv2d(6,16,3,p=1)-ReLU-MaxPool2d(2)
                      -Flatten-Linear(64,32)-ReLU-Linear(32,10)
  28x28 (LeNet-5):    Conv2d(1,6,5,p=2)-ReLU-MaxPool2d(2)-Conv2d(6,16,5)-ReLU-MaxPool2d(2)
                      -Flatten-Linear(400,120)-ReLU-Linear(120,84)-ReLU-Linear(84,10)
Prints each framework's time and the ratio tinytorch / PyTorch (goal: <= 3.0). Before timing, both
models get the same weights and must agree on the loss and on the first conv's weight gradient.
--profile prints where tinytorch's time goes (cProfile) for the 8x8 model.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import time

import numpy as np

from _versus import add_allocator_flag, tune_allocator_unless, versus_pytorch

GOAL = 3.0


def specs(size):
    "Layer list as (kind, args) shared by both frameworks."
    if size == 8:
        return [("conv", (1, 6, 3, 1)), ("relu",), ("pool",), ("conv", (6, 16, 3, 1)), ("relu",), ("pool",),
                ("flatten",), ("linear", (16 * 2 * 2, 32)), ("relu",), ("linear", (32, 10))]
    return [("conv", (1, 6, 5, 2)), ("relu",), ("pool",), ("conv", (6, 16, 5, 0)), ("relu",), ("pool",),
            ("flatten",), ("linear", (16 * 5 * 5, 120)), ("relu",), ("linear", (120, 84)), ("relu",),
            ("linear", (84, 10))]


def build_tinytorch(spec):
    from tinytorch.core.activations import ReLU
    from tinytorch.core.layers import Linear, Sequential
    from tinytorch.core.spatial import Conv2d, Flatten, MaxPool2d

    rng = np.random.default_rng(0)
    make = {"conv": lambda a: Conv2d(a[0], a[1], a[2], padding=a[3], rng=rng), "relu": lambda a: ReLU(),
            "pool": lambda a: MaxPool2d(2), "flatten": lambda a: Flatten(),
            "linear": lambda a: Linear(a[0], a[1], rng=rng)}
    return Sequential(*[make[kind](rest[0] if rest else None) for kind, *rest in spec])


def build_torch(spec):
    import torch

    nn = torch.nn
    make = {"conv": lambda a: nn.Conv2d(a[0], a[1], a[2], padding=a[3]), "relu": lambda a: nn.ReLU(),
            "pool": lambda a: nn.MaxPool2d(2), "flatten": lambda a: nn.Flatten(),
            "linear": lambda a: nn.Linear(a[0], a[1])}
    return nn.Sequential(*[make[kind](rest[0] if rest else None) for kind, *rest in spec])


def make_steps(size, x, y):
    import torch
    from tinytorch.core.losses import CrossEntropyLoss
    from tinytorch.core.tensor import Tensor

    torch.set_num_threads(1)
    tt_model = build_tinytorch(specs(size))
    pt_model = build_torch(specs(size))
    pt_model.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in tt_model.state_dict().items()})
    tt_loss, pt_loss = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    xt, yt = Tensor(x), Tensor(y)
    xp, yp = torch.from_numpy(x), torch.from_numpy(y)

    def tt_step():
        tt_model.zero_grad()
        loss = tt_loss(tt_model(xt), yt)
        loss.backward()
        return loss.item(), tt_model[0].weight.grad.data

    def pt_step():
        pt_model.zero_grad()
        loss = pt_loss(pt_model(xp), yp)
        loss.backward()
        return loss.item(), pt_model[0].weight.grad.numpy()

    return tt_step, pt_step


def bench(size, repeats, batch=64):
    rng = np.random.default_rng(1)
    x = rng.random((batch, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    tt, pt = make_steps(size, x, y)
    (l_tt, g_tt), (l_pt, g_pt) = tt(), pt()
    assert abs(l_tt - l_pt) < 1e-4 and np.allclose(g_tt, g_pt, rtol=1e-3, atol=1e-5), "the two models disagree"
    t0 = time.perf_counter()
    for _ in range(5):                                   # warm-up
        tt(); pt()
    per_step = (time.perf_counter() - t0) / 10
    number = max(1, int(0.05 / per_step))                # about 50 ms per round and framework
    print(f"CNN on {size}x{size} images, batch {batch}, forward + backward, 1 thread "
          f"({repeats} rounds of {number} steps)")
    versus_pytorch(tt, pt, repeats=repeats, number=number, warmup=0, unit="ms", digits=3, goal=GOAL)
    return tt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="interleaved rounds (median taken)")
    parser.add_argument("--profile", action="store_true", help="cProfile tinytorch's 8x8 step")
    add_allocator_flag(parser)
    args = parser.parse_args()
    tune_allocator_unless(args.default_allocator)
    tt8 = bench(8, args.repeats)
    bench(28, args.repeats)
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(300):
            tt8()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
