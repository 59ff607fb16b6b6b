//! Distributions of durations (webhook lag, dispatch delay) over sliding
//! windows, with percentiles from HdrHistogram. Samples are kept in
//! histograms per 10-second slot for the last hour and per 5-minute slot for
//! the last day; a window's percentiles merge its slots. Pure: time is
//! passed in.

use super::buckets::newest_or_insert;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use mailpulse_app::protocol::{Percentiles, Window};
use std::collections::{BTreeMap, BTreeSet};

pub const FINE_MS: i64 = 10_000;
pub const COARSE_MS: i64 = 300_000;
const FINE_SPAN_MS: i64 = 3_600_000;
const COARSE_SPAN_MS: i64 = 86_400_000;
/// Two significant digits: ±1 % is plenty for "p95 = 41 s".
const SIGFIG: u8 = 2;

pub fn new_hist() -> Histogram<u64> {
    // Auto-resizing: small until a large value arrives.
    Histogram::new(SIGFIG).expect("2 significant digits is valid")
}

pub fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    (!h.is_empty()).then(|| Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    })
}

#[derive(Clone, Debug)]
struct Slots {
    step: i64,
    span: i64,
    map: BTreeMap<i64, Histogram<u64>>,
}

impl Slots {
    fn new(step: i64, span: i64) -> Slots {
        Slots {
            step,
            span,
            map: BTreeMap::new(),
        }
    }

    fn slot_of(&self, t: i64) -> i64 {
        t.div_euclid(self.step) * self.step
    }

    fn record(&mut self, t: i64, value: u64, now: i64) -> Option<i64> {
        let s = self.slot_of(t);
        if s <= now - self.span {
            return None;
        }
        let h = newest_or_insert(&mut self.map, s, new_hist);
        // `record` grows the histogram; only a value past u64's range fails.
        if h.record(value).is_err() {
            h.saturating_record(value);
        }
        Some(s)
    }

    fn merged_last(&self, len: i64, now: i64) -> Histogram<u64> {
        let last = self.slot_of(now);
        let mut h = new_hist();
        for slot in self.map.range(last - len + 1..=last).map(|(_, h)| h) {
            // Both auto-resize, so adding cannot fail on range.
            let _ = h.add(slot);
        }
        h
    }

    fn prune(&mut self, now: i64) {
        let oldest = self.slot_of(now - self.span) + self.step;
        self.map = self.map.split_off(&oldest);
    }
}

/// One distribution (e.g. overall webhook lag) over every window.
#[derive(Clone, Debug)]
pub struct Durations {
    fine: Slots,
    coarse: Slots,
    /// Percentiles per fine slot, for chart points; recomputed when dirty.
    points: BTreeMap<i64, Percentiles>,
    dirty_points: BTreeSet<i64>,
    /// Every window's percentiles and when (ms) they were computed: merging
    /// slots costs a few hundred microseconds, so it is redone only when a
    /// new second starts, or when samples arrived and 200 ms have passed.
    cache: Option<(i64, [Option<Percentiles>; 5])>,
    /// Samples arrived since the cache was computed.
    dirty: bool,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            fine: Slots::new(FINE_MS, FINE_SPAN_MS),
            coarse: Slots::new(COARSE_MS, COARSE_SPAN_MS),
            points: BTreeMap::new(),
            dirty_points: BTreeSet::new(),
            cache: None,
            dirty: false,
        }
    }
}

impl Durations {
    /// Records `value_ms` at time `t` (negative values count as 0).
    pub fn record(&mut self, t: i64, value_ms: i64, now: i64) {
        let v = value_ms.max(0) as u64;
        self.dirty = true;
        if let Some(s) = self.fine.record(t, v, now) {
            if self.dirty_points.last() != Some(&s) {
                self.dirty_points.insert(s);
            }
        }
        self.coarse.record(t, v, now);
    }

    /// Every window's percentiles (in [`Window::ALL`] order); see `cache`
    /// for how often they are recomputed.
    pub fn windows(&mut self, now: i64) -> [Option<Percentiles>; 5] {
        match self.cache {
            Some((at, v))
                if at.div_euclid(1000) == now.div_euclid(1000)
                    && !(self.dirty && now - at >= 200) =>
            {
                v
            }
            _ => {
                let v = Window::ALL.map(|w| self.window(w, now));
                self.cache = Some((now, v));
                self.dirty = false;
                v
            }
        }
    }

    /// Percentiles over `w` ending now; `None` without samples.
    pub fn window(&self, w: Window, now: i64) -> Option<Percentiles> {
        percentiles(&self.merged(w, now))
    }

    /// All samples of `w` ending now, in one histogram.
    pub fn merged(&self, w: Window, now: i64) -> Histogram<u64> {
        let len = w.secs() * 1000;
        if len <= FINE_SPAN_MS {
            self.fine.merged_last(len, now)
        } else {
            self.coarse.merged_last(len, now)
        }
    }

    /// Counts of the samples of `w` in the given upper bounds (ms), the last
    /// bucket open-ended: a histogram for display.
    pub fn bins(&self, w: Window, now: i64, bounds: &[u64]) -> Vec<u64> {
        let h = self.merged(w, now);
        let mut out = vec![0u64; bounds.len() + 1];
        for v in h.iter_recorded() {
            let x = v.value_iterated_to();
            let i = bounds.iter().position(|b| x <= *b).unwrap_or(bounds.len());
            out[i] += v.count_at_value();
        }
        out
    }

    /// Percentiles of the fine slot starting at `slot`.
    pub fn point(&mut self, slot: i64) -> Option<Percentiles> {
        if self.dirty_points.remove(&slot) {
            if let Some(p) = self.fine.map.get(&slot).and_then(percentiles) {
                self.points.insert(slot, p);
            }
        }
        self.points.get(&slot).copied()
    }

    pub fn prune(&mut self, now: i64) {
        self.fine.prune(now);
        self.coarse.prune(now);
        let oldest = self.fine.map.keys().next().copied().unwrap_or(now);
        self.points = self.points.split_off(&oldest);
    }

    /// Coarse slots that ended at or before `now` and after `after`:
    /// complete, ready to be persisted.
    pub fn completed_coarse(&self, after: i64, now: i64) -> Vec<(i64, Vec<u8>)> {
        self.coarse
            .map
            .range(after + 1..)
            .filter(|(s, _)| **s + COARSE_MS <= now)
            .filter_map(|(s, h)| {
                let mut buf = Vec::new();
                V2Serializer::new().serialize(h, &mut buf).ok()?;
                Some((*s, buf))
            })
            .collect()
    }

    /// Restores a persisted coarse slot (after a restart).
    pub fn load_coarse(&mut self, slot: i64, bytes: &[u8], now: i64) -> anyhow::Result<()> {
        if slot <= now - COARSE_SPAN_MS {
            return Ok(());
        }
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| anyhow::anyhow!("bad histogram for slot {slot}: {e:?}"))?;
        let entry = self.coarse.map.entry(slot).or_insert_with(new_hist);
        let _ = entry.add(&h);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_percentiles_with_time_passed_in() {
        let now = 1_000_000_000;
        let mut d = Durations::default();
        // 100 samples in the last minute: 1..=100 ms.
        for i in 1..=100 {
            d.record(now - 30_000, i, now);
        }
        // An old, slow one 10 minutes ago: outside 1m and 5m, inside 15m.
        d.record(now - 600_000, 60_000, now);
        let m1 = d.window(Window::M1, now).unwrap();
        assert_eq!(m1.count, 100);
        assert!((49..=51).contains(&m1.p50), "{m1:?}");
        assert!((94..=96).contains(&m1.p95), "{m1:?}");
        assert!((98..=100).contains(&m1.p99), "{m1:?}");
        assert_eq!(d.window(Window::M5, now).unwrap().count, 100);
        let m15 = d.window(Window::M15, now).unwrap();
        assert_eq!(m15.count, 101);
        assert!(m15.max >= 59_500, "{m15:?}");
        assert_eq!(d.window(Window::H24, now).unwrap().count, 101);
        // Two minutes later the 1m window is empty.
        assert_eq!(d.window(Window::M1, now + 120_000), None);
    }

    #[test]
    fn cached_windows_catch_up_with_new_samples() {
        let now = 1_000_000_000;
        let mut d = Durations::default();
        assert_eq!(d.windows(now)[0], None);
        d.record(now, 10, now);
        // Within 200 ms of the last computation the cache may be stale…
        assert_eq!(d.windows(now + 100)[0], None);
        // …but not later.
        assert_eq!(d.windows(now + 250)[0].unwrap().count, 1);
        assert_eq!(d.windows(now + 1_000)[0].unwrap().count, 1);
    }

    #[test]
    fn negative_values_count_as_zero_and_huge_ones_fit() {
        let now = 1_000_000_000;
        let mut d = Durations::default();
        d.record(now, -5_000, now);
        d.record(now, 7 * 86_400_000, now);
        let p = d.window(Window::M1, now).unwrap();
        assert_eq!(p.count, 2);
        assert!(p.max >= 6 * 86_400_000);
    }

    #[test]
    fn points_are_recomputed_only_when_dirty() {
        let now = 1_000_000_000;
        let mut d = Durations::default();
        d.record(now, 10, now);
        let slot = now.div_euclid(FINE_MS) * FINE_MS;
        assert_eq!(d.point(slot).unwrap().count, 1);
        d.record(now, 20, now);
        assert_eq!(d.point(slot).unwrap().count, 2);
        assert_eq!(d.point(slot - FINE_MS), None);
    }

    #[test]
    fn completed_slots_round_trip_through_bytes() {
        let now = 1_000_000_000;
        let mut d = Durations::default();
        for i in 0..50 {
            d.record(now - 900_000, 1000 + i, now);
        }
        let done = d.completed_coarse(0, now);
        assert_eq!(done.len(), 1);
        let mut restored = Durations::default();
        restored.load_coarse(done[0].0, &done[0].1, now).unwrap();
        assert_eq!(
            restored.window(Window::H24, now).unwrap().count,
            d.window(Window::H24, now).unwrap().count
        );
        // The current slot is not complete yet.
        d.record(now, 5, now);
        assert_eq!(d.completed_coarse(done[0].0, now).len(), 0);
    }
}
