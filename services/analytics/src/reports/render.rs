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

/// Height of a panel's title line, above its legend.
const CAPTION: u32 = 28;
/// Height of one row of legend entries.
const LEGEND_ROW: u32 = 20;
/// Left edge of the plot (and of the legend) within a panel: the margin and the y labels.
const PLOT_LEFT: u32 = 92;
/// Width of a legend swatch, and the gaps after it and after each entry.
const SWATCH: i32 = 22;
const SWATCH_GAP: i32 = 6;
const ENTRY_GAP: i32 = 18;

/// One legend entry: its name, its colour and whether it is a shaded band (else a line).
struct Entry<'a> {
    name: &'a str,
    color: Rgb,
    band: bool,
    width: i32,
}

/// The panel's legend (bands, then lines), laid out in rows that fit the panel's width.
fn legend_rows<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &'a super::content::Panel,
) -> Result<Vec<Vec<Entry<'a>>>, DrawingAreaErrorKind<DB::ErrorType>> {
    let font = (FAMILY, 13).into_font();
    let room = area.dim_in_pixel().0 as i32 - PLOT_LEFT as i32 - 12;
    // A band named like one of the lines (a drawdown's shading) is that line's: one entry.
    let entries = panel
        .bands
        .iter()
        .filter(|b| !panel.lines.iter().any(|l| l.name == b.name))
        .map(|b| (b.name.as_str(), b.color, true))
        .chain(
            panel
                .lines
                .iter()
                .map(|l| (l.name.as_str(), l.color, false)),
        );
    let mut rows: Vec<Vec<Entry<'a>>> = Vec::new();
    let mut used = 0;
    for (name, color, band) in entries {
        let text = area.estimate_text_size(name, &font.clone().into())?.0 as i32;
        let width = SWATCH + SWATCH_GAP + text;
        if rows.is_empty() || used + width > room {
            rows.push(Vec::new());
            used = 0;
        }
        used += width + ENTRY_GAP;
        rows.last_mut().expect("a row").push(Entry {
            name,
            color,
            band,
            width,
        });
    }
    Ok(rows)
}

/// The strip above a panel's plot: its title, then its legend rows.
fn draw_strip<DB: DrawingBackend>(
    strip: &DrawingArea<DB, Shift>,
    panel: &super::content::Panel,
    rows: &[Vec<Entry<'_>>],
) -> DrawResult<DB::ErrorType> {
    strip.draw(&Text::new(
        panel.title.clone(),
        (PLOT_LEFT as i32, 8),
        (FAMILY, 18).into_font().color(&BLACK),
    ))?;
    for (r, row) in rows.iter().enumerate() {
        let top = (CAPTION + LEGEND_ROW * r as u32) as i32;
        let mid = top + LEGEND_ROW as i32 / 2;
        let mut x = PLOT_LEFT as i32;
        for entry in row {
            let c = color(entry.color);
            if entry.band {
                strip.draw(&Rectangle::new(
                    [(x, mid - 6), (x + SWATCH, mid + 6)],
                    c.mix(0.3).filled(),
                ))?;
            } else {
                strip.draw(&PathElement::new(
                    vec![(x, mid), (x + SWATCH, mid)],
                    c.stroke_width(2),
                ))?;
            }
            strip.draw(&Text::new(
                entry.name.to_owned(),
                (x + SWATCH + SWATCH_GAP, top + 3),
                (FAMILY, 13).into_font().color(&BLACK),
            ))?;
            x += entry.width + ENTRY_GAP;
        }
    }
    Ok(())
}

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
        // The title and the legend sit above the plot, so no series is ever hidden under them.
        let rows = legend_rows(area, panel)?;
        let (strip, plot) = area.split_vertically(CAPTION + LEGEND_ROW * rows.len() as u32);
        draw_strip(&strip, panel, &rows)?;
        let last = panel.x.len().saturating_sub(1).max(1) as f64;
        let (lo, hi) = y_range(panel);
        let mut cc = ChartBuilder::on(&plot)
            .margin(12)
            .margin_top(4)
            .x_label_area_size(32)
            .y_label_area_size(PLOT_LEFT - 12)
            .build_cartesian_2d(0f64..last, lo..hi)?;
        let x = &panel.x;
        let date = |v: &f64| {
            x.get(v.round().max(0.0) as usize)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        // Fractions read as percent; one decimal when the whole axis spans under 5 points.
        let decimals = usize::from((hi - lo) * 100.0 < 5.0);
        let percent = |v: &f64| {
            let text = format!("{:.*}", decimals, v * 100.0);
            // A tick at zero reads "0 %", not "-0 %".
            let zero = text
                .trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.');
            format!(
                "{} %",
                if zero {
                    text.trim_start_matches('-')
                } else {
                    &text
                }
            )
        };
        let mut mesh = cc.configure_mesh();
        mesh.x_labels(8)
            .y_labels(6)
            .x_label_formatter(&date)
            .y_desc(panel.y_label.as_str())
            .label_style((FAMILY, 13))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215));
        if panel.percent {
            mesh.y_label_formatter(&percent);
        }
        mesh.draw()?;
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
            for run in segments(&line.values) {
                cc.draw_series(LineSeries::new(run, stroke))?;
            }
        }
    }
    root.present()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::super::content::{Line, Panel, WIDTH};
    use super::*;

    fn svg_of(chart: &Chart) -> String {
        register_font();
        let mut out = String::new();
        {
            let root =
                SVGBackend::with_string(&mut out, (chart.width, chart.height)).into_drawing_area();
            draw(root, chart, "test").unwrap();
        }
        out
    }

    fn panel(lines: Vec<Line>, percent: bool) -> Panel {
        let n = lines[0].values.len() as i64;
        Panel {
            title: "panel".into(),
            y_label: "value".into(),
            x: (0..n)
                .map(|i| DateTime::from_timestamp(1_600_000_000 + i * 86_400, 0).unwrap())
                .collect(),
            bands: Vec::new(),
            lines,
            zero_line: percent,
            percent,
        }
    }

    type Points = Vec<(f64, f64)>;

    /// (x, y) of every point of the test colour's polylines with more (plots) or exactly
    /// (legend swatches) 2 points.
    fn polylines(doc: &roxmltree::Document<'_>) -> (Points, Points) {
        let (mut plotted, mut swatches) = (Vec::new(), Vec::new());
        for n in doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#1F77B4"))
        {
            let points: Vec<(f64, f64)> = n
                .attribute("points")
                .unwrap_or_default()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            if points.len() == 2 {
                swatches.extend(points);
            } else {
                plotted.extend(points);
            }
        }
        (plotted, swatches)
    }

    #[test]
    fn the_legend_sits_above_the_plot_in_rows_that_fit() {
        // Series at their highest in the first months: where a legend inside the plot would sit.
        let lines: Vec<Line> = (0..8)
            .map(|k| {
                let values = (0..250)
                    .map(|i| 200.0 - f64::from(i) * 0.4 + f64::from(k))
                    .collect();
                Line::new(
                    format!("A rather long series name {k}"),
                    PALETTE_TEST,
                    values,
                )
            })
            .collect();
        let chart = Chart::new(vec![panel(lines, false)]);
        let svg = svg_of(&chart);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let (plotted, swatches) = polylines(&doc);
        let top = plotted.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        assert_eq!(swatches.len(), 2 * 8, "one swatch per line");
        assert!(
            swatches.iter().all(|s| s.1 < top),
            "swatches {swatches:?} above {top}"
        );
        let labels: Vec<(f64, f64)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter(|n| {
                n.text()
                    .is_some_and(|t| t.trim().starts_with("A rather long"))
            })
            .map(|n| {
                let at = |a| n.attribute(a).unwrap().parse::<f64>().unwrap();
                (at("x"), at("y"))
            })
            .collect();
        assert_eq!(labels.len(), 8);
        assert!(
            labels.iter().all(|l| l.1 < top),
            "labels {labels:?} above {top}"
        );
        assert!(
            labels.iter().all(|l| l.0 < f64::from(WIDTH)),
            "inside the image"
        );
        let rows: std::collections::BTreeSet<i64> = labels.iter().map(|l| l.1 as i64).collect();
        assert!(rows.len() >= 2, "eight long names wrap: rows at {rows:?}");
    }

    #[test]
    fn fractions_are_labelled_as_percent() {
        let drawdown: Vec<f64> = (0..100).map(|i| -f64::from(i) / 198.0).collect();
        let labels = |percent: bool| -> Vec<String> {
            let chart = Chart::new(vec![panel(
                vec![Line::new("Drawdown", PALETTE_TEST, drawdown.clone())],
                percent,
            )]);
            let svg = svg_of(&chart);
            let doc = roxmltree::Document::parse(&svg).unwrap();
            doc.descendants()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
                .collect()
        };
        let shown = labels(true);
        assert!(shown.iter().any(|t| t == "-50 %"), "{shown:?}");
        assert!(shown.iter().any(|t| t == "0 %"), "{shown:?}");
        assert!(!shown.iter().any(|t| t == "-0.5"), "{shown:?}");
        assert!(labels(false).iter().any(|t| t == "-0.5"));
    }

    #[test]
    fn a_band_shading_a_line_of_its_name_has_no_legend_entry_of_its_own() {
        let values: Vec<f64> = (0..50).map(|i| -f64::from(i) / 100.0).collect();
        let mut shaded = panel(
            vec![Line::new("Drawdown", PALETTE_TEST, values.clone())],
            true,
        );
        shaded.bands = vec![super::super::content::Band {
            name: "Drawdown".into(),
            color: PALETTE_TEST,
            lower: values,
            upper: vec![0.0; 50],
        }];
        let svg = svg_of(&Chart::new(vec![shaded]));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let entries = doc
            .descendants()
            .filter(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some("Drawdown"))
            .count();
        assert_eq!(entries, 1);
    }

    const PALETTE_TEST: Rgb = Rgb(31, 119, 180);

    #[test]
    fn segments_split_at_gaps() {
        let s = segments(&[f64::NAN, 1.0, 2.0, f64::NAN, 3.0]);
        assert_eq!(s, vec![vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 3.0)]]);
        assert!(segments(&[f64::NAN]).is_empty());
    }
}
