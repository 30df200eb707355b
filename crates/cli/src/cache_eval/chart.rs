//! The precision–recall chart of `infermux cache eval --curve`: one solid line per pairs file
//! (the semantic tier: cosine floor + verifier) and a dashed one for plain cosine, with a dot at
//! the threshold used.
//!
//! plotters draws into an RGB buffer and the `png` crate encodes it (as the peer benchmark's
//! chart does). Text goes through `ab_glyph` with a TrueType font read from the usual system
//! places; without one the chart is drawn without text and the caller is told.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const FAMILY: &str = "sans-serif";
const COLORS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

fn load_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// One file's curves: its name, the tier's `(recall, precision)` points, plain cosine's, and
/// the operating point at the threshold.
pub(crate) struct Series {
    pub name: String,
    pub tier: Vec<(f64, f64)>,
    pub cosine: Vec<(f64, f64)>,
    pub at_threshold: (f64, f64),
}

/// Draws `series` into a PNG at `path`; whether text could be drawn.
pub(crate) fn draw(series: &[Series], title: &str, path: &Path) -> Result<bool, String> {
    if series.is_empty() {
        return Err("nothing to chart".to_owned());
    }
    let text = load_font();
    let (w, h) = (720u32, 540u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        plot(&root, series, title, text).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&buf).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(text)
}

/// At most `n` points of a curve, evenly spaced in recall (the PNG stays small and smooth).
fn thin(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &p in points {
        if out
            .last()
            .is_none_or(|l| p.0 - l.0 >= 1.0 / n as f64 || (p.1 - l.1).abs() >= 0.02)
        {
            out.push(p);
        }
    }
    if let (Some(&last), Some(&end)) = (out.last(), points.last())
        && last != end
    {
        out.push(end);
    }
    out
}

fn plot<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    title: &str,
    text: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(16);
    if text {
        builder
            .caption(title, (FAMILY, 18))
            .x_label_area_size(40)
            .y_label_area_size(52);
    }
    let mut chart = builder.build_cartesian_2d(0f64..1f64, 0.4f64..1.005f64)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("recall")
            .y_desc("precision")
            .label_style((FAMILY, 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let tier = chart.draw_series(LineSeries::new(thin(&s.tier, 300), color.stroke_width(2)))?;
        if text {
            tier.label(format!("{}: cosine + verifier", s.name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        let faint = color.mix(0.45);
        let dashed: Vec<(f64, f64)> = thin(&s.cosine, 300);
        let cos = chart.draw_series(
            dashed
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| PathElement::new(vec![c[0], c[1]], faint.stroke_width(1))),
        )?;
        if text {
            cos.label(format!("{}: plain cosine", s.name))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], faint));
        }
        chart.draw_series(std::iter::once(Circle::new(
            s.at_threshold,
            5,
            color.filled(),
        )))?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 12))
            .draw()?;
    }
    Ok(())
}
