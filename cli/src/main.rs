//! `protocell`: train, run and measure bio-inspired neural networks.
mod bench;
mod experiment;
mod plot;
mod runs;
mod sim;
mod synapses;
mod train;

use clap::{Args, Parser, Subcommand};
use protocell_core::error::{Error, Result};
use protocell_core::record::Role;
use protocell_runtime::infer::Sampling;
use protocell_runtime::{io, load_model, registry, Device};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "protocell", version, about = "Train, run and measure bio-inspired neural networks")]
struct Cli {
    /// Worker threads of the CPU backend (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model (default: the default model on the built-in corpus).
    Train(train::TrainArgs),
    /// Continue a text from a checkpoint.
    Generate(GenerateArgs),
    /// Loss, perplexity and bits per byte of a checkpoint on a text file.
    Eval(EvalArgs),
    /// Describe a checkpoint: architecture, configuration, tensors, training state.
    Inspect(InspectArgs),
    /// Benchmarks (each prints ratios against a baseline measured in the same run).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Re-run a seed's claim like for like (prints tables with the seed's numbers beside ours).
    #[command(subcommand)]
    Experiment(experiment::ExperimentCmd),
    /// Run dynamics on their own and render them (GIF + PNG).
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// Tune the presynaptic parameters of the synaptic GPT with CMA-ES on held-out recall.
    Tune(synapses::TuneArgs),
    /// List the models and presets of this build.
    Models,
}

#[derive(Args)]
struct GenerateArgs {
    /// Checkpoint file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "The ")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Checkpoint file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// UTF-8 text file to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Checkpoint file.
    file: PathBuf,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        if let Err(e) = protocell_cpu::set_num_threads(n) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let r = match cli.cmd {
        Cmd::Train(a) => train::run(a),
        Cmd::Generate(a) => generate(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Inspect(a) => inspect(a),
        Cmd::Bench(b) => bench::run(b),
        Cmd::Experiment(e) => experiment::run(e),
        Cmd::Sim(c) => sim::run(c),
        Cmd::Tune(a) => synapses::tune(a),
        Cmd::Models => models(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    let device: Device = a.backend.parse()?;
    let ckpt = io::read_checkpoint(&a.checkpoint)?;
    let model = load_model(&ckpt, device)?;
    let tok = model.tokenizer().clone();
    let prompt = tok.encode(&a.prompt)?;
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("the prompt is empty".into()));
    }
    let s = Sampling { temperature: a.temperature, top_k: a.top_k, seed: a.seed };
    let out = model.generate(&prompt, a.tokens, &s)?;
    let text = tok.decode(&out)?;
    if a.json {
        println!("{}", json!({"prompt": a.prompt, "completion": text, "tokens": out}));
    } else {
        println!("{}{}", a.prompt, text);
    }
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let device: Device = a.backend.parse()?;
    let ckpt = io::read_checkpoint(&a.checkpoint)?;
    let model = load_model(&ckpt, device)?;
    let text = io::read_text(&a.data)?;
    let tokens = model.tokenizer().encode(&text)?;
    let r = model.evaluate(&tokens, a.batch)?;
    if a.json {
        println!(
            "{}",
            json!({"tokens": r.tokens, "bytes": r.bytes, "loss": r.loss, "perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte})
        );
    } else {
        println!("data         {}", a.data.display());
        println!("tokens       {}", r.tokens);
        println!("loss         {:.4} nats/token", r.loss);
        println!("perplexity   {:.3}", r.perplexity);
        println!("bits/byte    {:.4}", r.bits_per_byte);
    }
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let c = io::read_checkpoint(&a.file)?;
    let model_cfg: serde_json::Value = serde_json::from_str(&c.model_config).unwrap_or(json!(c.model_config));
    let params: usize = c.tensors().iter().filter(|t| t.role == Role::Param).map(|t| t.data.len()).sum();
    let optim: usize = c.tensors().iter().filter(|t| matches!(t.role, Role::OptimM | Role::OptimV)).count();
    let train = c.train_meta()?;
    let sections: Vec<_> = c
        .sections()
        .iter()
        .map(|s| json!({"name": s.name, "version": s.version, "required": s.required, "bytes": s.bytes.len()}))
        .collect();
    if a.json {
        let tensors: Vec<_> = c
            .tensors()
            .iter()
            .map(|t| {
                json!({"path": t.path, "id": t.id, "role": format!("{:?}", t.role), "dtype": format!("{:?}", t.data.dtype()),
                       "shape": t.shape})
            })
            .collect();
        let train = train.as_ref().map(|m| {
            json!({"step": m.step, "seed": m.seed, "loss": m.loss, "val_loss": m.val_loss, "tokens_seen": m.tokens_seen,
                   "config_hash": format!("{:016x}", m.config_hash), "data_hash": format!("{:016x}", m.data_hash)})
        });
        println!(
            "{}",
            json!({"arch": c.arch, "format_version": c.version, "tokenizer": c.tokenizer.describe(), "params": params,
                   "optimizer_tensors": optim, "model_config": model_cfg, "train": train, "meta": c.meta,
                   "sections": sections, "tensors": tensors})
        );
        return Ok(());
    }
    println!("architecture  {}", c.arch);
    println!("format        version {}", c.version);
    println!("tokenizer     {}", c.tokenizer.describe());
    println!("parameters    {params}");
    println!("model config  {}", serde_json::to_string(&model_cfg).unwrap_or_default());
    if let Some(m) = &train {
        println!("step          {}", m.step);
        println!("seed          {}", m.seed);
        println!("train loss    {:.4}", m.loss);
        if let Some(v) = m.val_loss {
            println!("val loss      {v:.4}");
        }
        println!("tokens seen   {}", m.tokens_seen);
        println!("config hash   {:016x}", m.config_hash);
        println!("data hash     {:016x}", m.data_hash);
    }
    for (k, v) in &c.meta {
        println!("{k:<13} {v}");
    }
    for s in c.sections() {
        println!("section       {} (version {}, {} bytes)", s.name, s.version, s.bytes.len());
    }
    println!("tensors       {} ({} optimizer moments)", c.tensors().len(), optim);
    for t in c.tensors().iter().filter(|t| t.role == Role::Param) {
        let id = t.id.map_or_else(|| "-".to_string(), |i| format!("#{i}"));
        println!("  {id:>6} {:<32} {:?}", t.path, t.shape);
    }
    Ok(())
}

fn models() -> Result<()> {
    let default_model = registry::default_model();
    for m in registry::models() {
        let default = if m.name == default_model { " (default)" } else { "" };
        println!("{}{default}: {}", m.name, m.about);
        for (i, (p, about)) in m.presets.iter().enumerate() {
            println!("    --preset {p}{}: {about}", if i == 0 { " (default)" } else { "" });
        }
    }
    Ok(())
}
