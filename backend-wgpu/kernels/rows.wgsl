// Row reductions across one 64-thread workgroup (prepended to the row kernels). Call from
// uniform control flow: every invocation of the workgroup must reach them.

var<workgroup> part: array<f32, 64>;

fn row_sum(v: f32, lid: u32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lid < s) { part[lid] = part[lid] + part[lid + s]; }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

fn row_max(v: f32, lid: u32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lid < s) { part[lid] = max(part[lid], part[lid + s]); }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}
