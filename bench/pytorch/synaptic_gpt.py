"""PyTorch reference of protocell's `synaptic-gpt` model, for same-machine timing.

The skeleton is protocell's GPT (bench/pytorch/gpt.py): learned token and position
embeddings, pre-norm blocks, a final LayerNorm, an output head tied to the token embedding.
Each attention layer adds presynaptic release (core/src/synapse, spec synapse.md §1):

  s = q k^T / sqrt(Dh) per head;  the top-k causal keys of each query are its edges;
  edge: c = [rho_c C + a_ca sp(d) - a_on C (1 - BUF) + a_off BUF]_0, p = [sig(3 Syt(c) + 2 PR
        - 2 (CL + b)) sig(d)]_0^1, rel = p RRP (a binomial draw on a fraction of the rows in
        training), e = rel sig(q_b (E - 1/2)) q_max;
  L = s + mask [lambda log(eps + e / (ema + 1e-6))]_{-c}^{c} - beta (i - j) / N + causal mask

with the key pools (calcium, buffer, RRP, reserve, priming, clamp, energy, endocytosis delay
line) stepped after every query in `causal` mode (the scan runs along the sequence, and
autograd differentiates through it), or once per call from a fresh state in `seed` mode.
The MLP layers are Hebbian dual-timescale linears (W_slow + g W_fast, gains, low-rank U V),
whose Hebbian writes are computed under no_grad in the forward and applied after the step.
`synapses = off` is the plain GPT. With `train.optim.muon.enabled` the block matrices are
trained by Muon (Newton-Schulz orthogonalised momentum) and the rest by AdamW.

This is written the way a PyTorch user would write it (vectorised over batch x heads and
keys, a Python loop over query positions for the causal scan): the point is a fair
same-machine comparison of speed, not bit parity.

Usage: python synaptic_gpt.py --config '{"model": {...}, "train": {...}}' --steps 5 --warmup 1 --threads 2
Prints one JSON line: {"ms_per_step": ..., "tokens_per_s": ..., ...}.
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


class Kin:
    def __init__(self, c):
        self.rho_c = math.exp(-1.0 / c["tau_c"])
        self.rho_b = math.exp(-1.0 / c["tau_buf"])
        self.a_ca, self.a_on, self.a_off = c["alpha_ca"], c["alpha_buf_on"], c["alpha_buf_off"]
        self.kf, self.ks, self.doc2 = c["syt_fast_kd"], c["syt_slow_kd"], c["doc2_gain"]
        self.cpx, self.qmax, self.qbeta = c["complexin_bias"], c["qmax"], c["q_beta"]
        self.prime, self.unprime, self.nsf = c["prime_rate"], c["unprime_per_release"], c["nsf_recover"]
        self.rec, self.fill, self.use, self.emax = c["rec_rate"], c["energy_fill"], c["energy_use"], c["energy_max"]
        self.delay = c["endo_delay"]
        self.init = (c["init_rrp"], c["init_reserve"], c["init_snare"], c["init_clamp"], c["init_energy"])
        self.topk = c["attn_topk"]
        self.frac, self.cap = c["stochastic_train_frac"], float(c["stochastic_count_cap"])


def fresh_state(k, r, t):
    z = torch.zeros(r, t)
    rrp, res, pr, cl, e = k.init
    return {"C": z, "BUF": z, "RRP": z + rrp, "RES": z + res, "PR": z + pr, "CL": z + cl, "E": z + e,
            "D": [z for _ in range(k.delay)]}


def edges(k, st, d, j, stochastic):
    """Edge outputs of drives d at keys j (both [R, ..., K]) from the state st (fields [R, T])."""
    flat = j.reshape(j.shape[0], -1)
    g = lambda x: x.gather(1, flat).reshape(j.shape)
    c0, b0 = g(st["C"]), g(st["BUF"])
    c = (k.rho_c * c0 + k.a_ca * F.softplus(d) - k.a_on * c0 * (1 - b0) + k.a_off * b0).clamp(min=0)
    syt = 0.7 * c / (c + k.kf) + 0.3 * c / (c + k.ks) + k.doc2 * torch.sigmoid(4 * (c - 0.12))
    p = (torch.sigmoid(3 * syt + 2 * g(st["PR"]) - 2 * (g(st["CL"]) + k.cpx)) * torch.sigmoid(d)).clamp(0, 1)
    rrp = g(st["RRP"])
    rel = p * rrp
    if stochastic is not None:
        n = rrp.clamp(0, k.cap).round()
        ph = p.clamp(1e-6, 1 - 1e-6)
        draw = (n * ph + (n * ph * (1 - ph) + 1e-6).sqrt() * torch.randn_like(p)).clamp(min=0)
        draw = torch.minimum(draw, n)
        rel = torch.where(stochastic, draw, rel)
    q = torch.sigmoid(k.qbeta * (g(st["E"]) - 0.5)) * k.qmax
    return rel, rel * q


def step_keys(k, st, a, influx, live=None):
    """One step of every key (a: vesicles released, influx: calcium influx, both [R, T])."""
    C, B = st["C"], st["BUF"]
    new = {
        "C": (k.rho_c * C + influx - k.a_on * C * (1 - B) + k.a_off * B).clamp(min=0),
        "BUF": (k.rho_b * B + k.a_on * C * (1 - B) - k.a_off * B).clamp(0, 1),
    }
    rrp1 = (st["RRP"] - a).clamp(min=0)
    res1 = st["RES"] + st["D"][0] if k.delay > 0 else st["RES"]
    take = res1.clamp(max=1)
    new["RES"] = (res1 - k.prime * take).clamp(min=0)
    new["RRP"] = (rrp1 + k.prime * take).clamp(0, 30)
    new["D"] = st["D"][1:] + [k.rec * a] if k.delay > 0 else []
    pr = st["PR"]
    new["PR"] = (pr * (1 - k.unprime * a) + k.nsf * (1 - pr)).clamp(0, 1)
    new["CL"] = (0.995 * st["CL"] + 0.005 - k.unprime * a).clamp(0, 1)
    e = st["E"]
    new["E"] = (e + k.fill * (k.emax - e) - k.use * a).clamp(0, k.emax)
    if live is None:
        return new
    out = {f: torch.where(live, new[f], st[f]) for f in ("C", "BUF", "RRP", "RES", "PR", "CL", "E")}
    out["D"] = [torch.where(live, x, y) for x, y in zip(new["D"], st["D"])]
    return out


def presyn(k, scores, causal, train):
    """(e, mask, state) for scores [R, T, T]."""
    r, t, _ = scores.shape
    st = fresh_state(k, r, t)
    stoch = (torch.rand(r, t, 1) < k.frac) if train and k.frac > 0 else None
    tri = torch.ones(t, t, dtype=torch.bool).tril()
    if not causal:
        kk = min(k.topk, t)
        d, j = scores.masked_fill(~tri, float("-inf")).topk(kk, dim=-1)
        valid = torch.isfinite(d)
        d = torch.where(valid, d, torch.zeros_like(d))
        rel, e = edges(k, st, d, j, stoch)
        e = e * valid
        mask = torch.zeros(r, t, t).scatter(2, j, valid.float())
        out = torch.zeros(r, t, t).scatter(2, j, e)
        with torch.no_grad():
            a = torch.zeros(r, t).scatter_add(1, j.reshape(r, -1), (rel * valid).reshape(r, -1))
            dsum = torch.zeros(r, t).scatter_add(1, j.reshape(r, -1), (d * valid).reshape(r, -1))
            hit = torch.zeros(r, t).scatter_add(1, j.reshape(r, -1), valid.float().reshape(r, -1)) > 0
            st = step_keys(k, st, a, torch.where(hit, k.a_ca * F.softplus(dsum), torch.zeros_like(dsum)))
        return out, mask, st
    rows_e, rows_m = [], []
    pos = torch.arange(t)
    for i in range(t):
        kk = min(k.topk, i + 1)
        d, j = scores[:, i, : i + 1].topk(kk, dim=-1)
        rel, e = edges(k, st, d, j, None if stoch is None else stoch[:, i])
        rows_e.append(torch.zeros(r, t).scatter(1, j, e))
        rows_m.append(torch.zeros(r, t).scatter(1, j, 1.0))
        a = torch.zeros(r, t).scatter(1, j, rel)
        influx = torch.zeros(r, t).scatter(1, j, k.a_ca * F.softplus(d))
        st = step_keys(k, st, a, influx, live=(pos <= i))
    return torch.stack(rows_e, 1), torch.stack(rows_m, 1), st


class SynLinear(nn.Module):
    def __init__(self, din, dout, bias, std, c, hebbian):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din) * std)
        self.bias = nn.Parameter(torch.zeros(dout)) if bias else None
        self.hebbian = hebbian
        self.c = c
        self.pending = None
        if hebbian:
            r = c["rank_eligibility"]
            self.U = nn.Parameter(torch.randn(dout, r) * 0.02)
            self.V = nn.Parameter(torch.randn(r, dout) * 0.02)
            for name, v in [("w_fast", torch.zeros(dout, din)), ("trace_u", torch.zeros(din, r)),
                            ("trace_v", torch.zeros(r, dout)), ("proj_in", torch.randn(din, r) / math.sqrt(din)),
                            ("proj_out", torch.randn(dout, r) / math.sqrt(dout)), ("camkii", torch.zeros(dout)),
                            ("pp1", torch.full((dout,), 0.5)), ("bdnf", torch.zeros(dout)), ("acc", torch.zeros(dout)),
                            ("fast_gain", torch.zeros(dout)), ("slow_gain", torch.zeros(dout))]:
                self.register_buffer(name, v)

    def forward(self, x):
        if not self.hebbian:
            return F.linear(x, self.weight, self.bias)
        y0 = F.linear(x, self.weight, self.bias) + self.c["fast_gate"] * (x @ self.w_fast.t())
        y1 = y0 * (1 + self.fast_gain + self.slow_gain)
        y = y1 + (y1 @ self.U) @ self.V
        if self.training:
            self.pending = self.write(x.detach(), y.detach())
        return y

    @torch.no_grad()
    def write(self, x, y):
        c = self.c
        x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        n = x.shape[0]
        u = self.trace_u * c["post_trace_decay"] + x.t() @ (y @ self.proj_out) * (0.05 / n)
        v = self.trace_v * c["post_trace_decay"] + (x @ self.proj_in).t() @ y * (0.05 / n)
        ca = y.abs().mean(0).clamp(0, 10)
        k = (self.camkii + (ca > c["camkii_thr"]).float() * (1 - self.camkii) * c["camkii_up"]).clamp(0, 1)
        p = self.pp1 * c["pp1_tau"] + (ca < c["pp1_thr"]).float() * (1 - c["pp1_tau"])
        bdnf = (self.bdnf * c["bdnf_tau"] + self.acc * (1 - c["bdnf_tau"])).clamp(0, c["bdnf_max"])
        w = self.w_fast * c["post_fast_decay"] + (u @ v).t() * (c["post_fast_lr"] * c["fast_gate"])
        nrm = w.norm()
        if nrm > c["fast_weight_max_norm"]:
            w = w * (c["fast_weight_max_norm"] / nrm)
        delta = u.mean(0) @ v
        b = c["post_gain_bound"]
        fg = (self.fast_gain * c["post_fast_decay"] + delta * c["post_fast_lr"]).clamp(-b, b)
        acc = (self.acc * 0.985 + delta.abs() * 0.015).clamp(0, 10)
        gate = torch.sigmoid(k - 0.5) - 0.3
        sg = (self.slow_gain + (1 + c["bdnf_scale"] * bdnf) * delta * gate * c["post_slow_lr"]).clamp(-b, b)
        return dict(trace_u=u, trace_v=v, camkii=k, pp1=p, bdnf=bdnf, w_fast=w, fast_gain=fg, acc=acc, slow_gain=sg)

    @torch.no_grad()
    def commit(self):
        if self.pending:
            for name, val in self.pending.items():
                getattr(self, name).copy_(val)
        self.pending = None


class Block(nn.Module):
    def __init__(self, m, std, proj_std):
        super().__init__()
        d, c = m["d_model"], m["synaptic"]
        self.h, self.ctx = m["n_head"], m["ctx_len"]
        self.mode = m["synapses"]
        self.kin = Kin(c)
        self.c = c
        heb = self.mode != "off" and c["enable_hebbian"]
        self.ln1 = nn.LayerNorm(d, eps=m["ln_eps"])
        self.qkv = nn.Linear(d, 3 * d, bias=m["bias"])
        self.proj = nn.Linear(d, d, bias=m["bias"])
        self.ln2 = nn.LayerNorm(d, eps=m["ln_eps"])
        self.fc = SynLinear(d, m["mlp_mult"] * d, m["bias"], std, c, heb)
        self.out = SynLinear(m["mlp_mult"] * d, d, m["bias"], proj_std, c, heb)
        for lin, s in [(self.qkv, std), (self.proj, proj_std)]:
            nn.init.normal_(lin.weight, 0.0, s)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self.register_buffer("ema", torch.ones(()))

    def attend(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        if self.mode == "off":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(b, t, d))
        hd = d // self.h
        q, k, v = (z.reshape(b * self.h, t, hd) for z in (q, k, v))
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        e, mask, _ = presyn(self.kin, scores, self.mode == "causal", self.training)
        if self.training:
            with torch.no_grad():
                slots = b * self.h * t * min(self.c["attn_topk"], t)
                self.ema.copy_(0.99 * self.ema + 0.01 * max(e.detach().sum().item() / slots, 1e-3))
        lim = self.c["loge_bias_clamp"] if self.c["loge_bias_clamp"] > 0 else float("inf")
        bias = (self.c["lambda_loge"] * torch.log(self.c["epsilon"] + e / (self.ema + 1e-6))).clamp(-lim, lim) * mask
        i = torch.arange(t)
        norm = t if self.mode == "seed" else self.ctx
        fixed = -self.c["barrier_strength"] * (i[:, None] - i[None, :]).float() / norm
        fixed = fixed.masked_fill(i[None, :] > i[:, None], -1e9)
        p = (scores + bias + fixed).softmax(-1)
        y = (p @ v).reshape(b, self.h, t, hd).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)

    def forward(self, x):
        x = x + self.attend(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class SynapticGPT(nn.Module):
    def __init__(self, m):
        super().__init__()
        d, std = m["d_model"], m["init_std"]
        proj_std = std / math.sqrt(2 * m["n_layer"])
        self.wte = nn.Embedding(m["vocab_size"], d)
        self.wpe = nn.Embedding(m["ctx_len"], d)
        nn.init.normal_(self.wte.weight, 0.0, std)
        nn.init.normal_(self.wpe.weight, 0.0, std)
        self.blocks = nn.ModuleList(Block(m, std, proj_std) for _ in range(m["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=m["ln_eps"])

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:t]
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def commit(self):
        for mod in self.modules():
            if isinstance(mod, SynLinear):
                mod.commit()


def newton_schulz(g, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.t() if g.shape[0] > g.shape[1] else g
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        am = x @ x.t()
        x = a * x + (b * am + c * am @ am) @ x
    return x.t() if g.shape[0] > g.shape[1] else x


class Muon:
    """Muon on the given matrices (the recipe in core/src/optim.rs, MuonConfig)."""

    def __init__(self, params, c):
        self.params, self.c = params, c
        self.buf = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, frac):
        c = self.c
        w = min(self.t / c["momentum_warmup"], 1.0) if c["momentum_warmup"] > 0 else 1.0
        mu = c["momentum_start"] + (c["momentum"] - c["momentum_start"]) * w
        for p, m in zip(self.params, self.buf):
            if p.grad is None:
                continue
            m.mul_(mu).add_(p.grad, alpha=1 - mu)
            u = p.grad * (1 - mu) + m * mu if c["nesterov"] else m
            o = newton_schulz(u, c["ns_steps"])
            eta = c["lr"] * frac
            p.mul_(1 - eta * c["weight_decay"]).add_(o, alpha=-eta * max(1.0, p.shape[0] / p.shape[1]) ** 0.5)
        self.t += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    cfg = json.loads(a.config)
    m, t = cfg["model"], cfg["train"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SynapticGPT(m)
    model.train()
    o = t["optim"]
    mu = o.get("muon", {})
    excl = tuple(mu.get("exclude", []))
    is_muon = lambda n, p: mu.get("enabled") and p.dim() == 2 and not any(n == e or n.startswith(e + ".") for e in excl)
    named = list(model.named_parameters())
    muon_p = [p for n, p in named if is_muon(n, p)]
    rest = [(n, p) for n, p in named if not is_muon(n, p)]
    decay = [p for _, p in rest if p.dim() >= 2 or o.get("decay") == "all"]
    no_decay = [p for _, p in rest if not (p.dim() >= 2 or o.get("decay") == "all")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
    )
    muon = Muon(muon_p, mu) if muon_p else None
    b, s, v = t["batch_size"], t["seq_len"], m["vocab_size"]
    g = torch.Generator().manual_seed(1)
    times, losses = [], []
    for i in range(a.warmup + a.steps):
        x = torch.randint(0, v, (b, s + 1), generator=g)
        t0 = time.perf_counter()
        loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        for p in muon_p:
            p.grad = None
        loss.backward()
        if o["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        if muon is not None:
            muon.step(1.0)
        model.commit()
        lv = loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(lv)
    ms = statistics.median(times) * 1e3
    print(json.dumps({
        "ms_per_step": ms,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
        "tokens_per_s": b * s / (ms / 1e3),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "synapses": m["synapses"],
        "last_loss": losses[-1],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
