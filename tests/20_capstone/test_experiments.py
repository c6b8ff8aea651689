"""Module 20 (tinytorch.experiments): the config and its errors, TinyGPT presets saved and loaded, text generation
(one prompt, a batch, an interactive stream), the ProgressTracker's JSON and plots, and run_experiment in test
mode from end to end."""
import io
import json
import math
import os

import numpy as np
import pytest

from tinytorch import experiments as ex
from tinytorch.core.autograd import no_grad
from tinytorch.experiments import (TINYGPT_PRESETS, ExperimentConfig, ProgressTracker, experiment_stages,
                                   generate_batch, generate_text, interactive_session, load_or_train_tinygpt,
                                   load_tinygpt, run_experiment, save_tinygpt)
from tinytorch.optimization.compression import GROWTH_STRATEGIES, HEAD_STRATEGIES, head_alive, pruned_heads


@pytest.fixture(scope="module")
def small():
    model, tok, info = load_or_train_tinygpt("tinygpt-test", log=None)
    return model, tok, info


# -- the config ---------------------------------------------------------------------------------------------------
def test_a_default_config_is_valid_and_round_trips():
    c = ExperimentConfig()
    assert c.device == "cpu" and c.model_name in TINYGPT_PRESETS and c.strategy in HEAD_STRATEGIES
    assert ExperimentConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match=r"unknown fields \['pruning_rate'\]"):
        ExperimentConfig.from_dict({**c.to_dict(), "pruning_rate": 0.2})


@pytest.mark.parametrize("kwargs, message", [
    (dict(device="cuda"), "device 'cuda' is not available: tinytorch computes with NumPy on the CPU only"),
    (dict(device="mps"), "device 'mps' is not available"),
    (dict(pruning_percent=-0.1), r"pruning_percent must be a fraction in \[0, 1\) .*got -0.1"),
    (dict(pruning_percent=1.0), r"pruning_percent must be a fraction in \[0, 1\) .*got 1.0"),
    (dict(pruning_percent=30), "got 30"),
    (dict(pruning_percent="0.3"), "got '0.3'"),
    (dict(strategy="taylor"), "unknown strategy 'taylor'; known: 'random', 'magnitude', 'entropy', 'gradient'"),
    (dict(growth_strategy="greedy"), "unknown growth_strategy 'greedy'; known: 'gradient_sensitivity', "
                                     "'entropy_gap', 'balanced', 'random'"),
    (dict(num_epochs=0), r"num_epochs must be a positive integer \(>= 1\), got 0"),
    (dict(num_epochs=1.5), r"num_epochs must be a positive integer \(>= 1\), got 1.5"),
    (dict(batch_size=-2), r"batch_size must be a positive integer \(>= 1\), got -2"),
    (dict(learning_rate=0), "learning_rate must be a finite number > 0, got 0"),
    (dict(learning_rate=-1e-3), "learning_rate must be a finite number > 0, got -0.001"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number > 0, got nan"),
    (dict(model_name="gpt2"), "unknown model_name 'gpt2'; known TinyGPT presets: 'tinygpt-2017'"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(test_mode="yes"), "test_mode must be True or False, got 'yes'"),
    (dict(grow_count=0), r"grow_count must be a positive integer \(>= 1\), got 0"),
    (dict(threads=0), r"threads must be a positive integer \(>= 1\), got 0"),
])
def test_every_bad_field_is_an_error_naming_it(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**kwargs)


def test_each_strategy_name_is_accepted():
    for s in HEAD_STRATEGIES:
        assert ExperimentConfig(strategy=s).strategy == s
    for g in GROWTH_STRATEGIES + (None,):
        assert ExperimentConfig(growth_strategy=g).growth_strategy == g


# -- presets ------------------------------------------------------------------------------------------------------
def test_a_preset_trains_saves_and_loads_and_a_mismatched_file_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setitem(TINYGPT_PRESETS, "tinygpt-saved", dict(TINYGPT_PRESETS["tinygpt-test"], file="saved",
                                                              steps=20))
    logs = []
    m1, t1, info1 = load_or_train_tinygpt("tinygpt-saved", tmp_path, log=logs.append)
    assert info1["source"] == "trained" and (tmp_path / "saved.npz").is_file() and (tmp_path / "saved_vocab.json").is_file()
    m2, t2, info2 = load_or_train_tinygpt("tinygpt-saved", tmp_path, log=logs.append)
    assert info2["source"] == "loaded" and info2["val_loss"] == info1["val_loss"] and info2["steps"] == 20
    ids = np.array([t1.encode("KING:\nWhat")])
    with no_grad():
        assert np.array_equal(m1(ids).data, m2(ids).data)
    assert t2.get_vocab() == t1.get_vocab()
    other = ex.build_tinygpt(dict(TINYGPT_PRESETS["tinygpt-test"], num_layers=1), t1.vocab_size)
    save_tinygpt(tmp_path / "saved", other, t1)                      # a file of another shape
    before = (tmp_path / "saved.npz").read_bytes()
    m3, _, info3 = load_or_train_tinygpt("tinygpt-saved", tmp_path, log=logs.append)
    assert info3["source"] == "trained" and len(m3.blocks) == 2
    assert (tmp_path / "saved.npz").read_bytes() == before and any("another shape" in str(x) for x in logs)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tinygpt(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown TinyGPT preset 'bert'"):
        load_or_train_tinygpt("bert")


# -- text ---------------------------------------------------------------------------------------------------------
def test_generate_text_is_repeatable_and_matches_the_uncached_sampler(small):
    model, tok, _ = small
    a = generate_text(model, tok, "ROMEO:\n", 50, seed=4)
    assert a.startswith("ROMEO:\n") and len(a) == len("ROMEO:\n") + 50
    assert a == generate_text(model, tok, "ROMEO:\n", 50, seed=4)
    assert a != generate_text(model, tok, "ROMEO:\n", 50, seed=5)
    assert a == generate_text(model, tok, "ROMEO:\n", 50, seed=4, use_cache=False)
    greedy = generate_text(model, tok, "To be", 20, temperature=0)
    assert greedy == generate_text(model, tok, "To be", 20, temperature=0, seed=99)
    long = "x" * 100                                                 # longer than the context: cropped, not an error
    assert generate_text(model, tok, long, 5, seed=0).startswith(long)
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate_text(model, tok, "", 5)
    with pytest.raises(TypeError, match="the prompt must be a str, got int"):
        generate_text(model, tok, 42, 5)


def test_batch_generation_keeps_the_order_and_is_repeatable(small):
    model, tok, _ = small
    prompts = ["To be", "KING:", "O", "Hark, hark", "Stay"]
    texts = generate_batch(model, tok, prompts, 15, seed=1)
    assert [t[:len(p)] for t, p in zip(texts, prompts)] == prompts and all(len(t) == len(p) + 15
                                                                             for t, p in zip(texts, prompts))
    assert texts == generate_batch(model, tok, prompts, 15, seed=1)
    alone = generate_batch(model, tok, ["O"], 15, seed=1)
    assert alone[0].startswith("O") and len(alone[0]) == 16
    with pytest.raises(TypeError, match="got a single str"):
        generate_batch(model, tok, "To be", 5)
    with pytest.raises(ValueError, match="list of prompts is empty"):
        generate_batch(model, tok, [], 5)


def test_the_interactive_loop_reads_until_an_empty_line_or_the_end(small):
    model, tok, _ = small
    out = io.StringIO()
    session = interactive_session(model, tok, io.StringIO("ROMEO:\nJULIET:\n\nnot read\n"), out,
                                  max_new_tokens=10, seed=0)
    assert [p for p, _ in session] == ["ROMEO:", "JULIET:"]
    assert session[0][1] == generate_text(model, tok, "ROMEO:", 10, seed=0)
    text = out.getvalue()
    assert text.count("> ") == 3 and session[0][1] in text and "not read" not in text
    out2 = io.StringIO()
    session2 = interactive_session(model, tok, io.StringIO("KING:"), out2, max_new_tokens=5, seed=0)   # EOF ends it
    assert [p for p, _ in session2] == ["KING:"] and out2.getvalue().count("> ") == 2
    assert interactive_session(model, tok, io.StringIO(""), io.StringIO(), max_new_tokens=5) == []


# -- the tracker --------------------------------------------------------------------------------------------------
def test_tracker_json_round_trip_with_non_finite_numbers(tmp_path):
    t = ProgressTracker("t", {"seed": 1})
    t.log_train("fine-tune", 2.5)
    t.log_train("fine-tune", 2.25)
    r = t.log_eval("pruned", 2.0, heads_on=6)
    assert r == {**r, "stage": "pruned", "step": 2, "loss": 2.0, "perplexity": math.exp(2.0), "heads_on": 6}
    assert t.log_eval("diverged", 1e4)["perplexity"] == math.inf
    t.log_pruning("pruned", "prune", "entropy", [(1, 2)], np.ones((2, 4), bool), np.full((2, 4), np.nan))
    t.log_sample("pruned", "To", "To be or")
    t.log_event("skipped step", step_loss=float("nan"))
    path = t.save_json(tmp_path / "p.json")
    raw = (tmp_path / "p.json").read_text()
    assert "NaN" not in raw and "Infinity" not in raw                 # strict JSON
    back = ProgressTracker.load(path)
    assert back.eval_at("pruned")["perplexity"] == math.exp(2.0) and back.eval_at("diverged")["perplexity"] is None
    assert back.pruning[0]["heads"] == [[1, 2]] and back.pruning[0]["importance"][0] == [None] * 4
    assert back.step == 2 and back.samples == t.samples and back.config == {"seed": 1}
    with pytest.raises(KeyError, match="no evaluation of stage 'grown'"):
        t.eval_at("grown")
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="is not a tracker file"):
        ProgressTracker.load(tmp_path / "bad.json")


def test_tracker_saves_atomically(tmp_path, monkeypatch):
    t = ProgressTracker("t")
    t.log_eval("baseline", 2.0)
    path = tmp_path / "progress.json"
    t.save_json(path)
    good = path.read_text()
    t.log_eval("pruned", 2.5)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        t.save_json(path)
    assert path.read_text() == good and sorted(os.listdir(tmp_path)) == ["progress.json"]


def test_tracker_plots_three_pictures(tmp_path):
    t = ProgressTracker("plots")
    for i in range(5):
        t.log_train("fine-tune", 3 - 0.1 * i)
    t.log_eval("baseline", 2.0)
    t.log_pruning("pruned", "prune", "gradient", [(0, 1)], [[True, False], [True, True]], [[0.3, 0.1], [0.5, 0.2]])
    t.log_eval("pruned", 2.2)
    t.log_pruning("grown", "grow", "random", [(0, 1)], [[True, True], [True, True]])
    paths = t.plot(tmp_path)
    assert sorted(paths) == ["curves", "heads", "importance"]
    for p in paths.values():
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


# -- run_experiment -----------------------------------------------------------------------------------------------
def test_run_experiment_in_test_mode_from_end_to_end(tmp_path):
    config = ExperimentConfig(strategy="entropy", pruning_percent=0.3, growth_strategy="balanced", test_mode=True,
                              seed=2, output_dir=str(tmp_path), num_epochs=2)
    stages = []
    model, tok, summary = run_experiment(config, progress=stages.append)
    assert stages == experiment_stages(config)
    names = [s["stage"] for s in summary["stages"]]
    assert names == ["baseline", "pruned", "fine-tuned", "grown", "grown + fine-tuned"]
    assert len(summary["pruned_heads"]) == 2 == 8 - summary["stages"][1]["heads_on"]       # round(0.3 * 8)
    assert len(summary["grown_heads"]) == 1 and summary["grown_heads"][0] in summary["pruned_heads"]   # half of 2
    assert [s["heads_on"] for s in summary["stages"]] == [8, 6, 6, 7, 7] and head_alive(model).sum() == 7
    assert len(pruned_heads(model)) == 1
    for s in summary["stages"]:
        assert math.isfinite(s["loss"]) and s["perplexity"] == pytest.approx(math.exp(s["loss"]), rel=1e-12)
    assert summary["stages"][2]["step"] == 12 and summary["stages"][4]["step"] == 24       # 2 epochs x 6 steps, twice
    assert set(summary["samples"]) == set(names) and all(t.startswith("ROMEO:\n") for t in summary["samples"].values())
    assert summary["model"]["preset"] == "tinygpt-test" and summary["config"]["strategy"] == "entropy"
    imp = np.array(summary["importance"], dtype=float)
    assert imp.shape == (2, 4) and np.isfinite(imp).all()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["stages"] == summary["stages"] and on_disk["pruned_heads"] == summary["pruned_heads"]
    tracker = ProgressTracker.load(tmp_path / "progress.json")
    assert [r["stage"] for r in tracker.evaluations] == names and len(tracker.train_loss) == 24
    assert tracker.pruning[0]["heads"] == summary["pruned_heads"] and tracker.pruning[1]["kind"] == "grow"
    assert any(e["kind"] == "notice" and "tinygpt-test" in e["message"] for e in tracker.events)
    for kind in ("curves", "importance", "heads"):
        assert (tmp_path / f"experiment_{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_run_experiment_is_repeatable_and_the_seed_matters():
    config = ExperimentConfig(strategy="random", pruning_percent=0.5, test_mode=True, seed=1)
    _, _, a = run_experiment(config)
    _, _, b = run_experiment(config)
    _, _, c = run_experiment(ExperimentConfig(strategy="random", pruning_percent=0.5, test_mode=True, seed=4))
    assert a["stages"] == b["stages"] and a["pruned_heads"] == b["pruned_heads"] and a["samples"] == b["samples"]
    assert c["pruned_heads"] != a["pruned_heads"] or c["stages"] != a["stages"]
    assert a["files"] == {} and "seconds" in a


def test_physical_pruning_in_an_experiment_and_growth_back():
    config = ExperimentConfig(strategy="magnitude", pruning_percent=0.5, growth_strategy="gradient_sensitivity",
                              grow_count=4, physical=True, test_mode=True)
    model, _, summary = run_experiment(config)
    params = [s["parameters"] for s in summary["stages"]]
    assert params[1] < params[0] and params[1] == params[2]            # physically smaller after pruning
    assert summary["model"]["heads_per_layer"] == [4, 4] and head_alive(model).all()
    assert params[4] == params[0]                                     # every head grown back: full size again
    with pytest.raises(TypeError, match="expected an ExperimentConfig, got dict"):
        run_experiment(config.to_dict())
