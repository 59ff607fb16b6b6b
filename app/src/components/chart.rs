//! Time-series charts drawn with plotters on a `<canvas>` in the browser,
//! redrawn when their data changes. The server renders the same markup
//! without drawing; every number a chart shows is also text: the current
//! value next to the title, and a data table behind "Data".

use super::format;
use leptos::prelude::*;

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: &'static str,
    /// CSS colour, also used on the canvas.
    pub color: (u8, u8, u8),
    /// (ms since epoch, value), oldest first. `None`: no data there.
    pub points: Vec<(i64, Option<f64>)>,
}

/// How a chart's values read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    PerMin,
    Ratio,
    Millis,
}

impl Unit {
    pub fn fmt(self, v: f64) -> String {
        match self {
            Unit::PerMin => format::per_min(v),
            Unit::Ratio => format::pct(Some(v)),
            Unit::Millis => format::dur_ms(v as i64),
        }
    }
}

/// The latest value of each line, as text.
fn current(lines: &[Line], unit: Unit) -> String {
    let parts: Vec<String> = lines
        .iter()
        .map(|l| {
            let v = l.points.iter().rev().find_map(|(_, v)| *v);
            format!("{} {}", l.label, v.map_or("—".into(), |v| unit.fmt(v)))
        })
        .collect();
    parts.join(" · ")
}

#[component]
pub fn Chart(
    #[prop(into)] title: String,
    /// Test id of the element holding the current value(s).
    #[prop(into)]
    id: String,
    #[prop(into)] lines: Signal<Vec<Line>>,
    unit: Unit,
    /// The time span shown (ms).
    #[prop(into)]
    span: Signal<(i64, i64)>,
) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let open = RwSignal::new(false);
    #[cfg(not(feature = "hydrate"))]
    let _ = span;
    #[cfg(feature = "hydrate")]
    {
        // Redraw on new data, and once the canvas exists.
        Effect::new(move |_| {
            let data = lines.get();
            let (from, to) = span.get();
            if let Some(c) = canvas.get() {
                draw::draw(&c, &data, from, to, unit);
            }
        });
    }
    let label = title.clone();
    let table = move || {
        open.get().then(|| {
            let data = lines.get();
            let times: Vec<i64> = data
                .first()
                .map(|l| l.points.iter().map(|(t, _)| *t).collect())
                .unwrap_or_default();
            let head = data
                .iter()
                .map(|l| view! { <th scope="col">{l.label}</th> })
                .collect_view();
            let rows = times
                .iter()
                .enumerate()
                .rev()
                .map(|(i, t)| {
                    let cells = data
                        .iter()
                        .map(|l| {
                            let v = l.points.get(i).and_then(|(_, v)| *v);
                            view! { <td class="num">{v.map_or("—".into(), |v| unit.fmt(v))}</td> }
                        })
                        .collect_view();
                    view! { <tr><th scope="row">{format::hhmm(*t)}</th>{cells}</tr> }
                })
                .collect_view();
            view! {
                <table class="data">
                    <thead><tr><th scope="col">"UTC"</th>{head}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
        })
    };
    view! {
        <figure class="chart">
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="chart-now" data-testid=id>{move || current(&lines.get(), unit)}</span>
            </figcaption>
            <canvas node_ref=canvas role="img" aria-label=label></canvas>
            <details on:toggle=move |_| open.update(|o| *o = !*o)>
                <summary>"Data"</summary>
                {table}
            </details>
        </figure>
    }
}

#[cfg(feature = "hydrate")]
mod draw {
    use super::{Line, Unit};
    use plotters::prelude::*;
    use plotters_canvas::CanvasBackend;

    fn dark() -> bool {
        web_sys::window()
            .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
            .is_some_and(|m| m.matches())
            || web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.body())
                .is_some_and(|b| b.class_list().contains("wall"))
    }

    pub fn draw(
        canvas: &web_sys::HtmlCanvasElement,
        lines: &[Line],
        from: i64,
        to: i64,
        unit: Unit,
    ) {
        // Match the canvas's pixels to its size on screen.
        let ratio = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio());
        let rect = canvas.get_bounding_client_rect();
        let (w, h) = (
            (rect.width() * ratio) as u32,
            (rect.height() * ratio) as u32,
        );
        if w < 50 || h < 50 {
            return;
        }
        if canvas.width() != w || canvas.height() != h {
            canvas.set_width(w);
            canvas.set_height(h);
        } else {
            // Resizing clears the bitmap; otherwise clear it ourselves, or
            // every redraw would paint over the last one.
            use wasm_bindgen::JsCast;
            if let Some(ctx) = canvas
                .get_context("2d")
                .ok()
                .flatten()
                .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
            {
                ctx.clear_rect(0.0, 0.0, f64::from(w), f64::from(h));
            }
        }
        let Some(backend) = CanvasBackend::with_canvas_object(canvas.clone()) else {
            return;
        };
        let root = backend.into_drawing_area();
        let (fg, grid) = if dark() {
            (RGBColor(200, 205, 212), RGBColor(48, 54, 66))
        } else {
            (RGBColor(60, 66, 76), RGBColor(226, 229, 234))
        };
        let scale = |v: f64| if unit == Unit::Ratio { v * 100.0 } else { v };
        let max = lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|(_, v)| v.map(scale)))
            .fold(0.0f64, f64::max)
            // An empty or flat-zero chart still gets a readable axis.
            .max(1.0)
            * 1.15;
        let font = ("sans-serif", 12.0 * ratio).into_font().color(&fg);
        let Ok(mut chart) = ChartBuilder::on(&root)
            .margin((8.0 * ratio) as u32)
            .x_label_area_size((22.0 * ratio) as u32)
            .y_label_area_size((46.0 * ratio) as u32)
            .build_cartesian_2d(from..to, 0.0..max)
        else {
            return;
        };
        let y_fmt = |v: &f64| match unit {
            Unit::Ratio => format!("{v:.1}%"),
            Unit::Millis => super::super::format::dur_ms(*v as i64),
            Unit::PerMin => format!("{v:.0}"),
        };
        let _ = chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| super::super::format::hhmm(*t))
            .y_label_formatter(&y_fmt)
            // Only the labelled grid lines: the fine ones are noise here.
            .light_line_style(TRANSPARENT)
            .bold_line_style(grid)
            .axis_style(grid)
            .label_style(font.clone())
            .draw();
        for l in lines {
            let color = RGBColor(l.color.0, l.color.1, l.color.2);
            // Gaps (no data) break the line.
            let mut segment: Vec<(i64, f64)> = Vec::new();
            let mut flush = |seg: &mut Vec<(i64, f64)>| {
                if !seg.is_empty() {
                    let _ = chart.draw_series(LineSeries::new(
                        seg.drain(..),
                        color.stroke_width((2.0 * ratio) as u32),
                    ));
                }
            };
            for (t, v) in &l.points {
                match v {
                    Some(v) => segment.push((*t, scale(*v))),
                    None => flush(&mut segment),
                }
            }
            flush(&mut segment);
        }
        let _ = root.present();
    }
}
