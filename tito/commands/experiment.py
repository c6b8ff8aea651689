"""``tito experiment [--model NAME] [--strategy S] [--pruning-percent F] [--max-cycles N] [--growth-strategy G]
[--epochs N] [--batch-size B] [--lr LR] [--dataset NAME|FILE] [--weights PATH] [--prompt TEXT] [--device cpu]
[--output-dir DIR] [--resume] [--seed N] [--test-mode] [--physical] [--list-models]``.

Runs one pruning experiment on a TinyGPT (module 20, ``tinytorch.experiments.run_experiment``) with a progress
bar: the baseline, the heads pruned by ``--strategy`` (random, magnitude, entropy, gradient), fine-tuning, and,
with ``--growth-strategy`` (gradient_sensitivity, entropy_gap, balanced, random), heads grown back and
fine-tuned again. ``--max-cycles N`` repeats prune → fine-tune N times (each prunes the fraction of the heads
still on). Prints loss and perplexity at every stage and the heads pruned; writes progress.json, summary.json,
plots and model.npz (the final model and tokenizer) to ``--output-dir`` (default ``experiment_results/<name>/`` in
the checkout, a folder git ignores); ``--resume`` continues the run saved there. The data is ``--dataset``:
tinyshakespeare or the path of a UTF-8 text file (90 % train, 10 % held out). The model is a preset of this
course (``--list-models``), trained for a fixed number of steps and cached in ~/.cache/tinytorch/weights (or
$TINYTORCH_WEIGHTS_DIR), or ``--weights``: a model saved by tinytorch.experiments.save_model, or a local
Hugging Face GPT-2 checkpoint directory (config.json, model.safetensors, vocab.json, merges.txt; nothing is
downloaded). ``--test-mode`` uses the tiny preset and runs in seconds. The only device is the CPU.
Exit code: 0, 2 for a bad argument.
"""
from __future__ import annotations

import sys
from . import add_command


def register(sub):
    p = add_command(sub, "experiment", "prune (and regrow) the attention heads of a small GPT, measured at every stage", __doc__)
    p.add_argument("--model", default="tinygpt-4x4", help="a TinyGPT preset (default tinygpt-4x4; see --list-models)")
    p.add_argument("--strategy", default="gradient", help="head importance: random, magnitude, entropy, gradient")
    p.add_argument("--pruning-percent", type=float, default=0.3, metavar="F",
                   help="fraction of the heads to prune, in [0, 1) (default 0.3)")
    p.add_argument("--growth-strategy", default=None,
                   help="grow heads back after fine-tuning: gradient_sensitivity, entropy_gap, balanced, random")
    p.add_argument("--grow-count", type=int, default=None, help="how many heads to grow (default: half the pruned ones)")
    p.add_argument("--max-cycles", type=int, default=1, metavar="N", help="prune -> fine-tune cycles (default 1)")
    p.add_argument("--dataset", default="tinyshakespeare",
                   help="tinyshakespeare (default) or the path of a UTF-8 text file")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="start from a saved model (.npz from save_model) or a local GPT-2 checkpoint directory")
    p.add_argument("--prompt", default="ROMEO:\n", help="the prompt of the text samples (default 'ROMEO:\\n')")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --output-dir")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument("--steps-per-epoch", type=int, default=40, help="fine-tuning batches per epoch (default 40)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    p.add_argument("--device", default="cpu", help="cpu (the only device tinytorch has)")
    p.add_argument("--output-dir", default=None,
                   help="where the JSON, plots and model go (default experiment_results/<name>/ in the checkout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--physical", action="store_true", help="remove pruned heads from the weights (not only mask them)")
    p.add_argument("--test-mode", action="store_true", help="a tiny model and small stages: seconds")
    p.add_argument("--list-models", action="store_true", help="list the TinyGPT presets and exit")
    p.set_defaults(func=run)


def _output_dir(args, root: str):
    "Where the run writes: --output-dir (relative to the working folder), else experiment_results/<name>/ in the checkout."
    from pathlib import Path
    if args.output_dir is None:
        name = f"{'test' if args.test_mode else args.model}-{args.strategy}-{args.pruning_percent:g}-seed{args.seed}"
        return Path(root) / "experiment_results" / name          # ignored by git (.gitignore)
    out = Path(args.output_dir)
    return out if out.is_absolute() else Path.cwd() / out


def _config(ex, args, out):
    "The ExperimentConfig of the command line; a bad value is exit code 2 with the config's message."
    from ..errors import TitoError
    prompt = args.prompt.replace("\\n", "\n").replace("\\t", "\t")     # a typed \n is a newline
    try:
        return ex.ExperimentConfig(model_name=args.model, pruning_percent=args.pruning_percent,
                                   strategy=args.strategy, growth_strategy=args.growth_strategy,
                                   num_epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                   device=args.device, output_dir=str(out), seed=args.seed,
                                   test_mode=args.test_mode, steps_per_epoch=args.steps_per_epoch,
                                   grow_count=args.grow_count, physical=args.physical,
                                   max_cycles=args.max_cycles, dataset=args.dataset, weights=args.weights,
                                   prompt=prompt, resume=args.resume)
    except ValueError as e:
        raise TitoError(str(e), exit_code=2) from None


def _run_with_bar(ex, config) -> dict:
    "run_experiment with a progress bar of its stages (notices written above the bar); returns the summary."
    from tqdm import tqdm
    stages = ex.experiment_stages(config)
    with tqdm(total=len(stages), desc="experiment", unit="stage", file=sys.stderr, dynamic_ncols=True) as bar:
        def progress(stage):
            if bar.n or stage != stages[0]:
                bar.update(1)
            bar.set_postfix_str(stage)

        def log(message):
            bar.write(str(message), file=sys.stderr)

        _, _, summary = ex.run_experiment(config, progress=progress, log=log)
        bar.update(len(stages) - bar.n)
    return summary


def _print_summary(config, summary: dict) -> None:
    m = summary["model"]
    print(f"model: {m['preset']} ({m['source']}), {m['layers']} layers, heads per layer {m['heads_per_layer']}")
    print(f"{'stage':<22s}{'loss':>8s}{'perplexity':>12s}{'heads on':>10s}")
    for s in summary["stages"]:
        print(f"{s['stage']:<22s}{s['loss']:8.3f}{s['perplexity']:12.3f}{s['heads_on']:10d}")
    print(f"pruned ({config.strategy}): {summary['pruned_heads']}")
    if config.max_cycles > 1:
        for c in summary["cycles"]:
            print(f"cycle {c['cycle']}: pruned {c['pruned_heads']}, heads on {c['heads_on']}, "
                  f"loss after pruning {c['pruned_loss']:.3f}, after fine-tuning {c['fine_tuned_loss']:.3f}")
    if config.growth_strategy:
        print(f"grown back ({config.growth_strategy}): {summary['grown_heads']}")
    last = summary["stages"][-1]["stage"]
    print(f"sample after '{last}':\n  " + summary["samples"][last].replace("\n", "\n  "))
    for kind, path in summary["files"].items():
        print(f"{kind}: {path}")


def run(args, ctx) -> int:
    from ..errors import TitoError

    root = str(ctx.root)
    if root not in sys.path:
        sys.path.insert(0, root)              # the checkout's package
    try:
        from tinytorch import experiments as ex
    except ImportError as e:
        raise TitoError(f"cannot import tinytorch.experiments ({e}); export module 20 first: tito export 20") from None
    if args.list_models:
        for name, p in ex.TINYGPT_PRESETS.items():
            print(f"  {name:<18} {p['num_layers']} layers x {p['embed_dim']} wide, {p['num_heads']} heads, "
                  f"context {p['max_seq_len']}" + (f"  (weights: {p['file']}.npz)" if p["file"] else ""))
        return 0
    config = _config(ex, args, _output_dir(args, root))
    _print_summary(config, _run_with_bar(ex, config))
    return 0
