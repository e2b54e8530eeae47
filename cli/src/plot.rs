//! Loss-curve PNG: axes with ticks, the training loss and the validation points, drawn
//! with embedded-graphics onto an RGB image.
use embedded_graphics::mono_font::ascii::FONT_7X13;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use image::RgbImage;
use protocell_core::error::{Error, Result};
use std::path::Path;

/// An RGB image that embedded-graphics can draw on.
pub(crate) struct Canvas(pub(crate) RgbImage);

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = std::convert::Infallible;
    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> std::result::Result<(), Self::Error> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.0.width() && (p.y as u32) < self.0.height() {
                self.0.put_pixel(p.x as u32, p.y as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

/// "Nice" tick values covering `[lo, hi]` (steps of 1, 2 or 5 × 10ᵏ).
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= target as f64).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span {
        out.push(t);
        t += step;
    }
    out
}

/// A tick label with as many decimals as the tick spacing `step` needs.
fn label(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 { (-step.log10().floor()).max(0.0) as usize } else { 2 };
    if decimals > 6 {
        return format!("{v:.1e}");
    }
    format!("{v:.decimals$}")
}

/// Labels for `ticks`.
fn labels(ticks: &[f64]) -> Vec<String> {
    let step = if ticks.len() > 1 { ticks[1] - ticks[0] } else { 1.0 };
    ticks.iter().map(|&t| label(t, step)).collect()
}

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mark {
    /// Connected line.
    Line,
    /// Filled dots.
    Dots,
}

/// One named series of `(x, y)` points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) mark: Mark,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One chart: title, axis labels, series.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) series: Vec<Series>,
}

const PALETTE: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (230, 110, 20),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
];

/// Draws `panel` into the rectangle `(x, y, w, h)` of `c`: grid, ticks, frame, title, axis
/// labels, series and a legend.
fn draw_panel(c: &mut Canvas, (ox, oy, w, h): (i32, i32, i32, i32), panel: &Panel) {
    let (left, right, top, bottom) = (70, 20, 40, 50);
    let pts: Vec<&(f64, f64)> = panel.series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite()).collect();
    let (x0, x1) = (0.0, pts.iter().map(|p| p.0).fold(1.0, f64::max));
    let y_lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y0, y1) =
        if y_lo.is_finite() { (y_lo.min(y_hi - 1e-3).max(0.0) * 0.95, y_hi * 1.02 + 1e-3) } else { (0.0, 1.0) };
    let px = |x: f64| ox + left + ((x - x0) / (x1 - x0) * (w - left - right) as f64) as i32;
    let py = |y: f64| oy + h - bottom - ((y - y0) / (y1 - y0) * (h - top - bottom) as f64) as i32;
    let black = Rgb888::new(40, 40, 40);
    let grid = Rgb888::new(225, 225, 225);
    let font = MonoTextStyle::new(&FONT_7X13, black);
    let center = TextStyleBuilder::new().alignment(Alignment::Center).baseline(Baseline::Top).build();
    let rightal = TextStyleBuilder::new().alignment(Alignment::Right).baseline(Baseline::Middle).build();
    let xt = ticks(x0, x1, 8);
    for (t, l) in xt.iter().zip(labels(&xt)) {
        let x = px(*t);
        let _ = Line::new(Point::new(x, oy + top), Point::new(x, oy + h - bottom))
            .into_styled(PrimitiveStyle::with_stroke(grid, 1))
            .draw(c);
        let _ = Text::with_text_style(&l, Point::new(x, oy + h - bottom + 6), font, center).draw(c);
    }
    let yt = ticks(y0, y1, 6);
    for (t, l) in yt.iter().zip(labels(&yt)) {
        let y = py(*t);
        let _ = Line::new(Point::new(ox + left, y), Point::new(ox + w - right, y))
            .into_styled(PrimitiveStyle::with_stroke(grid, 1))
            .draw(c);
        let _ = Text::with_text_style(&l, Point::new(ox + left - 6, y), font, rightal).draw(c);
    }
    let _ = Rectangle::new(
        Point::new(ox + left, oy + top),
        Size::new((w - left - right) as u32, (h - top - bottom) as u32),
    )
    .into_styled(PrimitiveStyle::with_stroke(black, 1))
    .draw(c);
    let _ = Text::with_text_style(&panel.title, Point::new(ox + w / 2, oy + 12), font, center).draw(c);
    let _ = Text::with_text_style(&panel.x_label, Point::new(ox + w / 2, oy + h - 22), font, center).draw(c);
    let _ = Text::new(&panel.y_label, Point::new(ox + 8, oy + top - 8), font).draw(c);
    for (i, s) in panel.series.iter().enumerate() {
        let (r, g, b) = PALETTE[i % PALETTE.len()];
        let color = Rgb888::new(r, g, b);
        let line = PrimitiveStyle::with_stroke(color, 2);
        match s.mark {
            Mark::Line => {
                for p in s.points.windows(2) {
                    if p[0].1.is_finite() && p[1].1.is_finite() {
                        let _ = Line::new(Point::new(px(p[0].0), py(p[0].1)), Point::new(px(p[1].0), py(p[1].1)))
                            .into_styled(line)
                            .draw(c);
                    }
                }
            }
            Mark::Dots => {
                for p in s.points.iter().filter(|p| p.1.is_finite()) {
                    let _ = Circle::with_center(Point::new(px(p.0), py(p.1)), 7)
                        .into_styled(PrimitiveStyle::with_fill(color))
                        .draw(c);
                }
            }
        }
        // legend entry
        let (lx, ly) = (ox + w - right - 150, oy + top + 14 + 18 * i as i32);
        match s.mark {
            Mark::Line => {
                let _ = Line::new(Point::new(lx, ly), Point::new(lx + 24, ly)).into_styled(line).draw(c);
            }
            Mark::Dots => {
                let _ = Circle::with_center(Point::new(lx + 12, ly), 7)
                    .into_styled(PrimitiveStyle::with_fill(color))
                    .draw(c);
            }
        }
        let _ = Text::new(&s.name, Point::new(lx + 30, ly + 4), font).draw(c);
    }
}

/// Writes `panels` as one PNG, `cols` charts per row, each 800 × 500 pixels.
pub(crate) fn write_panels(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    let (pw, ph) = (800i32, 500i32);
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let mut c =
        Canvas(RgbImage::from_pixel(pw as u32 * cols as u32, ph as u32 * rows as u32, image::Rgb([255, 255, 255])));
    for (i, p) in panels.iter().enumerate() {
        let (x, y) = ((i % cols) as i32 * pw, (i / cols) as i32 * ph);
        draw_panel(&mut c, (x, y, pw, ph), p);
    }
    let mut bytes = Vec::new();
    c.0.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Io(format!("cannot encode PNG: {e}")))?;
    protocell_runtime::io::write_atomic(path, &bytes)
}

/// Writes `path` with the training curve (line) and validation points (dots).
pub fn loss_curve(path: &Path, train: &[(f64, f64)], val: &[(f64, f64)], title: &str) -> Result<()> {
    let panel = Panel {
        title: title.to_string(),
        x_label: "step".into(),
        y_label: "loss (nats/token)".into(),
        series: vec![
            Series { name: "train".into(), mark: Mark::Line, points: train.to_vec() },
            Series { name: "validation".into(), mark: Mark::Dots, points: val.to_vec() },
        ],
    };
    write_panels(path, &[panel], 1)
}

/// Writes the per-layer vital signs logged as `l<layer>.<name>` (one chart per name, one line
/// per layer) to `path`; returns false (writing nothing) when there are none.
pub fn vitals(path: &Path, stats: &[(f64, Vec<(String, f64)>)], title: &str) -> Result<bool> {
    let mut by_name: std::collections::BTreeMap<String, std::collections::BTreeMap<usize, Vec<(f64, f64)>>> =
        Default::default();
    for (step, s) in stats {
        for (name, v) in s {
            let Some((layer, what)) = name.strip_prefix('l').and_then(|r| r.split_once('.')) else { continue };
            let Ok(layer) = layer.parse::<usize>() else { continue };
            by_name.entry(what.to_string()).or_default().entry(layer).or_default().push((*step, *v));
        }
    }
    if by_name.is_empty() {
        return Ok(false);
    }
    let units = |w: &str| match w {
        "rrp" => "mean readily-releasable pool (vesicles)",
        "reserve" => "mean reserve pool (vesicles)",
        "calcium" => "mean presynaptic calcium",
        "energy" => "mean presynaptic energy",
        "fast_norm" => "fast-weight norm |W_fast|",
        _ => "value",
    };
    let panels: Vec<Panel> = by_name
        .into_iter()
        .map(|(what, layers)| Panel {
            title: format!("{title}: {what}"),
            x_label: "step".into(),
            y_label: units(&what).into(),
            series: layers
                .into_iter()
                .map(|(l, points)| Series { name: format!("layer {l}"), mark: Mark::Line, points })
                .collect(),
        })
        .collect();
    write_panels(path, &panels, 2)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover() {
        let t = ticks(0.0, 1000.0, 8);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 5 && t.len() <= 11);
        assert!(ticks(1.23, 1.87, 6).iter().all(|v| *v >= 1.23 && *v <= 1.87));
    }
}
