"""One training step of a 64-128-10 MLP at batch 64 (zero_grad, forward, loss, backward, Adam step):
tinytorch against PyTorch, one thread each.

Run: python benchmarks/bench_train_step.py [--repeats N] [--number N]
Prints the median time per step of each framework, measured side by side (interleaved rounds in one
process), the ratio tinytorch / PyTorch (goal: <= 1.0), and the optimizer step alone for both.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse

import numpy as np

from _versus import add_allocator_flag, tune_allocator_unless, versus_pytorch
from tinytorch.measurement.benchmarking import Benchmark


def make_tinytorch(w1, b1, w2, b2, x, y, lr):
    from tinytorch.core.tensor import Tensor
    from tinytorch.core.layers import Linear, Sequential
    from tinytorch.core.activations import ReLU
    from tinytorch.core.losses import CrossEntropyLoss
    from tinytorch.core.optimizers import Adam

    model = Sequential(Linear(64, 128), ReLU(), Linear(128, 10))
    model.load_state_dict({"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2})
    opt = Adam(model.parameters(), lr=lr)
    loss_fn = CrossEntropyLoss()
    xt, yt = Tensor(x), Tensor(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step, opt.step, lambda: model[0].weight.data


def make_torch(w1, b1, w2, b2, x, y, lr):
    import torch

    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in
                           {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}.items()})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step, opt.step, lambda: model[0].weight.detach().numpy()


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

    (tt, tt_opt, tt_w), (pt, pt_opt, pt_w) = (make_tinytorch(w1, b1, w2, b2, x, y, 1e-3),
                                              make_torch(w1, b1, w2, b2, x, y, 1e-3))
    for i in range(5):                      # the two must train identically before we time them
        l_tt, l_pt = tt(), pt()
        assert abs(l_tt - l_pt) < 1e-4, f"step {i}: losses differ ({l_tt} vs {l_pt})"
    assert np.allclose(tt_w(), pt_w(), atol=1e-5), "the weights differ after 5 Adam steps"
    for _ in range(50):                     # warm-up
        tt(); pt()

    opt = (Benchmark("Adam step", repeats=max(args.repeats // 3, 3), number=args.number, warmup=0, threads=None)
           .add("PyTorch", pt_opt, baseline=True).add("tinytorch", tt_opt).run())
    print("MLP 64-128-10, batch 64, zero_grad + forward + backward + Adam step, 1 thread")
    print(f"  Adam step alone: tinytorch {opt['tinytorch'].median * 1e6:.1f} us, PyTorch "
          f"{opt['PyTorch'].median * 1e6:.1f} us (ratio {opt.ratio('tinytorch'):.2f})")
    versus_pytorch(tt, pt, repeats=args.repeats, number=args.number, warmup=0, goal=1.0)


if __name__ == "__main__":
    main()
