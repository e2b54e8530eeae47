// x viewed as [outer, n, inner]; out[o, i] = op over k of x[o, k, i].
// One workgroup per output: thread t folds k ≡ t (mod 64), then a tree in workgroup memory.
// Loops are nested so that no single loop runs more than 4096 iterations (some drivers
// bound loop trip counts). Parameters: ReduceParams (generated, prepended), op Sum 0, Mean 1,
// Max 2, Min 3.
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> p: ReduceParams;

var<workgroup> part: array<f32, 64>;

fn fold(op: u32, acc: f32, v: f32) -> f32 {
    switch op {
        case 2u: { return max(acc, v); }
        case 3u: { return min(acc, v); }
        default: { return acc + v; }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let j = wid.y * nwg.x + wid.x;
    let n = p.n;
    let inner = p.inner;
    let op = p.op;
    let in_range = j < p.outputs;
    var acc = 0.0;
    var seen = false;
    if (in_range) {
        let base = (j / inner) * n * inner + j % inner;
        for (var c = lid; c < n; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= n) { break; }
                let v = x[base + k * inner];
                if (seen) { acc = fold(op, acc, v); } else { acc = v; seen = true; }
            }
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    // lanes that saw nothing hold 0; for max/min fill them with lane 0's value (n ≥ 1)
    if (!seen && op >= 2u) { part[lid] = part[0]; }
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            part[lid] = fold(op, part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u && in_range) {
        var r = part[0];
        if (op == 1u) { r = r / f32(n); }
        out[j] = r;
    }
}
