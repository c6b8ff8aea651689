"""2017 Transformer: a character-level GPT learns to write Shakespeare

Vaswani et al. ("Attention Is All You Need") replaced recurrence with attention: every position reads
every earlier one in a single step. We train a small decoder-only transformer (GPT-style: pre-norm
blocks, learned positions, output weights tied to the embedding) on the shipped Tiny Shakespeare, one
character per token, for a few minutes on one CPU thread. The gate is its cross-entropy on the last 10%
of the text, which it never trains on, printed beside the unigram baseline: the entropy of the
training split's character distribution, what a model that ignores all context can reach at best.
The trained weights (.npz) and the vocabulary (.json) are saved for later modules to reuse.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")         # one thread: on a shared 2-core machine two are often slower

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.autograd import no_grad  # noqa: E402
from tinytorch.core.dataloader import load_tinyshakespeare  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import AdamW  # noqa: E402
from tinytorch.core.tokenization import CharTokenizer  # noqa: E402
from tinytorch.core.training import clip_grad_norm, save_checkpoint  # noqa: E402
from tinytorch.core.transformers import GPT  # noqa: E402

NAME = "2017_transformer"
GATE_VAL_LOSS = 2.20                 # nats; the unigram baseline is 3.31
FULL = dict(embed_dim=96, num_layers=3, num_heads=4, max_seq_len=64, batch=32, steps=1500, lr=5e-3,
            min_lr=5e-4, warmup=30, eval_every=100, eval_batches=8, budget_s=195.0, final_windows=None)
FAST = dict(embed_dim=48, num_layers=2, num_heads=4, max_seq_len=32, batch=16, steps=80, lr=3e-3,
            min_lr=3e-4, warmup=10, eval_every=20, eval_batches=4, budget_s=25.0, final_windows=256)


def lr_at(step: int, progress: float, cfg: dict) -> float:
    "Linear warm-up over the first steps, times a cosine decay from lr to min_lr as progress goes 0 -> 1."
    warm = min(1.0, (step + 1) / cfg["warmup"])
    return warm * (cfg["min_lr"] + (cfg["lr"] - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def random_windows(data: np.ndarray, T: int, B: int, rng) -> np.ndarray:
    "B random windows of T + 1 consecutive ids: inputs [:, :-1], next-character targets [:, 1:]."
    starts = rng.integers(0, len(data) - T - 1, B)
    return data[starts[:, None] + np.arange(T + 1)]


def mean_loss(model, loss_fn, windows: np.ndarray, batch: int = 128) -> float:
    "Cross-entropy per character over `windows` (N, T + 1), in evaluation mode."
    V = model.vocab_size
    total, count = 0.0, 0
    model.eval()
    with no_grad():
        for i in range(0, len(windows), batch):
            w = windows[i:i + batch]
            loss = loss_fn(model(w[:, :-1]).reshape(-1, V), w[:, 1:].reshape(-1)).item()
            total += loss * w[:, 1:].size
            count += w[:, 1:].size
    model.train()
    return total / count


def plot(path: Path, history: dict, baseline: float, gate: float, attention: np.ndarray, chars: list,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    ax.plot(history["train_step"], history["train"], lw=1, label="train (mean of 10 batches)")
    ax.plot(history["step"], history["val"], marker="o", ms=3, label="validation (fixed batches)")
    ax.axhline(baseline, ls="--", c="gray", label=f"unigram baseline {baseline:.2f}")
    ax.axhline(gate, ls=":", c="red", label=f"gate {gate:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    im = ax2.imshow(attention, cmap="viridis", vmin=0.0)
    ticks = range(len(chars))
    labels = [repr(c)[1:-1] if c.strip() else "␣" if c == " " else repr(c)[1:-1] for c in chars]
    ax2.set_xticks(ticks, labels, fontsize=6)
    ax2.set_yticks(ticks, labels, fontsize=6)
    ax2.set_xlabel("key (attended to)")
    ax2.set_ylabel("query")
    ax2.set_title("last layer, head 0: attention weights")
    fig.colorbar(im, ax=ax2, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    m = Milestone(__file__, __doc__)
    m.parser.add_argument("--steps", type=int, default=None,
                          help="train exactly this many steps (default: the configured number, fewer if the "
                               "time budget would be exceeded on this machine)")
    args = m.parse_args(argv)
    cfg = dict(FAST if args.fast else FULL)
    T, B = cfg["max_seq_len"], cfg["batch"]

    # -- data: 90/10 split, characters as tokens ------------------------------------------------------
    text = load_tinyshakespeare()
    split = int(0.9 * len(text))
    tok = CharTokenizer.from_text(text[:split])
    train = np.array(tok.encode(text[:split]), dtype=np.int64)
    val = np.array(tok.encode(text[split:]), dtype=np.int64)
    V = tok.vocab_size
    counts = np.bincount(train, minlength=V).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    baseline = float(-(p * np.log(p)).sum())
    print(f"  data: {len(text):,} characters; vocabulary {V} ({len(tok.chars)} characters + 4 special tokens); "
          f"train {len(train):,}, validation {len(val):,}")
    print(f"  unigram baseline (entropy of the training split's characters): {baseline:.3f} nats; "
          f"uniform over the vocabulary: {math.log(V):.3f} nats")

    # -- model and optimiser -------------------------------------------------------------------------
    model = GPT(V, cfg["embed_dim"], cfg["num_layers"], cfg["num_heads"], T, dropout=0.0, seed=args.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]          # no weight decay on biases and norms
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                lr=cfg["lr"], betas=(0.9, 0.99))
    loss_fn = CrossEntropyLoss()
    print(f"  model: GPT, {cfg['num_layers']} layers x {cfg['embed_dim']} wide, {cfg['num_heads']} heads, "
          f"context {T}: {model.num_parameters():,} parameters; batch {B} x {T} characters")

    rng = np.random.default_rng(args.seed)
    eval_windows = random_windows(val, T, cfg["eval_batches"] * B, np.random.default_rng(1234))
    steps = args.steps if args.steps is not None else cfg["steps"]
    budget = math.inf if args.steps is not None else cfg["budget_s"]
    print(f"  training: {steps} steps or {budget:.0f} s, whichever comes first; the learning rate anneals "
          f"with whichever is closer to done" if args.steps is None else f"  training: {steps} steps")
    history = {"step": [], "val": [], "train_step": [], "train": []}
    recent, since_eval = [], []

    def record(step):
        v = mean_loss(model, loss_fn, eval_windows)
        history["step"].append(step)
        history["val"].append(v)
        print(f"  step {step:4d}  train {np.mean(since_eval):.3f}  val {v:.3f}  lr {opt.param_groups[0]['lr']:.1e}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        since_eval.clear()

    t0 = time.perf_counter()
    step = 0
    while True:
        progress = max(step / steps, (time.perf_counter() - t0) / budget)
        if progress >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, progress, cfg)
        batch = random_windows(train, T, B, rng)
        opt.zero_grad()
        loss = loss_fn(model(batch[:, :-1]).reshape(-1, V), batch[:, 1:].reshape(-1))
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        recent.append(loss.item())
        since_eval.append(recent[-1])
        if step % 10 == 0:                           # the training curve: mean of the last 10 batches
            history["train_step"].append(step)
            history["train"].append(float(np.mean(recent)))
            recent.clear()
        if step % cfg["eval_every"] == 0:
            record(step)
        step += 1
    if since_eval:
        record(step - 1)
    steps = step
    train_seconds = time.perf_counter() - t0

    # -- final measurement on the whole validation split (its first windows in fast mode) -------------
    n_win = (len(val) - 1) // T
    if cfg["final_windows"] is not None:
        n_win = min(n_win, cfg["final_windows"])
    all_windows = val[np.arange(n_win)[:, None] * T + np.arange(T + 1)]
    val_loss = mean_loss(model, loss_fn, all_windows)
    train_probe = mean_loss(model, loss_fn, random_windows(train, T, min(len(all_windows), 512), np.random.default_rng(99)))

    # -- a sample and an attention map ---------------------------------------------------------------
    prompt = "ROMEO:\n"
    out = model.generate(np.array(tok.encode(prompt)), 300 if not args.fast else 80, temperature=0.8,
                         top_k=20, seed=args.seed)
    sample = tok.decode(out.tolist())
    print("  ---- sample (temperature 0.8, top-k 20) ----")
    print("  " + sample.replace("\n", "\n  "))
    print("  ------------------------------------------")
    snippet = text[split + 1000: split + 1000 + min(T, 40)]
    attn = model.blocks[-1].attn
    attn.store_attention = True
    with no_grad():
        model.eval()
        model(np.array([tok.encode(snippet)]))
    attention = attn.last_attention_weights[0, 0].copy()
    attn.store_attention = False
    attn.last_attention_weights = None

    # -- save ---------------------------------------------------------------------------------------
    weights = m.out / f"{NAME}.npz"
    vocab = m.out / f"{NAME}_vocab.json"
    save_checkpoint(weights, model, config=model.config, val_loss=val_loss, steps=steps)
    tok.save(vocab)
    png = m.out / f"{NAME}.png"
    plot(png, history, baseline, GATE_VAL_LOSS, attention, list(snippet),
         f"Character-level GPT on Tiny Shakespeare ({model.num_parameters():,} parameters, {steps} steps)")
    print(f"  weights: {weights}\n  vocabulary: {vocab}\n  plot: {png}")

    m.metric("parameters", model.num_parameters())
    m.metric("steps", steps)
    m.metric("characters seen", steps * B * T)
    m.metric("training seconds", round(train_seconds, 1))
    m.metric("validation loss (nats/char)", round(val_loss, 4), "{:.4f}")
    m.metric("train loss (nats/char)", round(train_probe, 4), "{:.4f}")
    m.metric("unigram baseline (nats/char)", round(baseline, 4), "{:.4f}")
    m.metric("gate: validation loss below", GATE_VAL_LOSS)
    m.metric("sample", sample[:160])
    m.gate(f"validation loss {val_loss:.3f} < {GATE_VAL_LOSS:.2f} nats (unigram baseline {baseline:.3f})",
           val_loss < GATE_VAL_LOSS)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
