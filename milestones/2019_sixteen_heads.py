"""2019 Sixteen heads: are sixteen attention heads really better than one?

Michel, Levy and Neubig ("Are Sixteen Heads Really Better than One?", 2019) switched off the attention heads
of trained transformers and found that many can go with little loss — if the right ones are chosen. We ask the
same of the course's own GPT: the preset tinygpt-4x4 (4 layers x 4 heads = 16 heads, 64 wide, context 64),
trained on Tiny Shakespeare by the 2017 milestone's recipe (tinytorch.experiments) for the preset's fixed number
of steps, so the same seed gives the same model on any machine (about a minute on one core; the weights are
loaded from --weights-dir, default milestones/results/, when present, and saved there otherwise). Sixteen heads,
because 10, 30 and 50 % of them must be whole heads (2, 5 and 8). Four ways to choose the heads to prune —
random (3 seeds), weight magnitude, attention entropy, and the expected gate gradient E|dL/dxi_h| of Michel et
al. — each pruning 10, 30 and 50 % of the heads of the same trained model, measured by held-out perplexity
before pruning, right after it, and after the same short fine-tuning. Then growth: from the 50 %-pruned,
fine-tuned model, four heads are grown back, chosen by gradient sensitivity or at random, and fine-tuned for
equal steps. The gate: with half of the heads pruned (by the gradient strategy) and fine-tuned, the held-out
perplexity stays within 10 % of the unpruned model's.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")         # one thread: on a shared 2-core machine two are often slower

import copy  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.experiments import load_or_train_tinygpt, random_windows, shakespeare_split  # noqa: E402
from tinytorch.optimization.compression import (evaluate, fine_tune, grow_heads, head_alive,  # noqa: E402
                                                head_importance, prune_heads)

NAME = "2019_sixteen_heads"
GATE_RATIO = 1.10                   # perplexity after pruning 50 % of the heads and fine-tuning / unpruned
FRACTIONS = (0.1, 0.3, 0.5)
RANDOM_SEEDS = (0, 1, 2)
STRATEGIES = ("random", "magnitude", "entropy", "gradient")
FULL = dict(preset="tinygpt-4x4", batch=16, eval_windows=512, importance_batches=8, tune_steps=60, lr=3e-4,
            grow=4, grow_steps=60, warmup=10)
FAST = dict(preset="tinygpt-test", batch=8, eval_windows=32, importance_batches=2, tune_steps=4, lr=1e-3,
            grow=2, grow_steps=4, warmup=2)


def perplexity(model, pairs) -> float:
    return math.exp(evaluate(model, pairs)["loss"])


def tune(model, batches, cfg, warmup=0):
    "The same fine-tuning everywhere: AdamW, clipping at 1, masks re-applied after every step (module 17)."
    hist = fine_tune(model, batches, 1, lr=cfg["lr"], optimizer_name="adamw", clip_grad=1.0, warmup_steps=warmup)
    for s in hist.skipped:
        print(f"  note: a fine-tuning step was skipped ({s})")
    return hist


def plot(path: Path, rows: list, base: float, control: float, gate: float, importances: dict, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 + len(importances), figsize=(5 * 2 + 2.6 * len(importances), 4.2),
                             gridspec_kw={"width_ratios": [2.2, 2.2] + [1] * len(importances)})
    colors = {"random": "gray", "magnitude": "tab:blue", "entropy": "tab:orange", "gradient": "tab:green"}
    for ax, key, what in ((axes[0], "pruned", "right after pruning"), (axes[1], "fine_tuned", "after fine-tuning")):
        for s in STRATEGIES:
            mine = [r for r in rows if r["strategy"] == s]
            x = [100 * r["fraction"] for r in mine]
            y = [r[key] for r in mine]
            err = [r.get(key + "_std", 0.0) for r in mine]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colors[s],
                        label=s + (" (mean ± sd, 3 seeds)" if s == "random" else ""))
        ax.axhline(base, ls="--", c="k", lw=1, label=f"unpruned {base:.2f}")
        ax.axhline(gate, ls=":", c="red", lw=1, label=f"gate {gate:.2f}")
        if key == "fine_tuned":
            ax.axhline(control, ls="-.", c="purple", lw=1, label=f"unpruned + same fine-tuning {control:.2f}")
        ax.set(xlabel="heads pruned (%)", ylabel="held-out perplexity", title=what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, (s, imp) in zip(axes[2:], importances.items()):
        im = ax.imshow(imp, cmap="viridis")
        ax.set(title=s, xlabel="head", ylabel="layer", xticks=range(imp.shape[1]), yticks=range(imp.shape[0]))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    m = Milestone(__file__, __doc__)
    m.parser.add_argument("--weights-dir", default=str(HERE / "results"),
                          help="where the TinyGPT weights are looked for (and saved after training)")
    m.parser.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the configured one)")
    args = m.parse_args(argv)
    cfg = dict(FAST if args.fast else FULL)
    if args.lr is not None:
        cfg["lr"] = args.lr
    t_start = time.perf_counter()

    # -- the model and the data ---------------------------------------------------------------------------
    base_model, tok, info = load_or_train_tinygpt(cfg["preset"], args.weights_dir, seed=args.seed,
                                                  save=not args.fast, log=lambda *a: print(*a, flush=True))
    t_model = time.perf_counter() - t_start
    t_sweep = time.perf_counter()
    _, train, val = shakespeare_split(tok)
    T, B = base_model.max_seq_len, cfg["batch"]
    L, H = base_model.num_layers, base_model.num_heads
    n_heads = L * H
    rng = np.random.default_rng(args.seed)
    held_out = random_windows(val, T, cfg["eval_windows"], np.random.default_rng(1234))
    eval_pairs = [(w[:, :-1], w[:, 1:]) for w in np.array_split(held_out, max(1, len(held_out) // 64))]
    scoring = [random_windows(train, T, B, rng) for _ in range(cfg["importance_batches"])]
    tuning = [(w[:, :-1], w[:, 1:]) for w in (random_windows(train, T, B, rng) for _ in range(cfg["tune_steps"]))]
    growing = [(w[:, :-1], w[:, 1:]) for w in (random_windows(train, T, B, rng) for _ in range(cfg["grow_steps"]))]
    print(f"  model: {cfg['preset']} ({info['source']}), {L} layers x {H} heads = {n_heads} heads (so that "
          + ", ".join(f"{f:.0%}" for f in FRACTIONS) + " of them are "
          + ", ".join(str(round(f * n_heads)) for f in FRACTIONS) + f" whole heads), "
          f"{base_model.num_parameters():,} parameters, context {T}")
    print(f"  held-out: {held_out.shape[0]} windows of {T} characters; importance from {len(scoring)} training "
          f"batches of {B}; fine-tuning: {len(tuning)} steps of {B} windows, AdamW lr {cfg['lr']}, clipping 1.0")
    base = perplexity(base_model, eval_pairs)
    control_model = copy.deepcopy(base_model)
    tune(control_model, tuning, cfg)
    control = perplexity(control_model, eval_pairs)
    print(f"  unpruned: perplexity {base:.3f}; unpruned + the same fine-tuning: {control:.3f}")

    # -- importance once per strategy (and seed), on the unpruned model ------------------------------------
    importances, seconds = {}, {}
    for s in STRATEGIES:
        for seed in (RANDOM_SEEDS if s == "random" else (None,)):
            t = time.perf_counter()
            importances[(s, seed)] = head_importance(base_model, s, scoring, seed=seed or 0)
            seconds[s] = time.perf_counter() - t
    print("  importance time: " + ", ".join(f"{s} {seconds[s]:.2f} s" for s in STRATEGIES))

    # -- the sweep ----------------------------------------------------------------------------------------
    raw = []
    for (s, seed), imp in importances.items():
        for frac in FRACTIONS:
            model = copy.deepcopy(base_model)
            pruned = prune_heads(model, frac, s, importance=imp)
            after = perplexity(model, eval_pairs)
            tune(model, tuning, cfg)
            alive = head_alive(model)
            assert all(not alive[l, h] for l, h in pruned), "a pruned head came back during fine-tuning"
            raw.append({"strategy": s, "seed": seed, "fraction": frac, "heads_pruned": len(pruned),
                        "pruned_heads": [list(p) for p in pruned], "pruned": after,
                        "fine_tuned": perplexity(model, eval_pairs)})
    rows = []
    for s in STRATEGIES:
        for frac in FRACTIONS:
            mine = [r for r in raw if r["strategy"] == s and r["fraction"] == frac]
            row = {"strategy": s, "fraction": frac, "heads_pruned": mine[0]["heads_pruned"], "before": base,
                   "pruned": float(np.mean([r["pruned"] for r in mine])),
                   "fine_tuned": float(np.mean([r["fine_tuned"] for r in mine]))}
            if len(mine) > 1:
                row["pruned_std"] = float(np.std([r["pruned"] for r in mine]))
                row["fine_tuned_std"] = float(np.std([r["fine_tuned"] for r in mine]))
            rows.append(row)

    print()
    print(f"{'strategy':<20s}{'pruned':>7s}  {'before':>8s}  {'after pruning':>15s}  {'after fine-tuning':>18s}")
    for r in rows:
        label = r["strategy"] + (f" ({len(RANDOM_SEEDS)} seeds)" if r["strategy"] == "random" else "")
        sd = (lambda k: f" ±{r[k + '_std']:.2f}" if k + "_std" in r else "      ")
        print(f"{label:<20s}{r['heads_pruned']:>3d}/{n_heads:<3d}  {r['before']:8.3f}  "
              f"{r['pruned']:9.3f}{sd('pruned')}  {r['fine_tuned']:12.3f}{sd('fine_tuned')}")
    print()

    # -- what the sweep says about the ordering --------------------------------------------------------------
    order_ok, findings = [], []
    for frac in FRACTIONS:
        by = {r["strategy"]: r for r in rows if r["fraction"] == frac}
        ranked = sorted(STRATEGIES, key=lambda s: by[s]["pruned"])
        findings.append(f"{frac:.0%}: " + " < ".join(f"{s} {by[s]['pruned']:.2f}" for s in ranked))
        g, mg, e, rd = (by[s]["pruned"] for s in ("gradient", "magnitude", "entropy", "random"))
        tol = 0.02 * base                              # "about equal": within 2 % of the unpruned perplexity
        order_ok.append({"fraction": frac, "gradient_best": bool(g <= min(mg, e) + tol),
                         "magnitude_vs_entropy": round(mg - e, 4), "both_beat_random": bool(max(mg, e) < rd)})
    print("  ordering by perplexity right after pruning (lower is better):")
    for line in findings:
        print("    " + line)
    expected = all(o["gradient_best"] and o["both_beat_random"] for o in order_ok)
    print("  the expected ordering, checked at each fraction:")
    for o in order_ok:
        parts = [("gradient is best (within 2 %)" if o["gradient_best"] else "gradient is NOT the best"),
                 f"magnitude - entropy = {o['magnitude_vs_entropy']:+.3f}",
                 ("magnitude and entropy both beat random" if o["both_beat_random"]
                  else "magnitude or entropy does NOT beat random")]
        print(f"    {o['fraction']:.0%}: " + "; ".join(parts))
    print(f"  expected gradient >= magnitude ~ entropy > random before fine-tuning: "
          f"{'as measured' if expected else 'NOT what was measured here (see the lines above)'}")
    ft_order = {frac: sorted(STRATEGIES, key=lambda s: next(r["fine_tuned"] for r in rows
                                                             if r["strategy"] == s and r["fraction"] == frac))
                for frac in FRACTIONS}
    print("  after fine-tuning (lower is better): " + "; ".join(f"{f:.0%}: {' < '.join(o)}" for f, o in ft_order.items()))

    # -- growth: from the 50 %-pruned, fine-tuned model --------------------------------------------------------
    start = copy.deepcopy(base_model)
    prune_heads(start, 0.5, "gradient", importance=importances[("gradient", None)])
    tune(start, tuning, cfg)
    start_ppl = perplexity(start, eval_pairs)
    growth = {}
    for label, strategy, seed in (("no growth", None, 0), ("gradient_sensitivity", "gradient_sensitivity", 0),
                                  ("random", "random", args.seed)):
        model = copy.deepcopy(start)
        grown = grow_heads(model, cfg["grow"], strategy, scoring, seed=seed) if strategy else []
        at_once = perplexity(model, eval_pairs)
        tune(model, growing, cfg, warmup=cfg["warmup"])
        growth[label] = {"grown": [list(g) for g in grown], "heads_on": int(head_alive(model).sum()),
                         "right_after": at_once, "after_fine_tuning": perplexity(model, eval_pairs)}
    print(f"\n  growth from {int(head_alive(start).sum())}/{n_heads} heads (50 % pruned by gradient, fine-tuned: "
          f"perplexity {start_ppl:.3f}); {cfg['grow']} heads back, then {len(growing)} fine-tuning steps "
          f"with a {cfg['warmup']}-step warm-up:")
    for label, g in growth.items():
        print(f"    {label:<22s} heads {g['heads_on']:2d}  grown {str(g['grown']):<34s} right after "
              f"{g['right_after']:.3f}  after fine-tuning {g['after_fine_tuning']:.3f}")
    gs, gr = growth["gradient_sensitivity"]["after_fine_tuning"], growth["random"]["after_fine_tuning"]
    print(f"  gradient sensitivity vs random growth after equal fine-tuning: {gs:.3f} vs {gr:.3f} "
          f"({'gradient sensitivity lower' if gs < gr else 'random lower or equal'})")

    # -- results ----------------------------------------------------------------------------------------------
    half = next(r for r in rows if r["strategy"] == "gradient" and r["fraction"] == 0.5)
    gate = GATE_RATIO * base
    png = m.out / f"{NAME}.png"
    plot(png, rows, base, control, gate, {s: importances[(s, 0 if s == "random" else None)] for s in STRATEGIES},
         f"Pruning the heads of {cfg['preset']} ({n_heads} heads): held-out perplexity")
    print(f"  plot: {png}")
    m.metric("preset", cfg["preset"])
    m.metric("model source", info["source"])
    m.metric("heads", n_heads)
    m.metric("parameters", base_model.num_parameters())
    m.metric("unpruned perplexity", round(base, 4))
    m.metric("unpruned + same fine-tuning perplexity", round(control, 4))
    m.metrics["table"] = rows                      # in the JSON only (printed above)
    m.metrics["runs"] = raw
    m.metrics["ordering after pruning"] = findings
    m.metrics["ordering checks"] = order_ok
    m.metrics["growth"] = growth
    m.metrics["importance"] = {s + (f" seed {seed}" if seed is not None else ""): np.round(imp, 6).tolist()
                               for (s, seed), imp in importances.items()}
    m.metric("ordering as expected", expected)
    m.metric("50% gradient, fine-tuned perplexity", round(half["fine_tuned"], 4))
    m.metric("model seconds (load or train)", round(t_model, 1))
    m.metric("sweep seconds", round(time.perf_counter() - t_sweep, 1))
    m.gate(f"50 % of heads pruned (gradient) and fine-tuned: perplexity {half['fine_tuned']:.3f} <= "
           f"{GATE_RATIO:.2f} x unpruned {base:.3f} = {gate:.3f}", half["fine_tuned"] <= gate)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
