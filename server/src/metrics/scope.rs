//! One scope's live counters (everything, a mailing class, or a mailing):
//! totals plus per-second, per-10-second and per-minute buckets by event
//! time. Pure: time is passed in.

use super::buckets::Buckets;
use mailpulse_app::protocol::{Counters, Window};

/// Per-second buckets cover the last hour (the 1m…1h windows); per-minute
/// buckets the last day (the 24h window and sparklines).
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
pub const SERIES_STEP_MS: i64 = 10_000;

#[derive(Clone, Debug)]
pub struct Scope {
    /// Everything since the oldest rollup the store keeps.
    pub totals: Counters,
    pub secs: Buckets,
    pub tens: Buckets,
    pub mins: Buckets,
    pub first_event_at: Option<i64>,
    pub last_event_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    /// Event times of the latest sends, oldest first (for silence: the
    /// recent rate and the longest recent gap).
    pub recent_sends: std::collections::VecDeque<i64>,
}

/// Events within one second of event time, counted at once
/// ([`Scope::count_second`]).
pub struct Second<'a> {
    pub counts: &'a Counters,
    /// The earliest and the latest of their times.
    pub earliest: i64,
    pub latest: i64,
    /// The times of the sends among them, in the order they came.
    pub sends: &'a [i64],
}

impl<'a> Second<'a> {
    /// `c` at time `t`; `sent` is `[t]`, its time if `c` has sends.
    fn at(t: i64, c: &'a Counters, sent: &'a [i64; 1]) -> Second<'a> {
        Second {
            counts: c,
            earliest: t,
            latest: t,
            sends: if c.sent > 0 { sent } else { &[] },
        }
    }
}

/// Sends remembered per scope for [`Scope::recent_sends`].
pub const RECENT_SENDS: usize = 64;

impl Default for Scope {
    fn default() -> Self {
        Scope {
            totals: Counters::default(),
            secs: Buckets::new(1000, HOUR_MS),
            tens: Buckets::new(SERIES_STEP_MS, HOUR_MS),
            mins: Buckets::new(60_000, DAY_MS),
            first_event_at: None,
            last_event_at: None,
            last_sent_at: None,
            recent_sends: std::collections::VecDeque::new(),
        }
    }
}

impl Scope {
    /// Counts `c` (events at time `t`) everywhere: totals and buckets.
    pub fn count(&mut self, t: i64, now: i64, c: &Counters) {
        let sent = [t];
        self.count_second(&Second::at(t, c, &sent), now, false);
    }

    /// Only the second and 10-second buckets (rebuild: totals and minutes
    /// come from rollups, recent seconds from raw events).
    pub fn count_recent(&mut self, t: i64, now: i64, c: &Counters) {
        let sent = [t];
        self.count_second(&Second::at(t, c, &sent), now, true);
    }

    /// Counts events that all lie in one second of event time, as counting
    /// each of them would: everywhere, or with `recent_only` only in the
    /// second and 10-second buckets. One second is in one bucket of every
    /// size, so each bucket is reached once for all of them.
    pub fn count_second(&mut self, s: &Second<'_>, now: i64, recent_only: bool) {
        if !recent_only {
            self.totals.add(s.counts);
            self.mins.add(s.earliest, now, s.counts);
        }
        self.secs.add(s.earliest, now, s.counts);
        self.tens.add(s.earliest, now, s.counts);
        self.seen(s.earliest, false);
        self.seen(s.latest, false);
        for t in s.sends.iter().copied() {
            self.seen(t, true);
            // Mostly appended; a late send goes where it belongs.
            let at = self.recent_sends.partition_point(|x| *x <= t);
            if at > 0 || self.recent_sends.len() < RECENT_SENDS {
                self.recent_sends.insert(at, t);
                if self.recent_sends.len() > RECENT_SENDS {
                    self.recent_sends.pop_front();
                }
            }
        }
    }

    /// Only the minute buckets.
    pub fn minutes_only(&mut self, t: i64, now: i64, c: &Counters) {
        self.mins.add(t, now, c);
        self.seen(t, c.sent > 0);
    }

    /// Remembers when this scope saw events (and sends).
    pub fn seen(&mut self, t: i64, sent: bool) {
        self.first_event_at = Some(self.first_event_at.map_or(t, |f| f.min(t)));
        self.last_event_at = Some(self.last_event_at.map_or(t, |l| l.max(t)));
        if sent {
            self.last_sent_at = Some(self.last_sent_at.map_or(t, |l| l.max(t)));
        }
    }

    pub fn window(&self, w: Window, now: i64) -> Counters {
        let len = w.secs() * 1000;
        if len <= HOUR_MS {
            self.secs.sum_last(len, now)
        } else {
            self.mins.sum_last(len, now)
        }
    }

    /// Sends per minute over the last `minutes` minutes, oldest first.
    pub fn sent_per_minute(&self, minutes: i64, now: i64) -> Vec<u32> {
        let last = self.mins.bucket_of(now);
        (0..minutes)
            .rev()
            .map(|i| {
                self.mins
                    .get(last - i * 60_000)
                    .map_or(0, |c| c.sent.min(u64::from(u32::MAX)) as u32)
            })
            .collect()
    }

    pub fn prune(&mut self, now: i64) {
        self.secs.prune(now);
        self.tens.prune(now);
        self.mins.prune(now);
    }

    /// Adds another scope's counts (a mailing joining a class).
    pub fn merge(&mut self, other: &Scope, now: i64) {
        self.totals.add(&other.totals);
        self.secs.merge(&other.secs, now);
        self.tens.merge(&other.tens, now);
        self.mins.merge(&other.mins, now);
    }

    /// Removes another scope's counts (a mailing leaving a class).
    pub fn subtract(&mut self, other: &Scope) {
        let mut a = self.totals.to_array();
        for (x, y) in a.iter_mut().zip(other.totals.to_array()) {
            *x = x.saturating_sub(y);
        }
        self.totals = Counters::from_array(a);
        self.secs.subtract(&other.secs);
        self.tens.subtract(&other.tens);
        self.mins.subtract(&other.mins);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_app::protocol::EventType;

    fn one(t: EventType) -> Counters {
        let mut c = Counters::default();
        c.count(t, false, None);
        c
    }

    #[test]
    fn every_window_from_the_same_events() {
        let now = 100 * DAY_MS + 30_000;
        let mut s = Scope::default();
        for (ago, n) in [
            (0, 1),
            (50_000, 2),
            (200_000, 4),
            (800_000, 8),
            (3_000_000, 16),
            (50_000_000, 32),
        ] {
            for _ in 0..n {
                s.count(now - ago, now, &one(EventType::Sent));
            }
        }
        let sent = |w| s.window(w, now).sent;
        assert_eq!(sent(Window::M1), 3);
        assert_eq!(sent(Window::M5), 7);
        assert_eq!(sent(Window::M15), 15);
        assert_eq!(sent(Window::H1), 31);
        assert_eq!(sent(Window::H24), 63);
        assert_eq!(s.totals.sent, 63);
        assert_eq!(s.last_sent_at, Some(now));
        assert_eq!(s.first_event_at, Some(now - 50_000_000));
    }

    #[test]
    fn sparkline_is_sends_per_minute_oldest_first() {
        let now = 10 * DAY_MS + 59_000;
        let mut s = Scope::default();
        s.count(now, now, &one(EventType::Sent));
        s.count(now - 60_000, now, &one(EventType::Sent));
        s.count(now - 60_000, now, &one(EventType::Sent));
        s.count(now - 60_000, now, &one(EventType::Open));
        assert_eq!(s.sent_per_minute(3, now), vec![0, 2, 1]);
    }

    #[test]
    fn moving_a_mailing_between_scopes() {
        let now = 10 * DAY_MS;
        let mut class = Scope::default();
        let mut mailing = Scope::default();
        mailing.count(now, now, &one(EventType::Sent));
        class.merge(&mailing, now);
        class.count(now, now, &one(EventType::Sent));
        assert_eq!(class.window(Window::M1, now).sent, 2);
        class.subtract(&mailing);
        assert_eq!(class.window(Window::M1, now).sent, 1);
        assert_eq!(class.totals.sent, 1);
    }
}
