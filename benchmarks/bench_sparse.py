"""Sparse kernels (module 17) against dense NumPy and SciPy, memory bandwidth, and bytes; one thread.

Run: python benchmarks/bench_sparse.py [--quick] [--json PATH]
Three measurements, each with module 19's Benchmark (warm-up, interleaved rounds, medians, per-round
ratios against dense measured side by side), timed in CPU time of the (single) thread that runs
everything, unless TINYTORCH_BENCH_TIMER=wall:
  kernels    y = x @ W.T for a pruned 1024x1024 float32 W at 50/80/90/95/99 % sparsity, batch 1 and 64:
             dense NumPy (BLAS), SciPy CSR, tinytorch's CSR kernel, and the dispatcher's choice ("auto").
             Goals: >= 2.5x dense and >= 1.3x SciPy at 90 %, batch 64; >= 4x dense at 95 %, batch 64;
             "auto" never more than 10 % slower than dense.
  bandwidth  batch-1 sparse matvec at 90 % and 95 % sparsity as a fraction of this machine's memory
             bandwidth, measured in the same run by a streaming copy (numpy.copyto of 128 MiB; bytes read
             + written). "cold": the matvec cycles through enough copies of the matrix to exceed the
             last-level cache, so it streams from memory like the copy; "hot": one matrix, in cache.
             Goal: cold, 90 %: >= 50 %.
  bytes      a 90 %-pruned 1024x1024 float32 layer in CSR against dense. Goal: <= 0.2.
SciPy is a benchmark-only dependency (tinytorch does not import it).
"""
import os

if __name__ == "__main__":       # one thread everywhere, set before NumPy loads (importing this file changes nothing)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # run from a checkout without installing

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
SIZE = 1024


def pruned_weight(sparsity: float, seed: int = 0, size: int = SIZE) -> np.ndarray:
    "A random normal (size, size) float32 weight with its smallest `sparsity` fraction set to zero."
    w = np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    k = int(round(sparsity * w.size))
    if k:
        cut = np.partition(np.abs(w).ravel(), k - 1)[k - 1]
        w[np.abs(w) <= cut] = 0
    return w


def timer():
    """The clock of every measurement: CPU time of this thread (everything measured runs on it: one BLAS
    thread, serial kernels), so that other processes on a shared machine cannot inflate one side of a
    comparison; TINYTORCH_BENCH_TIMER=wall uses wall-clock time instead."""
    return time.perf_counter if os.environ.get("TINYTORCH_BENCH_TIMER") == "wall" else time.thread_time


def _settings(quick: bool) -> dict:
    return dict(repeats=5 if quick else 15, warmup=2, min_time=0.002 if quick else 0.005, timer=timer())


def kernel_table(quick: bool = False, sparsities=SPARSITIES, batches=(1, 64)) -> list:
    "One row per (sparsity, batch): medians and per-round ratios of dense, SciPy, tinytorch and auto."
    import scipy.sparse as sps
    from tinytorch.measurement.benchmarking import Benchmark
    from tinytorch.optimization.sparse import CSRMatrix, calibrate, choose_format, crossover_density, csr_linear_forward

    rows = []
    x64 = np.random.default_rng(1).standard_normal((64, SIZE)).astype(np.float32)
    cal = calibrate([(SIZE, SIZE, b) for b in batches])               # measured now, for this run
    for batch in batches:
        crossover = crossover_density(SIZE, SIZE, batch, cal)
        for sparsity in sparsities:
            w = pruned_weight(sparsity)
            c = CSRMatrix.from_dense(w)
            s = sps.csr_matrix(w)
            if batch == 1:
                x = x64[0].copy()
                x2 = x.reshape(1, -1)
                dense = lambda: w @ x
                scipy_ = lambda: s @ x
                ref = w @ x
            else:
                x = x2 = x64[:batch]
                dense = lambda: x @ w.T
                scipy_ = lambda: s @ x.T                          # (out, B): the same numbers, transposed
                ref = x @ w.T
            ours = lambda: csr_linear_forward(c.indptr, c.indices, c.data, x2)
            choice = choose_format(c.density, SIZE, SIZE, batch, cal)
            auto = ours if choice == "sparse" else dense
            np.testing.assert_allclose(ours()[0].reshape(ref.shape), ref, rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(np.asarray(scipy_()).T.reshape(ref.shape) if batch > 1 else scipy_(), ref,
                                       rtol=1e-3, atol=1e-3)
            res = Benchmark(f"{sparsity:.0%} sparse, batch {batch}", **_settings(quick)) \
                .add("dense", dense).add("scipy", scipy_).add("tinytorch", ours).add("auto", auto).run()
            rows.append({"sparsity": sparsity, "batch": batch, "density": c.density, "crossover": crossover,
                         "auto_choice": choice,
                         "dense_s": res["dense"].median, "scipy_s": res["scipy"].median,
                         "tinytorch_s": res["tinytorch"].median, "auto_s": res["auto"].median,
                         "speedup_vs_dense": 1 / res.ratio("tinytorch"),
                         "speedup_vs_scipy": res.ratio("scipy") / res.ratio("tinytorch"),
                         "auto_vs_dense": res.ratio("auto"),
                         "tinytorch_vs_dense_q1_q3": [res["tinytorch"].ratio["q1"], res["tinytorch"].ratio["q3"]],
                         "result": res.to_dict()})
    return rows


def print_kernel_table(rows: list) -> None:
    print(f"y = x @ W.T, W {SIZE}x{SIZE} float32 pruned by magnitude, one thread; medians of interleaved rounds")
    print(f"  {'sparsity':>8} {'batch':>5} {'dense':>10} {'SciPy':>10} {'tinytorch':>10} {'auto':>10}   "
          f"{'vs dense':>8} {'vs SciPy':>8} {'auto/dense':>10}  auto picks (crossover)")
    for r in rows:
        unit, scale = ("ms", 1e3) if r["batch"] > 1 else ("us", 1e6)
        print(f"  {r['sparsity']:8.0%} {r['batch']:5d} "
              + " ".join(f"{r[k] * scale:7.3f} {unit}" if unit == "ms" else f"{r[k] * scale:7.1f} {unit}"
                         for k in ("dense_s", "scipy_s", "tinytorch_s", "auto_s"))
              + f"   {r['speedup_vs_dense']:7.2f}x {r['speedup_vs_scipy']:7.2f}x {r['auto_vs_dense']:9.2f}x"
              + f"  {r['auto_choice']} ({r['crossover']:.3f})")


def bandwidth(quick: bool = False, sparsities=(0.9, 0.95)) -> dict:
    "Streaming-copy bandwidth and batch-1 sparse matvec (cold and hot) as a fraction of it."
    from tinytorch.measurement.benchmarking import Benchmark
    from tinytorch.optimization.sparse import CSRMatrix, csr_linear_forward

    n = (64 if quick else 128) * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    res = Benchmark("streaming copy", **_settings(quick)).add("copy", lambda: np.copyto(dst, src)).run()
    copy_bw = 2 * src.nbytes / res["copy"].median                       # bytes read + bytes written
    del src, dst
    x = np.random.default_rng(2).standard_normal((1, SIZE)).astype(np.float32)
    rows = []
    for sparsity in sparsities:
        c = CSRMatrix.from_dense(pruned_weight(sparsity))
        moved = c.nbytes + 2 * SIZE * 4                                  # the matrix, x and y
        k = max(2, int(np.ceil(96 * 2**20 / c.nbytes)))                  # > 3x a 32 MiB last-level cache
        copies = [(c.indptr.copy(), c.indices.copy(), c.data.copy()) for _ in range(k)]
        state = [0]

        def cold():
            m = copies[state[0]]
            state[0] = (state[0] + 1) % k
            return csr_linear_forward(m[0], m[1], m[2], x)

        hot = lambda: csr_linear_forward(c.indptr, c.indices, c.data, x)
        r = Benchmark(f"matvec {sparsity:.0%}", **_settings(quick)).add("cold", cold).add("hot", hot).run()
        t_cold, t_hot = r["cold"].median, r["hot"].median
        rows.append({"sparsity": sparsity, "bytes_per_call": moved, "copies_cycled": k,
                     "cold_s": t_cold, "hot_s": t_hot,
                     "cold_GBps": moved / t_cold / 1e9, "hot_GBps": moved / t_hot / 1e9,
                     "cold_fraction": moved / t_cold / copy_bw, "hot_fraction": moved / t_hot / copy_bw})
    return {"copy_GBps": copy_bw / 1e9, "copy_bytes": 2 * n * 4, "matvec": rows}


def print_bandwidth(b: dict) -> None:
    print(f"memory bandwidth by streaming copy (numpy.copyto, {b['copy_bytes'] / 2**21:.0f} MiB each way, "
          f"read + write counted): {b['copy_GBps']:.1f} GB/s")
    for r in b["matvec"]:
        print(f"  batch-1 sparse matvec at {r['sparsity']:.0%}: {r['bytes_per_call'] / 1e3:.0f} kB per call; "
              f"cold (cycling {r['copies_cycled']} copies) {r['cold_s'] * 1e6:.1f} us = {r['cold_GBps']:.1f} GB/s "
              f"= {r['cold_fraction']:.0%} of copy; hot (in cache) {r['hot_s'] * 1e6:.1f} us = "
              f"{r['hot_GBps']:.1f} GB/s = {r['hot_fraction']:.0%}")


def bytes_table() -> dict:
    "Bytes of a 90 %-pruned 1024x1024 float32 layer: dense, tinytorch CSR (and SparseLinear), SciPy CSR."
    import scipy.sparse as sps
    from tinytorch.core.layers import Linear
    from tinytorch.optimization.sparse import CSRMatrix, SparseLinear

    w = pruned_weight(0.9)
    c = CSRMatrix.from_dense(w)
    lin = Linear(SIZE, SIZE, bias=False)
    lin.weight.data[...] = w
    sl = SparseLinear.from_linear(lin)
    s = sps.csr_matrix(w)
    return {"dense_bytes": w.nbytes, "csr_bytes": c.nbytes, "sparse_linear_bytes": sl.nbytes,
            "scipy_bytes": s.data.nbytes + s.indices.nbytes + s.indptr.nbytes, "ratio": c.nbytes / w.nbytes,
            "dtypes": f"{c.data.dtype} values, {c.indices.dtype} indices, {c.indptr.dtype} offsets", "nnz": c.nnz}


def print_bytes(b: dict) -> None:
    print(f"90 %-pruned {SIZE}x{SIZE} float32 layer: dense {b['dense_bytes']:,} B, CSR {b['csr_bytes']:,} B "
          f"({b['dtypes']}; {b['nnz']:,} stored) = {b['ratio']:.3f} of dense; SciPy CSR {b['scipy_bytes']:,} B "
          f"= {b['scipy_bytes'] / b['dense_bytes']:.3f}")


def goals(kernels=None, bw=None, by=None) -> list:
    "The issue's goals as (name, value, goal text, met)."
    out = []
    if kernels:
        at = {(r["sparsity"], r["batch"]): r for r in kernels}
        if (0.9, 64) in at:
            out.append(("CSR vs dense, 90 %, batch 64", at[0.9, 64]["speedup_vs_dense"], ">= 2.5x",
                        at[0.9, 64]["speedup_vs_dense"] >= 2.5))
            out.append(("CSR vs SciPy, 90 %, batch 64", at[0.9, 64]["speedup_vs_scipy"], ">= 1.3x",
                        at[0.9, 64]["speedup_vs_scipy"] >= 1.3))
        if (0.95, 64) in at:
            out.append(("CSR vs dense, 95 %, batch 64", at[0.95, 64]["speedup_vs_dense"], ">= 4x",
                        at[0.95, 64]["speedup_vs_dense"] >= 4))
        worst = max(kernels, key=lambda r: r["auto_vs_dense"])
        out.append((f"auto / dense, worst ({worst['sparsity']:.0%}, batch {worst['batch']})", worst["auto_vs_dense"],
                    "<= 1.10x", worst["auto_vs_dense"] <= 1.10))
    if bw:
        r = next((r for r in bw["matvec"] if r["sparsity"] == 0.9), None)
        if r:
            out.append(("batch-1 matvec 90 %, cold, of copy bandwidth", r["cold_fraction"], ">= 50 %",
                        r["cold_fraction"] >= 0.5))
    if by:
        out.append(("CSR / dense bytes, 90 % pruned", by["ratio"], "<= 0.2", by["ratio"] <= 0.2))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    kernels = kernel_table(args.quick)
    print_kernel_table(kernels)
    bw = bandwidth(args.quick)
    print_bandwidth(bw)
    by = bytes_table()
    print_bytes(by)
    for name, value, goal, met in goals(kernels, bw, by):
        print(f"  {name:<48} {value:8.3f}  goal {goal:<9} {'met' if met else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"kernels": kernels, "bandwidth": bw, "bytes": by}, indent=1))


if __name__ == "__main__":
    main()
