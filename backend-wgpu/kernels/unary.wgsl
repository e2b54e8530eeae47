// Prepended with math.wgsl (pow_).
// y[i] = f(x[i]).   Parameters: UnaryParams (generated, prepended); op codes follow `Unary` in
// declaration order (Neg 0 … Clamp 19); a, b are the op's parameters (Affine mul/add, Powf p,
// Clamp min/max).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> p: UnaryParams;

// erf: odd series on |x| < 1, Abramowitz–Stegun 7.1.26 tail beyond (as the CPU reference).
fn erf_(x: f32) -> f32 {
    let a = abs(x);
    if (a < 1.0) {
        let z = x * x;
        var s = -1.229055530e-09;
        s = fma(s, z, 1.480719282e-08);
        s = fma(s, z, -1.636584469e-07);
        s = fma(s, z, 1.646211437e-06);
        s = fma(s, z, -1.492565036e-05);
        s = fma(s, z, 1.205533298e-04);
        s = fma(s, z, -8.548327023e-04);
        s = fma(s, z, 5.223977625e-03);
        s = fma(s, z, -2.686617065e-02);
        s = fma(s, z, 1.128379167e-01);
        s = fma(s, z, -3.761263890e-01);
        s = fma(s, z, 1.1283791670955126);
        return x * s;
    }
    let t = 1.0 / fma(0.3275911, a, 1.0);
    var q = 1.0614054;
    q = fma(q, t, -1.4531521);
    q = fma(q, t, 1.4214138);
    q = fma(q, t, -0.28449672);
    q = fma(q, t, 0.2548296);
    q = q * t;
    let r = fma(-q, exp(-x * x), 1.0);
    return select(r, -r, x < 0.0);
}

fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

fn tanh_(x: f32) -> f32 {
    // tanh(x) = sign(x)·(1 − e^{−2|x|})/(1 + e^{−2|x|}), no overflow
    let e = exp(-2.0 * abs(x));
    let r = (1.0 - e) / (1.0 + e);
    return select(r, -r, x < 0.0);
}

fn apply(op: u32, v: f32, a: f32, b: f32) -> f32 {
    switch op {
        case 0u: { return -v; }
        case 1u: { return exp(v); }
        case 2u: { return log(v); }
        case 3u: { return sqrt(v); }
        case 4u: { return 1.0 / sqrt(v); }
        case 5u: { return 1.0 / v; }
        case 6u: { return abs(v); }
        case 7u: { return v * v; }
        case 8u: { return tanh_(v); }
        case 9u: { return sigmoid_(v); }
        case 10u: { return erf_(v); }
        case 11u: { return select(0.0, v, v > 0.0); }
        case 12u: { return 0.5 * v * (1.0 + erf_(v * 0.70710678118654752)); }
        case 13u: { return v * sigmoid_(v); }
        case 14u: { return max(v, 0.0) + log(1.0 + exp(-abs(v))); }
        case 15u: { return sin(v); }
        case 16u: { return cos(v); }
        case 17u: { return a * v + b; }
        case 18u: { return pow_(v, a); }
        case 19u: { return min(max(v, a), b); }
        default: { return v; }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) { return; }
    y[i] = apply(p.op, x[i], p.a, p.b);
}
