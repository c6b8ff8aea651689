"""The milestones run and pass their gates (full runs: the gates are what a student sees), and
`tito milestone` lists and runs them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATED = ["1957_perceptron", "1969_xor", "1986_mlp", "1998_cnn", "2015_pruning"]


def run_script(name, out, *extra):
    return subprocess.run([sys.executable, str(ROOT / "milestones" / f"{name}.py"), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("name", GATED)
def test_milestone_full_run_passes_its_gates(name, tmp_path):
    proc = run_script(name, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    gates = [line for line in proc.stdout.splitlines() if line.startswith("GATE ")]
    assert gates and all(line.endswith(": PASS") for line in gates), proc.stdout
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["name"] == name and result["passed"] is True and result["fast"] is False
    assert len(result["gates"]) == len(gates)
    png = tmp_path / f"{name}.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlp_milestone_reports_held_out_accuracy_it_measured(tmp_path):
    proc = run_script("1986_mlp", tmp_path, "--fast")
    result = json.loads((tmp_path / "1986_mlp.json").read_text())
    acc = result["metrics"]["held-out accuracy"]
    assert f"held-out accuracy: {acc:.4f}" in proc.stdout
    assert result["gates"][0]["passed"] == (acc >= 0.97)
    assert proc.returncode == (0 if acc >= 0.97 else 1)


def test_single_layer_cannot_learn_xor(tmp_path):
    run_script("1969_xor", tmp_path, "--fast")
    metrics = json.loads((tmp_path / "1969_xor.json").read_text())["metrics"]
    assert max(metrics["single layer accuracy per seed"]) <= 0.75
    assert min(metrics["hidden layer accuracy per seed"]) == 1.0


def tito(*args):
    return subprocess.run([sys.executable, "-m", "tito.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_tito_milestone_list_shows_every_script():
    proc = tito("milestone", "list")
    assert proc.returncode == 0
    for path in (ROOT / "milestones").glob("[0-9][0-9][0-9][0-9]_*.py"):
        assert path.stem in proc.stdout


def test_tito_milestone_run_by_year(tmp_path):
    proc = tito("milestone", "run", "1957", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT 1957_perceptron: PASS" in proc.stdout
    assert (tmp_path / "1957_perceptron.json").is_file()


def test_tito_milestone_unknown_name_is_a_clear_error():
    proc = tito("milestone", "run", "1066")
    assert proc.returncode == 2
    assert "'1066' is not a milestone" in proc.stderr and "1986_mlp" in proc.stderr
