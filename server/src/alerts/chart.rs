//! The PNG chart linked from every notification: the watched value over the
//! last 30 minutes with the threshold, drawn on the server with plotters.

use plotters::prelude::*;
use std::sync::Once;

const W: u32 = 800;
const H: u32 = 320;

fn fonts() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // Embedded, so the chart renders the same on a machine without fonts.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

/// Renders `points` ((ms, value)) against `threshold` as a PNG.
pub fn render(
    title: &str,
    unit: &str,
    points: &[(i64, f64)],
    threshold: Option<f64>,
    now: i64,
) -> anyhow::Result<Vec<u8>> {
    fonts();
    let mut rgb = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let from = now - 30 * 60_000;
        let scale = |v: f64| if unit == "ratio" { v * 100.0 } else { v };
        let max = points
            .iter()
            .map(|(_, v)| scale(*v))
            .chain(threshold.map(scale))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let y_label = match unit {
            "s" => "seconds",
            "ratio" => "%",
            "per_min" => "per minute",
            "per_sec" => "per second",
            _ => "count",
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(from..now, 0.0..max)?;
        chart
            .configure_mesh()
            .x_labels(7)
            .x_label_formatter(&|t| {
                chrono::DateTime::from_timestamp_millis(*t)
                    .map(|d| d.format("%H:%M").to_string())
                    .unwrap_or_default()
            })
            .y_desc(y_label)
            .label_style(("sans-serif", 13))
            .draw()?;
        if let Some(t) = threshold {
            let y = scale(t);
            chart.draw_series(DashedLineSeries::new(
                vec![(from, y), (now, y)],
                8,
                5,
                RED.stroke_width(2),
            ))?;
        }
        chart.draw_series(LineSeries::new(
            points
                .iter()
                .filter(|(t, _)| *t >= from)
                .map(|(t, v)| (*t, scale(*v))),
            BLUE.stroke_width(2),
        ))?;
        root.present()?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, W, H);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&rgb)?;
    }
    Ok(png_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png() {
        let now = 1_800_000_000_000;
        let points: Vec<(i64, f64)> = (0..180)
            .map(|i| (now - (180 - i) * 10_000, (i % 40) as f64 * 3.0))
            .collect();
        let png = render(
            "dispatch delay p95 — transactional",
            "s",
            &points,
            Some(60.0),
            now,
        )
        .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 5_000, "{}", png.len());
    }
}
