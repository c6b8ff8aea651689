"""2018 MLPerf: a compression pipeline, measured stage by stage on the digits

MLPerf (2018) made machine-learning systems answer to measurements: accuracy, size and speed, taken
the same way for everyone. We run the classic compression pipeline on two digit classifiers, an MLP
(64-512-256-10) and a LeNet-style CNN, and measure every stage on the fixed held-out split of 360
images: dense float32 -> 90 % magnitude-pruned (global ranking, gradual, with fine-tuning) -> fine-tuned
by knowledge distillation from the dense model -> int8 (per-channel post-training quantization, the
pruned weights stored sparsely as int8 values with compact column indices). Sizes are real bytes: the
sum of .nbytes of every array each deployed model keeps (float32 stages store their pruned Linear
layers in module 17's CSR form). Latency is the median time of one batch of 64 held-out images, one thread
(with the interquartile range of the repeats: on a shared machine the spread is part of the result).
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")         # one thread: on a shared 2-core machine two are often slower

import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.activations import ReLU  # noqa: E402
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits  # noqa: E402
from tinytorch.core.layers import Dropout, Linear, Sequential  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import Adam  # noqa: E402
from tinytorch.core.spatial import Conv2d, Flatten, MaxPool2d  # noqa: E402
from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.training import CosineAnnealingLR, Trainer  # noqa: E402
from tinytorch.optimization.compression import (KnowledgeDistillation, evaluate, fine_tune,  # noqa: E402
                                                magnitude_prune, make_optimizer, measure_sparsity,
                                                remove_masks, sparsity_schedule)
from tinytorch.measurement.profiling import measure_latency  # noqa: E402
from tinytorch.optimization.quantization import (QuantizedConv2d, QuantizedLinear, model_size_bytes,  # noqa: E402
                                                 quantize_model)
from tinytorch.optimization.sparse import SparseLinear, to_sparse  # noqa: E402

NAME = "2018_mlperf"
SPARSITY = 0.9
GATE_PTQ_POINTS = 0.5            # int8 per-channel PTQ: at most this many points below float32
GATE_FINAL_POINTS = 1.5          # the final model: at most this many points below dense float32 ...
GATE_FINAL_RATIO = 10.0          # ... and at least this many times smaller, in real bytes
LATENCY_BATCH = 64
FULL = dict(dense_epochs=30, prune_steps=3, finetune_epochs=12, distill_epochs=8, warmup=5, repeats=30)
FAST = dict(dense_epochs=6, prune_steps=2, finetune_epochs=4, distill_epochs=2, warmup=2, repeats=8)


def mlp(rng):
    return Sequential(Linear(64, 512, rng=rng), ReLU(), Dropout(0.1, rng=rng), Linear(512, 256, rng=rng), ReLU(),
                      Dropout(0.1, rng=rng), Linear(256, 10, rng=rng))


def cnn(rng):
    return Sequential(Conv2d(1, 16, 3, padding=1, rng=rng), ReLU(), Conv2d(16, 32, 3, padding=1, rng=rng), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(32 * 4 * 4, 64, rng=rng), ReLU(), Dropout(0.25, rng=rng),
                      Linear(64, 10, rng=rng))


def data(kind: str):
    "Standardised digits (with the training set's statistics only): flat for the MLP, 1x8x8 for the CNN."
    (X, y), (Xt, yt) = load_digits(flatten=(kind == "MLP"))
    if kind == "MLP":
        mean, spread = X.data.mean(axis=0), X.data.std(axis=0) + 0.1
    else:
        mean, spread = X.data.mean(), X.data.std()
    return (Tensor((X.data - mean) / spread), y), (Tensor((Xt.data - mean) / spread), yt)


def deployed_float(model):
    "The float32 model as it would ship: masks dropped (the zeros stay), pruned Linear layers in CSR."
    m = copy.deepcopy(model)
    remove_masks(m)
    return to_sparse(m, batch_size=LATENCY_BATCH, mode="always")


def storage(model) -> str:
    "What the model's weight layers store, counted from the layers themselves."
    kinds = {}
    for m in model.modules():
        if isinstance(m, (QuantizedLinear, QuantizedConv2d)):
            scales = "per-channel" if m.weight_scale.data.ndim else "per-tensor"
            k = f"int{m.weight_bits} {'CSR' if m.sparse else 'dense'} {scales}"
        elif isinstance(m, SparseLinear):
            k = f"{m.values.dtype} CSR"
        elif isinstance(m, (Linear, Conv2d)):
            k = f"{m.weight.dtype} dense"
        else:
            continue
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(f"{n} x {k}" for k, n in kinds.items())


def measure(name: str, model, test, x_batch, cfg, note: str = "") -> dict:
    "Held-out accuracy, real bytes, latency per batch (median) and storage of one deployed model."
    acc = evaluate(model, [test])["accuracy"]
    lat = measure_latency(model, x_batch, warmup=cfg["warmup"], repeats=cfg["repeats"])
    return {"stage": name, "accuracy": acc, "bytes": model_size_bytes(model), "latency_ms": lat.median * 1e3,
            "latency_iqr_ms": lat.iqr * 1e3, "storage": storage(model), "note": note}


def pipeline(kind: str, cfg: dict, seed: int) -> list:
    rng = np.random.default_rng(seed)
    (X, y), (Xt, yt) = data(kind)
    test, x_batch = (Xt, yt), Xt[:LATENCY_BATCH]
    train = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=seed)
    calibration = [X[:512]]
    t0 = time.perf_counter()

    # 1. dense float32
    model = mlp(rng) if kind == "MLP" else cnn(rng)
    opt = Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    Trainer(model, opt, CrossEntropyLoss(), scheduler=CosineAnnealingLR(opt, T_max=cfg["dense_epochs"]),
            progress=False).fit(train, epochs=cfg["dense_epochs"])
    model.eval()
    rows = [measure("dense float32", model, test, x_batch, cfg, f"trained {cfg['dense_epochs']} epochs")]
    teacher = copy.deepcopy(model)

    # 1b. post-training int8 of the dense model: the quantization gate, per-channel and per-tensor side by side
    for per_channel, label in ((True, "per-channel"), (False, "per-tensor")):
        q = quantize_model(model, per_channel=per_channel, calibration_data=calibration)
        rows.append(measure(f"dense int8 PTQ {label}", q, test, x_batch, cfg, "calibrated on 512 training images"))

    # 2. 90 % magnitude pruning (global ranking, in gradual steps), fine-tuned with the masks kept
    pruned = copy.deepcopy(model)
    amounts = sparsity_schedule(SPARSITY, cfg["prune_steps"])
    per_step = max(1, cfg["finetune_epochs"] // len(amounts))
    for amount in amounts:
        magnitude_prune(pruned, amount, scope="global")
        fine_tune(pruned, train, per_step, lr=1e-3)
    sparsity = measure_sparsity(pruned, weights_only=True)
    rows.append(measure(f"pruned {100 * sparsity:.0f}% + fine-tuned", deployed_float(pruned), test, x_batch, cfg,
                        f"{len(amounts)} steps x {per_step} epochs"))

    # 3. knowledge distillation from the dense model into the pruned one (masks still kept)
    kd = KnowledgeDistillation(teacher, pruned, temperature=2.0, alpha=0.7)
    kd.fit(train, make_optimizer("adam", pruned.parameters(), lr=1e-4), epochs=cfg["distill_epochs"])
    pruned.eval()
    rows.append(measure("distilled", deployed_float(pruned), test, x_batch, cfg,
                        f"T=2, alpha=0.7, {cfg['distill_epochs']} epochs"))

    # 4. int8: per-channel PTQ of the distilled pruned model, its weights stored as sparse int8
    final = quantize_model(pruned, per_channel=True, calibration_data=calibration, sparse=True)
    rows.append(measure("int8 (final)", final, test, x_batch, cfg, "int8 values + compact indices"))
    for r in rows:
        r["model"] = kind
    print(f"  {kind}: pipeline ran in {time.perf_counter() - t0:.1f} s; final weight sparsity {100 * sparsity:.1f}%")
    return rows


def table(rows: list) -> str:
    head = (f"{'model':<5} {'stage':<28} {'accuracy':>8} {'bytes':>9} {'x smaller':>9} {'ms/batch':>9} "
            f"{'(IQR)':>7}  storage")
    lines = [head, "-" * (len(head) + 30)]
    base = {}
    for r in rows:
        if r["stage"] == "dense float32":
            base[r["model"]] = r["bytes"]
        r["times_smaller"] = base[r["model"]] / r["bytes"]
        lines.append(f"{r['model']:<5} {r['stage']:<28} {r['accuracy']:>8.4f} {r['bytes']:>9,} "
                     f"{r['times_smaller']:>8.1f}x {r['latency_ms']:>9.3f} {r['latency_iqr_ms']:>7.3f}  {r['storage']}")
    return "\n".join(lines)


def plot(m: Milestone, rows: list):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind, marker in (("MLP", "o"), ("CNN", "s")):
        rs = [r for r in rows if r["model"] == kind and "PTQ" not in r["stage"]]
        ax.plot([r["bytes"] for r in rs], [100 * r["accuracy"] for r in rs], marker=marker, label=kind)
        for r in rs:
            ax.annotate(r["stage"].split(" (")[0], (r["bytes"], 100 * r["accuracy"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("real bytes stored (log scale)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("dense -> pruned -> distilled -> int8 on the digits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = m.out / f"{NAME}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"  plot: {path}")


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    cfg = FAST if args.fast else FULL
    rows = pipeline("MLP", cfg, args.seed) + pipeline("CNN", cfg, args.seed)
    print()
    print(table(rows))
    print()
    plot(m, rows)
    m.metric("latency batch", LATENCY_BATCH)
    m.metric("stages", rows, "(the table above)")
    for kind in ("MLP", "CNN"):
        by = {r["stage"]: r for r in rows if r["model"] == kind}
        dense, ptq, final = by["dense float32"], by["dense int8 PTQ per-channel"], by["int8 (final)"]
        m.metric(f"{kind} dense accuracy", dense["accuracy"], "{:.4f}")
        m.metric(f"{kind} int8 PTQ per-channel accuracy", ptq["accuracy"], "{:.4f}")
        m.metric(f"{kind} final accuracy", final["accuracy"], "{:.4f}")
        m.metric(f"{kind} dense bytes", dense["bytes"], "{:,}")
        m.metric(f"{kind} final bytes", final["bytes"], "{:,}")
        m.metric(f"{kind} final times smaller", final["times_smaller"], "{:.2f}")
        m.metric(f"{kind} int8 PTQ per-channel bytes / dense", ptq["bytes"] / dense["bytes"], "{:.3f}")
        ptq_drop = 100 * (dense["accuracy"] - ptq["accuracy"])
        final_drop = 100 * (dense["accuracy"] - final["accuracy"])
        m.gate(f"{kind}: int8 per-channel PTQ {100 * ptq['accuracy']:.2f}% within {GATE_PTQ_POINTS} point of "
               f"float32 {100 * dense['accuracy']:.2f}%", ptq_drop <= GATE_PTQ_POINTS + 1e-9)
        m.gate(f"{kind}: final model {final['times_smaller']:.1f}x smaller than dense float32 "
               f"({final['bytes']:,} vs {dense['bytes']:,} bytes) >= {GATE_FINAL_RATIO:.0f}x",
               final["times_smaller"] >= GATE_FINAL_RATIO)
        m.gate(f"{kind}: final accuracy {100 * final['accuracy']:.2f}% within {GATE_FINAL_POINTS} points of "
               f"dense {100 * dense['accuracy']:.2f}%", final_drop <= GATE_FINAL_POINTS + 1e-9)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
