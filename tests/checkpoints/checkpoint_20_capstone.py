"""Can I run a repeatable pruning experiment on a small GPT and read its results?"""
import copy
import io
import json
import math

import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.transformers import GPT
from tinytorch.experiments import (ExperimentConfig, ProgressTracker, generate_text, interactive_session,
                                   load_or_train_tinygpt, run_experiment)
from tinytorch.optimization.compression import (attention_layers, fine_tune, grow_heads, head_alive, head_importance,
                                                head_slices, prune_heads, pruned_heads)


def tiny_gpt():
    m = GPT(vocab_size=12, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=10, seed=1)
    for b in m.blocks:
        b.attn.q_proj.weight.data *= 8
        b.attn.k_proj.weight.data *= 8
    return m


def test_heads_are_scored_pruned_for_good_and_grown_back():
    m = tiny_gpt()
    data = [np.random.default_rng(s).integers(4, 12, (3, 9)) for s in range(3)]
    imp = head_importance(m, "gradient", data)
    assert imp.shape == (2, 4) and (imp > 0).all() and np.ptp(imp) > 0
    assert not np.allclose(head_importance(m, "entropy", data), head_importance(m, "magnitude"))
    x = data[0][:, :-1]
    physical = copy.deepcopy(m)
    gone = prune_heads(m, 0.5, "gradient", data)
    order = np.argsort(imp, axis=None, kind="stable")[:4]
    assert gone == sorted((int(i) // 4, int(i) % 4) for i in order)
    assert prune_heads(physical, 0.5, "gradient", data, physical=True) == gone
    with no_grad():
        np.testing.assert_allclose(physical(x).data, m(x).data, atol=1e-5)
    fine_tune(m, [(w[:, :-1], w[:, 1:]) for w in data], 3, lr=0.05, optimizer_name="adamw", weight_decay=0.5)
    for l, h in gone:
        for module, attr, index in head_slices(attention_layers(m)[l], h):
            assert not getattr(module, attr).data[index].any()
    grown = grow_heads(m, 2, "gradient_sensitivity", data)
    assert len(grown) == 2 and set(grown) <= set(gone) and head_alive(m).sum() == 6
    assert sorted(set(gone) - set(grown)) == pruned_heads(m)


def test_the_model_is_read_by_its_text():
    model, tok, info = load_or_train_tinygpt("tinygpt-test", log=None)
    assert info["val_loss"] < math.log(tok.vocab_size)
    text = generate_text(model, tok, "ROMEO:\n", 30, seed=2)
    assert text.startswith("ROMEO:\n") and len(text) == 37 and text == generate_text(model, tok, "ROMEO:\n", 30, seed=2)
    out = io.StringIO()
    session = interactive_session(model, tok, io.StringIO("KING:\n\n"), out, max_new_tokens=8, seed=0)
    assert [p for p, _ in session] == ["KING:"] and session[0][1] in out.getvalue()


def test_a_tracker_keeps_what_happened_and_reads_it_back(tmp_path):
    t = ProgressTracker("cp")
    t.log_train("fine-tune", 2.5)
    assert t.log_eval("baseline", 1.5)["perplexity"] == pytest.approx(math.exp(1.5))
    t.log_pruning("pruned", "prune", "gradient", [(0, 1)], [[True, False]], [[0.2, np.nan]])
    back = ProgressTracker.load(t.save_json(tmp_path / "p.json"))
    assert back.eval_at("baseline")["loss"] == 1.5 and back.pruning[0]["importance"] == [[0.2, None]]
    assert back.step == 1 and back.train_loss[0]["loss"] == 2.5


def test_an_experiment_is_repeatable_and_readable(tmp_path):
    config = ExperimentConfig(strategy="gradient", pruning_percent=0.5, growth_strategy="balanced", test_mode=True,
                              seed=5, output_dir=str(tmp_path))
    model, tok, summary = run_experiment(config)
    names = [s["stage"] for s in summary["stages"]]
    assert names == ["baseline", "pruned", "fine-tuned", "grown", "grown + fine-tuned"]
    assert [s["heads_on"] for s in summary["stages"]] == [8, 4, 4, 6, 6] and len(summary["pruned_heads"]) == 4
    assert head_alive(model).sum() == 6
    for s in summary["stages"]:
        assert s["perplexity"] == pytest.approx(math.exp(s["loss"]))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["stages"] == summary["stages"] and saved["pruned_heads"] == summary["pruned_heads"]
    tracker = ProgressTracker.load(tmp_path / "progress.json")
    assert [r["stage"] for r in tracker.evaluations] == names
    assert set(tracker.samples[0]["text"]) <= set(tok.get_vocab())
    _, _, again = run_experiment(ExperimentConfig.from_dict({**config.to_dict(), "output_dir": None}))
    assert [s["loss"] for s in again["stages"]] == [s["loss"] for s in summary["stages"]]
    assert again["pruned_heads"] == summary["pruned_heads"] and again["grown_heads"] == summary["grown_heads"]
    assert ExperimentConfig.from_dict(config.to_dict()) == config        # the config names everything (given checks)
    for kwargs, words in ((dict(device="cuda"), "CPU only"), (dict(pruning_percent=1.0), "pruning_percent"),
                          (dict(strategy="l1"), "known: 'random', 'magnitude', 'entropy', 'gradient'"),
                          (dict(num_epochs=0), "num_epochs"), (dict(learning_rate=-1.0), "learning_rate"),
                          (dict(growth_strategy="more"), "gradient_sensitivity")):
        with pytest.raises(ValueError, match=words):
            ExperimentConfig(**kwargs)
