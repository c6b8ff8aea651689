"""fine_tune and distillation on module 07's Trainer: a FineTuneConfig or its fields as keywords (the same
run either way), clear errors for mixed or unknown settings, the masks kept by MaskCallback through any
optimizer, KnowledgeDistillation.fit = its train_step repeated, and the same numbers as a plain loop."""
import copy

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import Trainer
from tinytorch.optimization.distillation import (FineTuneConfig, KnowledgeDistillation, MaskCallback, fine_tune,
                                                 make_optimizer)
from tinytorch.optimization.pruning import magnitude_prune


def mlp(seed=0):
    r = np.random.default_rng(seed)
    return Sequential(Linear(6, 16, rng=r), ReLU(), Linear(16, 3, rng=r))


def batches(seed=1, n=4):
    r = np.random.default_rng(seed)
    x = r.normal(size=(8 * n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
    return [(Tensor(x[i:i + 8]), Tensor(y[i:i + 8])) for i in range(0, 8 * n, 8)]


def test_config_and_keywords_give_the_same_run():
    a, b = mlp(), mlp()
    ha = fine_tune(a, batches(), 3, lr=0.05, optimizer_name="sgd", clip_grad=1.0, cosine=True)
    hb = fine_tune(b, batches(), 3, config=FineTuneConfig(lr=0.05, optimizer_name="sgd", clip_grad=1.0, cosine=True))
    assert list(ha) == list(hb) and ha.lr == hb.lr and ha.steps == hb.steps == 12
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    assert len(ha.grad_norms) == 12 and all(n > 0 for n in ha.grad_norms)


def test_fine_tune_is_the_trainer_with_callbacks():
    a, b = mlp(2), mlp(2)
    data = batches(3)
    fine_tune(a, data, 2, optimizer=SGD(a.parameters(), lr=0.1), divergence_factor=None)
    Trainer(b, SGD(b.parameters(), lr=0.1), CrossEntropyLoss(), clip_grad_norm=float("inf"),
            progress=False).fit(data, epochs=2, callbacks=[MaskCallback()])
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7)


def test_bad_settings_are_named():
    m = mlp()
    with pytest.raises(TypeError, match=r"unknown settings \['learning_rate'\]"):
        fine_tune(m, batches(), learning_rate=0.1)
    with pytest.raises(TypeError, match="not both"):
        fine_tune(m, batches(), config=FineTuneConfig(), lr=0.1)
    with pytest.raises(TypeError, match="config must be a FineTuneConfig, got dict"):
        fine_tune(m, batches(), config={"lr": 0.1})
    with pytest.raises(ValueError, match="unknown optimizer_name 'lbfgs'"):
        FineTuneConfig(optimizer_name="lbfgs")
    with pytest.raises(ValueError, match=r"lr_backoff must be a finite number in \(0, 1\), got 1.5"):
        FineTuneConfig(lr_backoff=1.5)
    with pytest.raises(ValueError, match=r"max_steps must be a positive integer \(>= 1\), got 0"):
        FineTuneConfig(max_steps=0)
    with pytest.raises(ValueError, match=r"epochs must be a positive integer \(>= 1\), got 0"):
        fine_tune(m, batches(), 0)


def test_masks_hold_through_fine_tune_and_distillation():
    teacher = mlp(4)
    student = copy.deepcopy(teacher)
    magnitude_prune(student, 0.7)
    zeros = [p.data == 0 for p in student.parameters()]
    fine_tune(student, batches(), 2, lr=0.05, optimizer_name="adam")
    kd = KnowledgeDistillation(teacher, student, temperature=2.0, alpha=0.5)
    losses = kd.fit(batches(5), make_optimizer("adamw", student.parameters(), lr=0.05, weight_decay=0.1), epochs=3)
    assert len(losses) == 3 and losses[-1] < losses[0]
    for z, p in zip(zeros, student.parameters()):
        assert (p.data[z] == 0).all()


def test_distillation_fit_is_its_train_step_repeated():
    teacher = mlp(6)
    a, b = mlp(7), mlp(7)
    data = batches(8, n=3)
    oa, ob = SGD(a.parameters(), lr=0.1), SGD(b.parameters(), lr=0.1)
    hist = KnowledgeDistillation(teacher, a, 2.0, 0.5).fit(data, oa, epochs=1, clip_grad=0.5)
    kd = KnowledgeDistillation(teacher, b, 2.0, 0.5)
    steps = [kd.train_step(x, y, ob, clip_grad=0.5) for x, y in data]
    assert hist[0] == pytest.approx(np.mean(steps), rel=1e-6)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(TypeError, match="expected an Optimizer, got str"):
        kd.train_step(*data[0], "sgd")
