//! The live transactional dispatch queue: open dispatches (queue depth,
//! oldest queued age), dispatch delays (sent − accepted) per mailing and
//! overall, and `sent` events that matched no dispatch. Pure: time is
//! passed in.

use super::buckets::Buckets;
use super::durations::{new_hist, percentiles, Durations};
use crate::store::dispatch::{ClosedDispatch, DispatchReport};
use hdrhistogram::Histogram;
use mailpulse_app::protocol::{Counters, Percentiles, Window};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Queue {
    /// (accepted_at, mail_id), oldest first.
    open: BTreeSet<(i64, String)>,
    delays: Durations,
}

#[derive(Debug)]
pub struct DispatchState {
    /// mail_id → (mailing, accepted_at) of open dispatches.
    open: HashMap<String, (String, i64)>,
    by_mailing: HashMap<String, Queue>,
    all: Queue,
    unmatched: Buckets,
    unmatched_by_mailing: HashMap<String, Buckets>,
}

impl Default for DispatchState {
    fn default() -> Self {
        DispatchState {
            open: HashMap::new(),
            by_mailing: HashMap::new(),
            all: Queue::default(),
            unmatched: Buckets::new(1000, 3_600_000),
            unmatched_by_mailing: HashMap::new(),
        }
    }
}

/// An open dispatch is overdue past this age at the least…
pub const OVERDUE_MIN_MS: i64 = 30_000;
/// …and past this many times the recent p99 dispatch delay.
pub const OVERDUE_FACTOR: f64 = 5.0;

/// Queue figures of one mailing or of all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    pub depth: u64,
    pub oldest_accepted_at: Option<i64>,
}

impl DispatchState {
    pub fn opened(&mut self, d: &DispatchReport) {
        if self.open.contains_key(&d.mail_id) {
            return;
        }
        self.open
            .insert(d.mail_id.clone(), (d.mailing_id.clone(), d.accepted_at));
        let key = (d.accepted_at, d.mail_id.clone());
        self.all.open.insert(key.clone());
        self.by_mailing
            .entry(d.mailing_id.clone())
            .or_default()
            .open
            .insert(key);
    }

    pub fn closed(&mut self, c: &ClosedDispatch, now: i64) {
        if let Some((mailing, accepted_at)) = self.open.remove(&c.mail_id) {
            let key = (accepted_at, c.mail_id.clone());
            self.all.open.remove(&key);
            if let Some(q) = self.by_mailing.get_mut(&mailing) {
                q.open.remove(&key);
            }
        }
        let delay = c.sent_at - c.accepted_at;
        let t = c.sent_at.min(now);
        self.all.delays.record(t, delay, now);
        self.by_mailing
            .entry(c.mailing_id.clone())
            .or_default()
            .delays
            .record(t, delay, now);
    }

    pub fn unmatched(&mut self, mailing: &str, t: i64, now: i64) {
        let one = Counters {
            sent: 1,
            ..Counters::default()
        };
        self.unmatched.add(t, now, &one);
        self.unmatched_by_mailing
            .entry(mailing.to_string())
            .or_insert_with(|| Buckets::new(1000, 3_600_000))
            .add(t, now, &one);
    }

    fn queue(&self, mailing: Option<&str>) -> Option<&Queue> {
        match mailing {
            None => Some(&self.all),
            Some(m) => self.by_mailing.get(m),
        }
    }

    pub fn stats(&self, mailing: Option<&str>) -> QueueStats {
        self.queue(mailing)
            .map_or(QueueStats::default(), |q| QueueStats {
                depth: q.open.len() as u64,
                oldest_accepted_at: q.open.iter().next().map(|(t, _)| *t),
            })
    }

    /// Open dispatches that are overdue: older than [`OVERDUE_MIN_MS`] and
    /// [`OVERDUE_FACTOR`] times the p99 of this scope's dispatch delays over
    /// the last hour. A few of them at once is a stall, whatever the hour:
    /// unlike silence, this needs no recent `sent` rate to judge by.
    pub fn overdue(&self, mailing: Option<&str>, now: i64) -> u64 {
        let Some(q) = self.queue(mailing) else {
            return 0;
        };
        let Some((oldest, _)) = q.open.iter().next() else {
            return 0;
        };
        if now - oldest <= OVERDUE_MIN_MS {
            return 0;
        }
        let p99 = percentiles(&q.delays.merged(Window::H1, now)).map_or(0, |p| p.p99);
        let limit = OVERDUE_MIN_MS.max((OVERDUE_FACTOR * p99 as f64) as i64);
        q.open.range(..(now - limit, String::new())).count() as u64
    }

    /// Dispatch delay percentiles over `w`: the delays of dispatches that
    /// were sent in the window, and every still-open dispatch at its current
    /// age — so a stall raises the percentiles instead of hiding them.
    pub fn delay(&self, mailing: Option<&str>, w: Window, now: i64) -> Option<Percentiles> {
        let q = self.queue(mailing)?;
        let mut h: Histogram<u64> = q.delays.merged(w, now);
        if h.is_empty() && q.open.is_empty() {
            return None;
        }
        if !q.open.is_empty() {
            let mut open = new_hist();
            for (accepted_at, _) in &q.open {
                let _ = open.record((now - accepted_at).max(0) as u64);
            }
            let _ = h.add(&open);
        }
        percentiles(&h)
    }

    /// Delay percentiles of the 10-second slot starting at `slot` (sent
    /// dispatches only), for chart points.
    pub fn delay_point(&mut self, slot: i64) -> Option<Percentiles> {
        self.all.delays.point(slot)
    }

    /// Counts of delays of one mailing over the last day in `bounds` bins.
    pub fn delay_bins(&self, mailing: &str, now: i64, bounds: &[u64]) -> Option<Vec<u64>> {
        let q = self.by_mailing.get(mailing)?;
        Some(q.delays.bins(Window::H24, now, bounds))
    }

    pub fn unmatched_in(&self, mailing: Option<&str>, w: Window, now: i64) -> u64 {
        let b = match mailing {
            None => Some(&self.unmatched),
            Some(m) => self.unmatched_by_mailing.get(m),
        };
        b.map_or(0, |b| b.sum_last(w.secs().min(3600) * 1000, now).sent)
    }

    /// Mailings that ever had a dispatch.
    pub fn mailings(&self) -> impl Iterator<Item = &String> {
        self.by_mailing.keys()
    }

    pub fn prune(&mut self, now: i64) {
        self.all.delays.prune(now);
        for q in self.by_mailing.values_mut() {
            q.delays.prune(now);
        }
        self.unmatched.prune(now);
        for b in self.unmatched_by_mailing.values_mut() {
            b.prune(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, mailing: &str, at: i64) -> DispatchReport {
        DispatchReport {
            mail_id: id.into(),
            mailing_id: mailing.into(),
            recipient_id: "r".into(),
            accepted_at: at,
        }
    }

    fn close(id: &str, mailing: &str, at: i64, sent: i64) -> ClosedDispatch {
        ClosedDispatch {
            mail_id: id.into(),
            mailing_id: mailing.into(),
            accepted_at: at,
            sent_at: sent,
        }
    }

    #[test]
    fn queue_depth_oldest_age_and_delays() {
        let now = 1_000_000_000;
        let mut d = DispatchState::default();
        d.opened(&report("a", "m1", now - 50_000));
        d.opened(&report("b", "m1", now - 20_000));
        d.opened(&report("c", "m2", now - 5_000));
        d.opened(&report("a", "m1", now - 50_000)); // repeated report
        assert_eq!(d.stats(None).depth, 3);
        assert_eq!(d.stats(None).oldest_accepted_at, Some(now - 50_000));
        assert_eq!(d.stats(Some("m2")).depth, 1);
        d.closed(&close("a", "m1", now - 50_000, now - 48_000), now);
        assert_eq!(d.stats(Some("m1")).depth, 1);
        assert_eq!(d.stats(None).oldest_accepted_at, Some(now - 20_000));
        // Delays: the closed one (2 s) and the open ones at their age.
        let p = d.delay(Some("m1"), Window::M5, now).unwrap();
        assert_eq!(p.count, 2);
        assert!(p.max >= 19_900, "{p:?}");
    }

    #[test]
    fn a_stall_raises_the_delay_percentiles() {
        let now = 1_000_000_000;
        let mut d = DispatchState::default();
        for i in 0..100 {
            let at = now - 200_000 + i * 1000;
            d.opened(&report(&format!("ok{i}"), "m", at));
            d.closed(&close(&format!("ok{i}"), "m", at, at + 1500), now);
        }
        let before = d.delay(None, Window::M5, now).unwrap();
        assert!(before.p95 < 2000, "{before:?}");
        for i in 0..20 {
            d.opened(&report(&format!("stuck{i}"), "m", now - 90_000 + i * 1000));
        }
        let during = d.delay(None, Window::M5, now).unwrap();
        assert!(during.p95 > 60_000, "{during:?}");
    }

    #[test]
    fn overdue_dispatches_are_judged_by_the_usual_delay() {
        let now = 1_000_000_000;
        let mut d = DispatchState::default();
        // Usual delays of 1.5 s: overdue past the 30 s floor.
        for i in 0..100 {
            let at = now - 600_000 + i * 1000;
            d.opened(&report(&format!("ok{i}"), "m", at));
            d.closed(&close(&format!("ok{i}"), "m", at, at + 1500), now);
        }
        for (i, age) in [45_000, 35_000, 25_000, 5_000].into_iter().enumerate() {
            d.opened(&report(&format!("open{i}"), "m", now - age));
        }
        assert_eq!(d.overdue(None, now), 2);
        assert_eq!(d.overdue(Some("m"), now), 2);
        assert_eq!(d.overdue(Some("other"), now), 0);
        // A mailing whose mails usually take 20 s is judged by 100 s.
        for i in 0..100 {
            let at = now - 1_200_000 + i * 1000;
            d.opened(&report(&format!("slow{i}"), "s", at));
            d.closed(&close(&format!("slow{i}"), "s", at, at + 20_000), now);
        }
        d.opened(&report("s1", "s", now - 90_000));
        d.opened(&report("s2", "s", now - 110_000));
        assert_eq!(d.overdue(Some("s"), now), 1);
    }

    #[test]
    fn unmatched_sent_events_are_counted_per_window() {
        let now = 1_000_000_000;
        let mut d = DispatchState::default();
        d.unmatched("m", now - 10_000, now);
        d.unmatched("m", now - 400_000, now);
        assert_eq!(d.unmatched_in(None, Window::M5, now), 1);
        assert_eq!(d.unmatched_in(Some("m"), Window::M15, now), 2);
    }
}
