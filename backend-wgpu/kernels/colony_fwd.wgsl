// Prepended with colony.wgsl. Colony forward, one invocation per token: writes the final
// states [T, N, 4], mucus [T, N, N] and alive mask [T, N].
@group(0) @binding(0) var<storage, read> h0: array<f32>;
@group(0) @binding(1) var<storage, read> w0: array<f32>;
@group(0) @binding(2) var<storage, read> sc: array<f32>;
@group(0) @binding(3) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> a_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> work: array<f32>;
@group(0) @binding(7) var<storage, read> p: ColonyParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tok = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (tok >= p.t) { return; }
    let n = p.n;
    let kk = p.steps;
    let tb = tok * p.stride;
    colony_forward(tb, tok);
    for (var x = 0u; x < 4u * n; x++) { h_out[tok * 4u * n + x] = work[o_h(tb, kk) + x]; }
    for (var x = 0u; x < n * n; x++) { w_out[tok * n * n + x] = work[o_w(tb, kk) + x]; }
    for (var i = 0u; i < n; i++) { a_out[tok * n + i] = work[o_alive(tb, kk) + i]; }
}
