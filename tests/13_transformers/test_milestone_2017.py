"""The 2017 milestone (a character-level GPT on Tiny Shakespeare) in its fast mode: it prints falling losses,
the unigram baseline and a gate line, exits 0/1 by its gate, and writes the weights (.npz, loadable into a
GPT without pickle), the vocabulary (.json, loadable as a CharTokenizer), the plot (.png) and the results
(.json) into --out."""
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinytorch.core.tokenization import Tokenizer
from tinytorch.core.training import load_checkpoint
from tinytorch.core.transformers import GPT

ROOT = Path(__file__).resolve().parents[2]
NAME = "2017_transformer"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("milestone_2017")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / f"{NAME}.py"), "--fast", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    return proc, out, time.perf_counter() - t


def test_prints_losses_baseline_and_a_gate_line(fast_run):
    proc, out, seconds = fast_run
    assert seconds < 60, f"the fast run took {seconds:.0f} s"
    text = proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    vals = [float(v) for v in re.findall(r"step +\d+ +train [\d.]+ +val ([\d.]+)", text)]
    assert len(vals) >= 3 and vals[-1] < vals[0] - 0.5, text        # validation loss falls
    baseline = float(re.search(r"unigram baseline \(entropy of the training split's characters\): ([\d.]+) nats",
                               text).group(1))
    assert abs(baseline - 3.309) < 0.01                               # Tiny Shakespeare's character entropy
    gate = [line for line in text.splitlines() if line.startswith("GATE ")]
    assert len(gate) == 1 and re.search(r"validation loss [\d.]+ < 2\.20 nats \(unigram baseline 3\.309\): (PASS|FAIL)$",
                                        gate[0]), gate
    passed = gate[0].endswith("PASS")
    assert proc.returncode == (0 if passed else 1), (proc.returncode, text[-2000:])
    assert f"RESULT {NAME}: {'PASS' if passed else 'FAIL'}" in text
    assert "---- sample" in text


def test_writes_results_json(fast_run):
    proc, out, _ = fast_run
    result = json.loads((out / f"{NAME}.json").read_text())
    assert result["name"] == NAME and result["fast"] is True
    metrics = result["metrics"]
    val = metrics["validation loss (nats/char)"]
    assert math.isfinite(val) and val < metrics["unigram baseline (nats/char)"] + 0.5
    assert f"validation loss (nats/char): {val:.4f}" in proc.stdout
    assert metrics["gate: validation loss below"] == 2.2
    assert len(result["gates"]) == 1 and result["gates"][0]["passed"] == (val < 2.2) == result["passed"]


def test_weights_and_vocabulary_reload_into_a_working_model(fast_run):
    _, out, _ = fast_run
    weights, vocab = out / f"{NAME}.npz", out / f"{NAME}_vocab.json"
    with np.load(weights, allow_pickle=False) as z:                    # no pickle anywhere
        assert any(k.endswith("token_embedding.weight") for k in z.files)
    tok = Tokenizer.load(vocab)
    assert tok.vocab_size == 69 and tok.decode(tok.encode("ROMEO:")) == "ROMEO:"
    config = json.loads(vocab.read_text())                            # a plain JSON vocabulary
    assert "chars" in config and len(config["chars"]) == 65
    meta = load_checkpoint(weights, model := GPT(**_config_from(weights)))
    assert meta["config"]["vocab_size"] == tok.vocab_size
    logits = model(np.array([tok.encode("First Citizen:")])).data
    assert logits.shape == (1, 14, 69) and np.isfinite(logits).all()
    text = tok.decode(model.generate(np.array(tok.encode("ROMEO:")), 20, seed=0).tolist())
    assert text.startswith("ROMEO:") and len(text) >= 20


def _config_from(weights: Path) -> dict:
    with np.load(weights, allow_pickle=False) as z:
        meta = json.loads(str(z["__tinytorch__/meta"]))
    return meta["extra"]["config"]


def test_writes_a_png_plot(fast_run):
    _, out, _ = fast_run
    png = out / f"{NAME}.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
