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
import statistics
import time

import numpy as np


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


def per_step(fn, number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number


def compare(a, b, repeats, number):
    "Interleaved rounds (so drift on a shared machine hits both); medians of the per-step times."
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(per_step(a, number))
        tb.append(per_step(b, number))
    return ta, tb


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved rounds (median taken)")
    parser.add_argument("--number", type=int, default=100, help="steps per round")
    args = parser.parse_args()

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

    times_tt, times_pt = compare(tt, pt, args.repeats, args.number)
    opt_tt, opt_pt = compare(tt_opt, pt_opt, max(args.repeats // 3, 3), args.number)
    m_tt, m_pt = statistics.median(times_tt), statistics.median(times_pt)
    o_tt, o_pt = statistics.median(opt_tt), statistics.median(opt_pt)
    print("MLP 64-128-10, batch 64, zero_grad + forward + backward + Adam step, 1 thread")
    print(f"  tinytorch: {m_tt * 1e6:8.1f} us/step  (spread {min(times_tt) * 1e6:.1f}-{max(times_tt) * 1e6:.1f})")
    print(f"  PyTorch:   {m_pt * 1e6:8.1f} us/step  (spread {min(times_pt) * 1e6:.1f}-{max(times_pt) * 1e6:.1f})")
    print(f"  Adam step alone: tinytorch {o_tt * 1e6:.1f} us, PyTorch {o_pt * 1e6:.1f} us "
          f"(ratio {o_tt / o_pt:.2f})")
    print(f"  ratio tinytorch/PyTorch: {m_tt / m_pt:.2f}  (goal <= 1.00)")


if __name__ == "__main__":
    main()
