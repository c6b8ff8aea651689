"""The whole head-pruning workflow on a pretrained GPT-2 loaded from local files (a tiny random one built offline by
transformers, tests/tiny_gpt2.py): importance, pruning (mask and physical), fine-tuning on padded batches of its
own byte-level tokenizer, growth from the old weights, saving and reloading — and run_experiment with
weights=<checkpoint directory>. Fails (not skips) without transformers."""
import numpy as np
import pytest

from tiny_gpt2 import CORPUS, checkpoint_dir
from tinytorch.core.autograd import no_grad
from tinytorch.experiments import ExperimentConfig, generate_batch, load_model, load_pretrained, run_experiment, save_model
from tinytorch.optimization.compression import (evaluate, fine_tune, grow_heads, head_alive, head_importance,
                                                prune_heads)


def test_importance_prune_fine_tune_grow_save_on_gpt2(tmp_path):
    model, tok, info = load_pretrained(checkpoint_dir())
    assert info["source"] == "pretrained" and tok.pad_token_id == tok.eos_token_id
    batch = tok.encode_batch(CORPUS)                                 # padded with eos, masks from lengths
    assert (batch["attention_mask"].sum(axis=1) == [len(tok.encode(t)) for t in CORPUS]).all()
    scores = head_importance(model, "gradient", batch)
    assert scores.shape == (2, 4) and np.isfinite(scores).all() and scores.max() > 0
    before = evaluate(model, batch)["loss"]
    pruned = prune_heads(model, 0.5, "gradient", batch, physical=True)
    assert len(pruned) == 4 and head_alive(model).sum() == 4
    history = fine_tune(model, [batch] * 4, lr=1e-3)
    assert history.steps == 4 and history.diverged is None
    after = evaluate(model, batch)["loss"]
    assert np.isfinite(before) and np.isfinite(after)
    path = save_model(tmp_path / "gpt2-pruned", model, tok)
    back, back_tok, _ = load_model(path)
    assert back_tok.encode(CORPUS[4]) == tok.encode(CORPUS[4]) and back_tok.pad_token_id == tok.pad_token_id
    ids = batch["input_ids"][:2]
    with no_grad():
        np.testing.assert_array_equal(back(ids).data, model(ids).data)
    grown = grow_heads(back, 2, "gradient_sensitivity", batch, init="old")
    assert len(grown) == 2 and head_alive(back).sum() == 6
    texts = generate_batch(back, back_tok, ["To be", "Whether 'tis"], 5, temperature=0)
    assert texts[0].startswith("To be") and texts[1].startswith("Whether 'tis")


def test_run_experiment_on_gpt2_weights(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text("\n".join(CORPUS * 40), encoding="utf-8")
    config = ExperimentConfig(weights=str(checkpoint_dir()), dataset=str(data), strategy="entropy",
                              pruning_percent=0.25, max_cycles=2, test_mode=True, prompt="To be",
                              output_dir=str(tmp_path / "out"))
    model, tok, summary = run_experiment(config)
    assert summary["model"]["source"] == "pretrained" and [c["heads_on"] for c in summary["cycles"]] == [6, 4]
    back, back_tok, _ = load_model(summary["files"]["model"])
    assert head_alive(back).sum() == 4 and back_tok.vocab_size == model.vocab_size
