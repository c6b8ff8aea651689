"""`tito experiment`: a bad device (or any bad field) is a usage error naming it; a test-mode run prints every stage,
shows a progress bar and writes its JSON."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tito(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tito.cli", "--root", str(ROOT), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_a_device_other_than_the_cpu_is_a_clear_usage_error(tmp_path):
    proc = tito("experiment", "--device", "cuda", "--test-mode", "--output-dir", tmp_path)
    assert proc.returncode == 2
    assert "device 'cuda' is not available" in proc.stderr and "CPU only" in proc.stderr
    assert list(tmp_path.iterdir()) == []                       # failed before any work


def test_bad_fields_are_usage_errors_naming_the_value(tmp_path):
    proc = tito("experiment", "--strategy", "taylor", "--test-mode", "--output-dir", tmp_path)
    assert proc.returncode == 2 and "unknown strategy 'taylor'; known: 'random', 'magnitude'" in proc.stderr
    proc = tito("experiment", "--pruning-percent", "1.5", "--test-mode", "--output-dir", tmp_path)
    assert proc.returncode == 2 and "pruning_percent must be a fraction in [0, 1)" in proc.stderr and "1.5" in proc.stderr


def test_a_test_mode_run_prints_every_stage_and_writes_its_results(tmp_path):
    proc = tito("experiment", "--strategy", "entropy", "--pruning-percent", "0.3", "--growth-strategy", "random",
                "--test-mode", "--seed", "1", "--output-dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for s in summary["stages"]:
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{s['stage']:<22s}")]
        assert len(line) == 1 and f"{s['loss']:8.3f}" in line[0] and f"{s['perplexity']:12.3f}" in line[0]
    assert [s["stage"] for s in summary["stages"]] == ["baseline", "pruned", "fine-tuned", "grown",
                                                       "grown + fine-tuned"]
    assert f"pruned (entropy): {summary['pruned_heads']}" in proc.stdout
    assert summary["config"]["strategy"] == "entropy" and summary["config"]["device"] == "cpu"
    assert "experiment: 100%" in proc.stderr and "11/11" in proc.stderr            # the tqdm bar, on stderr
    assert (tmp_path / "out" / "progress.json").is_file()


def test_list_models_names_the_presets():
    proc = tito("experiment", "--list-models")
    assert proc.returncode == 0
    for name in ("tinygpt-2017", "tinygpt-4x4", "tinygpt-test"):
        assert name in proc.stdout
    assert "4 layers x 64 wide, 4 heads" in proc.stdout
