"""PyTorch reference of protocell's `cell-token` model (CellToken LLM, seed 000), for
same-machine timing and loss-curve comparison.

It follows `shared/spec/cellular.md` §2: CellEmbedding (e = tok + pos; h0 = sigmoid(A e);
W0 per mode; stimulus clip(|e|/sqrt(d)) per token), K shared MucusInnerCell steps (EPGL rule,
row-normalised routing, rewiring), TokenCollapse LN(e + C[h ‖ W]), pre-LN transformer blocks
(nn.MultiheadAttention with dropout on the attention probabilities, GELU MLP with output
dropout), final LN and a head tied to the token embedding. Modes: as-coded (W0 = 0, zero
distance), as-described (W0 = 0.1 off-diagonal, pairwise distance), sound (smooth bounds,
softplus coefficients, per-block stimulus). Init as the seed: N(0, 0.02) for Linear and
Embedding weights, zero biases, PyTorch's Xavier-uniform for the attention input projection.

Usage: python cell_token.py --config '{"model": {...}, "train": {...}}' --steps 20 --warmup 3 --threads 2
        [--data seed|FILE] (train on the seed corpus or a text file and report the loss curve)
Prints one JSON line: {"ms_per_step": ..., "tokens_per_s": ..., "losses": {...}, ...}.
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

SEED_COEFFS = [0.3, 0.5, 0.4, 0.4, 0.3, 0.2, 0.3, 0.05, 0.02]
SENTENCES = [
    "The slime mold finds the shortest path through the maze.",
    "Energy flows where resistance is lowest.",
    "Every cell remembers its history and acts with purpose.",
    "The cellular network learns by living, not by being told.",
    "Life is thermodynamics with intention.",
]


def bound(x, mode, k):
    if mode == "sound":
        return (F.softplus(k * x) - F.softplus(k * (x - 1))) / k
    return x.clamp(0.0, 1.0)


class Colony(nn.Module):
    def __init__(self, mode, n, steps, dt, k, row_eps):
        super().__init__()
        self.mode, self.n, self.steps, self.dt, self.k, self.row_eps = mode, n, steps, dt, k, row_eps
        raw = torch.tensor(SEED_COEFFS)
        if mode == "sound":
            raw = torch.log(torch.expm1(raw))
        self.coeffs = nn.Parameter(raw)

    def forward(self, h, w, s):  # h [T,N,4], w [T,N,N], s [T,N]
        c = F.softplus(self.coeffs) if self.mode == "sound" else self.coeffs
        aE, aP, aG, aL, bP, bG, bL, wg, wd = c
        dt, n = self.dt, self.n
        s = s.unsqueeze(-1)
        off = 1.0 - torch.eye(n, device=h.device)
        for _ in range(self.steps):
            nb = (w / (w.sum(-1, keepdim=True) + self.row_eps)) @ h
            E, P, G, L = h.unbind(-1)
            nE, nP, nG, nL = nb.unbind(-1)
            E, P, G, L = E.unsqueeze(-1), P.unsqueeze(-1), G.unsqueeze(-1), L.unsqueeze(-1)
            nE, nP, nG, nL = nE.unsqueeze(-1), nP.unsqueeze(-1), nG.unsqueeze(-1), nL.unsqueeze(-1)
            u = torch.cat([
                E + dt * (aE * s - 0.4 * P - 0.2 * G),
                P + dt * (aP * s + bP * (nP - P) - 0.2 * E),
                G + dt * (aG * E * (1 - P) + bG * (nG - G) - 0.3 * P),
                L + dt * (aL * (0.5 * nE + 0.5 * nG) + bL * (nL - L) - 0.3 * P),
            ], -1)
            h = bound(u, self.mode, self.k)
            lsum = 0.5 * (h[..., 3:4] + h[..., 3].unsqueeze(-2))
            if self.mode == "as-coded":
                inc = -wd * w
            else:
                d = ((h.unsqueeze(-2) - h.unsqueeze(-3)) ** 2).sum(-1).add(1e-12).sqrt()
                inc = wg * lsum * d - wd * w
            w = bound(w + dt * inc, self.mode, self.k) * off
        return h, w


class Block(nn.Module):
    def __init__(self, d, heads, mult, p):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=p, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, mult * d)
        self.out = nn.Linear(mult * d, d)
        self.drop = nn.Dropout(p)

    def forward(self, x, mask):
        y = self.ln1(x)
        x = x + self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class CellToken(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, n = c["d_model"], c["num_blocks"]
        self.c = c
        self.tok = nn.Embedding(c["vocab_size"], d)
        self.pos = nn.Embedding(c["ctx_len"], d)
        self.proj_h = nn.Linear(d, 4 * n)
        self.stim = nn.Linear(d, n) if c["mode"] == "sound" else None
        self.colony = Colony(c["mode"], n, c["inner_steps"], c["dt"], c["sharpness"], 1e-3 if c["mode"] == "sound" else 1e-8)
        self.collapse = nn.Linear(4 * n + n * n, d)
        self.ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, c["n_head"], c["mlp_mult"], c["dropout"]) for _ in range(c["depth"]))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, c["init_std"])
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, c["init_std"])
        mode = c["mode"]
        w0 = torch.zeros(n, n) if mode == "as-coded" else 0.1 * (1 - torch.eye(n))
        self.register_buffer("w0", w0)

    def forward(self, idx, targets):
        b, s = idx.shape
        d, n = self.c["d_model"], self.c["num_blocks"]
        e = self.tok(idx) + self.pos.weight[:s]
        if self.c["cell_path"]:
            h0 = torch.sigmoid(self.proj_h(e)).reshape(b * s, n, 4)
            if self.stim is not None:
                st = torch.sigmoid(self.stim(e)).reshape(b * s, n)
            else:
                st = (e.norm(dim=-1) / math.sqrt(d)).clamp(0, 1).reshape(b * s, 1).expand(b * s, n)
            h, w = self.colony(h0, self.w0.expand(b * s, n, n), st)
            x = self.ln(e + self.collapse(torch.cat([h.reshape(b, s, 4 * n), w.reshape(b, s, n * n)], -1)))
        else:
            x = self.ln(e)
        mask = torch.full((s, s), float("-inf"), device=idx.device).triu(1)
        for blk in self.blocks:
            x = blk(x, mask)
        logits = self.ln_f(x) @ self.tok.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", help="'seed' for the seed corpus, or a UTF-8 text file (char vocabulary)")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    cfg = json.loads(a.config)
    m, t = cfg["model"], cfg["train"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    ids = None
    if a.data:
        text = (" ".join(SENTENCES) + " ") * 300 if a.data == "seed" else open(a.data, encoding="utf-8").read()
        vocab = sorted(set(text))
        m = {**m, "vocab_size": len(vocab)}
        ids = torch.tensor([vocab.index(ch) for ch in text] if len(vocab) < 100 else [vocab.index(ch) for ch in text])
        cut = int(len(ids) * (1 - t["data"]["val_fraction"]))
        train_ids, val_ids = ids[:cut], ids[cut:]
    model = CellToken(m).to(dev)
    o = t["optim"]
    params = list(model.parameters())
    decay_all = o.get("decay") == "all"
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if decay_all or p.dim() >= 2], "weight_decay": o["weight_decay"]},
         {"params": [p for p in params if not (decay_all or p.dim() >= 2)], "weight_decay": 0.0}],
        lr=t["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    b, s, v = t["batch_size"], t["seq_len"], m["vocab_size"]
    g = torch.Generator().manual_seed(a.seed)
    total = a.warmup + a.steps

    def lr_at(step):
        warm = min(t["warmup"], total)
        if step < warm:
            return t["lr"] * (step + 1) / warm
        p = min((step - warm) / max(total - warm, 1), 1.0)
        return t["min_lr"] + (t["lr"] - t["min_lr"]) * 0.5 * (1 + math.cos(math.pi * p))

    times, losses = [], {}
    model.train()
    for i in range(total):
        if ids is None:
            x = torch.randint(0, v, (b, s + 1), generator=g)
        else:
            off = torch.randint(0, len(train_ids) - s, (b,), generator=g)
            x = torch.stack([train_ids[k : k + s + 1] for k in off.tolist()])
        x = x.to(dev)
        if ids is not None:
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
        if i >= a.warmup or ids is not None:
            times.append(time.perf_counter() - t0)
        if i % 50 == 0 or i == total - 1:
            losses[i] = lv
    extra = {}
    if ids is not None:
        model.eval()
        n = 8 * b
        span = len(val_ids) - s - 1
        offs = [k * span // max(n - 1, 1) for k in range(n)]
        with torch.no_grad():
            vl = [model(torch.stack([val_ids[q : q + s] for q in offs[k : k + b]]).to(dev),
                        torch.stack([val_ids[q + 1 : q + s + 1] for q in offs[k : k + b]]).to(dev)).item()
                  for k in range(0, n, b)]
        extra = {"val_loss": sum(vl) / len(vl)}
    ms = statistics.median(times[a.warmup:] if ids is not None else times) * 1e3
    print(json.dumps({
        **extra,
        "ms_per_step": ms,
        "tokens_per_s": b * s / (ms / 1e3),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "losses": losses,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
