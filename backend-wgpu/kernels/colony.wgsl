// The colony equations of one token (core/src/cell/scalar.rs, line by line), prepended to
// colony_fwd.wgsl and colony_bwd.wgsl, which declare h0, w0, sc, work and p.
// One invocation runs one token; its trajectory and scratch live in `work` at
// tb = token·stride (offsets below; N blocks, K steps):
//   H (K+1)·4N | W (K+1)·N² | alive (K+1)·N | life N | den N | nb 4N | u 4N | [backward scratch]
// sc = [coefficients (9) | stimulus (T·N)].
// Parameters: ColonyParams (generated, prepended; mode 0 as coded, 1 as described, 2 sound).

fn o_h(tb: u32, k: u32) -> u32 { return tb + k * 4u * p.n; }
fn o_w(tb: u32, k: u32) -> u32 { let n = p.n; return tb + (p.steps + 1u) * 4u * n + k * n * n; }
fn o_alive(tb: u32, k: u32) -> u32 { let n = p.n; return tb + (p.steps + 1u) * (4u * n + n * n) + k * n; }
fn o_life(tb: u32) -> u32 { return o_alive(tb, p.steps + 1u); }
fn o_den(tb: u32) -> u32 { return o_life(tb) + p.n; }
fn o_nb(tb: u32) -> u32 { return o_den(tb) + p.n; }
fn o_u(tb: u32) -> u32 { return o_nb(tb) + 4u * p.n; }

fn softplus(x: f32) -> f32 { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// Hard clamp to [0, 1] (seed modes) or the smooth bound of sharpness k (sound mode).
fn bound(x: f32) -> f32 {
    if (p.mode == 2u) {
        let k = p.sharpness;
        return (softplus(k * x) - softplus(k * (x - 1.0))) / k;
    }
    return min(max(x, 0.0), 1.0);
}

fn bound_grad(x: f32) -> f32 {
    if (p.mode == 2u) {
        let k = p.sharpness;
        return sigmoid(k * x) - sigmoid(k * (x - 1.0));
    }
    return select(0.0, 1.0, x >= 0.0 && x <= 1.0);
}

fn coef(i: u32) -> f32 { return sc[i]; }
fn stim(tok: u32, i: u32) -> f32 { return sc[9u + tok * p.n + i]; }

// Normalised entropy H(q)/ln 4 of the block at `o`, q = (h⁺ + 10⁻⁶)/Σ(h⁺ + 10⁻⁶).
fn block_entropy(o: u32) -> f32 {
    var z = 0.0;
    for (var c = 0u; c < 4u; c++) { z += max(work[o + c], 0.0) + 1e-6; }
    var e = 0.0;
    for (var c = 0u; c < 4u; c++) {
        let q = (max(work[o + c], 0.0) + 1e-6) / z;
        e -= q * log(q);
    }
    return e / log(4.0);
}

// ‖h′ᵢ − h′ⱼ‖ with the safe root (0 in the as-coded mode), states at `o`.
fn distance(o: u32, i: u32, j: u32) -> f32 {
    if (p.mode == 0u) { return 0.0; }
    var d2 = 0.0;
    for (var c = 0u; c < 4u; c++) {
        let d = work[o + 4u * i + c] - work[o + 4u * j + c];
        d2 += d * d;
    }
    return sqrt(d2 + 1e-12);
}

// Row denominators, neighbour means and the pre-bound update of step k.
fn routing_and_update(tb: u32, tok: u32, k: u32) {
    let n = p.n;
    let dt = p.dt;
    let eps = p.row_eps;
    let h = o_h(tb, k);
    let w = o_w(tb, k);
    let den = o_den(tb);
    let nb = o_nb(tb);
    let u = o_u(tb);
    for (var i = 0u; i < n; i++) {
        var s = 0.0;
        for (var j = 0u; j < n; j++) { s += work[w + i * n + j]; }
        let dn = s + eps;
        work[den + i] = dn;
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < n; j++) {
            let wij = work[w + i * n + j] / dn;
            acc += wij * vec4<f32>(work[h + 4u * j], work[h + 4u * j + 1u], work[h + 4u * j + 2u], work[h + 4u * j + 3u]);
        }
        work[nb + 4u * i] = acc.x;
        work[nb + 4u * i + 1u] = acc.y;
        work[nb + 4u * i + 2u] = acc.z;
        work[nb + 4u * i + 3u] = acc.w;
    }
    for (var i = 0u; i < n; i++) {
        let e = work[h + 4u * i];
        let pp = work[h + 4u * i + 1u];
        let g = work[h + 4u * i + 2u];
        let l = work[h + 4u * i + 3u];
        let ne = work[nb + 4u * i];
        let np = work[nb + 4u * i + 1u];
        let ng = work[nb + 4u * i + 2u];
        let nl = work[nb + 4u * i + 3u];
        let si = stim(tok, i);
        work[u + 4u * i] = e + dt * (coef(0u) * si - 0.4 * pp - 0.2 * g);
        work[u + 4u * i + 1u] = pp + dt * (coef(1u) * si + coef(4u) * (np - pp) - 0.2 * e);
        work[u + 4u * i + 2u] = g + dt * (coef(2u) * e * (1.0 - pp) + coef(5u) * (ng - g) - 0.3 * pp);
        work[u + 4u * i + 3u] = l + dt * (coef(3u) * (0.5 * ne + 0.5 * ng) + coef(6u) * (nl - l) - 0.3 * pp);
    }
}

// The K steps of token `tok` from (h0, w0), filling its trajectory.
fn colony_forward(tb: u32, tok: u32) {
    let n = p.n;
    let dt = p.dt;
    for (var x = 0u; x < 4u * n; x++) { work[o_h(tb, 0u) + x] = h0[tok * 4u * n + x]; }
    for (var x = 0u; x < n * n; x++) { work[o_w(tb, 0u) + x] = w0[tok * n * n + x]; }
    for (var i = 0u; i < n; i++) {
        work[o_alive(tb, 0u) + i] = 1.0;
        work[o_life(tb) + i] = 1.0;
    }
    for (var k = 0u; k < p.steps; k++) {
        routing_and_update(tb, tok, k);
        let hn = o_h(tb, k + 1u);
        let u = o_u(tb);
        for (var x = 0u; x < 4u * n; x++) { work[hn + x] = bound(work[u + x]); }
        // pruning gate on the new states
        let ap = o_alive(tb, k);
        let an = o_alive(tb, k + 1u);
        for (var i = 0u; i < n; i++) {
            var a = work[ap + i];
            if (p.pruning == 1u && a > 0.0) {
                let life = work[o_life(tb) + i] - p.rate * (1.0 - block_entropy(hn + 4u * i));
                work[o_life(tb) + i] = life;
                if (life <= p.threshold) { a = 0.0; }
            }
            work[an + i] = a;
            for (var c = 0u; c < 4u; c++) { work[hn + 4u * i + c] *= a; }
        }
        // rewiring with the new states
        let w = o_w(tb, k);
        let wn = o_w(tb, k + 1u);
        for (var i = 0u; i < n; i++) {
            for (var j = 0u; j < n; j++) {
                var v = 0.0;
                if (i != j) {
                    let d = distance(hn, i, j);
                    let lm = 0.5 * (work[hn + 4u * i + 3u] + work[hn + 4u * j + 3u]);
                    let wij = work[w + i * n + j];
                    v = bound(wij + dt * (coef(7u) * lm * d - coef(8u) * wij)) * work[an + i] * work[an + j];
                }
                work[wn + i * n + j] = v;
            }
        }
    }
}
