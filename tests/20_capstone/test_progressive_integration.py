"""Module 20 (Capstone: experiments on a small GPT): progressive integration tests.

  A. TestStackBelow              -- the GPT (13), its KV cache (15), module 17's head pruning and fine-tuning and
                                    module 19's thread pinning still work together.
  B. TestExperimentsCore         -- presets, config, generation, tracker: the module's own parts.
  C. TestExperimentsInTheStack   -- an experiment through the whole stack: a model trained by module 07's kind of
                                    loop, pruned by 17, generated from by 15, measured and written as JSON; the
                                    module imports alone in a fresh interpreter.
"""
import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.transformers import GPT


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_cached_generation_equals_plain_generation(self):
        from tinytorch.generation.kv_cache import cached_generate
        m = GPT(vocab_size=20, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=12, seed=0)
        prompt = np.array([5, 6, 7])
        assert np.array_equal(cached_generate(m, prompt, 15, seed=3, temperature=0.9),
                              m.generate(prompt, 15, seed=3, temperature=0.9))

    def test_pruned_heads_survive_fine_tuning_and_cached_generation_after_a_physical_prune(self):
        from tinytorch.optimization.compression import fine_tune, head_alive, prune_heads
        from tinytorch.generation.kv_cache import cached_generate
        m = GPT(vocab_size=20, embed_dim=16, num_layers=2, num_heads=4, max_seq_len=12, seed=1)
        data = [np.random.default_rng(i).integers(0, 20, (4, 11)) for i in range(3)]
        masked = copy.deepcopy(m)
        gone = prune_heads(masked, [(0, 1), (1, 0), (1, 3)])
        fine_tune(masked, [(w[:, :-1], w[:, 1:]) for w in data], 2, lr=0.01, optimizer_name="adamw",
                  weight_decay=0.1)
        assert [tuple(p) for p in np.argwhere(~head_alive(masked))] == gone
        physical = copy.deepcopy(masked)
        prune_heads(physical, [], physical=True)
        prompt = np.array([1, 2, 3])
        assert np.array_equal(cached_generate(physical, prompt, 8, temperature=0),
                              cached_generate(masked, prompt, 8, temperature=0))

    def test_thread_pinning_is_restored(self):
        from tinytorch.measurement.benchmarking import pinned_threads, thread_state
        before = thread_state()["env"]
        with pinned_threads(1):
            assert os.environ["OMP_NUM_THREADS"] == "1"
        assert thread_state()["env"] == before


# ================================================================================================
# B. The module's own parts
# ================================================================================================
class TestExperimentsCore:
    def test_presets_and_their_shapes(self):
        from tinytorch.experiments import TINYGPT_PRESETS, build_tinygpt, tinygpt_preset
        assert tinygpt_preset("tinygpt-4x4")["num_layers"] * tinygpt_preset("tinygpt-4x4")["num_heads"] == 16
        for name in TINYGPT_PRESETS:
            m = build_tinygpt(name, 30)
            cfg = TINYGPT_PRESETS[name]
            assert (m.num_layers, m.num_heads, m.embed_dim, m.max_seq_len) == \
                (cfg["num_layers"], cfg["num_heads"], cfg["embed_dim"], cfg["max_seq_len"])

    def test_lr_schedule_warms_up_then_decays(self):
        from tinytorch.experiments import lr_at
        cfg = dict(lr=1e-2, min_lr=1e-3, warmup=10)
        assert lr_at(0, 0.0, cfg) == pytest.approx(1e-3) and lr_at(9, 0.0, cfg) == pytest.approx(1e-2)
        assert lr_at(100, 0.5, cfg) == pytest.approx(5.5e-3) and lr_at(100, 1.0, cfg) == pytest.approx(1e-3)

    def test_mean_loss_weighs_slices_by_tokens_and_gives_the_model_its_mode_back(self):
        from tinytorch.core.losses import CrossEntropyLoss
        from tinytorch.experiments import mean_loss
        m = GPT(vocab_size=12, embed_dim=16, num_layers=1, num_heads=2, max_seq_len=10, seed=1)
        windows = np.random.default_rng(0).integers(0, 12, (5, 9))
        loss_fn = CrossEntropyLoss()
        with no_grad():
            whole = loss_fn(m(windows[:, :-1]).reshape(-1, 12), windows[:, 1:].reshape(-1)).item()
        assert mean_loss(m, loss_fn, windows, batch=2) == pytest.approx(whole, rel=1e-5)   # slices of 2, 2, 1 rows
        assert m.training
        m.eval()
        mean_loss(m, loss_fn, windows)
        assert not m.training                      # an eval-mode model stays in eval mode (it was forced to train)

    def test_shakespeare_split_is_ninety_ten_and_reuses_a_tokenizer(self):
        from tinytorch.core.dataloader import load_tinyshakespeare
        from tinytorch.experiments import shakespeare_split
        tok, train, val = shakespeare_split()
        n = len(load_tinyshakespeare())
        assert len(train) == int(0.9 * n) and len(train) + len(val) == n
        tok2, train2, _ = shakespeare_split(tok)
        assert tok2 is tok and np.array_equal(train, train2)
        train2[0] = -1                                        # a copy: the cache is not changed through it
        assert shakespeare_split(tok)[1][0] == train[0]

    def test_config_and_tracker_together(self, tmp_path):
        from tinytorch.experiments import ExperimentConfig, ProgressTracker
        c = ExperimentConfig(test_mode=True, strategy="magnitude")
        t = ProgressTracker("x", c.to_dict())
        t.log_eval("baseline", math.log(7.0))
        back = ProgressTracker.load(t.save_json(tmp_path / "x.json"))
        assert ExperimentConfig.from_dict(back.config) == c
        assert back.eval_at("baseline")["perplexity"] == pytest.approx(7.0)


# ================================================================================================
# C. The module in the stack
# ================================================================================================
class TestExperimentsInTheStack:
    def test_an_experiment_end_to_end_uses_every_layer_of_the_stack(self, tmp_path):
        from tinytorch.experiments import ExperimentConfig, generate_text, run_experiment
        from tinytorch.optimization.compression import head_importance
        config = ExperimentConfig(strategy="gradient", pruning_percent=0.25, test_mode=True, seed=7,
                                  output_dir=str(tmp_path))
        model, tok, summary = run_experiment(config)
        assert isinstance(tok, CharTokenizer) and isinstance(model, GPT)
        assert len(summary["pruned_heads"]) == 2
        imp = np.array(summary["importance"])
        lowest = sorted(tuple(int(v) for v in divmod(int(i), 4)) for i in np.argsort(imp, axis=None, kind="stable")[:2])
        assert [tuple(p) for p in summary["pruned_heads"]] == lowest
        assert summary["samples"]["fine-tuned"] == generate_text(model, tok, config.prompt, 30, seed=7)
        assert np.isfinite(head_importance(model, "magnitude")).all()
        saved = json.loads((tmp_path / "summary.json").read_text())
        assert saved["config"] == config.to_dict()

    def test_the_module_imports_alone_in_a_fresh_interpreter(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = ("import sys; import tinytorch.experiments as e; "
                "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules; print(len(e.__all__))")
        proc = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": root})
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout.strip()) >= 15
