// Strided row addressing shared by the attention kernels (prepended to them).
// A layout is four u32 at p[l..l+4]: [base, batch stride, head stride, row stride]; row `row`
// of head `bh` (= b·H + h) starts at base + b·sb + h·sh + row·rs. This one form covers
// contiguous [BH, S, D] tensors (H = 1) and the packed qkv [B, S, 3, H, Dh] / o [B, S, H, Dh].
fn at(l: u32, heads: u32, bh: u32, row: u32) -> u32 {
    return p[l] + (bh / heads) * p[l + 1u] + (bh % heads) * p[l + 2u] + row * p[l + 3u];
}

// A lower bound for scores (finite, so that exp(s − max) never sees ∞ − ∞).
const NEG_BIG: f32 = -3.0e38;
