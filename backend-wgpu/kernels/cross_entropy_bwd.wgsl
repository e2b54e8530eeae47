// dlogits[r, c] = (e^{x[r, c] − lse[r]} − [c = t[r]]) · dloss / n.
// Parameters: CrossEntropyBwdParams (generated, prepended).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<u32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> p: CrossEntropyBwdParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) { return; }
    let v = p.classes;
    let r = i / v;
    let c = i % v;
    let hot = select(0.0, 1.0, t[r] == c);
    dx[i] = (exp(x[i] - lse[r]) - hot) * (dloss[0] * p.inv_rows);
}
