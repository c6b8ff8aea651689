"""The benchmarks/ suite behind `tito bench`: its parsing of the PyTorch comparison scripts, its goals, its
command line, and a short real run of one section writing JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402
import bench_sparse  # noqa: E402

CNN_OUTPUT = """CNN on 8x8 images, batch 64, forward + backward, 1 thread (21 rounds of 6 steps)
  tinytorch:    6.710 ms/step  (spread 5.672-7.765)
  PyTorch:      5.328 ms/step  (spread 4.699-5.339)
  ratio tinytorch/PyTorch: 1.26  (goal <= 3.00)
CNN on 28x28 images, batch 64, forward + backward, 1 thread (21 rounds of 1 steps)
  ratio tinytorch/PyTorch: 3.18  (goal <= 3.00)
import tinytorch: 120 ms  (goal < 500 ms)
  speed-up 5.6x; identical tokens: False
"""


def test_the_ratios_of_the_pytorch_scripts_are_parsed_with_their_titles_and_goals():
    rows = run_all.parse_pytorch_output("bench_cnn.py", CNN_OUTPUT)
    assert rows == [
        ("bench_cnn.py: CNN on 8x8 images, batch 64, forward + backward, 1 thread", 1.26, "<= 3", True),
        ("bench_cnn.py: CNN on 28x28 images, batch 64, forward + backward, 1 thread", 3.18, "<= 3", False),
        ("bench_cnn.py: import tinytorch (ms)", 120.0, "< 500", True),
        ("bench_cnn.py: KV-cache generation speed-up", 5.6, "identical tokens", False),
    ]


def test_goals_are_checked_against_the_issue_thresholds():
    kernels = [{"sparsity": 0.9, "batch": 64, "speedup_vs_dense": 2.6, "speedup_vs_scipy": 1.2, "auto_vs_dense": 1.0},
               {"sparsity": 0.95, "batch": 64, "speedup_vs_dense": 3.9, "speedup_vs_scipy": 2.0, "auto_vs_dense": 1.12}]
    bw = {"matvec": [{"sparsity": 0.9, "cold_fraction": 0.55}]}
    got = {name: met for name, _, _, met in bench_sparse.goals(kernels, bw, {"ratio": 0.21})}
    assert got == {"CSR vs dense, 90 %, batch 64": True, "CSR vs SciPy, 90 %, batch 64": False,
                   "CSR vs dense, 95 %, batch 64": False, "auto / dense, worst (95%, batch 64)": False,
                   "batch-1 matvec 90 %, cold, of copy bandwidth": True, "CSR / dense bytes, 90 % pruned": False}


def test_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tito.cli", "bench", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "pruned_mlp" in r.stdout and "bandwidth" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "sparse,nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown section(s) nope" in r.stderr


def test_a_short_run_of_one_section_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "tito.cli", "bench", "--quick", "--only", "bytes", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CSR / dense bytes, 90 % pruned" in r.stdout and "met" in r.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["timer"] == "thread_time"
    assert 0.14 < data["sections"]["bytes"]["ratio"] <= 0.2
    assert data["summary"][0]["measurement"] == "CSR / dense bytes, 90 % pruned" and data["summary"][0]["met"] is True
