// Random fill mirroring `protocell_core::rng::sample`: element e of the stream uses Philox
// block e / K (K = 4 uniform, 8 Bernoulli, 2 normal) of the key.
// Parameters: RandomParams (generated, prepended): dist 0 uniform [a, b), 1 Bernoulli
// (threshold on 16-bit words), 2 normal (mean a, std b).
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> p: RandomParams;

// (hi, lo) of the 64-bit product of two u32, from 16-bit halves
fn mul_wide(x: u32, y: u32) -> vec2<u32> {
    let x0 = x & 0xffffu; let x1 = x >> 16u;
    let y0 = y & 0xffffu; let y1 = y >> 16u;
    let p00 = x0 * y0;
    let p01 = x0 * y1;
    let p10 = x1 * y0;
    let p11 = x1 * y1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, lo);
}

fn philox(block_lo: u32, block_hi: u32) -> vec4<u32> {
    var c = vec4<u32>(block_lo, block_hi, p.offset_lo, p.offset_hi);
    var k0 = p.seed_lo;
    var k1 = p.seed_hi;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        let a = mul_wide(0xD2511F53u, c.x);
        let b = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(b.x ^ c.y ^ k0, b.y, a.x ^ c.w ^ k1, a.y);
    }
    return c;
}

fn unit(x: u32) -> f32 { return f32(x >> 8u) * (1.0 / 16777216.0); }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (e >= p.n) { return; }
    let dist = p.dist;
    let a = p.a;
    let b = p.b;
    if (dist == 0u) {
        let w = philox(e / 4u, 0u);
        out[e] = a + (b - a) * unit(w[e % 4u]);
    } else if (dist == 1u) {
        let w = philox(e / 8u, 0u);
        let word = (w[(e % 8u) / 2u] >> (16u * (e % 2u))) & 0xffffu;
        out[e] = select(0.0, 1.0, word < p.threshold);
    } else {
        let w = philox(e / 2u, 0u);
        let lane = 2u * (e % 2u);
        let u1 = f32((w[lane] >> 8u) + 1u) * (1.0 / 16777216.0);
        let u2 = unit(w[lane + 1u]);
        out[e] = a + b * sqrt(-2.0 * log(u1)) * cos(6.2831853071795864 * u2);
    }
}
