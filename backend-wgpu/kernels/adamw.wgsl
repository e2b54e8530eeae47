// One AdamW update, elementwise (the constants of `AdamWStep`):
// g' = s·g;  m' = β₁m + (1 − β₁)g';  v' = β₂v + (1 − β₂)g'²;
// p' = decay·p − step_size · m' / (√v' · inv_sqrt_bc2 + ε).
// Parameters: AdamWParams (generated, prepended).
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_out: array<f32>;
@group(0) @binding(7) var<storage, read> p: AdamWParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) { return; }
    let b1 = p.beta1;
    let b2 = p.beta2;
    let gs = g[i] * p.grad_scale;
    let m1 = b1 * m[i] + (1.0 - b1) * gs;
    let v1 = b2 * v[i] + (1.0 - b2) * (gs * gs);
    let denom = sqrt(v1) * p.inv_sqrt_bc2 + p.eps;
    w_out[i] = w[i] * p.decay + (-p.step_size) * (m1 / denom);
    m_out[i] = m1;
    v_out[i] = v1;
}
