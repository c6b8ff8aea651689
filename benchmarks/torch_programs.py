"""PyTorch programs run unchanged on tinytorch: how close are the losses, and how long does each take?

Runs the ported programs of tests/torch_api/programs.py (written as PyTorch code, given the framework
as `torch`) on PyTorch and on tinytorch from the same weights and data, prints one table and writes it
as Markdown to benchmarks/results/torch_programs.md, which the book's "From PyTorch" page shows.

Run: python benchmarks/torch_programs.py [--out PATH]
"""
import os

if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "torch_api"))


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _pair(torch, tinytorch, build, run):
    "(theirs, ours, seconds theirs, seconds ours): the same program from the same weights."
    import programs as P
    theirs_model, ours_model = build(torch), build(tinytorch)
    if theirs_model is not None:
        P.copy_weights(theirs_model, ours_model)
    theirs, t_theirs = _timed(lambda: run(torch, theirs_model))
    ours, t_ours = _timed(lambda: run(tinytorch, ours_model))
    return theirs, ours, t_theirs, t_ours


def rows():
    import torch

    import programs as P
    import tinytorch
    from tinytorch.core.dataloader import load_digits, load_tinyshakespeare
    torch.set_num_threads(1)
    torch.manual_seed(0)
    (X, y), _ = load_digits(flatten=True)
    X, Y = np.asarray(X)[:512].astype(np.float32), np.asarray(y)[:512].astype(np.int64)
    text = load_tinyshakespeare()[:20000]
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    starts = np.random.default_rng(0).integers(0, len(data) - 17, size=(30, 8))
    programs = [
        ("polynomial fit, tensors + autograd, `w -= lr * w.grad` under no_grad",
         lambda T: None, lambda T, m: P.polynomial_autograd(T)[0]),
        ("polynomial fit, nn.Sequential + hand-written SGD over parameters()",
         P.polynomial_nn_model, lambda T, m: P.polynomial_nn(T, m)),
        ("MLP on digits: nn.Module, Adam, StepLR, DataLoader",
         P.mlp_model, lambda T, m: P.mlp_train(T, m, X, Y)[0]),
        ("pytorch/examples MNIST CNN on 8x8 digits: Adadelta, nll_loss (dropout 0)",
         lambda T: P.cnn_model(T, p_drop=0.0), lambda T, m: P.cnn_train(T, m, X.reshape(-1, 1, 8, 8), Y)[0]),
        ("character GPT (gpt.py style): ModuleList heads, masked_fill, AdamW",
         lambda T: P.gpt_model(T, len(stoi)), lambda T, m: P.gpt_train(T, m, data, starts)),
    ]
    out = []
    for name, build, run in programs:
        theirs, ours, t_theirs, t_ours = _pair(torch, tinytorch, build, run)
        theirs, ours = np.asarray(theirs), np.asarray(ours)
        rel = np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12))
        out.append({"program": name, "steps": len(theirs), "first": float(theirs[0]), "last_torch": float(theirs[-1]),
                    "last_tiny": float(ours[-1]), "max_rel_diff": float(rel),
                    "seconds_torch": t_theirs, "seconds_tiny": t_ours})
    return out


def markdown(table) -> str:
    lines = ["| program | steps | loss at step 1 | last loss, PyTorch | last loss, tinytorch | largest relative "
             "difference over all steps | time PyTorch / tinytorch (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['program']} | {r['steps']} | {r['first']:.6g} | {r['last_torch']:.6g} | "
                     f"{r['last_tiny']:.6g} | {r['max_rel_diff']:.1e} | {r['seconds_torch']:.2f} / "
                     f"{r['seconds_tiny']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "torch_programs.md"))
    args = ap.parse_args(argv)
    table = rows()
    text = markdown(table)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
        f.write(text)
    os.replace(f.name, out)                          # atomic: a reader never sees half a table
    print(f"written to {out}")


if __name__ == "__main__":
    main()
