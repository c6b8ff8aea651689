"""Module 17 (Compression): progressive integration tests.

  A. TestStackBelow          -- the training pipeline (data, model, loss, optimizer, Trainer, checkpoint) and a
                                transformer still work. Modules 14 and 16 are optional in a student's copy:
                                when their file exists in tinytorch/ they are used for real (profiling counts
                                the zeros we made; int8 quantization keeps them), and when it does not, that
                                absence is checked (find_spec is None and compress_model says module 16 is
                                missing) -- a branch on what exists, never a skipped test.
  B. TestCompressionCore     -- magnitude pruning, masks through optimizers, structured pruning, distillation.
  C. TestCompressionInStack  -- the digits MLP trained with Trainer, compressed by compress_model (prune,
                                fine-tune, distil, and quantize when module 16 exists) to a report; a small
                                GPT on text pruned (weights and heads), fine-tuned with AdamW + clipping,
                                checkpointed and reloaded into a fresh model.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Sequential, Dropout
from tinytorch.core.activations import ReLU
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.training import Trainer, clip_grad_norm, save_checkpoint, load_checkpoint
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.tokenization import CharTokenizer
from tinytorch.core.transformers import GPT
from tinytorch.optimization.compression import (
    KnowledgeDistillation, compress_model, evaluate, fine_tune, load_pruned_checkpoint, magnitude_prune,
    mask_gradients, masks, measure_sparsity, structured_prune)

ROOT = Path(__file__).resolve().parents[2]
HAS_QUANTIZATION = (ROOT / "tinytorch" / "optimization" / "quantization.py").is_file()
HAS_PROFILING = (ROOT / "tinytorch" / "measurement" / "profiling.py").is_file()


@pytest.fixture(scope="module")
def digits():
    (xtr, ytr), (xte, yte) = load_digits()
    mean, spread = xtr.data.mean(axis=0), xtr.data.std(axis=0) + 0.1
    return (Tensor((xtr.data - mean) / spread), ytr), (Tensor((xte.data - mean) / spread), yte)


def accuracy(out, y):
    return float((out.data.argmax(-1) == y.data).mean())


# ================================================================================================
# A. The stack below
# ================================================================================================
class TestStackBelow:
    def test_training_pipeline(self, digits, tmp_path):
        (xtr, ytr), (xte, yte) = digits
        rng = np.random.default_rng(0)
        model = Sequential(Linear(64, 32, rng=rng), ReLU(), Linear(32, 10, rng=rng))
        opt = Adam(model.parameters(), lr=3e-3)
        trainer = Trainer(model, opt, CrossEntropyLoss(), metrics={"accuracy": accuracy}, progress=False)
        loader = DataLoader(TensorDataset(xtr, ytr), batch_size=128, shuffle=True, seed=0)
        hist = trainer.fit(loader, [(xte, yte)], epochs=8)
        assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0] and hist["val_accuracy"][-1] > 0.9
        path = save_checkpoint(tmp_path / "m.npz", model, opt)
        other = Sequential(Linear(64, 32), ReLU(), Linear(32, 10))
        load_checkpoint(path, other)
        with no_grad():
            np.testing.assert_array_equal(other(xte).data, model(xte).data)

    def test_transformer_forward_and_backward(self):
        gpt = GPT(vocab_size=9, embed_dim=8, num_layers=1, num_heads=2, max_seq_len=5, seed=0)
        out = gpt(np.array([[1, 2, 3, 4]]))
        assert out.shape == (1, 4, 9)
        out.sum().backward()
        assert gpt.blocks[0].attn.q_proj.weight.grad is not None

    def test_profiling_module_if_present(self):
        spec = importlib.util.find_spec("tinytorch.measurement.profiling")
        if not HAS_PROFILING:
            assert spec is None
            return
        from tinytorch.measurement.profiling import count_parameters
        model = Sequential(Linear(20, 30, rng=np.random.default_rng(1)), ReLU(), Linear(30, 4))
        dense = count_parameters(model)
        magnitude_prune(model, 0.8)
        counts = count_parameters(model)
        assert counts["total"] == dense["total"] == 20 * 30 + 30 + 30 * 4 + 4
        assert counts["nonzero"] == counts["total"] - round(0.8 * (20 * 30 + 30 * 4))
        assert counts["buffer_bytes"] == 20 * 30 + 30 * 4               # the boolean masks: a byte per weight

    def test_quantization_module_if_present(self):
        spec = importlib.util.find_spec("tinytorch.optimization.quantization")
        model = Sequential(Linear(32, 64, rng=np.random.default_rng(2)), ReLU(), Linear(64, 5, rng=np.random.default_rng(3)))
        magnitude_prune(model, 0.9)
        if not HAS_QUANTIZATION:
            assert spec is None
            with pytest.raises(RuntimeError, match="needs module 16"):
                compress_model(model, [(Tensor(np.zeros((4, 32), np.float32)), Tensor(np.zeros(4, np.int64)))],
                               quantize=True)
            return
        from tinytorch.optimization.quantization import model_size_bytes, quantize_model
        q = quantize_model(model, bits=8, per_channel=True)
        x = Tensor(np.random.default_rng(4).standard_normal((16, 32)).astype(np.float32))
        with no_grad():
            ref, got = model(x).data, q(x).data
        assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
        qlayers = [m for m in q.modules() if hasattr(m, "weight_nnz")]
        for qm, mask in zip(qlayers, masks(model).values()):
            assert (qm.dequantized_weight()[~mask] == 0).all()               # a pruned weight stays 0 in int8
            assert 0.95 * mask.sum() <= qm.weight_nnz <= mask.sum()
        sparse = quantize_model(model, bits=8, sparse="auto")
        assert model_size_bytes(sparse) < 0.2 * sum(p.data.nbytes for p in model.parameters())


# ================================================================================================
# B. This module's core
# ================================================================================================
class TestCompressionCore:
    def test_magnitude_prune_global_and_layer(self):
        rng = np.random.default_rng(5)
        model = Sequential(Linear(10, 40, rng=rng), ReLU(), Linear(40, 10, rng=rng))
        model.layers[2].weight.data *= 10
        g = magnitude_prune(model, 0.5, scope="global")
        assert g["0.weight"] > 0.5 > g["2.weight"]                       # the small layer loses more
        model2 = Sequential(Linear(10, 40, rng=rng), ReLU(), Linear(40, 10, rng=rng))
        lay = magnitude_prune(model2, 0.5, scope="layer")
        assert lay == {"0.weight": 0.5, "2.weight": 0.5}

    def test_masks_hold_through_optimizers_and_structured_adds_to_them(self):
        rng = np.random.default_rng(6)
        model = Sequential(Linear(8, 16, rng=rng), ReLU(), Linear(16, 4, rng=rng))
        x, y = Tensor(rng.standard_normal((20, 8)).astype(np.float32)), Tensor(rng.integers(0, 4, 20))
        magnitude_prune(model, 0.5)
        s = measure_sparsity(model)
        structured_prune(model, 0.25)
        assert measure_sparsity(model) > s
        for opt in (SGD(model.parameters(), lr=0.1, momentum=0.9), AdamW(model.parameters(), lr=0.01)):
            fine_tune(model, [(x, y)], epochs=10, optimizer=opt)
            for p in model.parameters():
                if getattr(p, "mask", None) is not None:
                    assert (p.data[~p.mask] == 0).all()

    def test_distillation_loss_trains_and_reaches_the_student_only(self):
        rng = np.random.default_rng(7)
        teacher = Sequential(Linear(5, 16, rng=rng), ReLU(), Linear(16, 3, rng=rng))
        student = Sequential(Linear(5, 4, rng=rng), ReLU(), Linear(4, 3, rng=rng))
        kd = KnowledgeDistillation(teacher, student, temperature=3.0, alpha=0.7)
        x, y = Tensor(rng.standard_normal((12, 5)).astype(np.float32)), rng.integers(0, 3, 12)
        loss = kd.distillation_loss(student(x), kd.teacher_logits(x), y)
        loss.backward()
        assert loss.shape == () and loss.item() > 0
        assert student.layers[0].weight.grad is not None and teacher.layers[0].weight.grad is None


# ================================================================================================
# C. Compression wired into the stack
# ================================================================================================
class TestCompressionInStack:
    def test_digits_mlp_compressed_by_the_pipeline(self, digits, tmp_path):
        (xtr, ytr), (xte, yte) = digits
        rng = np.random.default_rng(8)
        model = Sequential(Linear(64, 128, rng=rng), ReLU(), Dropout(0.2, rng=rng), Linear(128, 10, rng=rng))
        loader = DataLoader(TensorDataset(xtr, ytr), batch_size=128, shuffle=True, seed=1)
        opt = Adam(model.parameters(), lr=3e-3)
        Trainer(model, opt, CrossEntropyLoss(), progress=False).fit(loader, epochs=10)
        test = [(xte, yte)]
        dense_acc = evaluate(model, test)["accuracy"]
        out, report = compress_model(model, loader, test, sparsity=0.9, steps=4, epochs_per_step=1,
                                     fine_tune_epochs=6, distill_epochs=1, lr=3e-3, quantize=HAS_QUANTIZATION,
                                     report_path=tmp_path / "report.json")
        stages = {r["stage"]: r for r in report["stages"]}
        names = ["dense", "pruned", "fine-tuned", "distilled"] + (["quantized"] if HAS_QUANTIZATION else [])
        assert list(stages) == names
        assert json.loads((tmp_path / "report.json").read_text())["stages"][0]["accuracy"] == dense_acc
        assert abs(stages["distilled"]["weight_sparsity"] - 0.9) < 0.002
        assert stages["distilled"]["accuracy"] > dense_acc - 0.06
        assert stages["distilled"]["bytes_sparse"] < 0.3 * stages["dense"]["bytes"]
        if HAS_QUANTIZATION:
            assert out is not model                                       # module 16 quantizes a copy
            assert stages["quantized"]["bytes"] < 0.15 * stages["dense"]["bytes"]
            assert stages["quantized"]["accuracy"] > stages["distilled"]["accuracy"] - 0.03
        else:
            assert out is model

    def test_small_gpt_pruned_fine_tuned_checkpointed_and_reloaded(self, tmp_path):
        text = "to be or not to be, that is the question. " * 4
        tok = CharTokenizer.from_text(text)
        ids = np.array(tok.encode(text))
        V, T = tok.vocab_size, 16
        starts = np.arange(0, len(ids) - T - 1, 8)
        X = np.stack([ids[s:s + T] for s in starts])
        Y = np.stack([ids[s + 1:s + T + 1] for s in starts])
        gpt = GPT(vocab_size=V, embed_dim=32, num_layers=2, num_heads=4, max_seq_len=T, seed=0)
        loss_fn = CrossEntropyLoss()

        def step(opt):
            opt.zero_grad()
            loss = loss_fn(gpt(X).reshape(-1, V), Y.reshape(-1))
            loss.backward()
            mask_gradients(gpt)
            clip_grad_norm(list(gpt.parameters()), 1.0)
            opt.step()
            return loss.item()

        opt = AdamW(gpt.parameters(), lr=3e-3, weight_decay=0.01)
        for _ in range(20):
            dense_loss = step(opt)
        magnitude_prune(gpt, 0.5)
        structured_prune(gpt, 0.25)
        pruned_loss = step(opt)
        for _ in range(25):
            last = step(opt)
        assert last < pruned_loss and last < 1.5 * dense_loss
        for p in gpt.parameters():
            if getattr(p, "mask", None) is not None:
                assert (p.data[~p.mask] == 0).all()
        assert all((b.attn.head_mask.data == 0).sum() == 1 for b in gpt.blocks)
        path = save_checkpoint(tmp_path / "gpt.npz", gpt, opt)
        fresh = GPT(vocab_size=V, embed_dim=32, num_layers=2, num_heads=4, max_seq_len=T, seed=1)
        fresh_opt = AdamW(fresh.parameters(), lr=3e-3, weight_decay=0.01)
        load_pruned_checkpoint(path, fresh, fresh_opt)
        gpt.eval()
        fresh.eval()
        with no_grad():
            np.testing.assert_array_equal(fresh(X).data, gpt(X).data)
        assert measure_sparsity(fresh) == measure_sparsity(gpt)
        assert all((b.attn.head_mask.data == 0).sum() == 1 for b in fresh.blocks)
