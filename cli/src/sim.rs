//! `protocell sim`: dynamics on their own, rendered to GIF and PNG.
use crate::plot::Canvas;
use clap::{Args, Subcommand};
use embedded_graphics::mono_font::ascii::FONT_7X13;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::cell::grid::{Grid, GridConfig};
use protocell_core::error::{Error, Result};
use protocell_runtime::{io, with_device, Device};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Simulations.
#[derive(Subcommand)]
pub enum SimCmd {
    /// The seed's 2-D EPGL "skin brain": a stem cell in the centre of an N×N grid, food and
    /// toxin stimuli, apoptosis. Writes an animated GIF and a PNG of the last frame.
    EpglGrid(GridArgs),
}

/// Arguments of `sim epgl-grid`.
#[derive(Args)]
pub struct GridArgs {
    /// Grid side.
    #[arg(long, default_value_t = 50)]
    size: usize,
    /// Frames (steps).
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Seed of the stimulus noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Apoptosis pressure threshold.
    #[arg(long, default_value_t = 0.85)]
    theta: f32,
    /// Pixels per cell in the pictures.
    #[arg(long, default_value_t = 4)]
    scale: usize,
    /// Output directory (default runs/epgl-grid-<n>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: SimCmd) -> Result<()> {
    match cmd {
        SimCmd::EpglGrid(a) => epgl_grid(a),
    }
}

/// Viridis, approximated by linear interpolation between five stops.
fn viridis(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    let c = |k: usize| (STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])).round() as u8;
    [c(0), c(1), c(2)]
}

/// Levels of the colormap in the GIF palette.
const LEVELS: usize = 240;

fn palette() -> Vec<[u8; 3]> {
    let mut p: Vec<[u8; 3]> = (0..LEVELS).map(|i| viridis(i as f32 / (LEVELS - 1) as f32)).collect();
    p.push([255, 255, 255]);
    p.push([20, 20, 20]);
    p
}

/// A 2×2 panel of the four channels (E, P, G, L), colour-mapped, with labels.
fn render(h: &[f32], n: usize, scale: usize, frame: u64) -> RgbImage {
    let margin = 18usize;
    let side = n * scale;
    let (w, ht) = (2 * side + 3 * 4, 2 * (side + margin) + 4);
    let mut img = RgbImage::from_pixel(w as u32, ht as u32, image::Rgb([255, 255, 255]));
    let names = ["E energy", "P pressure", "G growth", "L link"];
    for (ch, name) in names.iter().enumerate() {
        let (ox, oy) = (4 + (ch % 2) * (side + 4), (ch / 2) * (side + margin) + margin);
        for y in 0..n {
            for x in 0..n {
                let level = (h[ch * n * n + y * n + x].clamp(0.0, 1.0) * (LEVELS - 1) as f32).round() as usize;
                let c = image::Rgb(viridis(level as f32 / (LEVELS - 1) as f32));
                for dy in 0..scale {
                    for dx in 0..scale {
                        img.put_pixel((ox + x * scale + dx) as u32, (oy + y * scale + dy) as u32, c);
                    }
                }
            }
        }
        let mut canvas = Canvas(img);
        let font = MonoTextStyle::new(&FONT_7X13, Rgb888::new(20, 20, 20));
        let label = if ch == 0 { format!("{name}  t={frame}") } else { name.to_string() };
        let _ = Text::new(&label, Point::new(ox as i32, oy as i32 - 5), font).draw(&mut canvas);
        img = canvas.0;
    }
    img
}

fn out_dir(given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| {
        (1..).map(|k| Path::new("runs").join(format!("epgl-grid-{k}"))).find(|p| !p.exists()).expect("a free directory")
    })
}

fn epgl_grid(a: GridArgs) -> Result<()> {
    let device: Device = a.backend.parse()?;
    if a.steps == 0 || a.steps > 100_000 {
        return Err(Error::InvalidArgument("--steps must be in 1..=100000".into()));
    }
    if a.scale == 0 || a.scale > 16 {
        return Err(Error::InvalidArgument("--scale must be in 1..=16".into()));
    }
    let cfg = GridConfig { size: a.size, theta: a.theta, seed: a.seed };
    cfg.validate()?;
    let out = out_dir(&a.out);
    std::fs::create_dir_all(&out).map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let pal = palette();
    let index: HashMap<[u8; 3], u8> = pal.iter().enumerate().map(|(i, c)| (*c, i as u8)).collect();
    let flat: Vec<u8> = pal.iter().flat_map(|c| c.iter().copied()).collect();
    let first = render(&vec![0.0; 4 * a.size * a.size], a.size, a.scale, 0);
    let (w, h) = (first.width() as u16, first.height() as u16);
    let mut gif_bytes = Vec::new();
    let bar = if a.json { ProgressBar::hidden() } else { ProgressBar::new(a.steps) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} frames {msg}").expect("template"));
    let result: Result<(Vec<serde_json::Value>, RgbImage)> = with_device!(device, |B, dev| {
        let mut grid = Grid::<B>::new(cfg, &dev)?;
        let mut enc = gif::Encoder::new(&mut gif_bytes, w, h, &flat).map_err(|e| Error::Io(e.to_string()))?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(|e| Error::Io(e.to_string()))?;
        let mut summary = Vec::new();
        let mut last = first.clone();
        for t in 0..a.steps {
            let s = grid.stimulus(t)?;
            let died = grid.step(&s)?;
            let m = grid.channel_means()?;
            let r = grid.region_pressure()?;
            summary
                .push(json!({"frame": t, "died": died, "mean_e": m[0], "mean_p": m[1], "mean_g": m[2], "mean_l": m[3],
                                "food_p": r[0], "toxin_p": r[1]}));
            let state = grid.h.to_vec()?;
            last = render(&state, a.size, a.scale, t + 1);
            let pixels: Vec<u8> = last.pixels().map(|p| *index.get(&p.0).unwrap_or(&(LEVELS as u8 + 1))).collect();
            let mut frame = gif::Frame::from_indexed_pixels(w, h, pixels, None);
            frame.delay = 6;
            enc.write_frame(&frame).map_err(|e| Error::Io(e.to_string()))?;
            bar.inc(1);
        }
        Ok((summary, last))
    });
    let (summary, last) = result?;
    bar.finish_and_clear();
    let gif_path = out.join("epgl_grid.gif");
    io::write_atomic(&gif_path, &gif_bytes)?;
    let mut png = Vec::new();
    last.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Io(format!("cannot encode PNG: {e}")))?;
    let png_path = out.join("epgl_grid_final.png");
    io::write_atomic(&png_path, &png)?;
    let lines: String = summary.iter().map(|v| format!("{v}\n")).collect();
    io::write_atomic(&out.join("epgl_grid.jsonl"), lines.as_bytes())?;
    let end = summary.last().cloned().unwrap_or_default();
    let total_died: u64 = summary.iter().map(|v| v["died"].as_u64().unwrap_or(0)).sum();
    if a.json {
        println!("{}", json!({"gif": gif_path, "png": png_path, "frames": a.steps, "died": total_died, "final": end}));
    } else {
        println!("frames       {}", a.steps);
        println!("apoptoses    {total_died}");
        println!(
            "final means  E {:.3}  P {:.3}  G {:.3}  L {:.3}",
            end["mean_e"].as_f64().unwrap_or(0.0),
            end["mean_p"].as_f64().unwrap_or(0.0),
            end["mean_g"].as_f64().unwrap_or(0.0),
            end["mean_l"].as_f64().unwrap_or(0.0)
        );
        println!(
            "final P      food square {:.3}  toxin square {:.3}",
            end["food_p"].as_f64().unwrap_or(0.0),
            end["toxin_p"].as_f64().unwrap_or(0.0)
        );
        println!("animation    {}", gif_path.display());
        println!("last frame   {}", png_path.display());
        println!("per frame    {}", out.join("epgl_grid.jsonl").display());
    }
    Ok(())
}
