"""tinytorch against PyTorch, side by side, with module 19's `Benchmark` (interleaved rounds with the
order rotated each round, medians, spread): the timing every bench_*.py script here shares."""
from tinytorch.optimization.benchmarking import Benchmark


def versus_pytorch(tinytorch_step, pytorch_step, *, repeats: int, number: int, warmup: int = 5,
                   unit: str = "us", digits: int = 1, goal: float | None = None):
    """Time both steps (`number` calls per round, `repeats` rounds), print each framework's median and
    range in `unit` ("us" or "ms") and the median per-round ratio tinytorch/PyTorch; return the ratio.
    Threads are pinned by the caller (environment variables before NumPy is imported)."""
    res = (Benchmark("tinytorch vs PyTorch", repeats=repeats, number=number, warmup=warmup, threads=None)
           .add("PyTorch", pytorch_step, baseline=True).add("tinytorch", tinytorch_step).run())
    scale = 1e6 if unit == "us" else 1e3
    for label, name in (("tinytorch:", "tinytorch"), ("PyTorch:  ", "PyTorch")):
        t = res[name].times
        print(f"  {label} {res[name].median * scale:8.{digits}f} {unit}/step  "
              f"(spread {min(t) * scale:.{digits}f}-{max(t) * scale:.{digits}f})")
    ratio = res.ratio("tinytorch")
    print(f"  ratio tinytorch/PyTorch: {ratio:.2f}" + (f"  (goal <= {goal:.2f})" if goal is not None else ""))
    return ratio
