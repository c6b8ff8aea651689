"""The 2018 MLPerf milestone in --fast mode, in a subprocess: its table, its gate lines and its JSON agree with
each other and with what they claim (the gates are recomputed from the reported measurements)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "2018_mlperf"
STAGES = ["dense float32", "dense int8 PTQ per-channel", "dense int8 PTQ per-tensor", "pruned 90% + fine-tuned",
          "distilled", "int8 (final)"]


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlperf")
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / f"{NAME}.py"), "--fast", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert (out / f"{NAME}.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / f"{NAME}.json").read_text()), out


def test_gate_lines_json_and_exit_code_agree(fast_run):
    proc, result, _ = fast_run
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GATE ")]
    assert len(lines) == 6 == len(result["gates"])
    for line, gate in zip(lines, result["gates"]):
        assert line == f"GATE {gate['gate']}: {'PASS' if gate['passed'] else 'FAIL'}"
    assert result["name"] == NAME and result["fast"] is True
    assert result["passed"] == all(g["passed"] for g in result["gates"])
    assert proc.returncode == (0 if result["passed"] else 1), proc.stderr[-2000:]
    assert f"RESULT {NAME}: {'PASS' if result['passed'] else 'FAIL'}" in proc.stdout


def test_every_stage_is_measured_and_printed(fast_run):
    proc, result, out = fast_run
    rows = result["metrics"]["stages"]
    assert [(r["model"], r["stage"]) for r in rows] == [(k, s) for k in ("MLP", "CNN") for s in STAGES]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["bytes"] > 0 and r["latency_ms"] > 0
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{r['model']:<5} {r['stage']:<28}")]
        assert len(line) == 1, r["stage"]
        assert f"{r['accuracy']:.4f}" in line[0] and f"{r['bytes']:,}" in line[0] and f"{r['latency_ms']:.3f}" in line[0]
    png = out / f"{NAME}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_gates_are_recomputed_from_the_measurements(fast_run):
    _, result, _ = fast_run
    rows, gates, metrics = result["metrics"]["stages"], result["gates"], result["metrics"]
    for i, kind in enumerate(("MLP", "CNN")):
        by = {r["stage"]: r for r in rows if r["model"] == kind}
        dense, ptq, final = by["dense float32"], by["dense int8 PTQ per-channel"], by["int8 (final)"]
        ptq_gate, size_gate, acc_gate = gates[3 * i: 3 * i + 3]
        assert ptq_gate["passed"] == (100 * (dense["accuracy"] - ptq["accuracy"]) <= 0.5 + 1e-9)
        assert size_gate["passed"] == (dense["bytes"] / final["bytes"] >= 10.0)
        assert acc_gate["passed"] == (100 * (dense["accuracy"] - final["accuracy"]) <= 1.5 + 1e-9)
        assert metrics[f"{kind} final bytes"] == final["bytes"] and metrics[f"{kind} dense bytes"] == dense["bytes"]
        # the stored sizes follow from the storage: int8 dense is about a quarter, the final model
        # (90 % pruned, int8 values with compact indices) at least ten times smaller in any run
        assert 0.25 < ptq["bytes"] / dense["bytes"] < 0.27
        assert dense["bytes"] / final["bytes"] >= 10.0 and size_gate["passed"]
        assert "int8 CSR per-channel" in final["storage"] and "float32 CSR" in by["distilled"]["storage"]


def test_float_sizes_are_exact_parameter_bytes(fast_run):
    _, result, _ = fast_run
    dense = {r["model"]: r["bytes"] for r in result["metrics"]["stages"] if r["stage"] == "dense float32"}
    mlp = 64 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    cnn = 16 * 9 + 16 + 32 * 16 * 9 + 32 + 512 * 64 + 64 + 64 * 10 + 10
    assert dense == {"MLP": 4 * mlp, "CNN": 4 * cnn}


def test_unknown_arguments_are_refused():
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / f"{NAME}.py"), "--fastest"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and re.search(r"unrecognized arguments: --fastest", proc.stderr)
