//! Rendering a [`Report`] as JSON, CSV, PNG or SVG.
//!
//! Charts are drawn once by [`draw`], generic over plotters' backends: the SVG backend writes
//! the document into a string; the bitmap backend draws into an RGB buffer that the `png` crate
//! encodes (plotters' own encoder would pull in the whole `image` crate for one format). Text
//! is laid out with the bundled DejaVu Sans through plotters' `ab_glyph` feature, so rendering
//! needs no system fonts or fontconfig.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::content::{Cell, Chart, HEADER, Report, Rgb};
use super::spec::Format;

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the PNG failed: {0}")]
    Png(#[from] png::EncodingError),
    #[error("writing the CSV failed: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the JSON failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// The bundled font (see `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::error!(message = "The bundled chart font could not be loaded.");
        }
    });
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, RenderError> {
    match format {
        Format::Json => Ok(serde_json::to_vec_pretty(report)?),
        Format::Csv => csv_of(report),
        Format::Svg => svg(report).map(String::into_bytes),
        Format::Png => png_of(report),
    }
}

fn csv_of(report: &Report) -> Result<Vec<u8>, RenderError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&report.table.columns)?;
    for row in &report.table.rows {
        // `{}` of an f64 is the shortest text that parses back to the same value.
        writer.write_record(row.iter().map(|cell| match cell {
            Cell::Text(t) => t.clone(),
            Cell::Number(Some(v)) => format!("{v}"),
            Cell::Number(None) => String::new(),
        }))?;
    }
    writer
        .into_inner()
        .map_err(|e| RenderError::Csv(e.into_error().into()))
}

/// The tear sheet as an SVG document.
pub fn svg(report: &Report) -> Result<String, RenderError> {
    register_font();
    let chart = &report.chart;
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (chart.width, chart.height)).into_drawing_area();
        draw(root, chart, &report.title).map_err(|e| RenderError::Draw(e.to_string()))?;
    }
    Ok(out)
}

/// The tear sheet as a PNG image (8-bit RGB).
pub fn png_of(report: &Report) -> Result<Vec<u8>, RenderError> {
    register_font();
    let chart = &report.chart;
    let (w, h) = (chart.width, chart.height);
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(root, chart, &report.title).map_err(|e| RenderError::Draw(e.to_string()))?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // iTXt (UTF-8): titles hold en dashes and user text, which tEXt's Latin-1 cannot.
        encoder.add_itxt_chunk("Title".into(), report.title.clone())?;
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Runs of consecutive finite values as (index, value) points.
fn segments(values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if v.is_finite() {
            current.push((i as f64, *v));
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The y range covering every finite value drawn, padded by 5 %.
fn y_range(panel: &super::content::Panel) -> (f64, f64) {
    let values = panel
        .lines
        .iter()
        .flat_map(|l| l.values.iter())
        .chain(
            panel
                .bands
                .iter()
                .flat_map(|b| b.lower.iter().chain(&b.upper)),
        )
        .copied()
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if panel.zero_line {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (-1.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

type DrawResult<E> = Result<(), DrawingAreaErrorKind<E>>;

/// Draws the tear sheet: a title strip, then one panel per chart with its bands (translucent),
/// its lines (2 px, one colour each) and a legend.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    chart: &Chart,
    title: &str,
) -> DrawResult<DB::ErrorType> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    header.draw(&Text::new(
        title.to_owned(),
        (24, 18),
        (FAMILY, 24).into_font().color(&BLACK),
    ))?;
    if chart.panels.is_empty() {
        return root.present();
    }
    let areas = body.split_evenly((chart.panels.len(), 1));
    for (area, panel) in areas.iter().zip(&chart.panels) {
        let last = panel.x.len().saturating_sub(1).max(1) as f64;
        let (lo, hi) = y_range(panel);
        let mut cc = ChartBuilder::on(area)
            .margin(12)
            .caption(&panel.title, (FAMILY, 18))
            .x_label_area_size(32)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..last, lo..hi)?;
        let x = &panel.x;
        let date = |v: &f64| {
            x.get(v.round().max(0.0) as usize)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        cc.configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&date)
            .y_desc(panel.y_label.as_str())
            .label_style((FAMILY, 13))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        for band in &panel.bands {
            let fill = color(band.color).mix(0.15).filled();
            let both: Vec<f64> = band
                .lower
                .iter()
                .zip(&band.upper)
                .map(|(l, u)| {
                    if l.is_finite() && u.is_finite() {
                        0.0
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            for run in segments(&both) {
                let (a, b) = (run[0].0 as usize, run[run.len() - 1].0 as usize);
                let mut points: Vec<(f64, f64)> =
                    (a..=b).map(|i| (i as f64, band.upper[i])).collect();
                points.extend((a..=b).rev().map(|i| (i as f64, band.lower[i])));
                cc.draw_series(std::iter::once(Polygon::new(points, fill)))?;
            }
        }
        if panel.zero_line {
            cc.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (last, 0.0)],
                BLACK.mix(0.45),
            )))?;
        }
        for line in &panel.lines {
            let stroke = color(line.color).stroke_width(2);
            for (k, run) in segments(&line.values).into_iter().enumerate() {
                let drawn = cc.draw_series(LineSeries::new(run, stroke))?;
                if k == 0 {
                    drawn
                        .label(line.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], stroke));
                }
            }
        }
        cc.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_gaps() {
        let s = segments(&[f64::NAN, 1.0, 2.0, f64::NAN, 3.0]);
        assert_eq!(s, vec![vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 3.0)]]);
        assert!(segments(&[f64::NAN]).is_empty());
    }
}
