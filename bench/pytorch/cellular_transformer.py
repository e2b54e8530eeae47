"""PyTorch reference of protocell's `cellular-transformer` model (seed 001) and its
baseline, for same-machine timing.

Model (shared/spec/cellular.md §3): Embedding V→d (N(0,1)); with organelles > 0, each
token's d = n_org·d_org vector is treated as a sequence of n_org organelles and passed
through one post-norm, unmasked multi-head attention (LN(z + MHA(z))); then a learned
position table is added and `macro_layers` post-norm causal attention layers follow (no
feed-forward); the head is Linear(d, V) with bias. All initialisations are PyTorch's
defaults, as in the seed.

Usage: python cellular_transformer.py --config '{"model": {...}, "train": {...}}' --steps 20 --warmup 3 --threads 2
Prints one JSON line: {"ms_per_step": ..., "tokens_per_s": ..., ...}.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class PostNorm(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln = nn.LayerNorm(d)

    def forward(self, x, mask=None):
        return self.ln(x + self.attn(x, x, x, attn_mask=mask, need_weights=False)[0])


class CellularTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.c = c
        self.emb = nn.Embedding(c["vocab_size"], d)
        self.cell = PostNorm(d // c["organelles"], c["organelle_heads"]) if c["organelles"] > 0 else None
        self.pos = nn.Parameter(torch.randn(c["ctx_len"], d))
        self.layers = nn.ModuleList(PostNorm(d, c["macro_heads"]) for _ in range(c["macro_layers"]))
        self.head = nn.Linear(d, c["vocab_size"])

    def forward(self, idx, targets):
        b, s = idx.shape
        d = self.c["d_model"]
        x = self.emb(idx)
        if self.cell is not None:
            n = self.c["organelles"]
            x = self.cell(x.reshape(b * s, n, d // n)).reshape(b, s, d)
        x = x + self.pos[:s]
        mask = torch.full((s, s), float("-inf"), device=idx.device).triu(1)
        for layer in self.layers:
            x = layer(x, mask)
        logits = self.head(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cfg = json.loads(a.config)
    m, t = cfg["model"], cfg["train"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = CellularTransformer(m).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
    b, s, v = t["batch_size"], t["seq_len"], m["vocab_size"]
    g = torch.Generator().manual_seed(1)
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.randint(0, v, (b, s + 1), generator=g).to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    print(json.dumps({
        "ms_per_step": ms,
        "tokens_per_s": b * s / (ms / 1e3),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
