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
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.autograd import no_grad  # noqa: E402
from tinytorch.core.dataloader import load_tinyshakespeare  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.tokenization import CharTokenizer  # noqa: E402
# the TinyGPT presets and their training loop live in the package (module 20), shared with the experiments
from tinytorch.experiments import (TINYGPT_PRESETS, build_tinygpt, mean_loss, random_windows,  # noqa: E402
                                   save_tinygpt, train_tinygpt)

NAME = "2017_transformer"
GATE_VAL_LOSS = 2.20                 # nats; the unigram baseline is 3.31
FULL = TINYGPT_PRESETS["tinygpt-2017"]          # 3 layers x 96 wide, 4 heads, context 64; a fixed number of steps
FAST = TINYGPT_PRESETS["tinygpt-2017-fast"]


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
                          help="train exactly this many steps (default: the preset's fixed number)")
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
    model = build_tinygpt(cfg, V, seed=args.seed)
    loss_fn = CrossEntropyLoss()
    print(f"  model: GPT, {cfg['num_layers']} layers x {cfg['embed_dim']} wide, {cfg['num_heads']} heads, "
          f"context {T}: {model.num_parameters():,} parameters; batch {B} x {T} characters")

    # AdamW (weight decay on matrices only), clipping at 1, warm-up then cosine decay: tinytorch.experiments
    trained = train_tinygpt(model, cfg, train, val, steps=args.steps, seed=args.seed,
                            log=lambda line: print(line, flush=True))
    history, steps, train_seconds = trained["history"], trained["steps"], trained["seconds"]

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
    save_tinygpt(m.out / NAME, model, tok, val_loss=val_loss, steps=steps)
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
