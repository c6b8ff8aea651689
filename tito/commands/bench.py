"""``tito bench [--quick] [--json PATH] [--only NAME[,NAME...]] [--list] [--strict]``.

Runs ``benchmarks/run_all.py`` with this Python, streaming its output: the sparse kernels against dense
NumPy and SciPy (50-99 % sparsity, batch 1 and 64), batch-1 sparse matvec as a fraction of the measured
memory bandwidth, the bytes of a 90 %-pruned layer, the pruned digits MLP dense against ``to_sparse``,
and the training-step ratios against PyTorch of the other ``benchmarks/bench_*.py`` scripts. Everything
runs on one thread, timed by that thread's CPU time (``--wall``: wall-clock time). Prints one table with every figure and its goal and writes JSON (``--json PATH``,
default ``benchmarks/results/bench.json``).

``--quick`` is a short run (fewer rounds, shorter training); ``--only sparse,bytes`` runs some sections
(``--list`` names them). Exit code: 0, or 1 if a section failed (with ``--strict`` also when a goal is
missed), 2 for bad arguments. SciPy and PyTorch are needed for their comparisons (``pip install scipy``).
"""
from __future__ import annotations

import subprocess
import sys
from . import add_command


def register(sub):
    p = add_command(sub, "bench", "run the benchmarks/ suite and print one table (and JSON)", __doc__)
    p.add_argument("--quick", action="store_true", help="a short run: fewer rounds, shorter training")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here "
                                                  "(default benchmarks/results/bench.json)")
    p.add_argument("--only", metavar="NAMES", help="comma-separated sections (see --list)")
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    p.add_argument("--strict", action="store_true", help="exit with 1 when a goal is missed")
    p.add_argument("--wall", action="store_true", help="time with the wall clock, not the measuring thread's CPU time")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    from pathlib import Path
    from ..errors import TitoError

    script = ctx.root / "benchmarks" / "run_all.py"
    if not script.is_file():
        raise TitoError(f"{script} not found: is {ctx.root} the course checkout?", exit_code=2)
    cmd = [sys.executable, str(script)]
    if args.quick:
        cmd.append("--quick")
    if args.json:
        cmd += ["--json", str(Path(args.json).resolve())]
    if args.only:
        cmd += ["--only", args.only]
    if args.list:
        cmd.append("--list")
    if args.strict:
        cmd.append("--strict")
    if args.wall:
        cmd.append("--wall")
    sys.stdout.flush()
    return subprocess.call(cmd, cwd=ctx.root)
