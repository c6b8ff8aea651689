"""A tiny random GPT-2 checkpoint directory built offline with `transformers` (a test-only dependency, like
torch): config.json + model.safetensors from GPT2LMHeadModel.save_pretrained, and GPT-2-style vocab.json +
merges.txt trained by `tokenizers.ByteLevelBPETokenizer` on a few local strings. Nothing is downloaded.

Importing this module fails (ImportError) when transformers, tokenizers or safetensors is missing: the tests
that use it fail, they are not skipped. `python tests/tiny_gpt2.py` prints the largest logits difference
between transformers and tinytorch for the tiny model."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import safetensors  # noqa: F401  (a runtime dependency of GPT.from_pretrained)
import tokenizers
import torch
import transformers

VOCAB_SIZE = 400
CORPUS = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
          "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles",
          "Ünïcödé wörds, naïve café, 東京 and 123 numbers, 4.5e3!", "emoji 🙂🚀 and tabs\tand  double  spaces\n"]


def _write_tokenizer(d: Path) -> None:
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 20, vocab_size=VOCAB_SIZE, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(d))


def _write_model(d: Path, vocab_size: int, seed: int = 0) -> None:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():               # weights of order 1, so that logits differ clearly between tokens
        for name, p in model.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model.save_pretrained(str(d), safe_serialization=True)


@functools.lru_cache(maxsize=None)
def checkpoint_dir() -> Path:
    "A directory with config.json, model.safetensors, vocab.json and merges.txt (made once per process)."
    d = Path(tempfile.mkdtemp(prefix="tiny-gpt2-"))
    _write_tokenizer(d)
    import json
    vocab_size = len(json.loads((d / "vocab.json").read_text(encoding="utf-8")))
    _write_model(d, vocab_size)
    return d


def hf_model(d: Path):
    return transformers.GPT2LMHeadModel.from_pretrained(str(d)).eval()


def hf_tokenizer(d: Path):
    "GPT2Tokenizer from the directory's vocab.json + merges.txt (a local path: nothing is downloaded)."
    return transformers.GPT2Tokenizer.from_pretrained(str(d))


def max_logits_difference() -> float:
    from tinytorch.core.transformers import GPT
    d = checkpoint_dir()
    ours, ref = GPT.from_pretrained(d), hf_model(d)
    ids = np.random.default_rng(0).integers(0, ours.vocab_size, (3, 32))
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    return float(np.abs(ours(ids).data - want).max()), float(np.abs(want).max())


if __name__ == "__main__":
    diff, scale = max_logits_difference()
    print(f"tiny GPT-2 (2 layers, 4 heads, width 32, context 32), float32: max |logits(tinytorch) - "
          f"logits(transformers {transformers.__version__})| = {diff:.3g} (largest |logit| {scale:.3g})")
