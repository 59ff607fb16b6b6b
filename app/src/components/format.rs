//! How numbers, durations and times are shown. Times are always UTC, so the
//! server's render and the browser's first render agree to the character.

/// 1234567 → "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A fraction as a percentage with sensible precision; "—" without data.
pub fn pct(r: Option<f64>) -> String {
    match r {
        None => "—".into(),
        Some(0.0) => "0 %".into(),
        Some(v) if v * 100.0 < 0.1 => format!("{:.2} %", v * 100.0),
        Some(v) if v * 100.0 < 10.0 => format!("{:.1} %", v * 100.0),
        Some(v) => format!("{:.0} %", v * 100.0),
    }
}

/// Milliseconds as "850 ms", "1.6 s", "42 s", "2m 10s", "3h 05m".
pub fn dur_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 90_000 {
        format!("{} s", ms / 1000)
    } else if ms < 5_400_000 {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A rate per minute: "58/min", "0.4/min".
pub fn per_min(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}/min")
    } else {
        format!("{v:.1}/min")
    }
}

/// ms since epoch → "14:03:07 UTC".
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, (s / 60) % 60, s % 60)
}

/// ms since epoch → "14:03".
pub fn hhmm(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, (s / 60) % 60)
}

/// ms since epoch → "2026-11-27 14:03 UTC".
pub fn date_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {} UTC", hhmm(ms))
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A value in the unit an alert uses.
pub fn alert_value(v: f64, unit: &str) -> String {
    match unit {
        "s" => dur_ms((v * 1000.0) as i64),
        "ratio" => pct(Some(v)),
        "per_min" => per_min(v),
        "per_sec" => format!("{v:.1}/s"),
        _ => count(v.max(0.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(pct(None), "—");
        assert_eq!(pct(Some(0.0234)), "2.3 %");
        assert_eq!(pct(Some(0.25)), "25 %");
        assert_eq!(pct(Some(0.0004)), "0.04 %");
        assert_eq!(dur_ms(850), "850 ms");
        assert_eq!(dur_ms(1600), "1.6 s");
        assert_eq!(dur_ms(130_000), "2m 10s");
        assert_eq!(dur_ms(11_100_000), "3h 05m");
        assert_eq!(clock(1_767_000_187_000), "09:23:07 UTC");
        assert_eq!(date_time(1_767_000_187_000), "2025-12-29 09:23 UTC");
        assert_eq!(per_min(58.2), "58/min");
        assert_eq!(alert_value(0.052, "ratio"), "5.2 %");
    }
}
