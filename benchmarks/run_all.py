"""Every benchmark of the course in one run: one table, and JSON. This is what `tito bench` runs.

Run: python benchmarks/run_all.py [--quick] [--json PATH] [--only NAME[,NAME...]] [--list] [--strict] [--default-allocator]
Sections (all by default, in this order):
  sparse      CSR x dense against dense NumPy and SciPy, 50-99 % sparsity, batch 1 and 64 (bench_sparse.py)
  bandwidth   batch-1 sparse matvec as a fraction of the memory bandwidth of a streaming copy (bench_sparse.py)
  bytes       a 90 %-pruned layer in CSR against dense (bench_sparse.py)
  pruned_mlp  the digits MLP pruned to 90 %: dense against to_sparse, latency per batch (bench_pruned_mlp.py)
  pytorch     training-step ratios against PyTorch: bench_mlp.py, bench_train_step.py, bench_cnn.py,
              bench_gpt.py (each run as its own process; a script that is absent is reported as such)
Everything runs on one thread; the first four sections are timed by the CPU time of that thread (so
that other processes on a shared machine do not distort a comparison), --wall uses wall-clock time.
The final table lists every figure with its goal; --strict exits with 1
when a goal is missed (by default only an error exits non-zero). Results go to --json PATH (default
benchmarks/results/bench.json).
"""
import os

if __name__ == "__main__":       # one thread everywhere, set before NumPy loads (importing this file changes nothing)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from _versus import add_allocator_flag, tune_allocator_unless   # noqa: E402 (after the path set-up)

SECTIONS = ("sparse", "bandwidth", "bytes", "pruned_mlp", "pytorch")

# (script, arguments for a full run, arguments for --quick)
PYTORCH_BENCHES = (
    ("bench_mlp.py", ["--repeats", "15", "--number", "100"], ["--repeats", "5", "--number", "30"]),
    ("bench_train_step.py", ["--repeats", "15", "--number", "100"], ["--repeats", "5", "--number", "30"]),
    ("bench_cnn.py", ["--repeats", "11"], ["--repeats", "3"]),
    ("bench_gpt.py", ["--repeats", "5", "--number", "2"], ["--repeats", "3", "--number", "1", "--gen-tokens", "40"]),
)
_RATIO = re.compile(r"ratio tinytorch/PyTorch:\s*([0-9.]+)\s*\(goal\s*<=\s*([0-9.]+)\)")
_IMPORT = re.compile(r"^import (\S+):\s*([0-9.]+) ms\s*\(goal < ([0-9.]+) ms\)")
_SPEEDUP = re.compile(r"speed-up ([0-9.]+)x; identical tokens: (\w+)")


def parse_pytorch_output(script: str, text: str) -> list:
    "(label, value, goal text, met) for each ratio line, labelled by the last unindented line above it."
    rows, title = [], script
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("import "):
            title = re.sub(r"\s*\([^)]*\)", "", line.strip())[:70]     # without the parenthesised details
        m = _RATIO.search(line)
        if m:
            value, goal = float(m.group(1)), float(m.group(2))
            rows.append((f"{script}: {title}", value, f"<= {goal:g}", value <= goal))
        m = _IMPORT.search(line)
        if m:
            value, goal = float(m.group(2)), float(m.group(3))
            rows.append((f"{script}: import {m.group(1)} (ms)", value, f"< {goal:g}", value < goal))
        m = _SPEEDUP.search(line)
        if m:
            rows.append((f"{script}: KV-cache generation speed-up", float(m.group(1)), "identical tokens",
                         m.group(2) == "True"))
    return rows


def run_pytorch(quick: bool, default_allocator: bool = False) -> dict:
    out = {}
    for script, full, short in PYTORCH_BENCHES:
        path = HERE / script
        if not path.exists():
            print(f"{script}: not present, skipped", flush=True)
            out[script] = {"status": "absent", "rows": []}
            continue
        cmd = [sys.executable, str(path)] + (short if quick else full) + (["--default-allocator"] if default_allocator else [])
        print(f"$ {' '.join([Path(cmd[0]).name] + cmd[1:])}", flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(r.stdout.rstrip(), flush=True)
        entry = {"status": "ok" if r.returncode == 0 else f"exit {r.returncode}", "seconds": time.perf_counter() - t,
                 "stdout": r.stdout, "rows": parse_pytorch_output(script, r.stdout)}
        if r.returncode != 0:
            print(f"{script} failed (exit {r.returncode}):\n{r.stderr[-2000:]}", flush=True)
            entry["stderr"] = r.stderr[-5000:]
        out[script] = entry
    return out


def machine() -> dict:
    from tinytorch.measurement.benchmarking import machine_info, thread_state
    info = machine_info()
    info["threads"] = thread_state()
    return info


def summary_table(rows: list) -> str:
    width = max([len(r[0]) for r in rows] + [20])
    lines = [f"{'measurement':<{width}}  {'value':>9}  {'goal':<16} status",
             f"{'-' * width}  {'-' * 9}  {'-' * 16} {'-' * 6}"]
    for name, value, goal, met in rows:
        status = "ERROR" if met is None else ("met" if met else "MISSED")
        shown = "-" if value is None else f"{value:9.3f}"
        lines.append(f"{name:<{width}}  {shown:>9}  {goal:<16} {status}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run: fewer rounds, shorter training")
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON (default benchmarks/results/bench.json)")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated sections out of {', '.join(SECTIONS)}")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a goal is missed")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock instead of the CPU time "
                                                            "of the measuring thread")
    add_allocator_flag(parser)
    args = parser.parse_args(argv)
    if args.wall:
        os.environ["TINYTORCH_BENCH_TIMER"] = "wall"
    if args.list:
        for line in __doc__.split("Sections")[1].split("Everything")[0].splitlines()[1:]:
            print(line)
        return 0
    chosen = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"run_all: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2

    import bench_sparse
    tune_allocator_unless(args.default_allocator)       # module 18's opt-in allocator tuning, as every script
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    info = machine()
    clock = "wall-clock time" if args.wall else "CPU time of the measuring thread"
    print(f"tito bench {'(quick) ' if args.quick else ''}— {started}, {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}, NumPy {info['numpy']}; one thread (BLAS {info['threads']['openblas']}); "
          f"sections 'sparse' to 'pruned_mlp' timed by {clock}; 'pytorch' by each script (wall clock)", flush=True)
    report = {"started": started, "quick": args.quick, "timer": "wall" if args.wall else "thread_time",
              "machine": info, "sections": {}, "summary": []}
    summary = []
    for section in chosen:
        print(f"\n== {section} " + "=" * (60 - len(section)), flush=True)
        t = time.perf_counter()
        try:
            if section == "sparse":
                rows = bench_sparse.kernel_table(args.quick)
                bench_sparse.print_kernel_table(rows)
                report["sections"]["sparse"] = rows
                summary += bench_sparse.goals(kernels=rows)
            elif section == "bandwidth":
                bw = bench_sparse.bandwidth(args.quick)
                bench_sparse.print_bandwidth(bw)
                report["sections"]["bandwidth"] = bw
                summary += bench_sparse.goals(bw=bw)
                for r in bw["matvec"]:
                    if r["sparsity"] != 0.9:
                        summary.append((f"batch-1 matvec {r['sparsity']:.0%}, cold, of copy bandwidth",
                                        r["cold_fraction"], "(information)", True))
                    summary.append((f"batch-1 matvec {r['sparsity']:.0%}, hot (in cache), of copy bandwidth",
                                    r["hot_fraction"], "(information)", True))
            elif section == "bytes":
                by = bench_sparse.bytes_table()
                bench_sparse.print_bytes(by)
                report["sections"]["bytes"] = by
                summary += bench_sparse.goals(by=by)
            elif section == "pruned_mlp":
                import bench_pruned_mlp
                rows = bench_pruned_mlp.run(args.quick)
                bench_pruned_mlp.print_rows(rows)
                report["sections"]["pruned_mlp"] = rows
                for r in rows:
                    for label, l in r["latency"].items():
                        summary.append((f"{r['model']}, {label}: dense / to_sparse always", 1 / l["always_vs_dense"],
                                        "(speed-up)", True))
                        summary.append((f"{r['model']}, {label}: auto / dense", l["auto_vs_dense"], "<= 1.10x",
                                        l["auto_vs_dense"] <= 1.10))
                    summary.append((f"{r['model']}: identical predictions, accuracy {r['accuracy']['dense']:.3f}",
                                    r["sparsity"], "sparsity ~0.9", r["identical_predictions"]))
            elif section == "pytorch":
                res = run_pytorch(args.quick, args.default_allocator)
                report["sections"]["pytorch"] = res
                for script, entry in res.items():
                    if entry["status"] == "absent":
                        summary.append((f"{script}: not present", None, "-", True))
                    elif entry["status"] != "ok":
                        summary.append((f"{script}: {entry['status']}", None, "-", None))
                    summary += entry["rows"]
        except Exception as e:                       # noqa: BLE001 -- report the section's error, run the others
            traceback.print_exc()
            report["sections"][section] = {"error": f"{type(e).__name__}: {e}"}
            summary.append((f"{section}: {type(e).__name__}: {e}"[:90], None, "-", None))
        print(f"({section}: {time.perf_counter() - t:.0f} s)", flush=True)

    print(f"\n== summary ({time.perf_counter() - t0:.0f} s) " + "=" * 40)
    print(summary_table(summary))
    report["summary"] = [{"measurement": n, "value": v, "goal": g, "met": m} for n, v, g, m in summary]
    report["seconds"] = time.perf_counter() - t0
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nJSON: {path}")
    errors = any(m is None for *_, m in summary)
    missed = any(m is False for *_, m in summary)
    return 1 if errors or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
