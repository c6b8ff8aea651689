"""Module 18's kernels against the code they replace, measured side by side with module 19's Benchmark.

Run: python benchmarks/bench_acceleration.py [--repeats N]
One thread (BLAS and Numba). Cases, each checked for equal results before timing:
  gelu        the fused one-pass Numba GELU (gelu_fused)  vs  GELU(approximate="tanh") as separate NumPy passes
  conv loops  conv2d_image compiled by Numba (its dispatcher)  vs  the same loops run by the interpreter (py_func)
Prints each table and the ratios (how many times slower the baseline is than the kernel).
"""
import os

if __name__ == "__main__":       # one thread everywhere, set before NumPy loads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinytorch.core.activations import GELU  # noqa: E402
from tinytorch.core.autograd import no_grad  # noqa: E402
from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.optimization.acceleration import conv2d_image, gelu_fused  # noqa: E402
from tinytorch.measurement.benchmarking import Benchmark  # noqa: E402


def gelu_case(repeats: int):
    x = np.random.default_rng(2).standard_normal(1_000_000).astype(np.float32)
    xt, gelu = Tensor(x), GELU(approximate="tanh")
    np.testing.assert_allclose(gelu_fused(x), gelu(xt).data, rtol=1e-4, atol=2e-5)

    def separate():
        with no_grad():
            return gelu(xt)

    return (Benchmark("GELU tanh, 1e6 float32", repeats=repeats)
            .add("separate passes", separate, baseline=True).add("fused (Numba)", lambda: gelu_fused(x)).run())


def conv_case(repeats: int):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.zeros(2, np.float32)
    out_c, out_p = np.empty((2, 4, 4), np.float32), np.empty((2, 4, 4), np.float32)
    conv2d_image(x, w, b, out_c, 1, 1)
    conv2d_image.py_func(x, w, b, out_p, 1, 1)
    compiled = conv2d_image.dispatcher      # the compiled loops themselves (calling the module's name adds ~0.2 us)
    np.testing.assert_allclose(out_c, out_p, rtol=1e-5, atol=1e-6)
    return (Benchmark("conv loops, 2x6x6 image, 2 filters 3x3", repeats=repeats)
            .add("interpreted", lambda: conv2d_image.py_func(x, w, b, out_p, 1, 1), baseline=True)
            .add("compiled (Numba)", lambda: compiled(x, w, b, out_c, 1, 1)).run())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    for res, fast in ((gelu_case(args.repeats), "fused (Numba)"), (conv_case(args.repeats), "compiled (Numba)")):
        print(res.table())
        print(f"  {res.name}: the baseline takes {1 / res.ratio(fast):.1f}x the kernel's time\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
