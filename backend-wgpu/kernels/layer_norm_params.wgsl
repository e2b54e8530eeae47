// LayerNorm backward, parameter gradients, one thread per column c (sequential over rows,
// chunked loops): dγ[c] = Σ_r dy[r, c]·x̂[r, c], dβ[c] = Σ_r dy[r, c].
// RMSNorm when p.rms = 1: x̂ = x·rstd (the mean binding is not read).
// Parameters: NormBwdParams (generated, prepended).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(6) var<storage, read> p: NormBwdParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * nwg.x + wid.x) * 64u + lid;
    let rows = p.rows;
    let d = p.width;
    if (c >= d) { return; }
    let rms = p.rms == 1u;
    var sg = 0.0;
    var sb = 0.0;
    for (var r0 = 0u; r0 < rows; r0 += 4096u) {
        for (var r = r0; r < min(rows, r0 + 4096u); r++) {
            let g = dy[r * d + c];
            sb += g;
            sg += g * (x[r * d + c] - select(mean[r], 0.0, rms)) * rstd[r];
        }
    }
    dgamma[c] = sg;
    dbeta[c] = sb;
}
