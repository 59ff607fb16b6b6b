//! Turning live series and REST history into chart lines: sends per
//! minute, rolling rates, dispatch delay. Pure functions, tested natively.

use crate::components::chart::Line;
use crate::protocol::{Counters, Series};

pub const BLUE: (u8, u8, u8) = (56, 132, 255);
pub const GREEN: (u8, u8, u8) = (46, 160, 67);
pub const ORANGE: (u8, u8, u8) = (219, 109, 40);
pub const RED: (u8, u8, u8) = (218, 54, 51);
pub const PURPLE: (u8, u8, u8) = (137, 87, 229);

/// The time range a page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Live, from the websocket's per-10-second series.
    M15,
    H1,
    /// History, from the per-minute rollups over the REST API.
    H24,
    D7,
    D30,
}

impl Range {
    pub const ALL: [Range; 5] = [Range::M15, Range::H1, Range::H24, Range::D7, Range::D30];

    pub fn parse(s: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.key() == s)
    }

    pub fn key(self) -> &'static str {
        match self {
            Range::M15 => "15m",
            Range::H1 => "1h",
            Range::H24 => "24h",
            Range::D7 => "7d",
            Range::D30 => "30d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::M15 => "15 min",
            Range::H1 => "1 hour",
            Range::H24 => "24 hours",
            Range::D7 => "7 days",
            Range::D30 => "30 days",
        }
    }

    pub fn ms(self) -> i64 {
        match self {
            Range::M15 => 900_000,
            Range::H1 => 3_600_000,
            Range::H24 => 86_400_000,
            Range::D7 => 7 * 86_400_000,
            Range::D30 => 30 * 86_400_000,
        }
    }

    /// Live ranges come from the websocket; the others from rollups.
    pub fn live(self) -> bool {
        matches!(self, Range::M15 | Range::H1)
    }

    /// Step of the history query.
    pub fn step(self) -> &'static str {
        match self {
            Range::H24 => "5m",
            Range::D7 => "1h",
            _ => "1d",
        }
    }
}

/// The live series' points in `[now - span, now]` at its step, dense (a
/// bucket without events is zero).
fn dense(series: &Series, span: i64, now: i64) -> Vec<(i64, Counters)> {
    let step = series.step_ms.max(1);
    let last = now.div_euclid(step) * step;
    let first = last - span + step;
    // Keyed by time, so the order the points came in does not matter.
    let known: std::collections::BTreeMap<i64, Counters> = series
        .points
        .iter()
        .filter(|p| p.t >= first && p.t <= last)
        .map(|p| (p.t, p.counters))
        .collect();
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= last)
        .map(|t| (t, known.get(&t).copied().unwrap_or_default()))
        .collect()
}

/// Sends (and hard bounces) per minute.
pub fn sends(series: &Series, span: i64, now: i64) -> Vec<Line> {
    let per_min = 60_000.0 / series.step_ms.max(1) as f64;
    let d = dense(series, span, now);
    vec![
        Line {
            label: "sent",
            color: BLUE,
            points: d
                .iter()
                .map(|(t, c)| (*t, Some(c.sent as f64 * per_min)))
                .collect(),
        },
        Line {
            label: "bounced",
            color: RED,
            points: d
                .iter()
                .map(|(t, c)| (*t, Some(c.bounces as f64 * per_min)))
                .collect(),
        },
    ]
}

/// Open, click and bounce rates over the 5 minutes up to each point.
pub fn rates(series: &Series, span: i64, now: i64) -> Vec<Line> {
    let window = (300_000 / series.step_ms.max(1)).max(1) as usize;
    let d = dense(series, span + 300_000, now);
    let skip = d
        .len()
        .saturating_sub((span / series.step_ms.max(1)) as usize);
    let mut acc = Counters::default();
    let mut rolled = Vec::with_capacity(d.len());
    for (i, (t, c)) in d.iter().enumerate() {
        acc.add(c);
        if i >= window {
            let old = d[i - window].1.to_array();
            let mut a = acc.to_array();
            for (x, y) in a.iter_mut().zip(old) {
                *x -= y;
            }
            acc = Counters::from_array(a);
        }
        rolled.push((*t, acc.rates()));
    }
    let rolled = &rolled[skip..];
    vec![
        Line {
            label: "open",
            color: GREEN,
            points: rolled.iter().map(|(t, r)| (*t, r.open)).collect(),
        },
        Line {
            label: "click",
            color: PURPLE,
            points: rolled.iter().map(|(t, r)| (*t, r.click)).collect(),
        },
        Line {
            label: "bounce",
            color: RED,
            points: rolled.iter().map(|(t, r)| (*t, r.bounce)).collect(),
        },
    ]
}

/// Dispatch delay p50 and p95 (ms) per point; `None` where nothing was sent.
pub fn delay(series: &Series, span: i64, now: i64) -> Vec<Line> {
    let step = series.step_ms.max(1);
    let first = now.div_euclid(step) * step - span + step;
    let pts: Vec<_> = series.points.iter().filter(|p| p.t >= first).collect();
    vec![
        Line {
            label: "p50",
            color: BLUE,
            points: pts
                .iter()
                .map(|p| (p.t, p.delay.map(|d| d.p50 as f64)))
                .collect(),
        },
        Line {
            label: "p95",
            color: ORANGE,
            points: pts
                .iter()
                .map(|p| (p.t, p.delay.map(|d| d.p95 as f64)))
                .collect(),
        },
    ]
}

/// One REST history answer (`/api/v1/series`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct History {
    pub step_ms: i64,
    pub points: Vec<HistoryPoint>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Deserialize)]
pub struct HistoryPoint {
    pub t: i64,
    pub value: Option<f64>,
}

/// A stored series drawn as a history line.
pub struct HistoryMetric {
    /// The `metric` of `GET /api/v1/series`.
    pub metric: &'static str,
    pub label: &'static str,
    pub color: (u8, u8, u8),
    /// A count, drawn per minute (rates are drawn as they are).
    pub per_minute: bool,
}

const fn hm(
    metric: &'static str,
    label: &'static str,
    color: (u8, u8, u8),
    per_minute: bool,
) -> HistoryMetric {
    HistoryMetric {
        metric,
        label,
        color,
        per_minute,
    }
}

/// The send chart's lines over a stored range.
pub const SEND_HISTORY: &[HistoryMetric] = &[
    hm("sent", "sent", BLUE, true),
    hm("bounces", "bounced", RED, true),
];
/// The rate chart's lines over a stored range.
pub const RATE_HISTORY: &[HistoryMetric] = &[
    hm("open_rate", "open", GREEN, false),
    hm("click_rate", "click", PURPLE, false),
    hm("bounce_rate", "bounce", RED, false),
];

/// A history line; counts become per-minute rates.
pub fn history_line(
    h: &History,
    label: &'static str,
    color: (u8, u8, u8),
    per_minute: bool,
) -> Line {
    let k = if per_minute {
        60_000.0 / h.step_ms.max(1) as f64
    } else {
        1.0
    };
    Line {
        label,
        color,
        points: h
            .points
            .iter()
            .map(|p| (p.t, p.value.map(|v| v * k)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Percentiles, SeriesPoint};

    fn series(points: &[(i64, u64, u64)]) -> Series {
        Series {
            step_ms: 10_000,
            span_ms: 3_600_000,
            points: points
                .iter()
                .map(|(t, sent, opens)| SeriesPoint {
                    t: *t,
                    counters: Counters {
                        sent: *sent,
                        unique_opens: *opens,
                        ..Counters::default()
                    },
                    lag: None,
                    delay: (*sent > 0).then_some(Percentiles {
                        count: *sent,
                        p50: 1500,
                        p95: 3000,
                        p99: 4000,
                        max: 5000,
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn sends_are_dense_per_minute() {
        let now = 1_000_005_000;
        let s = series(&[(1_000_000_000, 5, 0), (999_980_000, 1, 0)]);
        let lines = sends(&s, 60_000, now);
        assert_eq!(lines[0].points.len(), 6);
        assert_eq!(lines[0].points[5], (1_000_000_000, Some(30.0)));
        assert_eq!(lines[0].points[4], (999_990_000, Some(0.0)));
        assert_eq!(lines[0].points[3], (999_980_000, Some(6.0)));
    }

    #[test]
    fn rates_roll_over_five_minutes() {
        let now = 1_000_000_000;
        // 100 sends 4 minutes ago, 50 unique opens now.
        let s = series(&[(now - 240_000, 100, 0), (now, 0, 50)]);
        let lines = rates(&s, 60_000, now);
        let open = &lines[0].points;
        assert_eq!(open.last().unwrap().1, Some(0.5));
        // Six minutes on, the sends left the window: no rate.
        let later = rates(&s, 60_000, now + 120_000);
        assert_eq!(later[0].points.last().unwrap().1, None);
    }

    #[test]
    fn delay_lines_have_gaps_without_sends() {
        let now = 1_000_000_000;
        let s = series(&[(now - 20_000, 3, 0), (now, 0, 1)]);
        let lines = delay(&s, 60_000, now);
        assert_eq!(
            lines[1].points,
            vec![(now - 20_000, Some(3000.0)), (now, None)]
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(Range::parse("7d"), Some(Range::D7));
        assert!(Range::H1.live() && !Range::H24.live());
        let h = History {
            step_ms: 300_000,
            points: vec![HistoryPoint {
                t: 0,
                value: Some(50.0),
            }],
        };
        assert_eq!(history_line(&h, "sent", BLUE, true).points[0].1, Some(10.0));
    }
}
