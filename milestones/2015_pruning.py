"""2015 Pruning: learning both weights and connections

Han, Pool, Tran and Dally removed 90 % of a network's connections without losing accuracy: train,
prune the smallest weights, retrain what is left. We do it to the 64-128-10 digits MLP of 1986 (three
seeds): train it dense, then prune it gradually to 90 % of its weights (a cubic schedule over 40 epochs,
Zhu & Gupta 2017) while it keeps training, with masks that hold every pruned weight at exactly zero,
and compare held-out accuracy. Dropout is lowered for retraining by Han's rule, p * sqrt(density).
Then Hinton, Vinyals and Dean's knowledge distillation: a 64-16-10 student trained on the dense teacher's
softened outputs (T = 4, alpha = 0.7) against the same student (same initialisation, same inputs, same
epochs) trained alone on the labels. On all 1,437 training images the labels already say nearly all the
teacher knows about these easy digits, and both students land within noise of each other (reported, not
gated). The gated comparison is Hinton's section 4: with only 300 labelled images, the soft targets carry
far more than the hard labels. Last, a sweep: held-out accuracy from 0 to 99 % sparsity, straight after
one-shot pruning and after fine-tuning; and the whole pipeline (prune, fine-tune, int8) with its sizes.
"""
import copy
import math
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # small matrices: one thread is faster on a shared machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.layers import Linear, Sequential, Dropout  # noqa: E402
from tinytorch.core.activations import ReLU  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import Adam  # noqa: E402
from tinytorch.core.training import Trainer, CosineAnnealingLR  # noqa: E402
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits  # noqa: E402
from tinytorch.optimization.compression import (  # noqa: E402
    CompressionAnalyzer, KnowledgeDistillation, compress_model, evaluate, fine_tune, magnitude_prune,
    masks, measure_sparsity, model_bytes)

SWEEP = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]


def accuracy(logits, y):
    return float((logits.data.argmax(axis=1) == y.data).mean())


def train_dense(seed, loader, test, epochs):
    rng = np.random.default_rng(seed)
    model = Sequential(Linear(64, 128, rng=rng), ReLU(), Dropout(0.2, rng=rng), Linear(128, 10, rng=rng))
    opt = Adam(model.parameters(), lr=2e-3, weight_decay=1e-3)
    trainer = Trainer(model, opt, CrossEntropyLoss(), metrics={"accuracy": accuracy},
                      scheduler=CosineAnnealingLR(opt, T_max=epochs), progress=False)
    history = trainer.fit(loader, test, epochs=epochs)
    return model, history


def prune_while_training(model, loader, final, prune_epochs, after_epochs):
    """Gradual magnitude pruning: at each of the first `prune_epochs` epochs, prune up to the cubic schedule
    s_t = final * (1 - (1 - t / prune_epochs)^3), then train one epoch; then `after_epochs` more epochs."""
    model.layers[2].p = 0.2 * math.sqrt(1.0 - final)          # Han et al.: less dropout for fewer weights
    opt = Adam(model.parameters(), lr=2e-3)
    total = prune_epochs + after_epochs
    schedule = CosineAnnealingLR(opt, T_max=total)
    reached, history = 0.0, []
    for epoch in range(total):
        if epoch < prune_epochs:
            target = final * (1.0 - (1.0 - (epoch + 1) / prune_epochs) ** 3)
            magnitude_prune(model, (target - reached) / (1.0 - reached), scope="global")
            reached = target
        history += fine_tune(model, loader, 1, optimizer=opt)
        schedule.step()
    return history


def train_student(seed, loader, epochs, teacher=None, temperature=4.0, alpha=0.7):
    "A 64-16-10 MLP, Adam with a cosine schedule; distilled from `teacher` when one is given."
    rng = np.random.default_rng(100 + seed)
    student = Sequential(Linear(64, 16, rng=rng), ReLU(), Linear(16, 10, rng=rng))
    opt = Adam(student.parameters(), lr=2e-3)
    schedule = CosineAnnealingLR(opt, T_max=epochs)
    kd = KnowledgeDistillation(teacher, student, temperature, alpha) if teacher is not None else None
    for _ in range(epochs):
        if kd is None:
            fine_tune(student, loader, 1, optimizer=opt)
        else:
            kd.fit(loader, opt, 1)
        schedule.step()
    return student


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    fast = args.fast
    (X_train, y_train), (X_test, y_test) = load_digits()
    mean, spread = X_train.data.mean(axis=0), X_train.data.std(axis=0) + 0.1
    X_train, X_test = Tensor((X_train.data - mean) / spread), Tensor((X_test.data - mean) / spread)
    test_loader = DataLoader(TensorDataset(X_test, y_test), batch_size=360)
    test = [(X_test, y_test)]
    seeds = [args.seed + i for i in range(3)]
    dense_epochs, prune_epochs, after_epochs = (20, 8, 10) if fast else (100, 40, 60)
    full_epochs, small_epochs, n_small = (20, 60, 300) if fast else (200, 300, 300)
    sweep_epochs = 2 if fast else 15

    def loader(seed):
        return DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True, seed=seed)

    # -- 1. train, prune to 90 %, retrain -----------------------------------------------------------
    print("-- pruning to 90 % of the weights while retraining (3 seeds)")
    dense_models, dense_acc, pruned_acc, histories = [], [], [], {}
    for seed in seeds:
        model, hist = train_dense(seed, loader(seed), test_loader, dense_epochs)
        dense_models.append(model)
        dense_acc.append(evaluate(model, test)["accuracy"])
        pruned = copy.deepcopy(model)
        ft = prune_while_training(pruned, loader(seed + 1000), 0.9, prune_epochs, after_epochs)
        pruned_acc.append(evaluate(pruned, test)["accuracy"])
        still_zero = all(bool((p.data[~p.mask] == 0).all()) for p in (pruned.layers[0].weight, pruned.layers[3].weight)
                         if getattr(p, "mask", None) is not None)
        if seed == seeds[0]:
            histories = {"dense train loss": hist["train_loss"], "pruning + retraining loss": ft}
            example, example_zero = pruned, still_zero
        print(f"  seed {seed}: dense {dense_acc[-1]:.4f}  pruned 90 % + retrained {pruned_acc[-1]:.4f}  "
              f"(weight sparsity {measure_sparsity(pruned, weights_only=True):.4f}, pruned weights all 0: {still_zero})")
    weight_sparsity = measure_sparsity(example, weights_only=True)
    bytes_ = model_bytes(example)
    m.metric("seeds", seeds)
    m.metric("dense held-out accuracy per seed", [round(a, 4) for a in dense_acc])
    m.metric("pruned held-out accuracy per seed", [round(a, 4) for a in pruned_acc])
    m.metric("dense held-out accuracy (mean)", float(np.mean(dense_acc)), "{:.4f}")
    m.metric("pruned held-out accuracy (mean)", float(np.mean(pruned_acc)), "{:.4f}")
    m.metric("weight sparsity", weight_sparsity, "{:.4f}")
    m.metric("sparsity of all parameters (biases included)", measure_sparsity(example), "{:.4f}")
    m.metric("weights kept", int(sum(int(mk.sum()) for mk in masks(example).values())))
    m.metric("bytes dense float32", bytes_["dense"])
    m.metric("bytes with pruned weights in CSR", bytes_["sparse"])
    print(CompressionAnalyzer(example).table())

    # -- 2. knowledge distillation --------------------------------------------------------------------
    print("-- a 64-16-10 student: alone vs distilled from the dense 64-128-10 teacher (3 seeds)")
    full_alone, full_kd, alone_acc, kd_acc = [], [], [], []
    for seed, teacher in zip(seeds, dense_models):
        full_alone.append(evaluate(train_student(seed, loader(seed + 2000), full_epochs), test)["accuracy"])
        full_kd.append(evaluate(train_student(seed, loader(seed + 2000), full_epochs, teacher), test)["accuracy"])
        pick = np.sort(np.random.default_rng(seed + 7000).permutation(len(X_train))[:n_small])
        small = DataLoader(TensorDataset(Tensor(X_train.data[pick]), Tensor(y_train.data[pick])), batch_size=32,
                           shuffle=True, seed=seed + 2000)
        alone_acc.append(evaluate(train_student(seed, small, small_epochs), test)["accuracy"])
        small = DataLoader(TensorDataset(Tensor(X_train.data[pick]), Tensor(y_train.data[pick])), batch_size=32,
                           shuffle=True, seed=seed + 2000)
        kd_acc.append(evaluate(train_student(seed, small, small_epochs, teacher), test)["accuracy"])
        print(f"  seed {seed}: all {len(X_train)} images: alone {full_alone[-1]:.4f}, distilled {full_kd[-1]:.4f};  "
              f"{n_small} labelled images: alone {alone_acc[-1]:.4f}, distilled {kd_acc[-1]:.4f}")
    m.metric("all images: student alone accuracy per seed", [round(a, 4) for a in full_alone])
    m.metric("all images: distilled student accuracy per seed", [round(a, 4) for a in full_kd])
    m.metric("all images: student alone accuracy (mean)", float(np.mean(full_alone)), "{:.4f}")
    m.metric("all images: distilled student accuracy (mean)", float(np.mean(full_kd)), "{:.4f}")
    m.metric("labelled images for the gated comparison", n_small)
    m.metric("student alone held-out accuracy per seed", [round(a, 4) for a in alone_acc])
    m.metric("distilled student held-out accuracy per seed", [round(a, 4) for a in kd_acc])
    m.metric("student alone held-out accuracy (mean)", float(np.mean(alone_acc)), "{:.4f}")
    m.metric("distilled student held-out accuracy (mean)", float(np.mean(kd_acc)), "{:.4f}")

    # -- 3. the sweep ----------------------------------------------------------------------------------
    print(f"-- one-shot global pruning of the seed-{seeds[0]} model, then {sweep_epochs} epochs of fine-tuning")
    before, after = [], []
    base = dense_models[0]
    for s in SWEEP:
        mdl = copy.deepcopy(base)
        mdl.layers[2].p = 0.2 * math.sqrt(1.0 - s)
        if s > 0:
            magnitude_prune(mdl, s)
        before.append(evaluate(mdl, test)["accuracy"])
        fine_tune(mdl, loader(seeds[0] + 3000), sweep_epochs, lr=2e-3, cosine=True)
        after.append(evaluate(mdl, test)["accuracy"])
        print(f"  sparsity {s:5.0%}: pruned {before[-1]:.4f}  fine-tuned {after[-1]:.4f}")
    m.metric("sweep sparsities", SWEEP)
    m.metric("sweep accuracy after pruning", [round(a, 4) for a in before])
    m.metric("sweep accuracy after fine-tuning", [round(a, 4) for a in after])

    # -- 4. the whole pipeline, with int8 ------------------------------------------------------------------
    _, report = compress_model(copy.deepcopy(base), loader(seeds[0] + 4000), test, sparsity=0.9, steps=10,
                               epochs_per_step=1 if fast else 4, fine_tune_epochs=5 if fast else 60, lr=2e-3,
                               quantize=True,
                               report_path=m.out / "2015_pruning_pipeline.json")
    for row in report["stages"]:
        print(f"  pipeline {row['stage']:10s}: {row['bytes']:6d} bytes, accuracy {row['accuracy']:.4f}")
    m.metric("pipeline stages", [{k: row[k] for k in ("stage", "bytes", "accuracy")} for row in report["stages"]])

    _plot(m, SWEEP, before, after, float(np.mean(dense_acc)), alone_acc, kd_acc, histories)
    m.gate("90 % of the weights pruned", weight_sparsity >= 0.899 and example_zero)
    m.gate("pruned + retrained within 1 point of dense (mean of 3 seeds)",
           np.mean(pruned_acc) >= np.mean(dense_acc) - 0.01)
    m.gate(f"distilled student beats the student alone, {n_small} labelled images (mean of 3 seeds)",
           np.mean(kd_acc) > np.mean(alone_acc))
    return m.finish()


def _plot(m, sweep, before, after, dense, alone, kd, histories):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    x = [100 * s for s in sweep]
    ax = axes[0]
    ax.plot(x, before, "o-", label="after pruning")
    ax.plot(x, after, "s-", label="after fine-tuning")
    ax.axhline(dense, color="gray", ls="--", label="dense (mean)")
    ax.set_xlabel("weights pruned (%)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("accuracy vs sparsity")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    idx = np.arange(len(alone))
    ax.bar(idx - 0.2, alone, 0.4, label="student alone")
    ax.bar(idx + 0.2, kd, 0.4, label="distilled")
    ax.set_ylim(min(alone + kd) - 0.02, 1.0)
    ax.set_xticks(idx)
    ax.set_xticklabels([f"seed {i}" for i in idx])
    ax.set_title("64-16-10 student, 300 labelled images")
    ax.legend()
    ax = axes[2]
    start = 1
    for label, values in histories.items():                     # one after the other, as they ran
        ax.plot(range(start, start + len(values)), values, label=label)
        start += len(values)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.set_title("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle("Learning both weights and connections: 64-128-10 MLP on digits")
    fig.tight_layout()
    path = m.out / "2015_pruning.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"  plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
