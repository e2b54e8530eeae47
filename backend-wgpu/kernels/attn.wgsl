// Strided row addressing shared by the attention kernels (prepended to them).
// A layout (a field of AttnParams or AttnApplyParams) is four u32: [base, batch stride, head
// stride, row stride]; row `row` of head `bh` (= b·H + h) starts at base + b·sb + h·sh + row·rs.
// This one form covers contiguous [BH, S, D] tensors (H = 1) and the packed qkv
// [B, S, 3, H, Dh] / o [B, S, H, Dh].
fn at(l: array<u32, 4>, heads: u32, bh: u32, row: u32) -> u32 {
    return l[0] + (bh / heads) * l[1] + (bh % heads) * l[2] + row * l[3];
}

// A lower bound for scores (finite, so that exp(s − max) never sees ∞ − ∞).
const NEG_BIG: f32 = -3.0e38;
