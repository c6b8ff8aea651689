"""The head-pruning research workflow of issue 16: prune -> fine-tune cycles, any text file as data, saved and
reloaded pruned models (masks, removed heads, the weights to regrow from), resuming a run, reproducible presets
(fixed steps), outputs outside the checkout, left-padded batched generation, and `tito experiment
--max-cycles 2 --dataset FILE` end to end in test mode."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinytorch import experiments as ex
from tinytorch.core.autograd import no_grad
from tinytorch.experiments import (ExperimentConfig, generate_batch, generate_text, load_model, run_experiment,
                                   save_model, text_split)
from tinytorch.optimization.compression import grow_heads, head_alive, prune_heads, pruned_heads

ROOT = Path(__file__).resolve().parents[2]
LINES = ["The quick brown fox jumps over the lazy dog.", "Über naïve cafés, 東京 and 42 numbers!",
         "A stitch in time saves nine; all that glitters is not gold.", "To err is human, to forgive divine."]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    rng = np.random.default_rng(0)
    path.write_text("\n".join(LINES[i] for i in rng.integers(0, len(LINES), 400)), encoding="utf-8")
    return path


def outputs(model, ids):
    with no_grad():
        return model(ids).data


def test_a_text_file_is_split_deterministically_and_bad_data_is_named(corpus, tmp_path):
    tok, train, val = text_split(str(corpus))
    text = corpus.read_text(encoding="utf-8")
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert tok.decode(train[:20]) == text[:20]
    tok2, train2, val2 = text_split(str(corpus), tok)
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    with pytest.raises(ValueError, match="not UTF-8 text: byte 3"):
        text_split(str(bad))
    with pytest.raises(ValueError, match="'nowhere.txt' is neither a known data set"):
        ExperimentConfig(dataset="nowhere.txt")
    for kwargs, message in ((dict(max_cycles=0), r"max_cycles must be a positive integer \(>= 1\), got 0"),
                            (dict(weights=str(tmp_path / "none.npz")), "weights '.*none.npz' is neither"),
                            (dict(resume=True), "resume=True continues the run saved in output_dir"),
                            (dict(resume="yes"), "resume must be True or False")):
        with pytest.raises(ValueError, match=message):
            ExperimentConfig(**kwargs)


def test_pruned_models_save_and_load_with_masks_removed_heads_and_regrowth(tmp_path):
    model, tok, _ = ex.load_or_train_tinygpt("tinygpt-test", log=None)
    ids = np.array([tok.encode("ROMEO: what say you")])
    prune_heads(model, [(0, 1), (1, 2)])                            # by mask
    prune_heads(model, [(0, 3)], physical=True)                     # removes (0, 1), (1, 2), (0, 3)
    prune_heads(model, [(1, 0)])                                    # by mask again, after the physical prune
    path = save_model(tmp_path / "pruned", model, tok, note="x")
    assert path.name == "pruned.npz" and sorted(p.name for p in tmp_path.iterdir()) == ["pruned.npz"]
    with np.load(path, allow_pickle=False) as z:                    # plain arrays, no pickle
        assert all(z[k].dtype != object for k in z.files)
    back, tok2, extra = load_model(path)
    assert extra == {"note": "x"} and tok2.get_vocab() == tok.get_vocab()
    assert np.array_equal(head_alive(back), head_alive(model)) and pruned_heads(back) == pruned_heads(model)
    assert [b.attn.num_heads for b in back.blocks] == [b.attn.num_heads for b in model.blocks] == [2, 3]
    np.testing.assert_array_equal(outputs(back, ids), outputs(model, ids))
    # fine-tuning the reloaded model keeps pruned heads off; regrowing from the kept weights works after a reload
    assert back.blocks[1].attn.q_proj.weight.mask is not None
    g1 = grow_heads(model, 3, "balanced", init="old")
    g2 = grow_heads(back, 3, "balanced", init="old")
    assert g1 == g2
    np.testing.assert_array_equal(outputs(back, ids), outputs(model, ids))


def test_presets_train_a_fixed_number_of_steps_reproducibly():
    assert all("budget_s" not in p for p in ex.TINYGPT_PRESETS.values())
    cfg = ex.tinygpt_preset("tinygpt-test")
    tok, train, val = ex.shakespeare_split()
    a, b = ex.build_tinygpt(cfg, tok.vocab_size, seed=5), ex.build_tinygpt(cfg, tok.vocab_size, seed=5)
    ra = ex.train_tinygpt(a, cfg, train, val, steps=12, seed=5, log=None)
    ex.train_tinygpt(b, cfg, train, val, steps=12, seed=5, log=None)
    assert ra["steps"] == 12
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(pa.data, pb.data), n


def test_the_package_never_reads_or_writes_the_checkout(monkeypatch, tmp_path):
    # a path to the checkout's milestones/ folder ("milestones", milestones/...), not PyTorch's
    # MultiStepLR(milestones=...) argument
    path_like = re.compile(r"""["'/\\]milestones\b|milestones[/\\]""")
    for f in (ROOT / "tinytorch").rglob("*.py"):
        assert not path_like.search(f.read_text(encoding="utf-8")), f
    monkeypatch.delenv("TINYTORCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ex.default_weights_dir() == tmp_path / "tinytorch" / "weights"
    # tito experiment's default folder is ignored by git (read from .gitignore, which the student copy
    # also has, so this holds without git)
    ignored = [ln.strip().rstrip("/") for ln in (ROOT / ".gitignore").read_text().splitlines()]
    assert "experiment_results" in ignored or "/experiment_results" in ignored


def test_cycles_save_the_model_and_resume_to_the_same_result(corpus, tmp_path):
    base = dict(strategy="gradient", pruning_percent=0.25, test_mode=True, seed=1, dataset=str(corpus))
    model, tok, full = run_experiment(ExperimentConfig(**base, max_cycles=2, output_dir=str(tmp_path / "full")))
    stages = [s["stage"] for s in full["stages"]]
    assert stages == ["baseline", "cycle 1 pruned", "cycle 1 fine-tuned", "cycle 2 pruned", "cycle 2 fine-tuned"]
    assert [c["heads_on"] for c in full["cycles"]] == [6, 4]         # 25 % of 8 heads, then of the 6 left (1.5 -> 2)
    assert len(full["pruned_heads"]) == 4 and full["dataset"] == str(corpus)
    files = full["files"]
    assert sorted(files) == ["curves", "heads", "importance", "model", "progress", "summary"]
    saved, saved_tok, _ = load_model(files["model"])
    ids = np.array([tok.encode("The quick")])
    np.testing.assert_array_equal(outputs(saved, ids), outputs(model, ids))
    # one cycle, then resume to two: the same numbers as the uninterrupted run
    run_experiment(ExperimentConfig(**base, max_cycles=1, output_dir=str(tmp_path / "split")))
    seen = []
    _, _, resumed = run_experiment(ExperimentConfig(**base, max_cycles=2, output_dir=str(tmp_path / "split"),
                                                    resume=True), progress=seen.append)
    assert seen[0] == "cycle 2 prune" and "baseline" not in seen
    assert [c["pruned_heads"] for c in resumed["cycles"]] == [c["pruned_heads"] for c in full["cycles"]]
    np.testing.assert_allclose([c["fine_tuned_loss"] for c in resumed["cycles"]],
                               [c["fine_tuned_loss"] for c in full["cycles"]], rtol=1e-5)
    with pytest.raises(ValueError, match="cannot resume .* strategy='gradient'"):
        run_experiment(ExperimentConfig(**dict(base, strategy="random"), max_cycles=3,
                                        output_dir=str(tmp_path / "split"), resume=True))


def test_batched_generation_is_left_padded():
    model, tok, _ = ex.load_or_train_tinygpt("tinygpt-test", log=None)
    prompts = ["To be", "JULIET:", "O", "Hark! who goes there?"]
    together = generate_batch(model, tok, prompts, 12, temperature=0)
    alone = [generate_text(model, tok, p, 12, temperature=0) for p in prompts]
    assert together == alone


def test_tito_experiment_two_cycles_on_a_text_file(corpus, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tito.cli", "--root", str(ROOT), "experiment", "--test-mode",
                           "--max-cycles", "2", "--dataset", str(corpus), "--strategy", "magnitude",
                           "--pruning-percent", "0.25", "--prompt", "The\\n", "--output-dir", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [c["cycle"] for c in summary["cycles"]] == [1, 2] and summary["config"]["max_cycles"] == 2
    assert "cycle 2: pruned" in proc.stdout and summary["config"]["prompt"] == "The\n"
    assert (out / "model.npz").is_file() and (out / "experiment_importance.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "tito.cli", "--root", str(ROOT), "experiment", "--test-mode",
                          "--max-cycles", "0", "--output-dir", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "max_cycles must be a positive integer (>= 1), got 0" in bad.stderr
