// Prepended with math.wgsl (pow_).
// out[i] = op(a[ia], b[ib]) with numpy broadcasting.
// Parameters: BinaryParams (generated, prepended; broadcast axes have stride 0); op codes
// follow `Binary` in declaration order (Add 0 … Eq 9).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> p: BinaryParams;

fn apply(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return max(x, y); }
        case 5u: { return min(x, y); }
        case 6u: { return pow_(x, y); }
        case 7u: { return select(0.0, 1.0, x > y); }
        case 8u: { return select(0.0, 1.0, x >= y); }
        case 9u: { return select(0.0, 1.0, x == y); }
        default: { return x; }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) { return; }
    let rank = p.rank;
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = p.shape[k];
        let idx = rem % size;
        rem = rem / size;
        ia += idx * p.a_strides[k];
        ib += idx * p.b_strides[k];
    }
    out[i] = apply(p.op, a[ia], b[ib]);
}
