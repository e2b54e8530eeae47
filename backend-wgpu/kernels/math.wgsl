// Shared by the kernels that include it (prepended at build time).

// x^e with the C library's rules for negative bases and zero
fn pow_(x: f32, e: f32) -> f32 {
    if (e == 0.0) { return 1.0; }
    if (x == 0.0) {
        if (e > 0.0) { return 0.0; }
        return bitcast<f32>(0x7f800000u);
    }
    if (x > 0.0) { return exp2(e * log2(x)); }
    if (e != round(e)) { return bitcast<f32>(0x7fc00000u); }
    let r = exp2(e * log2(-x));
    let odd = abs(e - 2.0 * floor(e * 0.5)) == 1.0;
    return select(r, -r, odd);
}
