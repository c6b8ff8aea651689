"""A pruned model end to end: the digits MLP at 90 % sparsity, dense against to_sparse; one thread.

Run: python benchmarks/bench_pruned_mlp.py [--quick] [--json PATH]
Two MLPs on the shipped digits (tinytorch.core.dataloader.load_digits): the 1986 milestone's 64-128-10
and a wide 64-1024-1024-10. Each is trained (Adam), pruned by magnitude to 90 % of its weights (globally,
with tinytorch.optimization.compression.magnitude_prune when that module is present, else with plain
NumPy: zeros kept by an optimizer step hook), fine-tuned with the masks, then run in inference three ways on the same
batches: the dense pruned model, to_sparse(mode="always") (every pruned layer in CSR) and
to_sparse(mode="auto") (the dispatcher's choice per layer). Prints test accuracy (identical predictions
are checked) and the latency per batch of 64 and of the whole test set, with module 19's Benchmark (CPU
time of the one thread that runs everything, unless TINYTORCH_BENCH_TIMER=wall).
"""
import os

if __name__ == "__main__":       # one thread everywhere, set before NumPy loads (importing this file changes nothing)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SPARSITY = 0.9


def numpy_magnitude_prune(model, sparsity):
    """Global magnitude pruning of the Linear weights with plain NumPy: zero in place, and keep them zero
    with a global optimizer step post-hook (module 06) that re-applies the masks after every step."""
    from tinytorch.core.layers import Linear
    from tinytorch.core.optimizers import register_optimizer_step_post_hook
    weights = [m.weight for m in model.modules() if isinstance(m, Linear)]
    scores = np.concatenate([np.abs(w.data).ravel() for w in weights])
    k = int(round(sparsity * scores.size))
    cut = np.partition(scores, k - 1)[k - 1]
    keep = {}
    for w in weights:
        keep[id(w)] = (np.abs(w.data) > cut).astype(w.data.dtype)
        w.data *= keep[id(w)]

    def reapply(opt, args, kwargs):
        for w in weights:
            w.data *= keep[id(w)]
            for buf in opt.state.get(w, {}).values():
                if isinstance(buf, np.ndarray) and buf.shape == w.data.shape:
                    buf *= keep[id(w)]
    register_optimizer_step_post_hook(reapply)


def prune(model, sparsity):
    try:
        from tinytorch.optimization.compression import magnitude_prune
    except ImportError:
        numpy_magnitude_prune(model, sparsity)
        return "plain NumPy magnitude pruning (global)"
    magnitude_prune(model, sparsity, scope="global")
    return "tinytorch.optimization.compression.magnitude_prune(scope='global')"


def train(model, X, y, epochs, lr, seed):
    from tinytorch.core.dataloader import DataLoader, TensorDataset
    from tinytorch.core.losses import CrossEntropyLoss
    from tinytorch.core.optimizers import Adam
    opt, loss_fn = Adam(model.parameters(), lr=lr), CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=seed + epoch):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    model.eval()


def weight_sparsity(model):
    from tinytorch.core.layers import Linear
    from tinytorch.optimization.sparse import SparseLinear
    total = zeros = 0
    for m in model.modules():
        if isinstance(m, Linear):
            total += m.weight.data.size
            zeros += int((m.weight.data == 0).sum())
        elif isinstance(m, SparseLinear):
            total += m.in_features * m.out_features
            zeros += m.in_features * m.out_features - int(np.count_nonzero(m.values.data))
    return zeros / total


def run_model(name, sizes, quick):
    from tinytorch.core.activations import ReLU
    from tinytorch.core.autograd import no_grad
    from tinytorch.core.dataloader import load_digits
    from tinytorch.core.layers import Linear, Sequential
    from tinytorch.core.tensor import Tensor
    from tinytorch.measurement.benchmarking import Benchmark
    from tinytorch.optimization.sparse import SparseLinear, calibrate, sparse_plan, to_sparse

    (X, y), (Xt, yt) = load_digits()
    rng = np.random.default_rng(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    model = Sequential(*layers)
    train(model, X, y, epochs=2 if quick else 6, lr=3e-3, seed=0)
    with no_grad():
        acc_dense = float((model(Xt).data.argmax(1) == yt.data).mean())
    how = prune(model, SPARSITY)
    train(model, X, y, epochs=1 if quick else 3, lr=1e-3, seed=100)             # fine-tune with the masks
    always = to_sparse(copy.deepcopy(model), mode="always")
    cal = calibrate([(m.in_features, m.out_features, 64) for m in model.modules() if isinstance(m, Linear)])
    auto = to_sparse(copy.deepcopy(model), mode="auto", batch_size=64, calibration=cal)
    plan = [(p["name"], p["shape"], round(p["density"], 3), p["format"]) for p in sparse_plan(model, 64, calibration=cal)]
    xt_all = Tensor(Xt.data)
    xb = Tensor(Xt.data[:64])
    with no_grad():
        preds = {k: m(xt_all).data.argmax(1) for k, m in (("dense", model), ("always", always), ("auto", auto))}
    accs = {k: float((p == yt.data).mean()) for k, p in preds.items()}
    same = all(np.array_equal(preds["dense"], p) for p in preds.values())
    results = {}
    for label, x in (("batch 64", xb), (f"test set ({len(Xt.data)})", xt_all)):
        def call(m, x=x):
            def f():
                with no_grad():
                    return m(x)
            return f
        from bench_sparse import timer
        res = Benchmark(f"{name}: {label}", repeats=7 if quick else 21, min_time=0.005, timer=timer()) \
            .add("dense (pruned)", call(model)).add("to_sparse always", call(always)) \
            .add("to_sparse auto", call(auto)).run()
        results[label] = {"dense_s": res["dense (pruned)"].median, "always_s": res["to_sparse always"].median,
                          "auto_s": res["to_sparse auto"].median, "always_vs_dense": res.ratio("to_sparse always"),
                          "auto_vs_dense": res.ratio("to_sparse auto"), "table": res.table()}
    n_sparse = sum(isinstance(m, SparseLinear) for m in auto.modules())
    return {"model": name, "sizes": sizes, "pruning": how, "sparsity": weight_sparsity(model),
            "accuracy_before_pruning": acc_dense, "accuracy": accs, "identical_predictions": same,
            "auto_sparse_layers": n_sparse, "plan": plan, "latency": results}


def run(quick=False):
    return [run_model("digits MLP 64-128-10", [64, 128, 10], quick),
            run_model("wide digits MLP 64-1024-1024-10", [64, 1024, 1024, 10], quick)]


def print_rows(rows):
    for r in rows:
        print(f"{r['model']}: weight sparsity {r['sparsity']:.1%} ({r['pruning']}); test accuracy "
              f"{r['accuracy_before_pruning']:.3f} before pruning, {r['accuracy']['dense']:.3f} pruned + fine-tuned; "
              f"dense / always / auto predictions identical: {r['identical_predictions']}")
        print(f"  auto plan (batch 64): " + ", ".join(f"{n} {s[0]}x{s[1]} density {d} -> {f}" for n, s, d, f in r["plan"]))
        for label, l in r["latency"].items():
            print(f"  {label:<16} dense {l['dense_s'] * 1e6:9.1f} us   to_sparse always {l['always_s'] * 1e6:9.1f} us "
                  f"({1 / l['always_vs_dense']:.2f}x)   auto {l['auto_s'] * 1e6:9.1f} us ({1 / l['auto_vs_dense']:.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter training and fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    rows = run(args.quick)
    print_rows(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
