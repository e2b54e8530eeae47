// Strided copy: for every index j of a logical `shape`,
// dst[dst_base + Σ j_k·dst_stride_k] = src[src_base + Σ j_k·src_stride_k].
// p = [n, rank, src_base, dst_base, shape[rank], src_stride[rank], dst_stride[rank]].
// Serves permute, narrow, expand (stride 0), concat and pad.
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p[0]) { return; }
    let rank = p[1];
    var rem = i;
    var s = p[2];
    var t = p[3];
    for (var d = i32(rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = p[4u + k];
        let idx = rem % size;
        rem = rem / size;
        s += idx * p[4u + rank + k];
        t += idx * p[4u + 2u * rank + k];
    }
    dst[t] = src[s];
}
