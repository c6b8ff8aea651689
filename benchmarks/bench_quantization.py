"""int8 inference vs float32: the Numba int32-accumulating kernel, float32 BLAS, NumPy's integer matmul.

Run: python benchmarks/bench_quantization.py [--repeats N] [--quick]
One thread everywhere (BLAS and Numba). For each shape (batch x in -> out), measured side by side in
interleaved rounds, median time per call:
  kernel level   int8_matmul (Numba, int16 products, int32 sums)  vs  float32 x @ w.T (BLAS)
                 vs  NumPy's int32 matmul of the same integers (no BLAS path)
  layer level    QuantizedLinear (activation quantization + kernel + rescale)  vs  float32 Linear
  sparse         QuantizedLinear with CSR int8 weights at 90 % sparsity  vs  dense QuantizedLinear
Prints the times and the ratios. Before timing, the kernels must agree exactly with int64 arithmetic and
the int8 layer must be within 2 % (relative error) of the float layer on Gaussian inputs. The first call compiles the Numba
kernels (or loads them from the on-disk cache); compilation is excluded from the timings by the warm-up.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinytorch.core.autograd import no_grad  # noqa: E402
from tinytorch.core.layers import Linear  # noqa: E402
from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.optimization.quantization import QuantizedLinear, int8_matmul, relative_error  # noqa: E402

SHAPES = [(1, 1024, 1024), (64, 512, 512), (64, 1024, 1024), (256, 256, 256)]


def interleaved(fns: dict, repeats: int, number: int) -> dict:
    "Median seconds per call of each function, timed in interleaved rounds (so drift hits all equally)."
    times = {k: [] for k in fns}
    for fn in fns.values():                     # warm-up (and Numba compilation / cache load)
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in times.items()}


def calls_for(shape) -> int:
    m, k, n = shape
    return max(1, int(2e7 // (m * k * n)))


def kernel_level(repeats: int, shapes):
    print("kernel: x (M,K) @ w.T (K,N)          int8 Numba   float32 BLAS   NumPy int32   "
          "int8/f32   NumPy-int/int8")
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        x8 = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
        w8 = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
        xf, wf = x8.astype(np.float32), w8.astype(np.float32)
        exact = x8.astype(np.int64) @ w8.astype(np.int64).T
        assert np.array_equal(int8_matmul(x8, w8), exact), "the int8 kernel disagrees with int64 arithmetic"
        t = interleaved({"int8": lambda: int8_matmul(x8, w8), "f32": lambda: xf @ wf.T}, repeats, calls_for((m, k, n)))
        t_np = interleaved({"np": lambda: x8.astype(np.int32) @ w8.astype(np.int32).T}, max(3, repeats // 4), 1)["np"]
        print(f"  {m:>4} x {k:>4} -> {n:<5}              {t['int8'] * 1e3:>9.3f} ms {t['f32'] * 1e3:>11.3f} ms "
              f"{t_np * 1e3:>10.3f} ms {t['int8'] / t['f32']:>9.2f}x {t_np / t['int8']:>13.1f}x")


def layer_level(repeats: int, shapes):
    print("\nlayer: QuantizedLinear vs Linear     int8 layer   float32 layer  int8/f32   rel. error   bytes int8/f32")
    rng = np.random.default_rng(1)
    for m, k, n in shapes:
        lin = Linear(k, n, rng=rng)
        ql = QuantizedLinear.from_float(lin)
        x = Tensor(rng.standard_normal((m, k)).astype(np.float32))
        with no_grad():
            err = float(relative_error(lin(x).data, ql(x).data))
            assert err < 0.02, f"QuantizedLinear is {100 * err:.2f}% away from Linear"
            t = interleaved({"q": lambda: ql(x), "f": lambda: lin(x)}, repeats, calls_for((m, k, n)))
        nb_q = ql.weight_int8.data.nbytes + ql.weight_scale.data.nbytes + ql.bias.data.nbytes
        nb_f = lin.weight.data.nbytes + lin.bias.data.nbytes
        print(f"  {m:>4} x {k:>4} -> {n:<5}              {t['q'] * 1e3:>9.3f} ms {t['f'] * 1e3:>11.3f} ms "
              f"{t['q'] / t['f']:>8.2f}x {100 * err:>10.2f}% {nb_q / nb_f:>14.3f}")


def sparse_level(repeats: int, shapes):
    print("\nsparse: 90 % pruned, CSR int8 vs dense int8 vs dense float32   CSR int8   dense int8   float32   "
          "CSR/dense-int8   bytes CSR/f32")
    rng = np.random.default_rng(2)
    for m, k, n in shapes:
        lin = Linear(k, n, rng=rng)
        w = lin.weight.data
        w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0.0
        dense, sparse = QuantizedLinear.from_float(lin), QuantizedLinear.from_float(lin, sparse=True)
        x = Tensor(rng.standard_normal((m, k)).astype(np.float32))
        with no_grad():
            assert np.allclose(dense(x).data, sparse(x).data, atol=1e-5), "sparse and dense int8 disagree"
            t = interleaved({"s": lambda: sparse(x), "d": lambda: dense(x), "f": lambda: lin(x)}, repeats,
                            calls_for((m, k, n)))
        nb_s = sparse.weight_bytes() + sparse.bias.data.nbytes
        nb_f = lin.weight.data.nbytes + lin.bias.data.nbytes
        print(f"  {m:>4} x {k:>4} -> {n:<5}                                    {t['s'] * 1e3:>6.3f} ms "
              f"{t['d'] * 1e3:>8.3f} ms {t['f'] * 1e3:>7.3f} ms {t['s'] / t['d']:>12.2f}x {nb_s / nb_f:>14.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="two small shapes, few repeats")
    args = parser.parse_args(argv)
    shapes = SHAPES[:2] if args.quick else SHAPES
    repeats = 3 if args.quick else args.repeats
    import numba
    print(f"numpy {np.__version__}, numba {numba.__version__}, one thread; medians of {repeats} interleaved rounds")
    kernel_level(repeats, shapes)
    layer_level(repeats, shapes)
    sparse_level(repeats, shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
