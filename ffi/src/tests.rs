//! The exported functions called as a C program would, with hostile input: every case must
//! return an error status with a message, and none may crash. Also: the checked-in header
//! matches the one cbindgen generates from this crate.
use super::*;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

type S = ProtocellStatus;

fn last_error() -> String {
    // SAFETY: protocell_last_error never returns NULL and the string is NUL-terminated.
    unsafe { CStr::from_ptr(protocell_last_error()) }.to_string_lossy().into_owned()
}

/// Asserts a failure with `status` and a message containing `needle`.
#[track_caller]
fn expect(got: S, status: S, needle: &str) {
    let msg = last_error();
    assert_eq!(got, status, "message: {msg}");
    assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "{msg:?} lacks {needle:?}");
}

#[track_caller]
fn ok(got: S) {
    assert_eq!(got, S::Ok, "{}", last_error());
    assert!(last_error().is_empty());
}

fn cpu() -> *mut ProtocellDevice {
    let mut d = null_mut();
    ok(unsafe { protocell_device_create(c"cpu".as_ptr(), 3, &mut d) });
    d
}

const TINY: &str =
    r#"{"arch": "gpt", "preset": "tiny", "model": {"n_layer": 1, "d_model": 32, "n_head": 2}, "seed": 3}"#;

fn model(dev: *mut ProtocellDevice, json: &str) -> *mut ProtocellModel {
    let mut m = null_mut();
    ok(unsafe { protocell_model_create(dev, json.as_ptr().cast(), json.len(), &mut m) });
    m
}

fn optimizer(json: &str) -> *mut ProtocellOptimizer {
    let mut o = null_mut();
    ok(unsafe { protocell_optimizer_create(json.as_ptr().cast(), json.len(), &mut o) });
    o
}

fn info(m: *mut ProtocellModel) -> ProtocellModelInfo {
    let mut i = ProtocellModelInfo::default();
    ok(unsafe { protocell_model_info(m, &mut i) });
    i
}

#[test]
fn version_is_a_c_string() {
    // SAFETY: protocell_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(protocell_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn devices() {
    let mut d = null_mut();
    unsafe {
        expect(protocell_device_create(null(), 3, &mut d), S::NullPointer, "device name");
        expect(protocell_device_create(c"cpu".as_ptr(), 3, null_mut()), S::NullPointer, "out");
        expect(protocell_device_create(c"tpu".as_ptr(), 3, &mut d), S::InvalidArgument, "unknown backend");
        expect(protocell_device_create(c"cuda".as_ptr(), 4, &mut d), S::Unavailable, "CUDA unavailable");
        expect(protocell_device_create(c"wgpu:99".as_ptr(), 7, &mut d), S::Unavailable, "wgpu");
        let bad = [0xffu8, 0xfe];
        expect(protocell_device_create(bad.as_ptr().cast(), 2, &mut d), S::Utf8, "UTF-8");
        expect(protocell_device_create(c"cpu".as_ptr(), usize::MAX, &mut d), S::InvalidArgument, "impossibly large");
        assert!(d.is_null(), "failed calls leave outputs untouched");
        let mut d = cpu();
        ok(protocell_device_destroy(&mut d));
        assert!(d.is_null());
        expect(protocell_device_destroy(&mut d), S::NullPointer, "already destroyed");
        expect(protocell_device_destroy(null_mut()), S::NullPointer, "pointer to the device handle");
    }
}

#[test]
fn model_create_rejects_bad_json() {
    let dev = cpu();
    let mut m = null_mut();
    let cases: &[(&[u8], S, &str)] = &[
        (b"", S::Config, "model spec"),
        (b"{not json", S::Config, "model spec"),
        (b"[1, 2]", S::Config, "model spec"),
        (br#"{"arch": "nope"}"#, S::Config, "nope"),
        (br#"{"arch": "gpt", "bogus": 1}"#, S::Config, "bogus"),
        (br#"{"arch": "gpt", "preset": "tiny", "model": {"n_layer": 0}}"#, S::Config, "n_layer"),
        (br#"{"arch": "gpt", "preset": "tiny", "model": {"d_model": 33, "n_head": 2}}"#, S::Config, "d_model"),
        (br#"{"arch": "gpt", "model": 5}"#, S::Config, "object"),
        (br#"{"arch": "gpt", "chars": ""}"#, S::Config, "chars"),
        (b"{\"arch\": \"gpt\xff\"}", S::Utf8, "UTF-8"),
    ];
    for (json, status, needle) in cases {
        let got = unsafe { protocell_model_create(dev, json.as_ptr().cast(), json.len(), &mut m) };
        expect(got, *status, needle);
        assert!(m.is_null());
    }
    unsafe {
        expect(protocell_model_create(null(), TINY.as_ptr().cast(), TINY.len(), &mut m), S::NullPointer, "device");
        expect(protocell_model_create(dev, null(), 10, &mut m), S::NullPointer, "json");
        expect(protocell_model_create(dev, TINY.as_ptr().cast(), TINY.len(), null_mut()), S::NullPointer, "out");
        let mut d = dev;
        ok(protocell_device_destroy(&mut d));
        // a destroyed device handle is caught, not dereferenced
        expect(protocell_model_create(dev, TINY.as_ptr().cast(), TINY.len(), &mut m), S::InvalidHandle, "not a live");
    }
}

#[test]
fn train_save_load_generate_round_trip() {
    let dev = cpu();
    let mut m = model(dev, TINY);
    let i = info(m);
    assert_eq!(i.vocab_size, 256);
    assert!(i.num_params > 10_000);
    let mut opt = optimizer(r#"{"lr": 3e-3}"#);
    let text = "the cell divides and the colony grows; ".repeat(8);
    let (b, s) = (4usize, 32usize);
    let ids: Vec<u32> = text.bytes().map(u32::from).collect();
    let x: Vec<u32> = (0..b).flat_map(|k| ids[k * 7..k * 7 + s].to_vec()).collect();
    let y: Vec<u32> = (0..b).flat_map(|k| ids[k * 7 + 1..k * 7 + 1 + s].to_vec()).collect();
    let mut first = ProtocellStepStats::default();
    let mut last = ProtocellStepStats::default();
    for step in 0..30 {
        let st = if step == 0 { &mut first } else { &mut last };
        ok(unsafe { protocell_train_step(m, opt, x.as_ptr(), y.as_ptr(), b, s, st) });
    }
    assert_eq!(last.step, 30);
    assert!(last.loss < first.loss - 1.0, "loss {} -> {}", first.loss, last.loss);

    // save to memory: size query, too small, exact
    let mut needed = 0usize;
    let mut got = unsafe { protocell_model_save_bytes(m, opt, null_mut(), 0, &mut needed) };
    expect(got, S::BufferTooSmall, "needs");
    assert!(needed > 4 * i.num_params);
    let mut buf = vec![0u8; needed];
    got = unsafe { protocell_model_save_bytes(m, opt, buf.as_mut_ptr(), buf.len(), &mut needed) };
    ok(got);

    // save to a file, load from both, same greedy tokens
    let dir = std::env::temp_dir().join(format!("protocell-ffi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.ckpt");
    let p = path.to_str().unwrap();
    ok(unsafe { protocell_model_save(m, null(), p.as_ptr().cast(), p.len()) });
    let mut from_file = null_mut();
    let mut from_bytes = null_mut();
    ok(unsafe { protocell_model_load(dev, p.as_ptr().cast(), p.len(), &mut from_file) });
    ok(unsafe { protocell_model_load_bytes(dev, buf.as_ptr(), buf.len(), &mut from_bytes) });
    let prompt = &ids[..5];
    let gen = |h: *mut ProtocellModel, t: f32| {
        let mut out = vec![0u32; 12];
        ok(unsafe { protocell_model_generate(h, prompt.as_ptr(), prompt.len(), t, 0, 9, out.as_mut_ptr(), 12) });
        out
    };
    let g = gen(m, 0.0);
    assert_eq!(g, gen(from_file, 0.0));
    assert_eq!(g, gen(from_bytes, 0.0));
    assert_eq!(gen(m, 0.9), gen(from_file, 0.9), "same seed, same tokens");

    // logits agree too
    let mut l1 = vec![0f32; s * i.vocab_size];
    let mut l2 = vec![0f32; s * i.vocab_size];
    ok(unsafe { protocell_model_forward(m, x.as_ptr(), 1, s, l1.as_mut_ptr(), l1.len()) });
    ok(unsafe { protocell_model_forward(from_bytes, x.as_ptr(), 1, s, l2.as_mut_ptr(), l2.len()) });
    assert_eq!(l1, l2);

    // encode / decode
    let mut n = 0usize;
    let word = "colony";
    let mut tok = [0u32; 16];
    ok(unsafe { protocell_model_encode(m, word.as_ptr().cast(), word.len(), tok.as_mut_ptr(), 16, &mut n) });
    assert_eq!(n, 6);
    let mut textbuf = [0 as c_char; 16];
    let mut need = 0usize;
    ok(unsafe { protocell_model_decode(m, tok.as_ptr(), n, textbuf.as_mut_ptr(), 16, &mut need) });
    assert_eq!(need, 7);
    assert_eq!(unsafe { CStr::from_ptr(textbuf.as_ptr()) }.to_str().unwrap(), word);
    expect(
        unsafe { protocell_model_decode(m, tok.as_ptr(), n, textbuf.as_mut_ptr(), 3, &mut need) },
        S::BufferTooSmall,
        "needs 7",
    );

    unsafe {
        ok(protocell_model_destroy(&mut from_file));
        ok(protocell_model_destroy(&mut from_bytes));
        ok(protocell_optimizer_destroy(&mut opt));
        ok(protocell_model_destroy(&mut m));
        let mut d = dev;
        ok(protocell_device_destroy(&mut d));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hostile_buffers_and_lengths() {
    let dev = cpu();
    let mut m = model(dev, TINY);
    let i = info(m);
    let opt = optimizer("{}");
    let ids = [1u32; 64];
    let mut logits = vec![0f32; 64 * i.vocab_size];
    let mut st = ProtocellStepStats::default();
    unsafe {
        // null pointers
        expect(
            protocell_model_forward(null(), ids.as_ptr(), 1, 4, logits.as_mut_ptr(), 4 * 256),
            S::NullPointer,
            "model",
        );
        expect(protocell_model_forward(m, null(), 1, 4, logits.as_mut_ptr(), 4 * 256), S::NullPointer, "ids");
        expect(protocell_model_forward(m, ids.as_ptr(), 1, 4, null_mut(), 4 * 256), S::NullPointer, "logits");
        expect(protocell_model_info(m, null_mut()), S::NullPointer, "info");
        expect(protocell_train_step(m, null(), ids.as_ptr(), ids.as_ptr(), 1, 4, &mut st), S::NullPointer, "optimizer");
        // zero and huge lengths
        expect(protocell_model_forward(m, ids.as_ptr(), 0, 4, logits.as_mut_ptr(), 0), S::InvalidArgument, "positive");
        expect(protocell_model_forward(m, ids.as_ptr(), 1, 0, logits.as_mut_ptr(), 0), S::InvalidArgument, "positive");
        expect(
            protocell_model_forward(m, ids.as_ptr(), usize::MAX, 4, logits.as_mut_ptr(), logits.len()),
            S::InvalidArgument,
            "batch",
        );
        expect(
            protocell_model_forward(m, ids.as_ptr(), 1, usize::MAX, logits.as_mut_ptr(), logits.len()),
            S::InvalidArgument,
            "context",
        );
        expect(
            protocell_train_step(m, opt, ids.as_ptr(), ids.as_ptr(), 1 << 30, 64, &mut st),
            S::InvalidArgument,
            "batch",
        );
        // wrong-size output buffers
        expect(
            protocell_model_forward(m, ids.as_ptr(), 1, 4, logits.as_mut_ptr(), 4 * 256 - 1),
            S::InvalidArgument,
            "logits",
        );
        expect(
            protocell_model_forward(m, ids.as_ptr(), 1, 4, logits.as_mut_ptr(), usize::MAX),
            S::InvalidArgument,
            "logits",
        );
        // token ids outside the vocabulary
        let bad = [1u32, 2, 300, 4];
        expect(
            protocell_model_forward(m, bad.as_ptr(), 1, 4, logits.as_mut_ptr(), 4 * 256),
            S::InvalidArgument,
            "vocabulary",
        );
        expect(
            protocell_train_step(m, opt, ids.as_ptr(), bad.as_ptr(), 1, 4, &mut st),
            S::InvalidArgument,
            "vocabulary",
        );
        assert_eq!(st.step, 0, "failed steps write no stats");
        // generation
        let mut out = [0u32; 4];
        expect(
            protocell_model_generate(m, ids.as_ptr(), 0, 0.0, 0, 1, out.as_mut_ptr(), 4),
            S::InvalidArgument,
            "prompt",
        );
        expect(
            protocell_model_generate(m, ids.as_ptr(), 2, -1.0, 0, 1, out.as_mut_ptr(), 4),
            S::InvalidArgument,
            "temperature",
        );
        expect(
            protocell_model_generate(m, ids.as_ptr(), 2, f32::NAN, 0, 1, out.as_mut_ptr(), 4),
            S::InvalidArgument,
            "temperature",
        );
        expect(
            protocell_model_generate(m, ids.as_ptr(), 2, 0.0, 0, 1, out.as_mut_ptr(), usize::MAX),
            S::InvalidArgument,
            "n_new",
        );
        expect(
            protocell_model_generate(m, ids.as_ptr(), usize::MAX, 0.0, 0, 1, out.as_mut_ptr(), 4),
            S::InvalidArgument,
            "prompt",
        );
        // misaligned buffers
        let raw = [0u8; 64];
        let odd = raw.as_ptr().add(1).cast::<u32>();
        expect(protocell_model_forward(m, odd, 1, 4, logits.as_mut_ptr(), 4 * 256), S::InvalidArgument, "misaligned");
        // optimizer JSON
        let mut o2 = null_mut();
        for (json, needle) in [
            ("{\"lr\": -1}", "learning rate"),
            ("{\"beta1\": 1.5}", "betas"),
            ("{\"lr\": 1e-3,", "optimizer"),
            ("{\"momentum\": 0.9}", "momentum"),
        ] {
            expect(protocell_optimizer_create(json.as_ptr().cast(), json.len(), &mut o2), S::Config, needle);
        }
        expect(protocell_optimizer_create(c"{}".as_ptr(), 2, null_mut()), S::NullPointer, "out");
        // wrong kinds: a model passed as an optimizer, an optimizer as a model
        expect(
            protocell_train_step(m, m.cast(), ids.as_ptr(), ids.as_ptr(), 1, 4, &mut st),
            S::InvalidHandle,
            "expected an optimizer",
        );
        expect(
            protocell_model_info(opt.cast(), &mut ProtocellModelInfo::default()),
            S::InvalidHandle,
            "expected a model",
        );
        // a forged handle
        let forged = 0x1234_5678usize as *mut ProtocellModel;
        expect(protocell_model_info(forged, &mut ProtocellModelInfo::default()), S::InvalidHandle, "not a live");
        let mut f = forged;
        expect(protocell_model_destroy(&mut f), S::InvalidHandle, "not a live");
        // double destroy through the nulled pointer, and use after destroy through a copy
        let copy = m;
        ok(protocell_model_destroy(&mut m));
        assert!(m.is_null());
        expect(protocell_model_destroy(&mut m), S::NullPointer, "already destroyed");
        expect(protocell_model_info(copy, &mut ProtocellModelInfo::default()), S::InvalidHandle, "not a live");
        let mut c = copy;
        expect(protocell_model_destroy(&mut c), S::InvalidHandle, "not a live");
    }
}

#[test]
fn optimizer_binds_to_one_model() {
    let dev = cpu();
    let a = model(dev, TINY);
    let b = model(dev, TINY);
    let opt = optimizer("{}");
    let ids = [5u32; 8];
    let mut st = ProtocellStepStats::default();
    unsafe {
        ok(protocell_train_step(a, opt, ids.as_ptr(), ids.as_ptr(), 1, 8, &mut st));
        expect(
            protocell_train_step(b, opt, ids.as_ptr(), ids.as_ptr(), 1, 8, &mut st),
            S::InvalidArgument,
            "another model",
        );
    }
}

#[test]
fn corrupt_checkpoints_are_errors() {
    let dev = cpu();
    let m = model(dev, TINY);
    let mut needed = 0usize;
    unsafe { protocell_model_save_bytes(m, null(), null_mut(), 0, &mut needed) };
    let mut buf = vec![0u8; needed];
    ok(unsafe { protocell_model_save_bytes(m, null(), buf.as_mut_ptr(), buf.len(), &mut needed) });
    let mut out = null_mut();
    let load = |bytes: &[u8], out: &mut *mut ProtocellModel| unsafe {
        protocell_model_load_bytes(dev, bytes.as_ptr(), bytes.len(), out)
    };
    expect(load(&[], &mut out), S::Checkpoint, "checkpoint");
    for cut in [1, 7, 16, buf.len() / 2, buf.len() - 1] {
        expect(load(&buf[..cut], &mut out), S::Checkpoint, "checkpoint");
    }
    // random bytes and bit flips (the checksum catches a flip anywhere)
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for len in [3usize, 64, 4096] {
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        expect(load(&junk, &mut out), S::Checkpoint, "checkpoint");
    }
    for _ in 0..8 {
        let mut flipped = buf.clone();
        let at = next() as usize % flipped.len();
        flipped[at] ^= 1 << (next() % 8);
        expect(load(&flipped, &mut out), S::Checkpoint, "checkpoint");
    }
    assert!(out.is_null());
    unsafe {
        expect(protocell_model_load_bytes(dev, null(), 10, &mut out), S::NullPointer, "bytes");
        expect(
            protocell_model_load_bytes(dev, buf.as_ptr(), usize::MAX, &mut out),
            S::InvalidArgument,
            "impossibly large",
        );
        let missing = "/nonexistent/dir/m.ckpt";
        expect(
            protocell_model_load(dev, missing.as_ptr().cast(), missing.len(), &mut out),
            S::Checkpoint,
            "cannot read",
        );
        let bad = [b'/', 0xff, b'x'];
        expect(protocell_model_load(dev, bad.as_ptr().cast(), 3, &mut out), S::Utf8, "UTF-8");
        let dir = "/";
        expect(protocell_model_save(m, null(), dir.as_ptr().cast(), dir.len()), S::Io, "");
    }
}

#[test]
fn handles_are_confined_to_their_thread() {
    let dev = cpu();
    let m = model(dev, TINY) as usize;
    let colony = {
        let json = r#"{"blocks": 3}"#;
        let mut c = null_mut();
        ok(unsafe { protocell_colony_create(dev, json.as_ptr().cast(), json.len(), &mut c) });
        c as usize
    };
    std::thread::spawn(move || unsafe {
        let m = m as *mut ProtocellModel;
        expect(protocell_model_info(m, &mut ProtocellModelInfo::default()), S::WrongThread, "another thread");
        let mut mm = m;
        expect(protocell_model_destroy(&mut mm), S::WrongThread, "another thread");
        assert!(!mm.is_null());
        let mut n = 0usize;
        expect(protocell_colony_blocks(colony as *mut ProtocellColony, &mut n), S::WrongThread, "another thread");
        expect(protocell_colony_blocks(null(), &mut n), S::NullPointer, "colony handle is NULL");
    })
    .join()
    .unwrap();
    // still usable on its own thread, whose last error the other thread did not touch
    assert!(last_error().is_empty());
    info(m as *mut ProtocellModel);
}

#[test]
fn presynaptic_bank_round_trip_and_hostile_input() {
    let mut b = null_mut();
    unsafe {
        for (json, keys, needle) in [
            (r#"{"tau_c": -1}"#, 4, "tau_c"),
            (r#"{"attn_topk": 0}"#, 4, "attn_topk"),
            (r#"{"tau_prime": 5}"#, 4, "unknown field"),
            (r#"{"endo_delay": 100}"#, 4, "endo_delay"),
            (r#"{}"#, 0, "keys"),
            (r#"{}"#, usize::MAX, "keys"),
            (r#"[1]"#, 4, "presynaptic"),
        ] {
            expect(protocell_presyn_create(json.as_ptr().cast(), json.len(), keys, &mut b), S::Config, needle);
        }
        let json = r#"{"attn_topk": 2}"#;
        ok(protocell_presyn_create(json.as_ptr().cast(), json.len(), 5, &mut b));
        let (mut keys, mut width) = (0, 0);
        ok(protocell_presyn_shape(b, &mut keys, &mut width));
        assert_eq!((keys, width), (5, 10));
        let mut state = vec![0f32; 50];
        ok(protocell_presyn_get_state(b, state.as_mut_ptr(), 50));
        assert_eq!(&state[..7], &[0.0, 0.0, 6.0, 18.0, 0.7, 0.6, 0.85]);
        // the two strongest finite drives are the edges; NaN is not an edge
        let mut e = [0f32; 5];
        ok(protocell_presyn_step(b, [0.5f32, f32::NAN, 2.0, -1.0, 1.0].as_ptr(), 5, e.as_mut_ptr(), 5));
        assert!(e[2] > 0.0 && e[4] > 0.0 && e[0] == 0.0 && e[1] == 0.0 && e[3] == 0.0, "{e:?}");
        ok(protocell_presyn_get_state(b, state.as_mut_ptr(), 50));
        assert!(state[2 * 10 + 2] < 6.0, "the strongest terminal's pool depleted");
        // repeated drive depletes further: the output of the same edge falls
        let mut e2 = [0f32; 5];
        ok(protocell_presyn_step(b, [0.5f32, f32::NAN, 2.0, -1.0, 1.0].as_ptr(), 5, e2.as_mut_ptr(), 5));
        assert!(e2[2] < e[2], "{} then {}", e[2], e2[2]);
        // hostile input
        expect(protocell_presyn_step(b, [0.0f32; 4].as_ptr(), 4, e.as_mut_ptr(), 5), S::InvalidArgument, "expected 5");
        expect(protocell_presyn_step(b, null(), 5, e.as_mut_ptr(), 5), S::NullPointer, "drive");
        expect(protocell_presyn_step(b, [0.0f32; 5].as_ptr(), 5, null_mut(), 5), S::NullPointer, "out");
        expect(protocell_presyn_get_state(b, state.as_mut_ptr(), 49), S::InvalidArgument, "expected 50");
        ok(protocell_presyn_get_state(b, state.as_mut_ptr(), 50));
        let before = state.clone();
        let mut bad = state.clone();
        bad[2] = 31.0;
        expect(protocell_presyn_set_state(b, bad.as_ptr(), 50), S::InvalidArgument, "outside");
        bad[2] = f32::NAN;
        expect(protocell_presyn_set_state(b, bad.as_ptr(), 50), S::InvalidArgument, "outside");
        ok(protocell_presyn_get_state(b, state.as_mut_ptr(), 50));
        assert_eq!(state, before, "failed calls change nothing");
        let mut good = state.clone();
        good[2] = 3.0;
        ok(protocell_presyn_set_state(b, good.as_ptr(), 50));
        ok(protocell_presyn_get_state(b, state.as_mut_ptr(), 50));
        assert_eq!(state, good);
        // a bank handle is not a colony handle
        expect(protocell_colony_step(b.cast(), [0.0f32; 5].as_ptr(), 5), S::InvalidHandle, "presynaptic bank");
        ok(protocell_presyn_destroy(&mut b));
        expect(protocell_presyn_destroy(&mut b), S::NullPointer, "already destroyed");
    }
}

#[test]
fn colony_round_trip_and_hostile_input() {
    let dev = cpu();
    let mut c = null_mut();
    unsafe {
        for (json, needle) in [
            (r#"{}"#, "blocks"),
            (r#"{"blocks": 0}"#, "blocks"),
            (r#"{"blocks": 100000}"#, "blocks"),
            (r#"{"blocks": 3, "mode": "wild"}"#, "wild"),
            (r#"{"blocks": 3, "inner_steps": 0}"#, "inner steps"),
            (r#"{"blocks": 3, "coeffs": [1, 2]}"#, "colony"),
            (r#"{"blocks": 3, "coeffs": [-1, 0, 0, 0, 0, 0, 0, 0, 0]}"#, "non-negative"),
            (r#"{"blocks": 3, "init": 2}"#, "init"),
            (r#"{"blocks": 3, "dt": 0.5, "mode": "as-coded"}"#, "dt"),
        ] {
            expect(protocell_colony_create(dev, json.as_ptr().cast(), json.len(), &mut c), S::Config, needle);
        }
        let json = r#"{"blocks": 4, "mode": "as-described", "inner_steps": 2}"#;
        ok(protocell_colony_create(dev, json.as_ptr().cast(), json.len(), &mut c));
        let mut n = 0;
        ok(protocell_colony_blocks(c, &mut n));
        assert_eq!(n, 4);
        let mut h = [0f32; 16];
        let mut w = [0f32; 16];
        ok(protocell_colony_get_state(c, h.as_mut_ptr(), 16));
        assert!(h.iter().all(|&v| v == 0.5));
        ok(protocell_colony_get_mucus(c, w.as_mut_ptr(), 16));
        assert_eq!(w[1], 0.1);
        assert_eq!(w[0], 0.0);
        ok(protocell_colony_step(c, [0.9f32, 0.0, 0.0, 0.3].as_ptr(), 4));
        ok(protocell_colony_get_state(c, h.as_mut_ptr(), 16));
        assert!(h.iter().any(|&v| v != 0.5) && h.iter().all(|v| (0.0..=1.0).contains(v)));
        // hostile input
        expect(protocell_colony_step(c, [0.1f32; 3].as_ptr(), 3), S::InvalidArgument, "expected 4");
        expect(protocell_colony_step(c, null(), 4), S::NullPointer, "drive");
        expect(protocell_colony_step(c, [0.1, f32::INFINITY, 0.0, 0.0].as_ptr(), 4), S::NonFinite, "drive");
        expect(protocell_colony_get_state(c, h.as_mut_ptr(), 15), S::InvalidArgument, "expected 16");
        expect(protocell_colony_get_state(c, h.as_mut_ptr(), usize::MAX), S::InvalidArgument, "expected 16");
        expect(protocell_colony_set_state(c, [1.5f32; 16].as_ptr(), 16), S::InvalidArgument, "[0, 1]");
        expect(protocell_colony_set_state(c, [f32::NAN; 16].as_ptr(), 16), S::InvalidArgument, "[0, 1]");
        expect(protocell_colony_set_mucus(c, [0.2f32; 16].as_ptr(), 16), S::InvalidArgument, "diagonal");
        let mut neg = [0f32; 16];
        neg[1] = -0.5;
        expect(protocell_colony_set_mucus(c, neg.as_ptr(), 16), S::InvalidArgument, "≥ 0");
        let before = h;
        ok(protocell_colony_get_state(c, h.as_mut_ptr(), 16));
        assert_eq!(before, h, "failed calls change nothing");
        // writes round-trip
        let mut w2 = [0f32; 16];
        w2[1] = 1.0;
        w2[6] = 0.5;
        ok(protocell_colony_set_mucus(c, w2.as_ptr(), 16));
        ok(protocell_colony_get_mucus(c, w.as_mut_ptr(), 16));
        assert_eq!(w, w2);
        ok(protocell_colony_set_state(c, [0.25f32; 16].as_ptr(), 16));
        ok(protocell_colony_get_state(c, h.as_mut_ptr(), 16));
        assert_eq!(h, [0.25; 16]);
        ok(protocell_colony_destroy(&mut c));
        expect(protocell_colony_destroy(&mut c), S::NullPointer, "already destroyed");
    }
}

/// The checked-in header is what cbindgen generates now. `PROTOCELL_BLESS=1` rewrites it.
#[test]
fn header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let cfg = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(cfg)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = format!("{dir}/include/protocell.h");
    if std::env::var_os("PROTOCELL_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "ffi/include/protocell.h is stale: regenerate it with `PROTOCELL_BLESS=1 cargo test -p protocell-ffi header`"
    );
}

#[test]
fn every_architecture_trains_saves_and_reloads() {
    let dev = cpu();
    let mut specs: Vec<String> = protocell_runtime::registry::models()
        .iter()
        .map(|m| format!(r#"{{"arch": "{}", "preset": "tiny", "seed": 2}}"#, m.name))
        .collect();
    specs.push(
        r#"{"arch": "cell-token", "preset": "tiny", "model": {"mode": "as-coded"}, "chars": "abcdefgh "}"#.into(),
    );
    for spec in &specs {
        let spec = spec.as_str();
        let mut m = model(dev, spec);
        let i = info(m);
        let mut opt = optimizer(r#"{"lr": 1e-2, "warmup": 2, "total_steps": 6}"#);
        let v = i.vocab_size as u32;
        let ids: Vec<u32> = (0..2 * 16).map(|k| (k * 7 + 3) % v).collect();
        let mut st = ProtocellStepStats::default();
        let mut losses = Vec::new();
        for _ in 0..6 {
            ok(unsafe { protocell_train_step(m, opt, ids.as_ptr(), ids[1..].as_ptr(), 1, 16, &mut st) });
            losses.push(st.loss);
        }
        assert!(losses[5] < losses[0], "{spec}: {losses:?}");
        let mut needed = 0usize;
        unsafe { protocell_model_save_bytes(m, opt, null_mut(), 0, &mut needed) };
        let mut buf = vec![0u8; needed];
        ok(unsafe { protocell_model_save_bytes(m, opt, buf.as_mut_ptr(), buf.len(), &mut needed) });
        let mut back = null_mut();
        ok(unsafe { protocell_model_load_bytes(dev, buf.as_ptr(), buf.len(), &mut back) });
        assert_eq!(info(back), i);
        let (mut a, mut b) = ([0u32; 6], [0u32; 6]);
        ok(unsafe { protocell_model_generate(m, ids.as_ptr(), 4, 0.0, 0, 1, a.as_mut_ptr(), 6) });
        ok(unsafe { protocell_model_generate(back, ids.as_ptr(), 4, 0.0, 0, 1, b.as_mut_ptr(), 6) });
        assert_eq!(a, b, "{spec}");
        unsafe {
            ok(protocell_model_destroy(&mut back));
            ok(protocell_optimizer_destroy(&mut opt));
            ok(protocell_model_destroy(&mut m));
        }
    }
}

#[test]
fn a_panic_becomes_a_status() {
    let got = guard(|| panic!("boom in a kernel"));
    expect(got, S::Internal, "internal error: boom in a kernel");
    let got = guard(|| Err(Error::NonFinite("loss is NaN".into()).into()));
    expect(got, S::NonFinite, "loss is NaN");
}

/// The optimiser of a checkpoint written by a training session (`protocell train`) loads
/// through the C ABI and takes the same next step as the session itself.
#[test]
fn a_training_sessions_optimizer_loads() {
    let dev = cpu();
    let mut v = protocell_runtime::registry::preset("gpt", Some("tiny")).unwrap().to_value();
    v["model"]["d_model"] = serde_json::json!(16);
    v["model"]["n_layer"] = serde_json::json!(1);
    v["train"]["data"]["corpus_bytes"] = serde_json::json!(20_000);
    let run = protocell_runtime::RunConfig::from_value(v).unwrap();
    let mut s = protocell_runtime::new_session(run, protocell_runtime::Device::Cpu).unwrap();
    for _ in 0..3 {
        s.train_step().unwrap();
    }
    let bytes = s.checkpoint().unwrap().encode().unwrap();
    let ids: Vec<u32> = (0..2 * 16 + 1).map(|k| (k * 13 + 5) % 256).collect();
    let want = s.train_on(&ids[..32], &ids[1..], 2, 16);
    let mut m = null_mut();
    ok(unsafe { protocell_model_load_bytes(dev, bytes.as_ptr(), bytes.len(), &mut m) });
    let mut o = null_mut();
    ok(unsafe { protocell_optimizer_load_bytes(m, bytes.as_ptr(), bytes.len(), &mut o) });
    let mut st = ProtocellStepStats::default();
    ok(unsafe { protocell_train_step(m, o, ids.as_ptr(), ids[1..].as_ptr(), 2, 16, &mut st) });
    assert_eq!(st.loss.to_bits(), want.unwrap().loss.to_bits());
    assert_eq!(st.step, 4);
    unsafe {
        ok(protocell_optimizer_destroy(&mut o));
        ok(protocell_model_destroy(&mut m));
    }
}

/// Training resumes exactly: N steps, save with the optimiser, reload both, N more steps
/// equals 2N uninterrupted steps bit for bit.
#[test]
fn optimizer_state_round_trips_through_a_checkpoint() {
    let dev = cpu();
    let ids: Vec<u32> = (0..2 * 16).map(|k| (k * 13 + 5) % 256).collect();
    let step = |m: *mut ProtocellModel, o: *mut ProtocellOptimizer| {
        let mut st = ProtocellStepStats::default();
        ok(unsafe { protocell_train_step(m, o, ids.as_ptr(), ids[1..].as_ptr(), 1, 16, &mut st) });
        st.loss
    };
    let straight = model(dev, TINY);
    let so = optimizer(r#"{"lr": 1e-2, "warmup": 2, "total_steps": 8}"#);
    let want: Vec<f64> = (0..8).map(|_| step(straight, so)).collect();

    let first = model(dev, TINY);
    let fo = optimizer(r#"{"lr": 1e-2, "warmup": 2, "total_steps": 8}"#);
    let mut got: Vec<f64> = (0..4).map(|_| step(first, fo)).collect();
    let mut needed = 0usize;
    unsafe { protocell_model_save_bytes(first, fo, null_mut(), 0, &mut needed) };
    let mut buf = vec![0u8; needed];
    ok(unsafe { protocell_model_save_bytes(first, fo, buf.as_mut_ptr(), buf.len(), &mut needed) });
    let mut resumed = null_mut();
    ok(unsafe { protocell_model_load_bytes(dev, buf.as_ptr(), buf.len(), &mut resumed) });
    let mut ro = null_mut();
    ok(unsafe { protocell_optimizer_load_bytes(resumed, buf.as_ptr(), buf.len(), &mut ro) });
    got.extend((0..4).map(|_| step(resumed, ro)));
    assert_eq!(
        got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );

    // the restored optimiser belongs to the model it was loaded for
    let other = model(dev, TINY);
    expect(
        unsafe {
            protocell_train_step(other, ro, ids.as_ptr(), ids[1..].as_ptr(), 1, 16, &mut ProtocellStepStats::default())
        },
        S::InvalidArgument,
        "another model",
    );
    // a checkpoint saved without an optimiser has none to load
    unsafe { protocell_model_save_bytes(other, null(), null_mut(), 0, &mut needed) };
    let mut plain = vec![0u8; needed];
    ok(unsafe { protocell_model_save_bytes(other, null(), plain.as_mut_ptr(), plain.len(), &mut needed) });
    let mut none = null_mut();
    expect(
        unsafe { protocell_optimizer_load_bytes(other, plain.as_ptr(), plain.len(), &mut none) },
        S::Checkpoint,
        "no optimizer state",
    );
    let missing = "/nonexistent/x.ckpt";
    expect(
        unsafe { protocell_optimizer_load(other, missing.as_ptr().cast(), missing.len(), &mut none) },
        S::Checkpoint,
        "cannot read",
    );
    assert!(none.is_null());
}
