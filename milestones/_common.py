"""Shared plumbing of the milestone scripts: command line, result files, plots.

Every milestone is a script `milestones/YYYY_name.py` whose module docstring's first line is its
title. It accepts `--fast` (a shorter run for tests; the gates are what the full run prints) and
`--out DIR` (default `milestones/results/`), prints its results and one `GATE ... PASS|FAIL` line per
gate, writes `DIR/YYYY_name.json` (read by the course book) and its plots, and exits 1 when a gate fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the course's data sets for tinytorch's loaders, which never guess the checkout (module 08): a script of this
# checkout names its own datasets/ folder unless the environment already names one
os.environ.setdefault("TINYTORCH_DATASETS", str(HERE.parent / "datasets"))


class Milestone:
    "Collects metrics and gates of one run and writes them out."

    def __init__(self, script: str, description: str | None = None):
        self.name = Path(script).stem
        doc = description or ""
        self.title = doc.strip().splitlines()[0] if doc.strip() else self.name
        parser = argparse.ArgumentParser(description=self.title)
        parser.add_argument("--fast", action="store_true", help="a short run for tests")
        parser.add_argument("--out", default=str(HERE / "results"), help="where results and plots go")
        parser.add_argument("--seed", type=int, default=0)
        self.parser = parser
        self.metrics: dict = {}
        self.gates: list = []
        self.start = time.perf_counter()

    def parse_args(self, argv=None):
        self.args = self.parser.parse_args(argv)
        self.out = Path(self.args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MPLBACKEND", "Agg")
        print(f"== {self.title}" + ("  [fast mode]" if self.args.fast else ""))
        return self.args

    def metric(self, key: str, value, fmt: str = "{}"):
        self.metrics[key] = value
        print(f"  {key}: {fmt.format(value)}")

    def gate(self, description: str, passed: bool):
        self.gates.append({"gate": description, "passed": bool(passed)})
        print(f"GATE {description}: {'PASS' if passed else 'FAIL'}")

    def finish(self) -> int:
        passed = all(g["passed"] for g in self.gates)
        seconds = time.perf_counter() - self.start
        result = {"name": self.name, "title": self.title, "fast": bool(self.args.fast),
                  "seconds": round(seconds, 2), "metrics": self.metrics, "gates": self.gates,
                  "passed": passed}
        path = self.out / f"{self.name}.json"
        fd, tmp = tempfile.mkstemp(dir=self.out, prefix=f".{self.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2, default=float)
        os.replace(tmp, path)
        print(f"  time: {seconds:.1f} s; results: {path}")
        print(f"RESULT {self.name}: {'PASS' if passed else 'FAIL'}")
        return 0 if passed else 1

    def plot_curves(self, curves: dict, filename: str, title: str, xlabel: str = "epoch"):
        "Save line plots: curves maps a panel name to {label: list of values}."
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
        for ax, (panel, lines) in zip(axes[0], curves.items()):
            for label, values in lines.items():
                ax.plot(range(1, len(values) + 1), values, label=label)
            ax.set_title(panel)
            ax.set_xlabel(xlabel)
            ax.legend()
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        path = self.out / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(f"  plot: {path}")
        return path


def add_repo_to_path():
    "Let a milestone run from a checkout without installing the package."
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
