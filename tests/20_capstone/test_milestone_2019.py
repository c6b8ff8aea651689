"""The 2019 sixteen-heads milestone in --fast mode, in a subprocess: its table, gate line, findings and JSON agree
with each other and with what they claim (the gate and the ordering are recomputed from the reported numbers)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "2019_sixteen_heads"
STRATEGIES = ["random", "magnitude", "entropy", "gradient"]


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sixteen")
    weights = tmp_path_factory.mktemp("weights")            # the fast preset is never saved: stays empty
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / f"{NAME}.py"), "--fast", "--out", str(out),
                           "--weights-dir", str(weights)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert (out / f"{NAME}.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / f"{NAME}.json").read_text()), out, weights


def test_gate_line_json_and_exit_code_agree(fast_run):
    proc, result, _, weights = fast_run
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GATE ")]
    assert len(lines) == 1 == len(result["gates"])
    gate = result["gates"][0]
    assert lines[0] == f"GATE {gate['gate']}: {'PASS' if gate['passed'] else 'FAIL'}"
    assert result["name"] == NAME and result["fast"] is True
    assert proc.returncode == (0 if result["passed"] else 1), proc.stderr[-2000:]
    assert f"RESULT {NAME}: {'PASS' if result['passed'] else 'FAIL'}" in proc.stdout
    assert list(weights.iterdir()) == []


def test_the_gate_is_recomputed_from_the_table(fast_run):
    _, result, _, _ = fast_run
    metrics = result["metrics"]
    rows = metrics["table"]
    half = next(r for r in rows if r["strategy"] == "gradient" and r["fraction"] == 0.5)
    base = metrics["unpruned perplexity"]
    assert result["gates"][0]["passed"] == (half["fine_tuned"] <= 1.10 * base + 1e-9)
    assert f"{half['fine_tuned']:.3f}" in result["gates"][0]["gate"]


def test_every_strategy_and_fraction_is_measured_and_printed(fast_run):
    proc, result, out, _ = fast_run
    metrics = result["metrics"]
    rows, runs = metrics["table"], metrics["runs"]
    assert [(r["strategy"], r["fraction"]) for r in rows] == [(s, f) for s in STRATEGIES for f in (0.1, 0.3, 0.5)]
    assert sorted({r["seed"] for r in runs if r["strategy"] == "random"}) == [0, 1, 2] and len(runs) == 18
    heads = metrics["heads"]
    for r in rows:
        assert r["heads_pruned"] == round(r["fraction"] * heads)
        assert all(math.isfinite(r[k]) and r[k] > 1 for k in ("before", "pruned", "fine_tuned"))
        mine = [x for x in runs if x["strategy"] == r["strategy"] and x["fraction"] == r["fraction"]]
        assert r["pruned"] == pytest.approx(sum(x["pruned"] for x in mine) / len(mine))
        assert all(len(x["pruned_heads"]) == r["heads_pruned"] for x in mine)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(r["strategy"])
                and f"{r['heads_pruned']:>3d}/{heads:<3d}" in ln]
        assert len(line) == 1 and f"{r['pruned']:.3f}" in line[0] and f"{r['fine_tuned']:.3f}" in line[0]
    for frac, text in zip((0.1, 0.3, 0.5), metrics["ordering after pruning"]):
        by = {r["strategy"]: r["pruned"] for r in rows if r["fraction"] == frac}
        order = [part.split()[0] for part in text.split(": ", 1)[1].split(" < ")]
        assert order == sorted(STRATEGIES, key=lambda s: by[s]) and text in proc.stdout
    expected = all(o["gradient_best"] and o["both_beat_random"] for o in metrics["ordering checks"])
    assert metrics["ordering as expected"] == expected
    assert ("as measured" if expected else "NOT what was measured here") in proc.stdout
    png = out / f"{NAME}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_the_growth_run_compares_gradient_sensitivity_with_random(fast_run):
    proc, result, _, _ = fast_run
    growth = result["metrics"]["growth"]
    assert list(growth) == ["no growth", "gradient_sensitivity", "random"]
    assert growth["no growth"]["grown"] == []
    for label in ("gradient_sensitivity", "random"):
        g = growth[label]
        assert len(g["grown"]) == 2 and g["heads_on"] == growth["no growth"]["heads_on"] + 2
        assert f"{g['after_fine_tuning']:.3f}" in proc.stdout
    assert "gradient sensitivity vs random growth after equal fine-tuning" in proc.stdout
