// Strided copy: for every index j of a logical `shape`,
// dst[dst_base + Σ j_k·dst_stride_k] = src[src_base + Σ j_k·src_stride_k].
// Parameters: CopyParams (generated, prepended).
// Serves permute, narrow, expand (stride 0), concat and pad.
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> p: CopyParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) { return; }
    let rank = p.rank;
    var rem = i;
    var s = p.src_base;
    var t = p.dst_base;
    for (var d = i32(rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = p.shape[k];
        let idx = rem % size;
        rem = rem / size;
        s += idx * p.src_strides[k];
        t += idx * p.dst_strides[k];
    }
    dst[t] = src[s];
}
