"""PyTorch reference of protocell's `gpt` model, for same-machine timing.

The architecture matches protocell's exactly: learned token and position embeddings,
pre-norm blocks (LayerNorm eps 1e-5 -> causal multi-head attention with a packed qkv
projection -> residual; LayerNorm -> Linear(d, 4d) -> exact GELU -> Linear(4d, d) ->
residual), a final LayerNorm and an output head tied to the token embedding; N(0, 0.02)
init with output projections at 0.02/sqrt(2 n_layer); AdamW with gradient clipping.
Attention uses PyTorch's fused scaled_dot_product_attention (its fastest eager path).

Usage: python gpt.py --config '{"model": {...}, "train": {...}}' --steps 20 --warmup 3 --threads 2
Prints one JSON line: {"ms_per_step": ..., "tokens_per_s": ..., ...}.

With --data FILE it trains on that text instead of random tokens, with protocell's recipe
(byte tokens, last 10 % held out, warmup + cosine schedule, weight decay on matrices only,
gradient clipping), and adds the final validation loss to the JSON line.
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h, mult, bias, eps):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.fc = nn.Linear(d, mult * d, bias=bias)
        self.out = nn.Linear(mult * d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.wte = nn.Embedding(c["vocab_size"], d)
        self.wpe = nn.Embedding(c["ctx_len"], d)
        self.blocks = nn.ModuleList(
            Block(d, c["n_head"], c["mlp_mult"], c["bias"], c["ln_eps"]) for _ in range(c["n_layer"])
        )
        self.ln_f = nn.LayerNorm(d, eps=c["ln_eps"])
        std = c["init_std"]
        proj_std = std / math.sqrt(2 * c["n_layer"])
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, 0.0, proj_std if name.endswith(("proj.weight", "out.weight")) else std)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:t]
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", help="train on this UTF-8 text file (byte tokens)")
    ap.add_argument("--eval-batches", type=int, default=8)
    a = ap.parse_args()
    cfg = json.loads(a.config)
    m, t = cfg["model"], cfg["train"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = GPT(m).to(dev)
    o = t["optim"]
    decay = [p for p in model.parameters() if p.dim() >= 2 or o.get("decay") == "all"]
    no_decay = [p for p in model.parameters() if not (p.dim() >= 2 or o.get("decay") == "all")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
    )
    b, s, v = t["batch_size"], t["seq_len"], m["vocab_size"]
    g = torch.Generator().manual_seed(1)
    total = a.warmup + a.steps
    train_ids = val_ids = None
    if a.data:
        ids = torch.frombuffer(bytearray(open(a.data, "rb").read()), dtype=torch.uint8).long()
        cut = int(len(ids) * (1 - t["data"]["val_fraction"]))
        train_ids, val_ids = ids[:cut], ids[cut:]

    def lr_at(step):
        warm = min(t["warmup"], total)
        if step < warm:
            return t["lr"] * (step + 1) / warm
        p = min((step - warm) / max(total - warm, 1), 1.0)
        return t["min_lr"] + (t["lr"] - t["min_lr"]) * 0.5 * (1 + math.cos(math.pi * p))

    def batch():
        if train_ids is None:
            return torch.randint(0, v, (b, s + 1), generator=g).to(dev)
        off = torch.randint(0, len(train_ids) - s, (b,), generator=g)
        return torch.stack([train_ids[i : i + s + 1] for i in off.tolist()]).to(dev)

    times, losses = [], []
    for i in range(total):
        x = batch()
        if a.data:
            for grp in opt.param_groups:
                grp["lr"] = lr_at(i)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        lv = loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(lv)
    ms = statistics.median(times) * 1e3
    extra = {}
    if val_ids is not None:
        model.eval()
        n = a.eval_batches * b
        span = len(val_ids) - s - 1
        offs = [k * span // max(n - 1, 1) for k in range(n)]
        with torch.no_grad():
            vl = [model(torch.stack([val_ids[o : o + s] for o in offs[k : k + b]]).to(dev),
                        torch.stack([val_ids[o + 1 : o + s + 1] for o in offs[k : k + b]]).to(dev)).item()
                  for k in range(0, n, b)]
        extra = {"val_loss": sum(vl) / len(vl), "steps": total}
    print(json.dumps({
        **extra,
        "ms_per_step": ms,
        "tokens_per_s": b * s / (ms / 1e3),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "last_loss": losses[-1],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
