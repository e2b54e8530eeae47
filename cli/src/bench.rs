//! `protocell bench`: measurements that print a ratio against a baseline measured in the
//! same run (numpy/OpenBLAS for sgemm, the PyTorch reference under `bench/pytorch/` and
//! the measured sgemm roofline for training).
use clap::{Args, Subcommand};
use protocell_core::backend::Backend;
use protocell_core::error::{Error, Result};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_runtime::config::apply_set;
use protocell_runtime::{new_session, registry, sys, Device, RunConfig};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Single-threaded sgemm vs numpy (OpenBLAS) on the same machine, plus the all-thread peak.
    Matmul(MatmulArgs),
    /// Training step time and tokens/s vs the PyTorch reference and the sgemm roofline.
    Train(TrainBenchArgs),
    /// Per-op timings at the shapes of a GPT training step, with achieved GFLOP/s or GB/s
    /// and the ratio to the measured sgemm peak / memory-copy bandwidth.
    Ops(OpsArgs),
    /// Greedy generation: incremental decoding (key/value cache) against full recomputation
    /// in the same run, tokens/s and the cost per token early and late in the context.
    Generate(GenerateBenchArgs),
}

/// Arguments of `bench generate`.
#[derive(Args)]
pub struct GenerateBenchArgs {
    /// Model.
    #[arg(long, default_value = "gpt")]
    model: String,
    /// Preset.
    #[arg(long)]
    preset: Option<String>,
    /// Prompt tokens.
    #[arg(long, default_value_t = 64)]
    prompt: usize,
    /// New tokens.
    #[arg(long = "new", default_value_t = 512)]
    new_tokens: usize,
    /// Configuration overrides, as for `train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Skip the full-recomputation baseline.
    #[arg(long)]
    no_baseline: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bench ops`.
#[derive(Args)]
pub struct OpsArgs {
    /// Tokens per batch (rows of the activations).
    #[arg(long, default_value_t = 1024)]
    tokens: usize,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Sequence length (attention).
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// Also time every op on this backend (`wgpu[:N]`, `cuda[:N]`) and print its time against the CPU's.
    #[arg(long)]
    backend: Option<String>,
}

/// Arguments of `bench matmul`.
#[derive(Args)]
pub struct MatmulArgs {
    /// Square sizes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 512, 1024])]
    sizes: Vec<usize>,
    /// Skip the numpy baseline.
    #[arg(long)]
    no_numpy: bool,
    /// Python interpreter with numpy.
    #[arg(long, default_value = "python3")]
    python: String,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bench train`.
#[derive(Args)]
pub struct TrainBenchArgs {
    /// Model.
    #[arg(long, default_value = "gpt")]
    model: String,
    /// Preset.
    #[arg(long)]
    preset: Option<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Configuration overrides, as for `train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Also time the PyTorch reference (bench/pytorch/) with the same configuration.
    #[arg(long)]
    pytorch: bool,
    /// Python interpreter with torch.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Path of the PyTorch reference directory.
    #[arg(long)]
    pytorch_dir: Option<PathBuf>,
    /// Also time the same steps on this backend (`wgpu[:N]`, `cuda[:N]`) and report its ratio to the CPU.
    #[arg(long)]
    backend: Option<String>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// Print a per-op time breakdown of the CPU backend.
    #[arg(long)]
    profile: bool,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Matmul(a) => matmul(a),
        BenchCmd::Train(a) => train(a),
        BenchCmd::Ops(a) => ops(a),
        BenchCmd::Generate(a) => generate(a),
    }
}

/// Seconds per new token of greedy decoding of `n_new` tokens after `prompt`, cached
/// (`Decoder`) or by a full forward over the same window at every token; and the tokens.
fn decode_times<M: protocell_core::models::LanguageModel<Cpu>>(
    m: &M,
    prompt: &[u32],
    n_new: usize,
    cached: bool,
) -> Result<(Vec<f64>, Vec<u32>)> {
    use protocell_core::nn::cache::slide_window;
    use protocell_core::nn::Decoder;
    use protocell_runtime::infer::{last_logits, sample_token, Sampling};
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let mut rng = protocell_core::rng::Philox::new(protocell_core::rng::RngKey::new(0));
    let mut dec = Decoder::new(m, &CpuDevice)?;
    let mut window = Vec::new();
    let mut times = Vec::with_capacity(n_new);
    let mut out = Vec::with_capacity(n_new);
    let mut next: Vec<u32> = prompt.to_vec();
    for _ in 0..n_new {
        let t0 = Instant::now();
        let logits = if cached {
            dec.feed(&next)?
        } else {
            // the same window as the decoder's, recomputed in full
            slide_window(&mut window, &next, m.context_len());
            last_logits::<Cpu, M>(m, &window, &CpuDevice)?
        };
        let t = sample_token(&logits, &greedy, &mut rng)?;
        times.push(t0.elapsed().as_secs_f64());
        out.push(t);
        next = vec![t];
    }
    Ok((times, out))
}

fn generate(a: GenerateBenchArgs) -> Result<()> {
    use protocell_core::models::LanguageModel;
    let mut v = registry::preset(&a.model, a.preset.as_deref())?.to_value();
    for s in &a.sets {
        apply_set(&mut v, s)?;
    }
    let run = RunConfig::from_value(v)?;
    if a.prompt == 0 || a.new_tokens == 0 {
        return Err(Error::InvalidArgument("--prompt and --new must be at least 1".into()));
    }
    let res: Result<Value> = protocell_runtime::with_arch!(run.arch.as_str(), Cpu, |M| {
        let cfg = serde_json::from_value(run.model.clone()).map_err(|e| Error::Config(e.to_string()))?;
        let m = <M as LanguageModel<Cpu>>::init(&cfg, protocell_core::rng::RngKey::new(run.train.seed), &CpuDevice)?;
        let vsz = m.vocab_size() as u32;
        let prompt: Vec<u32> = (0..a.prompt as u32).map(|k| (k * 7 + 3) % vsz).collect();
        let (mut ct, ctoks) = decode_times(&m, &prompt, a.new_tokens, true)?;
        let base = if a.no_baseline { None } else { Some(decode_times(&m, &prompt, a.new_tokens, false)?) };
        let q = (a.new_tokens / 4).max(1);
        // the first token's time includes the prompt's prefill
        let first = if ct.len() > 1 { &ct[1..(q + 1).min(ct.len())] } else { &ct[..] };
        let early: f64 = first.iter().sum::<f64>() / first.len() as f64;
        let late: f64 = ct[ct.len() - q..].iter().sum::<f64>() / q as f64;
        let total: f64 = ct.iter().sum();
        let med = median(&mut ct);
        let (bt, same) = match &base {
            Some((t, toks)) => (Some(t.iter().sum::<f64>()), Some(*toks == ctoks)),
            None => (None, None),
        };
        Ok(json!({
            "model": run.arch, "preset": run.preset, "context": m.context_len(), "prompt": a.prompt,
            "new_tokens": a.new_tokens, "threads": protocell_cpu::num_threads(),
            "cached_tokens_per_s": a.new_tokens as f64 / total,
            "cached_median_ms_per_token": med * 1e3,
            "cached_ms_per_token_first_quarter": early * 1e3, "cached_ms_per_token_last_quarter": late * 1e3,
            "recompute_tokens_per_s": bt.map(|b| a.new_tokens as f64 / b),
            "speedup_vs_recompute": bt.map(|b| b / total),
            "same_tokens": same,
        }))
    });
    let r = res?;
    if a.json {
        println!("{r}");
        return Ok(());
    }
    println!(
        "{} ({}) greedy generation, prompt {} + {} new tokens, context {}, {} threads",
        r["model"].as_str().unwrap_or(""),
        r["preset"].as_str().unwrap_or(""),
        a.prompt,
        a.new_tokens,
        r["context"],
        r["threads"]
    );
    println!(
        "cached       {:9.1} tokens/s  (median {:.2} ms/token; first quarter {:.2}, last quarter {:.2} ms/token)",
        r["cached_tokens_per_s"].as_f64().unwrap_or(0.0),
        r["cached_median_ms_per_token"].as_f64().unwrap_or(0.0),
        r["cached_ms_per_token_first_quarter"].as_f64().unwrap_or(0.0),
        r["cached_ms_per_token_last_quarter"].as_f64().unwrap_or(0.0)
    );
    if let Some(b) = r["recompute_tokens_per_s"].as_f64() {
        println!(
            "recompute    {:9.1} tokens/s  -> the cache is {:.2}x; same tokens: {}",
            b,
            r["speedup_vs_recompute"].as_f64().unwrap_or(0.0),
            r["same_tokens"]
        );
    }
    Ok(())
}

/// Best-of-5 GFLOP/s of `Cpu::matmul` on `n×n` in the current rayon pool.
fn sgemm_gflops(n: usize) -> Result<f64> {
    let a = Cpu::from_f32(&protocell_core_values(n * n, 1), &[n, n], &CpuDevice)?;
    let b = Cpu::from_f32(&protocell_core_values(n * n, 2), &[n, n], &CpuDevice)?;
    let flops = 2.0 * (n as f64).powi(3);
    let reps = ((1e9 / flops).ceil() as usize).clamp(3, 5000);
    let _ = Cpu::matmul(a.clone(), b.clone(), false, false)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            let c = Cpu::matmul(a.clone(), b.clone(), false, false)?;
            std::hint::black_box(&c);
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(flops / best / 1e9)
}

fn protocell_core_values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = protocell_core::rng::Philox::new(protocell_core::RngKey::new(seed));
    (0..n).map(|_| r.next_f32() - 0.5).collect()
}

fn single_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| Error::Backend(e.to_string()))?;
    Ok(pool.install(f))
}

const NUMPY_SGEMM: &str = r#"
import json, sys, time
import numpy as np
out = {}
for n in map(int, sys.argv[1].split(",")):
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
    flops = 2.0 * n ** 3
    reps = min(5000, max(3, int(1e9 / flops + 0.999)))
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            c = a @ b
        best = min(best, (time.perf_counter() - t) / reps)
    out[str(n)] = flops / best / 1e9
print(json.dumps({"numpy": np.__version__, "gflops": out}))
"#;

fn numpy_gflops(python: &str, sizes: &[usize]) -> Result<Value> {
    let list = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new(python)
        .args(["-c", NUMPY_SGEMM, &list])
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run {python}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Unavailable(format!(
            "numpy baseline failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error::Backend(format!("numpy baseline output: {e}")))
}

fn matmul(a: MatmulArgs) -> Result<()> {
    if a.sizes.iter().any(|&n| n == 0 || n > 8192) {
        return Err(Error::InvalidArgument("sizes must be in 1..=8192".into()));
    }
    let ours: Vec<f64> = single_thread(|| a.sizes.iter().map(|&n| sgemm_gflops(n)).collect::<Result<Vec<_>>>())??;
    let peak_all = sgemm_gflops(1024)?;
    let numpy = if a.no_numpy { None } else { Some(numpy_gflops(&a.python, &a.sizes)) };
    let mut rows = Vec::new();
    for (i, &n) in a.sizes.iter().enumerate() {
        let np = numpy.as_ref().and_then(|r| r.as_ref().ok()).and_then(|v| v["gflops"][n.to_string()].as_f64());
        rows.push(json!({"n": n, "protocell_gflops": ours[i], "numpy_gflops": np, "ratio": np.map(|x| ours[i] / x)}));
    }
    if a.json {
        println!(
            "{}",
            json!({"single_thread": rows, "all_threads_gflops_1024": peak_all, "threads": protocell_cpu::num_threads(),
                   "numpy": numpy.as_ref().map(|r| match r { Ok(v) => v["numpy"].clone(), Err(e) => json!(e.to_string()) })})
        );
        return Ok(());
    }
    println!("single-thread sgemm (C = A·B, n×n, f32), best of 5");
    println!("{:>6} {:>14} {:>14} {:>8}", "n", "protocell GF/s", "numpy GF/s", "ratio");
    for r in &rows {
        let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        let ratio = r["ratio"].as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
        println!("{:>6} {:>14} {:>14} {:>8}", r["n"], f(&r["protocell_gflops"]), f(&r["numpy_gflops"]), ratio);
    }
    match &numpy {
        Some(Err(e)) => {
            println!("numpy baseline unavailable ({e}); run `pip install numpy` and repeat")
        }
        None => println!("numpy baseline skipped"),
        _ => {}
    }
    println!("all {} threads, n = 1024: {peak_all:.1} GFLOP/s", protocell_cpu::num_threads());
    Ok(())
}

/// Training FLOPs of one step (forward + backward ≈ 3× forward matmul FLOPs), when the model
/// states its forward FLOPs.
fn step_flops(run: &RunConfig) -> Option<f64> {
    use protocell_core::models::{Architecture, LanguageModel};
    type Cpu = protocell_cpu::Cpu;
    let (tokens, seq) = (run.train.batch_size * run.train.seq_len, run.train.seq_len);
    let flops: Result<Option<f64>> = protocell_runtime::with_arch!(run.arch.as_str(), Cpu, |M| {
        let cfg: Option<<M as LanguageModel<Cpu>>::Config> = serde_json::from_value(run.model.clone()).ok();
        Ok(cfg.and_then(|c| Architecture::forward_flops(&c, tokens, seq)))
    });
    Some(3.0 * flops.ok()??)
}

fn pytorch_script(a: &TrainBenchArgs) -> PathBuf {
    a.pytorch_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/pytorch"))
        .join(format!("{}.py", a.model.replace('-', "_")))
}

fn run_pytorch(a: &TrainBenchArgs, run: &RunConfig) -> Result<Value> {
    let script = pytorch_script(a);
    if !script.exists() {
        return Err(Error::Unavailable(format!("no PyTorch reference for {} at {}", a.model, script.display())));
    }
    let threads = protocell_cpu::num_threads().to_string();
    let cfg = serde_json::to_string(&json!({"model": run.model, "train": run.train})).unwrap_or_default();
    let out = Command::new(&a.python)
        .arg(&script)
        .args([
            "--config",
            &cfg,
            "--steps",
            &a.steps.to_string(),
            "--warmup",
            &a.warmup.to_string(),
            "--threads",
            &threads,
        ])
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .map_err(|e| Error::Unavailable(format!("cannot run {}: {e}", a.python)))?;
    if !out.status.success() {
        return Err(Error::Unavailable(format!(
            "PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    serde_json::from_str(&last).map_err(|e| Error::Backend(format!("PyTorch reference output {last:?}: {e}")))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn train(a: TrainBenchArgs) -> Result<()> {
    let mut v = registry::preset(&a.model, a.preset.as_deref())?.to_value();
    v["train"]["steps"] = json!(a.steps + a.warmup);
    v["train"]["warmup"] = json!(0);
    if v["train"]["data"]["corpus"] == json!("synthetic") {
        v["train"]["data"]["corpus_bytes"] = json!(256 << 10);
    }
    for s in &a.sets {
        apply_set(&mut v, s)?;
    }
    let run = RunConfig::from_value(v)?;
    let mut session = new_session(run.clone(), Device::Cpu)?;
    for _ in 0..a.warmup {
        session.train_step()?;
    }
    let mut times = Vec::new();
    let mut tokens = 0;
    protocell_cpu::set_profiling(a.profile);
    for _ in 0..a.steps {
        let s = session.train_step()?;
        times.push(s.seconds);
        tokens = s.tokens;
    }
    protocell_cpu::set_profiling(false);
    let total: f64 = times.iter().sum();
    let ms = median(&mut times) * 1e3;
    let tps = tokens as f64 / (ms / 1e3);
    let flops = step_flops(&run);
    let peak = sgemm_gflops(1024)?;
    let roofline_ms = flops.map(|f| f / (peak * 1e9) * 1e3);
    let torch = if a.pytorch { Some(run_pytorch(&a, &run)) } else { None };
    // the same steps on another backend (each step ends with the loss readback, so its wall
    // time includes the device's work)
    let other = match &a.backend {
        Some(name) => {
            let device: Device = name.parse()?;
            let mut s = new_session(run.clone(), device)?;
            for _ in 0..a.warmup {
                s.train_step()?;
            }
            let mut t: Vec<f64> = (0..a.steps).map(|_| s.train_step().map(|x| x.seconds)).collect::<Result<_>>()?;
            Some((device, median(&mut t) * 1e3))
        }
        None => None,
    };
    let torch_ms = torch.as_ref().and_then(|r| r.as_ref().ok()).and_then(|v| v["ms_per_step"].as_f64());
    let report = json!({
        "model": run.arch, "preset": run.preset, "threads": protocell_cpu::num_threads(),
        "batch_size": run.train.batch_size, "seq_len": run.train.seq_len, "params": session.num_params(),
        "ms_per_step": ms, "tokens_per_s": tps, "gflop_per_step": flops.map(|f| f / 1e9),
        "achieved_gflops": flops.map(|f| f / (ms / 1e3) / 1e9), "sgemm_peak_gflops": peak,
        "roofline_ms": roofline_ms, "fraction_of_roofline": roofline_ms.map(|r| r / ms),
        "pytorch": torch.as_ref().map(|r| match r { Ok(v) => v.clone(), Err(e) => json!({"error": e.to_string()}) }),
        "speedup_vs_pytorch": torch_ms.map(|t| t / ms), "peak_rss_bytes": sys::peak_rss_bytes(),
        "backend": other.map(|(d, bms)| json!({"device": d.to_string(), "ms_per_step": bms,
            "tokens_per_s": tokens as f64 / (bms / 1e3), "speedup_vs_cpu": ms / bms})),
    });
    if a.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{} ({}) training step, batch {} × seq {}, {} threads, {} parameters",
        run.arch,
        run.preset,
        run.train.batch_size,
        run.train.seq_len,
        protocell_cpu::num_threads(),
        session.num_params()
    );
    println!("protocell      {ms:8.2} ms/step  {tps:9.0} tokens/s");
    if let (Some(f), Some(r)) = (flops, roofline_ms) {
        println!("work           {:8.2} GFLOP/step; achieved {:.1} GFLOP/s", f / 1e9, f / (ms / 1e3) / 1e9);
        println!(
            "roofline       {r:8.2} ms/step at the measured sgemm peak {peak:.1} GFLOP/s -> {:.0}% of roofline",
            100.0 * r / ms
        );
    }
    if a.profile {
        let rows = protocell_cpu::profile_report();
        let inside: f64 = rows.iter().map(|r| r.2).sum();
        println!("per-op time (CPU backend), per step:");
        for (op, calls, sec) in rows {
            println!(
                "  {op:<22} {:>7.1} calls {:>8.2} ms {:>6.1}%",
                calls as f64 / a.steps as f64,
                sec * 1e3 / a.steps as f64,
                100.0 * sec / total
            );
        }
        println!(
            "  {:<22} {:>15} {:>8.2} ms {:>6.1}%",
            "(outside the backend)",
            "",
            (total - inside) * 1e3 / a.steps as f64,
            100.0 * (total - inside) / total
        );
    }
    if let Some((d, bms)) = other {
        println!("{d:<14} {bms:8.2} ms/step  {:9.0} tokens/s -> {:.3}x the CPU", tokens as f64 / (bms / 1e3), ms / bms);
    }
    match (&torch, torch_ms) {
        (Some(Ok(_)), Some(t)) => println!(
            "pytorch        {t:8.2} ms/step  {:9.0} tokens/s -> protocell is {:.2}x",
            tokens as f64 / (t / 1e3),
            t / ms
        ),
        (Some(Err(e)), _) => println!("pytorch        {e}"),
        _ => {}
    }
    Ok(())
}

/// Median seconds of `f` over enough repetitions to fill about 0.2 s.
fn time_it(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let t = Instant::now();
    f()?;
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.2 / once) as usize).clamp(3, 10_000);
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut v))
}

/// One timed op: name, seconds, FLOPs or bytes moved.
type OpRow = (String, f64, Option<f64>, Option<f64>);

/// Times the ops of a GPT training step on backend `B` (each call synchronised, so device
/// backends are timed to completion).
fn op_rows<B: Backend>(a: &OpsArgs, dev: &B::Device) -> Result<Vec<OpRow>> {
    use protocell_core::backend::{AdamWStep, Binary, Unary};
    let dev = dev.clone();
    let (n, d, s, h) = (a.tokens, a.width, a.seq, a.heads);
    if n == 0 || d == 0 || s == 0 || h == 0 || n % s != 0 || d % h != 0 {
        return Err(Error::InvalidArgument("need tokens divisible by seq and width divisible by heads".into()));
    }
    let t = |shape: &[usize], seed: u64| B::from_f32(&protocell_core_values(shape.iter().product(), seed), shape, &dev);
    let x = t(&[n, d], 1)?;
    let x4 = t(&[n, 4 * d], 2)?;
    let w = t(&[4 * d, d], 3)?;
    let g = t(&[d], 4)?;
    let bsz = n / s;
    let q = t(&[bsz, h, s, d / h], 5)?;
    let logits = t(&[n, 256], 6)?;
    let ids = B::ids_from_u32(&(0..n as u32).map(|i| i % 256).collect::<Vec<_>>(), &[n], &dev)?;
    let mut rows: Vec<OpRow> = Vec::new();
    let sync_dev = dev.clone();
    let timed = |f: &mut dyn FnMut() -> Result<()>| {
        time_it(|| {
            f()?;
            B::sync(&sync_dev)
        })
    };
    let mut flop = |name: &str, flops: f64, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let sec = timed(f)?;
        rows.push((name.to_string(), sec, Some(flops), None));
        Ok(())
    };
    flop(&format!("matmul [{n},{d}]x[{d},{}]", 4 * d), 2.0 * (n * d * 4 * d) as f64, &mut || {
        B::matmul(x.clone(), w.clone(), false, true).map(drop)
    })?;
    flop(&format!("matmul [{n},{}]x[{},{d}]", 4 * d, 4 * d), 2.0 * (n * d * 4 * d) as f64, &mut || {
        B::matmul(x4.clone(), w.clone(), false, false).map(drop)
    })?;
    flop(&format!("matmul dW [{}x{n}]x[{n}x{d}]", 4 * d), 2.0 * (n * d * 4 * d) as f64, &mut || {
        B::matmul(x4.clone(), x.clone(), true, false).map(drop)
    })?;
    let bias = t(&[4 * d], 7)?;
    flop(&format!("linear [{n},{d}]x[{},{d}]ᵀ + bias", 4 * d), 2.0 * (n * d * 4 * d) as f64, &mut || {
        B::linear(x.clone(), w.clone(), Some(bias.clone())).map(drop)
    })?;
    let attn_flops = 4.0 * (bsz * h * s * s * (d / h)) as f64;
    let qkv = t(&[bsz, s, 3, h, d / h], 8)?;
    let spec = protocell_core::backend::AttnSpec { causal: true, scale: 0.125, dropout: None };
    flop(&format!("self-attention fwd [{bsz},{s},3,{h},{}] causal", d / h), attn_flops, &mut || {
        B::self_attention_fwd(qkv.clone(), &spec).map(drop)
    })?;
    let (so, sl) = B::self_attention_fwd(qkv.clone(), &spec)?;
    let sdo = t(&[bsz, s, h, d / h], 9)?;
    flop("self-attention bwd (same shape)", 2.0 * attn_flops, &mut || {
        B::self_attention_bwd(qkv.clone(), so.clone(), sl.clone(), sdo.clone(), &spec).map(drop)
    })?;
    let dspec = protocell_core::backend::AttnSpec {
        dropout: Some(protocell_core::backend::AttnDropout { p: 0.1, key: protocell_core::RngKey::new(1) }),
        ..spec
    };
    flop("self-attention fwd, dropout 0.1", attn_flops, &mut || B::self_attention_fwd(qkv.clone(), &dspec).map(drop))?;
    flop("self-attention bwd, dropout 0.1", 2.0 * attn_flops, &mut || {
        B::self_attention_bwd(qkv.clone(), so.clone(), sl.clone(), sdo.clone(), &dspec).map(drop)
    })?;
    flop(&format!("attention fwd [{bsz},{h},{s},{}] causal", d / h), attn_flops, &mut || {
        B::attention_fwd(q.clone(), q.clone(), q.clone(), true, 0.125).map(drop)
    })?;
    let (o, lse) = B::attention_fwd(q.clone(), q.clone(), q.clone(), true, 0.125)?;
    flop("attention bwd (same shape)", 2.0 * attn_flops, &mut || {
        B::attention_bwd(q.clone(), q.clone(), q.clone(), o.clone(), lse.clone(), q.clone(), true, 0.125).map(drop)
    })?;
    let mut mem = |name: &str, bytes: f64, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let sec = timed(f)?;
        rows.push((name.to_string(), sec, None, Some(bytes)));
        Ok(())
    };
    let e = (n * d) as f64 * 4.0;
    let e4 = (n * 4 * d) as f64 * 4.0;
    mem(&format!("add [{n},{d}]"), 3.0 * e, &mut || B::binary(Binary::Add, x.clone(), x.clone()).map(drop))?;
    mem(&format!("bias add [{n},{}]+[{}]", 4 * d, 4 * d), 2.0 * e4, &mut || {
        B::binary(Binary::Add, x4.clone(), B::full(0.5, &[4 * d], &dev)?).map(drop)
    })?;
    mem(&format!("gelu [{n},{}]", 4 * d), 2.0 * e4, &mut || B::unary(Unary::Gelu, x4.clone()).map(drop))?;
    let y4 = B::unary(Unary::Gelu, x4.clone())?;
    mem(&format!("gelu grad [{n},{}]", 4 * d), 4.0 * e4, &mut || {
        B::unary_grad(Unary::Gelu, x4.clone(), y4.clone(), x4.clone()).map(drop)
    })?;
    mem(&format!("layer norm fwd [{n},{d}]"), 2.0 * e, &mut || {
        B::layer_norm_fwd(x.clone(), g.clone(), g.clone(), 1e-5).map(drop)
    })?;
    let (_, m, r) = B::layer_norm_fwd(x.clone(), g.clone(), g.clone(), 1e-5)?;
    mem(&format!("layer norm bwd [{n},{d}]"), 3.0 * e, &mut || {
        B::layer_norm_bwd(x.clone(), g.clone(), m.clone(), r.clone(), x.clone()).map(drop)
    })?;
    mem(&format!("permute [{bsz},{s},{h},{}]", d / h), 2.0 * e, &mut || {
        B::permute(B::reshape(x.clone(), &[bsz, s, h, d / h])?, &[0, 2, 1, 3]).map(drop)
    })?;
    mem(&format!("softmax [{n},256]"), 2.0 * n as f64 * 1024.0, &mut || B::softmax(logits.clone()).map(drop))?;
    mem(&format!("cross-entropy fwd+bwd [{n},256]"), 3.0 * n as f64 * 1024.0, &mut || {
        let (l, lse) = B::cross_entropy_fwd(logits.clone(), ids.clone())?;
        B::cross_entropy_bwd(logits.clone(), ids.clone(), lse, l).map(drop)
    })?;
    let hstep = AdamWStep::new(1e-3, 0.9, 0.999, 1e-8, 0.1, 10);
    mem(&format!("bernoulli mask [{n},{d}]"), e, &mut || {
        B::random(protocell_core::rng::Dist::Bernoulli { p: 0.9 }, protocell_core::RngKey::new(2), &[n, d], &dev)
            .map(drop)
    })?;
    mem(&format!("adamw [{}]", 4 * d * d), 7.0 * (4 * d * d) as f64 * 4.0, &mut || {
        B::adamw_step(w.clone(), w.clone(), w.clone(), w.clone(), &hstep).map(drop)
    })?;
    Ok(rows)
}

fn ops(a: OpsArgs) -> Result<()> {
    let cpu = op_rows::<Cpu>(&a, &CpuDevice)?;
    if let Some(name) = &a.backend {
        return compare_backend(&a, name, &cpu);
    }
    // copy bandwidth with the same threads the kernels use (64 MiB, chunked like the kernels)
    let copy_gbs = {
        use rayon::prelude::*;
        let src = vec![1.0f32; 1 << 24];
        let mut dst = vec![0.0f32; 1 << 24];
        let sec = time_it(|| {
            dst.par_chunks_mut(1 << 15).zip(src.par_chunks(1 << 15)).for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&dst);
            Ok(())
        })?;
        2.0 * 4.0 * (1 << 24) as f64 / sec / 1e9
    };
    let peak = sgemm_gflops(1024)?;
    type B = Cpu;
    let rows: Vec<OpRow> =
        cpu.into_iter().map(|(n, sec, f, b)| (n, sec, f.map(|f| f / sec / 1e9), b.map(|b| b / sec / 1e9))).collect();
    if a.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(name, sec, gf, gb)| {
                json!({"op": name, "us": sec * 1e6, "gflops": gf, "gbs": gb,
                "fraction_of_sgemm_peak": gf.map(|x| x / peak), "fraction_of_copy_bw": gb.map(|x| x / copy_gbs)})
            })
            .collect();
        println!(
            "{}",
            json!({"backend": B::name(), "threads": protocell_cpu::num_threads(), "sgemm_peak_gflops": peak, "copy_gbs": copy_gbs, "ops": v})
        );
        return Ok(());
    }
    println!(
        "backend {} ({} threads); sgemm peak {peak:.1} GFLOP/s, copy of 64 MiB {copy_gbs:.1} GB/s \
         (cache-resident ops can exceed it; attention FLOPs count the full S×S)",
        B::name(),
        protocell_cpu::num_threads()
    );
    println!("{:<44} {:>10} {:>12} {:>8}", "op", "µs", "rate", "of peak");
    for (name, sec, gf, gb) in &rows {
        let (rate, frac) = match (gf, gb) {
            (Some(g), _) => (format!("{g:.1} GF/s"), g / peak),
            (_, Some(b)) => (format!("{b:.1} GB/s"), b / copy_gbs),
            _ => (String::new(), 0.0),
        };
        println!("{name:<44} {:>10.1} {rate:>12} {:>7.0}%", sec * 1e6, 100.0 * frac);
    }
    Ok(())
}

/// `bench ops --backend X`: the same ops on X and on the CPU, X's time against the CPU's.
fn compare_backend(a: &OpsArgs, name: &str, cpu: &[OpRow]) -> Result<()> {
    let device: Device = name.parse()?;
    let (label, rows) = match device {
        Device::Wgpu(i) => {
            let dev = protocell_wgpu::WgpuDevice::new(i)?;
            (format!("wgpu: {}", dev.info()), op_rows::<protocell_wgpu::Wgpu>(a, &dev)?)
        }
        Device::Cuda(i) => {
            let dev = protocell_cuda::CudaDevice::new(i)?;
            (format!("cuda: {}", dev.info()), op_rows::<protocell_cuda::Cuda>(a, &dev)?)
        }
        Device::Cpu => return Err(device.unavailable()),
    };
    if a.json {
        let v: Vec<Value> = rows
            .iter()
            .zip(cpu)
            .map(|((op, sec, f, b), (_, csec, _, _))| {
                json!({"op": op, "us": sec * 1e6, "cpu_us": csec * 1e6, "speedup_vs_cpu": csec / sec,
                       "gflops": f.map(|f| f / sec / 1e9), "gbs": b.map(|b| b / sec / 1e9)})
            })
            .collect();
        println!("{}", json!({"backend": label, "cpu_threads": protocell_cpu::num_threads(), "ops": v}));
        return Ok(());
    }
    println!("{label} vs cpu ({} threads); every call timed to completion", protocell_cpu::num_threads());
    println!("{:<44} {:>10} {:>10} {:>12} {:>9}", "op", "µs", "cpu µs", "rate", "vs cpu");
    for ((op, sec, f, b), (_, csec, _, _)) in rows.iter().zip(cpu) {
        let rate = match (f, b) {
            (Some(f), _) => format!("{:.1} GF/s", f / sec / 1e9),
            (_, Some(b)) => format!("{:.1} GB/s", b / sec / 1e9),
            _ => String::new(),
        };
        println!("{op:<44} {:>10.1} {:>10.1} {rate:>12} {:>8.2}×", sec * 1e6, csec * 1e6, csec / sec);
    }
    Ok(())
}
