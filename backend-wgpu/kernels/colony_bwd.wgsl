// Prepended with colony.wgsl. Colony backward (vector-Jacobian product), one invocation per
// token: re-runs the token's K steps into its trajectory and walks it back, as
// scalar::backward. Output gout = [dh⁰ (T·4N) | dW⁰ (T·N²) | dstim (T·N) | dcoeffs (T·9)]
// (coefficient gradients per token; the caller sums them over tokens in a fixed order).
// (No identifier starts with `gl`: the GL backend reserves that prefix.)
// Backward scratch after u: g_h 4N | g_w N² | gh1 4N | gw_prev N² | gu 4N | gh_prev 4N | gnb 4N | gwhat N
@group(0) @binding(0) var<storage, read> h0: array<f32>;
@group(0) @binding(1) var<storage, read> w0: array<f32>;
@group(0) @binding(2) var<storage, read> sc: array<f32>;
@group(0) @binding(3) var<storage, read> dh: array<f32>;
@group(0) @binding(4) var<storage, read> dw: array<f32>;
@group(0) @binding(5) var<storage, read_write> gout: array<f32>;
@group(0) @binding(6) var<storage, read_write> work: array<f32>;
@group(0) @binding(7) var<storage, read> p: ColonyParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tok = (wid.y * nwg.x + wid.x) * 64u + lid;
    let t_all = p.t;
    if (tok >= t_all) { return; }
    let n = p.n;
    let kk = p.steps;
    let mode = p.mode;
    let dt = p.dt;
    let tb = tok * p.stride;
    colony_forward(tb, tok);

    let g_h = o_u(tb) + 4u * n;
    let g_w = g_h + 4u * n;
    let gh1 = g_w + n * n;
    let gw_prev = gh1 + 4u * n;
    let gu = gw_prev + n * n;
    let gh_prev = gu + 4u * n;
    let gnb = gh_prev + 4u * n;
    let gwhat = gnb + 4u * n;
    let o_gs = t_all * (4u * n + n * n) + tok * n;
    for (var x = 0u; x < 4u * n; x++) { work[g_h + x] = dh[tok * 4u * n + x]; }
    for (var x = 0u; x < n * n; x++) { work[g_w + x] = dw[tok * n * n + x]; }
    for (var i = 0u; i < n; i++) { gout[o_gs + i] = 0.0; }
    var gc: array<f32, 9>;
    for (var c = 0u; c < 9u; c++) { gc[c] = 0.0; }

    for (var kr = 0u; kr < kk; kr++) {
        let k = kk - 1u - kr;
        let h = o_h(tb, k);
        let w = o_w(tb, k);
        let h1 = o_h(tb, k + 1u);
        let a1 = o_alive(tb, k + 1u);
        routing_and_update(tb, tok, k);
        let den = o_den(tb);
        let nb = o_nb(tb);
        let u = o_u(tb);
        for (var x = 0u; x < 4u * n; x++) { work[gh1 + x] = work[g_h + x]; }
        for (var x = 0u; x < n * n; x++) { work[gw_prev + x] = 0.0; }
        // rewiring
        for (var i = 0u; i < n; i++) {
            for (var j = 0u; j < n; j++) {
                if (i == j) { continue; }
                let mask = work[a1 + i] * work[a1 + j];
                let d = distance(h1, i, j);
                let lm = 0.5 * (work[h1 + 4u * i + 3u] + work[h1 + 4u * j + 3u]);
                let wij = work[w + i * n + j];
                let v = wij + dt * (coef(7u) * lm * d - coef(8u) * wij);
                let gv = work[g_w + i * n + j] * mask * bound_grad(v);
                if (gv == 0.0) { continue; }
                work[gw_prev + i * n + j] += gv * (1.0 - dt * coef(8u));
                gc[7] += gv * dt * lm * d;
                gc[8] -= gv * dt * wij;
                let glink = gv * dt * coef(7u) * 0.5 * d;
                work[gh1 + 4u * i + 3u] += glink;
                work[gh1 + 4u * j + 3u] += glink;
                if (mode != 0u) {
                    let gd = gv * dt * coef(7u) * lm;
                    for (var c = 0u; c < 4u; c++) {
                        let t = gd * (work[h1 + 4u * i + c] - work[h1 + 4u * j + c]) / d;
                        work[gh1 + 4u * i + c] += t;
                        work[gh1 + 4u * j + c] -= t;
                    }
                }
            }
        }
        // gate and bound
        for (var x = 0u; x < 4u * n; x++) {
            work[gu + x] = work[gh1 + x] * work[a1 + x / 4u] * bound_grad(work[u + x]);
        }
        // EPGL update
        for (var i = 0u; i < n; i++) {
            let e = work[h + 4u * i];
            let pp = work[h + 4u * i + 1u];
            let g = work[h + 4u * i + 2u];
            let l = work[h + 4u * i + 3u];
            let ne = work[nb + 4u * i];
            let np = work[nb + 4u * i + 1u];
            let ng = work[nb + 4u * i + 2u];
            let nl = work[nb + 4u * i + 3u];
            let ge = work[gu + 4u * i];
            let gp = work[gu + 4u * i + 1u];
            let gg = work[gu + 4u * i + 2u];
            let glink = work[gu + 4u * i + 3u];
            work[gh_prev + 4u * i] = ge + dt * (-0.2 * gp + coef(2u) * (1.0 - pp) * gg);
            work[gh_prev + 4u * i + 1u] = gp * (1.0 - dt * coef(4u)) + dt * (-0.4 * ge - coef(2u) * e * gg - 0.3 * gg - 0.3 * glink);
            work[gh_prev + 4u * i + 2u] = gg * (1.0 - dt * coef(5u)) - dt * 0.2 * ge;
            work[gh_prev + 4u * i + 3u] = glink * (1.0 - dt * coef(6u));
            work[gnb + 4u * i] = dt * 0.5 * coef(3u) * glink;
            work[gnb + 4u * i + 1u] = dt * coef(4u) * gp;
            work[gnb + 4u * i + 2u] = dt * (coef(5u) * gg + 0.5 * coef(3u) * glink);
            work[gnb + 4u * i + 3u] = dt * coef(6u) * glink;
            gout[o_gs + i] += dt * (coef(0u) * ge + coef(1u) * gp);
            let si = stim(tok, i);
            gc[0] += dt * si * ge;
            gc[1] += dt * si * gp;
            gc[2] += dt * e * (1.0 - pp) * gg;
            gc[3] += dt * (0.5 * ne + 0.5 * ng) * glink;
            gc[4] += dt * (np - pp) * gp;
            gc[5] += dt * (ng - g) * gg;
            gc[6] += dt * (nl - l) * glink;
        }
        // routing h̃ᵢ = Σⱼ Wᵢⱼ/denᵢ · hⱼ
        for (var i = 0u; i < n; i++) {
            let dn = work[den + i];
            var dot = 0.0;
            for (var j = 0u; j < n; j++) {
                let what = work[w + i * n + j] / dn;
                var acc = 0.0;
                for (var c = 0u; c < 4u; c++) {
                    acc += work[gnb + 4u * i + c] * work[h + 4u * j + c];
                    work[gh_prev + 4u * j + c] += what * work[gnb + 4u * i + c];
                }
                work[gwhat + j] = acc;
                dot += acc * work[w + i * n + j];
            }
            for (var j = 0u; j < n; j++) {
                work[gw_prev + i * n + j] += work[gwhat + j] / dn - dot / (dn * dn);
            }
        }
        for (var x = 0u; x < 4u * n; x++) { work[g_h + x] = work[gh_prev + x]; }
        for (var x = 0u; x < n * n; x++) { work[g_w + x] = work[gw_prev + x]; }
    }
    for (var x = 0u; x < 4u * n; x++) { gout[tok * 4u * n + x] = work[g_h + x]; }
    for (var x = 0u; x < n * n; x++) { gout[t_all * 4u * n + tok * n * n + x] = work[g_w + x]; }
    let o_gc = t_all * (5u * n + n * n) + tok * 9u;
    for (var c = 0u; c < 9u; c++) { gout[o_gc + c] = gc[c]; }
}
