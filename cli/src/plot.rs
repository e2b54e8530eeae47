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

fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes `path` with the training curve (blue line) and validation points (orange).
pub fn loss_curve(path: &Path, train: &[(f64, f64)], val: &[(f64, f64)], title: &str) -> Result<()> {
    let (w, h) = (800i32, 500i32);
    let (left, right, top, bottom) = (70, 20, 40, 50);
    let mut c = Canvas(RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255])));
    let pts: Vec<&(f64, f64)> = train.iter().chain(val).filter(|p| p.1.is_finite()).collect();
    let (x0, x1) = (0.0, pts.iter().map(|p| p.0).fold(1.0, f64::max));
    let y_lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y0, y1) =
        if y_lo.is_finite() { (y_lo.min(y_hi - 1e-3).max(0.0) * 0.95, y_hi * 1.02 + 1e-3) } else { (0.0, 1.0) };
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (w - left - right) as f64) as i32;
    let py = |y: f64| h - bottom - ((y - y0) / (y1 - y0) * (h - top - bottom) as f64) as i32;
    let black = Rgb888::new(40, 40, 40);
    let grid = Rgb888::new(225, 225, 225);
    let font = MonoTextStyle::new(&FONT_7X13, black);
    let center = TextStyleBuilder::new().alignment(Alignment::Center).baseline(Baseline::Top).build();
    let rightal = TextStyleBuilder::new().alignment(Alignment::Right).baseline(Baseline::Middle).build();
    for t in ticks(x0, x1, 8) {
        let x = px(t);
        let _ = Line::new(Point::new(x, top), Point::new(x, h - bottom))
            .into_styled(PrimitiveStyle::with_stroke(grid, 1))
            .draw(&mut c);
        let _ = Text::with_text_style(&label(t), Point::new(x, h - bottom + 6), font, center).draw(&mut c);
    }
    for t in ticks(y0, y1, 6) {
        let y = py(t);
        let _ = Line::new(Point::new(left, y), Point::new(w - right, y))
            .into_styled(PrimitiveStyle::with_stroke(grid, 1))
            .draw(&mut c);
        let _ = Text::with_text_style(&label(t), Point::new(left - 6, y), font, rightal).draw(&mut c);
    }
    let _ = Rectangle::new(Point::new(left, top), Size::new((w - left - right) as u32, (h - top - bottom) as u32))
        .into_styled(PrimitiveStyle::with_stroke(black, 1))
        .draw(&mut c);
    let _ = Text::with_text_style(title, Point::new(w / 2, 12), font, center).draw(&mut c);
    let _ = Text::with_text_style("step", Point::new(w / 2, h - 22), font, center).draw(&mut c);
    let _ = Text::new("loss (nats/token)", Point::new(8, top - 8), font).draw(&mut c);
    let blue = Rgb888::new(31, 119, 180);
    let orange = Rgb888::new(230, 110, 20);
    let line = PrimitiveStyle::with_stroke(blue, 2);
    for p in train.windows(2) {
        if p[0].1.is_finite() && p[1].1.is_finite() {
            let _ = Line::new(Point::new(px(p[0].0), py(p[0].1)), Point::new(px(p[1].0), py(p[1].1)))
                .into_styled(line)
                .draw(&mut c);
        }
    }
    for p in val.iter().filter(|p| p.1.is_finite()) {
        let _ = Circle::with_center(Point::new(px(p.0), py(p.1)), 7)
            .into_styled(PrimitiveStyle::with_fill(orange))
            .draw(&mut c);
    }
    // legend
    let lx = w - right - 150;
    let _ = Line::new(Point::new(lx, top + 14), Point::new(lx + 24, top + 14)).into_styled(line).draw(&mut c);
    let _ = Text::new("train", Point::new(lx + 30, top + 18), font).draw(&mut c);
    let _ = Circle::with_center(Point::new(lx + 12, top + 32), 7)
        .into_styled(PrimitiveStyle::with_fill(orange))
        .draw(&mut c);
    let _ = Text::new("validation", Point::new(lx + 30, top + 36), font).draw(&mut c);
    let mut bytes = Vec::new();
    c.0.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Io(format!("cannot encode PNG: {e}")))?;
    protocell_runtime::io::write_atomic(path, &bytes)
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
