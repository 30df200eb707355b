//! The PNG chart: throughput as a ratio to bare reqwest against concurrency, one panel per
//! client runtime, a log scale so the gateways fit beside the Rust clients.
//!
//! plotters draws into an RGB buffer (its bitmap backend, no `image` crate) and the `png` crate
//! encodes it. Text goes through `ab_glyph` with a TrueType font read at run time from the
//! usual system places (DejaVu Sans or Liberation Sans); without one the chart is drawn without
//! any text and the caller is told.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where a sans-serif TrueType font is looked for.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The font family name the chart asks plotters for.
const FAMILY: &str = "sans-serif";

const COLORS: &[RGBColor] = &[
    RGBColor(0, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Registers the first font found; `false` when there is none.
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

/// One panel: its title and, per peer, (concurrency, ratio) points.
pub type Panel = (String, Vec<(String, Vec<(u32, f64)>)>);

/// Draws `panels` side by side into a PNG at `path`. Returns whether text (titles, axes,
/// legend) could be drawn.
pub fn draw(panels: &[Panel], path: &Path) -> Result<bool, String> {
    if panels.is_empty() {
        return Err("nothing to chart: no closed-loop plain-JSON point".to_owned());
    }
    let text = load_font();
    let (w, h) = (640 * panels.len() as u32, 480u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len()));
        // One y range for every panel, a decade below the lowest ratio, so panels compare.
        let lowest = panels
            .iter()
            .flat_map(|(_, series)| series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1)))
            .filter(|r| *r > 0.0)
            .fold(1.0f64, f64::min);
        let y_min = 10f64.powf(lowest.log10().floor() - 1.0).min(0.01);
        for (area, (title, series)) in areas.iter().zip(panels) {
            draw_panel(area, title, series, y_min, text).map_err(|e| e.to_string())?;
        }
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

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[(String, Vec<(u32, f64)>)],
    y_min: f64,
    text: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut concurrencies: Vec<u32> = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    let x_of = |c: u32| concurrencies.iter().position(|x| *x == c).unwrap_or(0) as f64;
    let x_max = concurrencies.len().saturating_sub(1).max(1) as f64;

    let mut builder = ChartBuilder::on(area);
    builder.margin(16);
    if text {
        builder
            .caption(
                format!("throughput ÷ bare reqwest ({title} client)"),
                (FAMILY, 18),
            )
            .x_label_area_size(36)
            .y_label_area_size(56);
    }
    let mut chart =
        builder.build_cartesian_2d(-0.3f64..x_max + 0.3, (y_min..2.0f64).log_scale())?;
    let x_label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            concurrencies
                .get(i as usize)
                .map(|c| format!("c={c}"))
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("concurrency")
            .y_desc("× reqwest (log)")
            // Fine enough that every integer (a concurrency) gets a label; the others are blank.
            .x_labels(40)
            .light_line_style(WHITE)
            .disable_x_mesh()
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| format!("{y}"))
            .label_style((FAMILY, 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (i, (peer, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = pts.iter().map(|(c, r)| (x_of(*c), *r)).collect();
        let line = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        if text {
            line.label(peer.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_file() {
        let dir = std::env::temp_dir().join(format!("peers-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        let panels = vec![(
            "current-thread".to_owned(),
            vec![
                ("reqwest".to_owned(), vec![(16, 1.0), (64, 1.0)]),
                ("litellm".to_owned(), vec![(16, 0.003), (64, 0.004)]),
            ],
        )];
        draw(&panels, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(draw(&[], &path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
