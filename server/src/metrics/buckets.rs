//! Sparse event counters per time bucket (a second, ten seconds, a
//! minute), kept for a bounded span. Pure data structure: time is always
//! passed in.

use mailpulse_app::protocol::Counters;
use std::collections::BTreeMap;

/// Counters per bucket of `step_ms`, for buckets starting within `span_ms`
/// of now. Only buckets that saw events exist, so an idle mailing costs
/// nothing.
#[derive(Clone, Debug)]
pub struct Buckets {
    step_ms: i64,
    span_ms: i64,
    map: BTreeMap<i64, Counters>,
}

impl Buckets {
    pub fn new(step_ms: i64, span_ms: i64) -> Buckets {
        Buckets {
            step_ms,
            span_ms,
            map: BTreeMap::new(),
        }
    }

    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// Start of the bucket holding time `t`.
    pub fn bucket_of(&self, t: i64) -> i64 {
        t.div_euclid(self.step_ms) * self.step_ms
    }

    /// The counters of `t`'s bucket, or `None` if it is older than the span
    /// at `now` (late events that old only count in totals and rollups).
    pub fn at(&mut self, t: i64, now: i64) -> Option<&mut Counters> {
        let b = self.bucket_of(t);
        if b <= now - self.span_ms {
            return None;
        }
        Some(newest_or_insert(&mut self.map, b, Counters::default))
    }

    /// Adds `c` to `t`'s bucket (if within the span).
    pub fn add(&mut self, t: i64, now: i64, c: &Counters) {
        if let Some(b) = self.at(t, now) {
            b.add(c);
        }
    }

    /// Sum of the buckets starting in `(to - len_ms, to]`, with `to`
    /// rounded down to its bucket: the last `len_ms / step` buckets up to
    /// and including the current one.
    pub fn sum_last(&self, len_ms: i64, now: i64) -> Counters {
        let last = self.bucket_of(now);
        let mut total = Counters::default();
        for c in self.map.range(last - len_ms + 1..=last).map(|(_, c)| c) {
            total.add(c);
        }
        total
    }

    /// Buckets in `[from, to]`, oldest first.
    pub fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, &Counters)> {
        self.map.range(from..=to).map(|(t, c)| (*t, c))
    }

    pub fn get(&self, bucket: i64) -> Option<&Counters> {
        self.map.get(&bucket)
    }

    /// Drops buckets that left the span.
    pub fn prune(&mut self, now: i64) {
        let oldest = self.bucket_of(now - self.span_ms) + self.step_ms;
        self.map = self.map.split_off(&oldest);
    }

    /// Merges `other` (same step) in, e.g. when a mailing changes class.
    pub fn merge(&mut self, other: &Buckets, now: i64) {
        for (t, c) in &other.map {
            self.add(*t, now, c);
        }
    }

    /// Subtracts `other` (same step), saturating at zero.
    pub fn subtract(&mut self, other: &Buckets) {
        for (t, c) in &other.map {
            if let Some(mine) = self.map.get_mut(t) {
                let mut a = mine.to_array();
                for (x, y) in a.iter_mut().zip(c.to_array()) {
                    *x = x.saturating_sub(y);
                }
                *mine = Counters::from_array(a);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// `map[key]`, inserted with `make` if missing. Live events and samples
/// mostly fall in the newest bucket, so a key equal to the last one is
/// reached down the tree's right edge, without a search (the live engine
/// adds every event to nine buckets and four lag slots).
pub(super) fn newest_or_insert<V>(
    map: &mut BTreeMap<i64, V>,
    key: i64,
    make: impl FnOnce() -> V,
) -> &mut V {
    // Two branches rather than an early return from the first: the borrow
    // checker does not accept using the map again after a returned borrow.
    if map.last_key_value().is_some_and(|(last, _)| *last == key) {
        map.last_entry().expect("the map has a last key").into_mut()
    } else {
        map.entry(key).or_insert_with(make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64) -> Counters {
        Counters {
            sent: n,
            ..Counters::default()
        }
    }

    #[test]
    fn windows_sum_the_last_buckets_up_to_now() {
        let mut b = Buckets::new(1000, 3_600_000);
        let now = 10_000_500; // inside the bucket starting at 10_000_000
        b.add(now, now, &sent(1)); // current second
        b.add(now - 59_000, now, &sent(2)); // 59 s ago: inside 1 min
        b.add(now - 60_000, now, &sent(4)); // 60 s ago: just outside
        b.add(now - 299_000, now, &sent(8)); // inside 5 min
        assert_eq!(b.sum_last(60_000, now).sent, 3);
        assert_eq!(b.sum_last(300_000, now).sent, 15);
        // One second later the 59 s-old bucket is 60 s old.
        assert_eq!(b.sum_last(60_000, now + 1000).sent, 1);
    }

    #[test]
    fn late_events_update_their_own_bucket_or_are_left_to_totals() {
        let mut b = Buckets::new(1000, 3_600_000);
        let now = 50_000_000;
        b.add(now - 1_800_000, now, &sent(1)); // 30 min late: its own bucket
        assert_eq!(b.get(b.bucket_of(now - 1_800_000)).unwrap().sent, 1);
        assert!(b.at(now - 3_600_000, now).is_none()); // older than the span
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn prune_keeps_exactly_the_span() {
        let mut b = Buckets::new(60_000, 86_400_000);
        let now = 200_000_000 * 60_000;
        for m in 0..2000 {
            b.add(now - m * 60_000, now, &sent(1)); // older than a day: ignored
        }
        assert_eq!(b.len(), 1440);
        assert_eq!(b.sum_last(86_400_000, now).sent, 1440);
        let later = now + 100 * 60_000;
        b.prune(later);
        assert_eq!(b.len(), 1340);
        assert_eq!(b.sum_last(86_400_000, later).sent, 1340);
    }

    #[test]
    fn the_newest_key_and_any_other_reach_their_own_value() {
        let mut map = BTreeMap::from([(10, 1), (20, 2)]);
        *newest_or_insert(&mut map, 20, || 0) += 5; // the newest
        *newest_or_insert(&mut map, 10, || 0) += 5; // an older one
        *newest_or_insert(&mut map, 15, || 100) += 1; // a new one between
        *newest_or_insert(&mut map, 30, || 200) += 1; // a new newest
        assert_eq!(
            map,
            BTreeMap::from([(10, 6), (15, 101), (20, 7), (30, 201)])
        );
    }

    #[test]
    fn merge_and_subtract() {
        let now = 1_000_000;
        let mut a = Buckets::new(1000, 3_600_000);
        let mut m = Buckets::new(1000, 3_600_000);
        a.add(now, now, &sent(5));
        m.add(now, now, &sent(3));
        m.add(now - 5000, now, &sent(1));
        a.merge(&m, now);
        assert_eq!(a.sum_last(60_000, now).sent, 9);
        a.subtract(&m);
        assert_eq!(a.sum_last(60_000, now).sent, 5);
    }
}
