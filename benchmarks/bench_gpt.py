"""TinyGPT: one training step (forward + loss + backward + AdamW step), tinytorch against the same model in
PyTorch with the same weights, one thread each; then KV-cached generation against uncached.

Run: python benchmarks/bench_gpt.py [--repeats N] [--number N] [--gen-tokens N] [--profile]
The default model is the 2017 milestone's (3 layers x 96, 4 heads, context 64, batch 32); --embed-dim,
--layers, --heads, --seq-len and --batch change it.
Prints the median time per training step of each framework, measured side by side (interleaved rounds in
one process), the ratio tinytorch / PyTorch (goal: <= 1.5), and the time to generate --gen-tokens tokens
with module 15's cache and without it (the speed-up, and whether both gave the same tokens).
--profile prints tinytorch's step profiled by function (cProfile) instead of comparing.
Before timing it calls module 18's tune_allocator() (glibc mallopt: raised mmap and trim thresholds), for
this process and so both frameworks: freed large NumPy temporaries then stay mapped instead of being
returned to the OS and page-faulted in again by the next op. --default-allocator skips it.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import statistics
import time

import numpy as np

from _versus import add_allocator_flag, tune_allocator_unless, versus_pytorch


def torch_gpt(cfg: dict):
    "The tinytorch GPT written in PyTorch: the same modules under the same names, so state dicts match."
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.h = h
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x):
            B, T, D = x.shape
            split = lambda t: t.view(B, T, self.h, D // self.h).transpose(1, 2)
            o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                               is_causal=True)
            return self.out_proj(o.transpose(1, 2).reshape(B, T, D))

    class MLP(nn.Module):
        def __init__(self, d, hidden):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, d, h, ratio):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(d), Attention(d, h)
            self.ln2, self.mlp = nn.LayerNorm(d), MLP(d, int(round(ratio * d)))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class Positions(nn.Module):
        def __init__(self, n, d):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(n, d))

    class GPT(nn.Module):
        def __init__(self, c):
            super().__init__()
            d = c["embed_dim"]
            self.token_embedding = nn.Embedding(c["vocab_size"], d)
            self.position_embedding = Positions(c["max_seq_len"], d)
            self.blocks = nn.ModuleList(Block(d, c["num_heads"], c["mlp_ratio"]) for _ in range(c["num_layers"]))
            self.ln_f = nn.LayerNorm(d)
            self.lm_head = nn.Linear(d, c["vocab_size"], bias=False)
            self.lm_head.weight = self.token_embedding.weight

        def forward(self, ids):
            x = self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT(cfg)


def make_tinytorch(cfg, ids, lr):
    from tinytorch.core.transformers import GPT
    from tinytorch.core.losses import CrossEntropyLoss
    from tinytorch.core.optimizers import AdamW

    model = GPT(**cfg, seed=0)
    opt = AdamW(model.parameters(), lr=lr)
    loss_fn = CrossEntropyLoss()
    x, y = ids[:, :-1], ids[:, 1:].reshape(-1)
    V = cfg["vocab_size"]

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1, V), y)
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


def make_torch(cfg, state, ids, lr):
    import torch

    torch.set_num_threads(1)
    model = torch_gpt(cfg)
    model.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in state.items() if not k.endswith("head_mask")})
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:].reshape(-1))
    V = cfg["vocab_size"]

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1, V), y)
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (median taken)")
    parser.add_argument("--number", type=int, default=3, help="training steps per round")
    parser.add_argument("--embed-dim", type=int, default=96)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gen-tokens", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="profile tinytorch's training step instead")
    add_allocator_flag(parser)
    args = parser.parse_args()
    tune_allocator_unless(args.default_allocator)

    cfg = dict(vocab_size=69, embed_dim=args.embed_dim, num_layers=args.layers, num_heads=args.heads,
               max_seq_len=args.seq_len, mlp_ratio=4)
    ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], (args.batch, args.seq_len + 1))
    lr = 1e-3
    tt_model, tt = make_tinytorch(cfg, ids, lr)
    desc = (f"TinyGPT {cfg['num_layers']} layers x {cfg['embed_dim']} wide, {cfg['num_heads']} heads, "
            f"vocab {cfg['vocab_size']}, batch {args.batch} x {args.seq_len} tokens "
            f"({sum(p.numel() for p in tt_model.parameters()):,} parameters)")

    if args.profile:
        import cProfile
        import pstats
        tt()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.number):
            tt()
        prof.disable()
        print(desc)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return

    pt_model, pt = make_torch(cfg, tt_model.state_dict(), ids, lr)
    losses = [(tt(), pt()) for _ in range(3)]          # three steps each: the two must train alike
    for i, (a, b) in enumerate(losses):
        assert abs(a - b) < 1e-3 * max(1.0, abs(b)), f"step {i}: tinytorch loss {a} vs PyTorch {b}"
    w_tt = tt_model.blocks[0].attn.q_proj.weight.data
    w_pt = pt_model.blocks[0].attn.q_proj.weight.detach().numpy()
    assert np.allclose(w_tt, w_pt, atol=1e-4), "the weights diverged after three AdamW steps"

    print(desc)
    print("training step (zero_grad, forward, cross-entropy, backward, AdamW step), 1 thread")
    versus_pytorch(tt, pt, repeats=args.repeats, number=args.number, warmup=0, unit="ms", goal=1.5)

    from tinytorch.core.transformers import GPT
    from tinytorch.generation.kv_cache import cached_generate

    n = args.gen_tokens
    gen_model = GPT(**{**cfg, "max_seq_len": max(256, n + 16)}, seed=1).eval()
    prompt = ids[0, :16]
    runs = {"uncached": [], "cached": []}
    outs = {}
    for _ in range(3):                                  # interleaved rounds, median
        for name, fn in (("uncached", lambda: gen_model.generate(prompt, n, temperature=0.8, top_k=20, seed=0)),
                         ("cached", lambda: cached_generate(gen_model, prompt, n, temperature=0.8, top_k=20, seed=0))):
            t = time.perf_counter()
            outs[name] = fn()
            runs[name].append(time.perf_counter() - t)
    u, c = statistics.median(runs["uncached"]), statistics.median(runs["cached"])
    same = bool((outs["uncached"] == outs["cached"]).all())
    print(f"generation of {n} tokens after a 16-token prompt (same model, max_seq_len {gen_model.max_seq_len}), 1 thread")
    print(f"  uncached (GPT.generate):          {u * 1e3:8.1f} ms  ({u / n * 1e3:.2f} ms/token)")
    print(f"  KV-cached (cached_generate):      {c * 1e3:8.1f} ms  ({c / n * 1e3:.2f} ms/token)")
    print(f"  speed-up {u / c:.1f}x; identical tokens: {same}")


if __name__ == "__main__":
    main()
