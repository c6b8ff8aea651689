"""tinytorch against PyTorch, side by side, with module 19's `Benchmark` (interleaved rounds with the
order rotated each round, medians, spread): the timing every bench_*.py script here shares."""
from tinytorch.measurement.benchmarking import Benchmark


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


def add_allocator_flag(parser) -> None:
    "--default-allocator: skip tune_allocator() (module 18), which every benchmark calls by default."
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is (by default tune_allocator() from module 18 runs "
                             "first, for both frameworks: they share the process)")


def tune_allocator_unless(default_allocator: bool) -> None:
    """Call module 18's tune_allocator() (process-wide, so PyTorch gets it too) unless asked not to, and say
    which allocator the figures below were measured with."""
    if default_allocator:
        print("  allocator: glibc defaults (--default-allocator)")
        return
    from tinytorch.optimization.acceleration import tune_allocator
    print(f"  allocator: tune_allocator() {'applied' if tune_allocator() else 'not available here'} "
          f"(module 18; --default-allocator to skip)")
