"""The 2015 pruning milestone runs (--fast) and reports what it measured: every gate line matches the JSON,
each gate's verdict follows from the metrics printed, the exit code follows the gates, and the plot and the
pipeline report exist. (The full run, whose gates must pass, is run by tests/milestones.)"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_milestone_2015_fast_run_reports_its_gates(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / "2015_pruning.py"), "--fast", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    gates = [line for line in out.splitlines() if line.startswith("GATE ")]
    result = json.loads((tmp_path / "2015_pruning.json").read_text())
    assert result["name"] == "2015_pruning" and result["fast"] is True
    assert len(gates) == len(result["gates"]) == 3
    for line, gate in zip(gates, result["gates"]):
        assert line == f"GATE {gate['gate']}: {'PASS' if gate['passed'] else 'FAIL'}"
    m = result["metrics"]
    dense, pruned = m["dense held-out accuracy per seed"], m["pruned held-out accuracy per seed"]
    assert len(dense) == len(pruned) == 3 and all(0.5 < a <= 1 for a in dense + pruned)
    assert f"dense held-out accuracy (mean): {m['dense held-out accuracy (mean)']:.4f}" in out
    assert abs(m["dense held-out accuracy (mean)"] - np.mean(dense)) < 1e-4
    assert result["gates"][0]["passed"] == (m["weight sparsity"] >= 0.899)
    assert abs(m["weight sparsity"] - 0.9) < 0.001 and abs(m["weights kept"] - 0.1 * (64 * 128 + 128 * 10)) < 3
    assert result["gates"][1]["passed"] == (np.mean(pruned) >= np.mean(dense) - 0.01)
    alone, kd = m["student alone held-out accuracy per seed"], m["distilled student held-out accuracy per seed"]
    assert result["gates"][2]["passed"] == (np.mean(kd) > np.mean(alone))
    assert m["sweep sparsities"][0] == 0 and m["sweep sparsities"][-1] == 0.99
    before, after = m["sweep accuracy after pruning"], m["sweep accuracy after fine-tuning"]
    assert len(before) == len(after) == len(m["sweep sparsities"]) and before[-1] < before[0]
    assert result["passed"] == all(g["passed"] for g in result["gates"])
    assert proc.returncode == (0 if result["passed"] else 1)
    assert f"RESULT 2015_pruning: {'PASS' if result['passed'] else 'FAIL'}" in out
    png = tmp_path / "2015_pruning.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pipeline = json.loads((tmp_path / "2015_pruning_pipeline.json").read_text())
    assert [s["stage"] for s in pipeline["stages"]][:3] == ["dense", "pruned", "fine-tuned"]
