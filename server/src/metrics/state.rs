//! The live aggregates and the views built from them. Plain data with time
//! passed in: the engine task owns one [`LiveState`] and calls these.

use super::durations::Durations;
use super::scope::{Scope, Second, SERIES_STEP_MS};
use crate::store::dispatch::SentMatch;
use crate::store::Committed;
use mailpulse_app::protocol::{
    sort_rows, BounceBreakdown, BounceKind, Counters, DomainBounces, EventType, FeedStatus, Health,
    MailingClass, MailingDispatch, MailingRow, MailingState, MailingsState, OverviewState,
    ScopeStats, Series, SeriesPoint, Summary, TransactionalHealth, TxMailing, WallState, Window,
    WindowStats,
};
use std::collections::HashMap;

const HOUR_MS: i64 = 3_600_000;
/// Rows on the overview: the most recently active mailings.
const OVERVIEW_ROWS: usize = 50;
/// Domains listed in a bounce breakdown.
const TOP_DOMAINS: usize = 25;
/// A mailing "is sending" if it sent within this long.
const SENDING_MS: i64 = 120_000;
/// Bins of the dispatch-delay histogram (upper bounds, ms).
const DELAY_BINS_MS: [u64; 8] = [
    1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
];

/// Name and class of a mailing, from configuration or the API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MailingSettings {
    pub class: Option<MailingClass>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Bounces {
    pub by_kind: [u64; 3],
    pub reasons: HashMap<String, u64>,
    pub domains: HashMap<String, [u64; 3]>,
}

impl Bounces {
    pub fn add(&mut self, kind: BounceKind, domain: &str, reason: &str, n: u64) {
        let k = kind_index(kind);
        self.by_kind[k] += n;
        if !reason.is_empty() {
            *self.reasons.entry(reason.to_string()).or_default() += n;
        }
        if !domain.is_empty() {
            self.domains.entry(domain.to_string()).or_default()[k] += n;
        }
    }

    fn view(&self) -> BounceBreakdown {
        let mut by_reason: Vec<(String, u64)> =
            self.reasons.iter().map(|(r, n)| (r.clone(), *n)).collect();
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut by_domain: Vec<DomainBounces> = self
            .domains
            .iter()
            .map(|(d, k)| DomainBounces {
                domain: d.clone(),
                hard: k[0],
                soft: k[1],
                unknown: k[2],
            })
            .collect();
        by_domain.sort_by(|a, b| {
            (b.hard + b.soft + b.unknown)
                .cmp(&(a.hard + a.soft + a.unknown))
                .then_with(|| a.domain.cmp(&b.domain))
        });
        by_domain.truncate(TOP_DOMAINS);
        BounceBreakdown {
            hard: self.by_kind[0],
            soft: self.by_kind[1],
            unknown: self.by_kind[2],
            by_reason,
            by_domain,
        }
    }
}

fn kind_index(k: BounceKind) -> usize {
    match k {
        BounceKind::Hard => 0,
        BounceKind::Soft => 1,
        BounceKind::Unknown => 2,
    }
}

#[derive(Clone, Debug, Default)]
pub struct Mailing {
    pub scope: Scope,
    pub bounces: Bounces,
}

/// One event as the aggregates see it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub event_type: EventType,
    /// First open/click of its recipient in its mailing.
    pub first: bool,
    pub bounce: Option<BounceKind>,
    pub mailing: Option<&'a str>,
    pub event_time: i64,
    pub received_at: i64,
    /// The event time came from the payload (so its lag means something).
    pub payload_time: bool,
    pub domain: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// The events of one mailing within one second of event time, gathered
/// while a commit's events are applied and then counted into each of their
/// scopes at once: a group commit hands the engine dozens of events,
/// mostly of one mailing and second, and counting each of them into its
/// three scopes' nine buckets was ~2.5k instructions per single-event
/// request (callgrind; docs/store.md). Arrivals are gathered the same way,
/// by the second they arrived in.
struct Tally<'a> {
    mailing: Option<&'a str>,
    second: i64,
    class: MailingClass,
    /// Whether the mailing's own scope counts them.
    in_mailing: bool,
    events: usize,
    counts: Counters,
    earliest: i64,
    latest: i64,
    /// Times of the sends, in the order they came.
    sends: Vec<i64>,
    /// (second of arrival, the latest arrival in it, events).
    arrivals: Option<(i64, i64, u64)>,
}

impl<'a> Tally<'a> {
    /// An empty tally that reuses `sends`' memory.
    fn new(mut sends: Vec<i64>) -> Tally<'a> {
        sends.clear();
        Tally {
            mailing: None,
            second: 0,
            class: MailingClass::Campaign,
            in_mailing: false,
            events: 0,
            counts: Counters::default(),
            earliest: 0,
            latest: 0,
            sends,
            arrivals: None,
        }
    }

    fn holds(&self, mailing: Option<&str>, second: i64) -> bool {
        self.events > 0 && self.mailing == mailing && self.second == second
    }

    fn start(
        &mut self,
        mailing: Option<&'a str>,
        second: i64,
        class: MailingClass,
        in_mailing: bool,
        t: i64,
    ) {
        self.mailing = mailing;
        self.second = second;
        self.class = class;
        self.in_mailing = in_mailing;
        self.earliest = t;
        self.latest = t;
    }

    fn clear(&mut self) {
        self.events = 0;
        self.counts = Counters::default();
        self.sends.clear();
    }
}

/// Everything the engine knows.
#[derive(Debug)]
pub struct LiveState {
    pub overall: Scope,
    pub overall_lag: Durations,
    pub transactional: Scope,
    pub transactional_lag: Durations,
    pub campaign: Scope,
    pub campaign_lag: Durations,
    pub mailings: HashMap<String, Mailing>,
    /// Settings from the API (override `configured`).
    pub settings: HashMap<String, MailingSettings>,
    /// Settings from the configuration file.
    pub configured: HashMap<String, MailingSettings>,
    /// Webhook events received per second (by arrival), for the feed rate.
    pub arrivals: super::buckets::Buckets,
    pub last_received_at: Option<i64>,
    /// The transactional dispatch queue.
    pub dispatch: super::dispatch::DispatchState,
    /// Memory kept for [`Tally::sends`] from one commit to the next.
    send_times: Vec<i64>,
}

impl LiveState {
    pub fn new(configured: HashMap<String, MailingSettings>) -> LiveState {
        LiveState {
            overall: Scope::default(),
            overall_lag: Durations::default(),
            transactional: Scope::default(),
            transactional_lag: Durations::default(),
            campaign: Scope::default(),
            campaign_lag: Durations::default(),
            mailings: HashMap::new(),
            settings: HashMap::new(),
            configured,
            arrivals: super::buckets::Buckets::new(1000, 120_000),
            last_received_at: None,
            dispatch: super::dispatch::DispatchState::default(),
            send_times: Vec::new(),
        }
    }

    /// The class of a mailing: the API's setting, else the configuration's,
    /// else campaign.
    pub fn class_of(&self, id: &str) -> MailingClass {
        self.settings
            .get(id)
            .and_then(|s| s.class)
            .or_else(|| self.configured.get(id).and_then(|s| s.class))
            .unwrap_or_default()
    }

    pub fn name_of(&self, id: &str) -> Option<String> {
        self.settings
            .get(id)
            .and_then(|s| s.name.clone())
            .or_else(|| self.configured.get(id).and_then(|s| s.name.clone()))
    }

    fn class_scope(&mut self, class: MailingClass) -> (&mut Scope, &mut Durations) {
        match class {
            MailingClass::Transactional => (&mut self.transactional, &mut self.transactional_lag),
            MailingClass::Campaign => (&mut self.campaign, &mut self.campaign_lag),
        }
    }

    /// Counts a commit's events (and what they did to the dispatch queue),
    /// in commit order.
    pub fn apply_all(&mut self, batch: &[Committed], now: i64) {
        let mut tally = Tally::new(std::mem::take(&mut self.send_times));
        for c in batch {
            let e = &c.event;
            match &c.dispatch {
                SentMatch::Closed(closed) => self.dispatch.closed(closed, now),
                SentMatch::Unmatched => {
                    if let Some(m) = e.mailing_id.as_deref() {
                        self.dispatch.unmatched(m, e.event_time.min(now), now);
                    }
                }
                SentMatch::NotTracked => {}
            }
            let o = Observed {
                event_type: e.event_type,
                first: c.first,
                bounce: e.bounce_category,
                mailing: e.mailing_id.as_deref(),
                event_time: e.event_time,
                received_at: e.received_at,
                payload_time: e.time_source == crate::ingest::parse::TimeSource::Payload,
                domain: e.domain.as_deref(),
                reason: e.bounce_reason.as_deref(),
            };
            self.tally(&mut tally, &o, now, false);
        }
        self.flush(&mut tally, now, false);
        self.send_times = tally.sends;
    }

    /// Counts one event. Buckets go by event time (clamped to now: an event
    /// from a clock slightly ahead counts as now); webhook lag goes by
    /// arrival time, so a late feed shows up in the recent windows instead
    /// of hiding in old buckets. With `recent_only` (the rebuild, where
    /// totals, minutes and bounce breakdowns come from rollups) only the
    /// second-level buckets, lag and arrivals are touched.
    pub fn observe(&mut self, o: &Observed<'_>, now: i64, recent_only: bool) {
        let mut tally = Tally::new(std::mem::take(&mut self.send_times));
        self.tally(&mut tally, o, now, recent_only);
        self.flush(&mut tally, now, recent_only);
        self.send_times = tally.sends;
    }

    /// Takes one event into `tally`, first counting what it holds if the
    /// event is of another mailing or second. What is not counted by the
    /// second (lag, bounce breakdowns, arrivals) is done at once.
    fn tally<'a>(&mut self, tally: &mut Tally<'a>, o: &Observed<'a>, now: i64, recent_only: bool) {
        let t = o.event_time.min(now);
        let second = t.div_euclid(1000);
        if !tally.holds(o.mailing, second) {
            self.flush(tally, now, recent_only);
            let class = o
                .mailing
                .map_or(MailingClass::Campaign, |m| self.class_of(m));
            let in_mailing = match o.mailing {
                // The rebuild counts recent events only into mailings the
                // rollups made known.
                Some(id) if recent_only => self.mailings.contains_key(id),
                Some(id) => {
                    if !self.mailings.contains_key(id) {
                        self.mailings.insert(id.to_string(), Mailing::default());
                    }
                    true
                }
                None => false,
            };
            tally.start(o.mailing, second, class, in_mailing, t);
        }
        tally.events += 1;
        tally.counts.count(o.event_type, o.first, o.bounce);
        tally.earliest = tally.earliest.min(t);
        tally.latest = tally.latest.max(t);
        if o.event_type == EventType::Sent {
            tally.sends.push(t);
        }
        if o.payload_time {
            let lag = o.received_at - o.event_time;
            self.overall_lag.record(o.received_at, lag, now);
            self.class_scope(tally.class)
                .1
                .record(o.received_at, lag, now);
        }
        if let (Some(kind), Some(id), false, true) =
            (o.bounce, o.mailing, recent_only, tally.in_mailing)
        {
            if let Some(m) = self.mailings.get_mut(id) {
                m.bounces
                    .add(kind, o.domain.unwrap_or(""), o.reason.unwrap_or(""), 1);
            }
        }
        let arrived = o.received_at.div_euclid(1000);
        if tally.arrivals.is_some_and(|(s, _, _)| s != arrived) {
            self.flush_arrivals(tally, now);
        }
        let (_, latest, n) = tally.arrivals.get_or_insert((arrived, o.received_at, 0));
        *latest = (*latest).max(o.received_at);
        *n += 1;
    }

    /// Counts what `tally` holds into every scope it belongs to, once.
    fn flush(&mut self, tally: &mut Tally<'_>, now: i64, recent_only: bool) {
        self.flush_arrivals(tally, now);
        if tally.events == 0 {
            return;
        }
        let second = Second {
            counts: &tally.counts,
            earliest: tally.earliest,
            latest: tally.latest,
            sends: &tally.sends,
        };
        self.overall.count_second(&second, now, recent_only);
        self.class_scope(tally.class)
            .0
            .count_second(&second, now, recent_only);
        if let (Some(id), true) = (tally.mailing, tally.in_mailing) {
            if let Some(m) = self.mailings.get_mut(id) {
                m.scope.count_second(&second, now, recent_only);
            }
        }
        tally.clear();
    }

    fn flush_arrivals(&mut self, tally: &mut Tally<'_>, now: i64) {
        let Some((_, latest, n)) = tally.arrivals.take() else {
            return;
        };
        let arrived = Counters {
            sent: n,
            ..Counters::default()
        };
        self.arrivals.add(latest, now, &arrived);
        self.last_received_at = Some(self.last_received_at.map_or(latest, |l| l.max(latest)));
    }

    /// Changes a mailing's settings; a class change moves its counts.
    pub fn set_mailing(&mut self, id: &str, settings: MailingSettings, now: i64) {
        let before = self.class_of(id);
        self.settings.insert(id.to_string(), settings);
        let after = self.class_of(id);
        if before != after {
            if let Some(m) = self.mailings.get(id).map(|m| m.scope.clone()) {
                self.class_scope(before).0.subtract(&m);
                self.class_scope(after).0.merge(&m, now);
            }
        }
    }

    pub fn prune(&mut self, now: i64) {
        for s in [
            &mut self.overall,
            &mut self.transactional,
            &mut self.campaign,
        ] {
            s.prune(now);
        }
        for d in [
            &mut self.overall_lag,
            &mut self.transactional_lag,
            &mut self.campaign_lag,
        ] {
            d.prune(now);
        }
        for m in self.mailings.values_mut() {
            m.scope.prune(now);
        }
        self.arrivals.prune(now);
        self.dispatch.prune(now);
    }

    fn scope_stats(scope: &Scope, lag: Option<&mut Durations>, now: i64) -> ScopeStats {
        let lags = lag.map(|l| l.windows(now));
        ScopeStats {
            windows: Window::ALL
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    (
                        *w,
                        WindowStats {
                            counters: scope.window(*w, now),
                            lag: lags.and_then(|l| l[i]),
                        },
                    )
                })
                .collect(),
            totals: scope.totals,
        }
    }

    pub fn summary(&mut self, now: i64) -> Summary {
        Summary {
            overall: Self::scope_stats(&self.overall, Some(&mut self.overall_lag), now),
            transactional: Self::scope_stats(
                &self.transactional,
                Some(&mut self.transactional_lag),
                now,
            ),
            campaign: Self::scope_stats(&self.campaign, Some(&mut self.campaign_lag), now),
        }
    }

    pub fn feed(&self, now: i64) -> FeedStatus {
        FeedStatus {
            last_received_at: self.last_received_at,
            events_per_sec: self.arrivals.sum_last(60_000, now).sent as f64 / 60.0,
        }
    }

    pub fn row(&self, id: &str, m: &Mailing, now: i64) -> MailingRow {
        let s = &m.scope;
        MailingRow {
            id: id.to_string(),
            name: self.name_of(id),
            class: self.class_of(id),
            first_event_at: s.first_event_at.unwrap_or(0),
            last_event_at: s.last_event_at.unwrap_or(0),
            last_sent_at: s.last_sent_at,
            totals: s.totals,
            sent_per_min: s.window(Window::M5, now).sent as f64 / 5.0,
            sending: s.last_sent_at.is_some_and(|t| t > now - SENDING_MS),
            sparkline: s.sent_per_minute(30, now),
        }
    }

    fn rows_where(&self, now: i64, keep: impl Fn(&Mailing) -> bool) -> Vec<MailingRow> {
        let mut rows: Vec<MailingRow> = self
            .mailings
            .iter()
            .filter(|(_, m)| keep(m))
            .map(|(id, m)| self.row(id, m, now))
            .collect();
        sort_rows(&mut rows);
        rows
    }

    /// The last hour per 10 s: counters by event time, lag (and, for the
    /// overview, dispatch delay) by arrival time. Buckets without counts
    /// but with a delay (a stall's backlog going out) are points too.
    fn series(
        scope: &Scope,
        lag: Option<&mut Durations>,
        mut dispatch: Option<&mut super::dispatch::DispatchState>,
        now: i64,
    ) -> Series {
        let from = scope.tens.bucket_of(now - HOUR_MS) + SERIES_STEP_MS;
        let mut lag = lag;
        Series {
            step_ms: SERIES_STEP_MS,
            span_ms: HOUR_MS,
            points: scope
                .tens
                .range(from, now)
                .map(|(t, c)| SeriesPoint {
                    t,
                    counters: *c,
                    lag: lag.as_mut().and_then(|l| l.point(t)),
                    delay: dispatch.as_mut().and_then(|d| d.delay_point(t)),
                })
                .collect(),
        }
    }

    /// Transactional mailings: of that class, or with dispatch reports;
    /// active in the last day or with dispatches waiting.
    pub fn transactional_ids(&self, now: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .mailings
            .iter()
            .filter(|(id, m)| {
                self.class_of(id) == MailingClass::Transactional
                    && m.scope.last_event_at.is_some_and(|t| t > now - 86_400_000)
            })
            .map(|(id, _)| id.clone())
            .chain(
                self.dispatch
                    .mailings()
                    .filter(|id| self.dispatch.stats(Some(id)).depth > 0)
                    .cloned(),
            )
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn tx_mailing(&self, id: &str, now: i64) -> TxMailing {
        let q = self.dispatch.stats(Some(id));
        let scope = self.mailings.get(id).map(|m| &m.scope);
        TxMailing {
            id: id.to_string(),
            name: self.name_of(id),
            queue_depth: q.depth,
            oldest_queued_ms: q.oldest_accepted_at.map(|t| (now - t).max(0)),
            delay: self.dispatch.delay(Some(id), Window::M5, now),
            last_sent_at: scope.and_then(|s| s.last_sent_at),
            sent_per_min: scope.map_or(0.0, |s| s.window(Window::M5, now).sent as f64 / 5.0),
            status: Health::Ok,
        }
    }

    /// Transactional health; `status` fields are the alert engine's to set.
    pub fn transactional_health(&self, now: i64) -> TransactionalHealth {
        let q = self.dispatch.stats(None);
        TransactionalHealth {
            status: Health::Ok,
            queue_depth: q.depth,
            oldest_queued_ms: q.oldest_accepted_at.map(|t| (now - t).max(0)),
            delay: self.dispatch.delay(None, Window::M5, now),
            unmatched_sent_5m: self.dispatch.unmatched_in(None, Window::M5, now),
            sent_per_min: self.transactional.window(Window::M5, now).sent as f64 / 5.0,
            mailings: self
                .transactional_ids(now)
                .iter()
                .map(|id| self.tx_mailing(id, now))
                .collect(),
        }
    }

    pub fn overview(&mut self, now: i64) -> OverviewState {
        let mut mailings = self.rows_where(now, |m| {
            m.scope.last_event_at.is_some_and(|t| t > now - HOUR_MS)
        });
        mailings.truncate(OVERVIEW_ROWS);
        OverviewState {
            now,
            summary: self.summary(now),
            mailings,
            series: Self::series(
                &self.overall,
                Some(&mut self.overall_lag),
                Some(&mut self.dispatch),
                now,
            ),
            feed: self.feed(now),
            transactional: self.transactional_health(now),
            alerts: vec![],
        }
    }

    pub fn mailings_view(&self, now: i64) -> MailingsState {
        MailingsState {
            now,
            mailings: self.rows_where(now, |_| true),
            alerts: vec![],
        }
    }

    pub fn wall(&mut self, now: i64) -> WallState {
        let mut sending = self.rows_where(now, |m| {
            m.scope.last_sent_at.is_some_and(|t| t > now - SENDING_MS)
        });
        sending.truncate(12);
        WallState {
            now,
            summary: self.summary(now),
            sending,
            feed: self.feed(now),
            transactional: self.transactional_health(now),
            alerts: vec![],
        }
    }

    /// One mailing's view, or `None` if no event of it is known.
    pub fn mailing(&self, id: &str, now: i64) -> Option<MailingState> {
        let m = self.mailings.get(id)?;
        let dispatch = self
            .dispatch
            .delay_bins(id, now, &DELAY_BINS_MS)
            .map(|bins| MailingDispatch {
                health: self.tx_mailing(id, now),
                delay: Window::ALL
                    .iter()
                    .filter_map(|w| Some((*w, self.dispatch.delay(Some(id), *w, now)?)))
                    .collect(),
                bin_bounds_ms: DELAY_BINS_MS.to_vec(),
                bins,
            });
        Some(MailingState {
            now,
            row: self.row(id, m, now),
            windows: Self::scope_stats(&m.scope, None, now).windows,
            series: Self::series(&m.scope, None, None, now),
            bounces: m.bounces.view(),
            dispatch,
            alerts: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::{Event, TimeSource};
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    /// One event from generated parts: mailing, type, event time and
    /// arrival (ms before `NOW`), whether the payload had the time, first
    /// open/click, bounce category, domain.
    type Parts = (usize, usize, i64, i64, bool, bool, usize, usize);

    fn committed(id: i64, p: Parts) -> Committed {
        let (mailing, kind, ago, arrived_ago, payload, first, bounce, domain) = p;
        let event_type = [
            EventType::Sent,
            EventType::Open,
            EventType::Click,
            EventType::Bounce,
            EventType::Unsubscribe,
            EventType::Other,
        ][kind];
        let bounce_category = (event_type == EventType::Bounce)
            .then(|| [BounceKind::Hard, BounceKind::Soft, BounceKind::Unknown][bounce]);
        Committed {
            id,
            event: Event {
                event_type,
                type_raw: event_type.as_str().into(),
                client_id: None,
                mailing_id: [Some("m1"), Some("m2"), Some("tx"), None][mailing].map(Into::into),
                recipient_list_id: None,
                recipient_id: Some(format!("r{id}").into()),
                event_time: NOW - ago,
                time_source: if payload {
                    TimeSource::Payload
                } else {
                    TimeSource::Received
                },
                received_at: NOW - arrived_ago,
                media_type: None,
                address: None,
                domain: [Some("a.example"), Some("b.example"), None][domain].map(Into::into),
                link: None,
                bounce_category,
                bounce_reason: bounce_category.map(|_| "mailbox full".into()),
                mail_id: None,
                raw: 0..0,
            },
            first,
            dispatch: SentMatch::NotTracked,
        }
    }

    fn state() -> LiveState {
        let tx = MailingSettings {
            class: Some(MailingClass::Transactional),
            name: None,
        };
        LiveState::new(HashMap::from([("tx".to_string(), tx)]))
    }

    /// Everything the counting touches, written out in a fixed order.
    fn snapshot(s: &LiveState) -> String {
        let mut out = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            s.overall,
            s.transactional,
            s.campaign,
            s.overall_lag,
            s.transactional_lag,
            s.campaign_lag,
            s.arrivals,
            s.last_received_at,
            s.mailings.len()
        );
        let mut ids: Vec<&String> = s.mailings.keys().collect();
        ids.sort();
        for id in ids {
            let m = &s.mailings[id];
            let mut reasons: Vec<_> = m.bounces.reasons.iter().collect();
            reasons.sort();
            let mut domains: Vec<_> = m.bounces.domains.iter().collect();
            domains.sort();
            out += &format!(
                "{id}: {:?} {:?} {reasons:?} {domains:?}\n",
                m.scope, m.bounces.by_kind
            );
        }
        out
    }

    /// Event times: mostly within a few seconds of now (so a commit holds
    /// runs of one mailing and second), some ahead of now (clamped), some
    /// minutes late, some older than the second buckets or the minute
    /// buckets keep.
    fn ago() -> impl Strategy<Value = i64> {
        prop_oneof![
            6 => 0i64..3_000,
            1 => -2_000i64..0,
            1 => 60_000i64..600_000,
            1 => 3_500_000i64..3_700_000,
            1 => 86_000_000i64..87_000_000,
        ]
    }

    proptest! {
        /// A commit's events counted together leave exactly the state that
        /// counting them one at a time leaves.
        #[test]
        fn a_commit_counts_as_its_events_one_by_one(
            parts in proptest::collection::vec(
                (0usize..4, 0usize..6, ago(), 0i64..2_500, any::<bool>(), any::<bool>(), 0usize..3, 0usize..3),
                1..120,
            ),
            cut in 0usize..120,
        ) {
            let batch: Vec<Committed> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| committed(i as i64, *p))
                .collect();
            let mut together = state();
            // Two commits, split anywhere, then the same events one by one.
            let cut = cut.min(batch.len());
            together.apply_all(&batch[..cut], NOW);
            together.apply_all(&batch[cut..], NOW);
            let mut alone = state();
            for c in &batch {
                alone.apply_all(std::slice::from_ref(c), NOW);
            }
            prop_assert_eq!(snapshot(&together), snapshot(&alone));
            let sent = parts.iter().filter(|p| p.1 == 0).count() as u64;
            prop_assert_eq!(together.overall.totals.sent, sent);
        }
    }

    /// One event alone is counted into its three scopes and its arrival.
    #[test]
    fn one_event_is_counted_everywhere_it_belongs() {
        let mut s = state();
        s.apply_all(&[committed(1, (2, 0, 500, 100, true, false, 0, 0))], NOW);
        for scope in [&s.overall, &s.transactional, &s.mailings["tx"].scope] {
            assert_eq!(scope.totals.sent, 1);
            assert_eq!(scope.window(Window::M1, NOW).sent, 1);
            assert_eq!(scope.recent_sends, [NOW - 500]);
            assert_eq!(scope.last_sent_at, Some(NOW - 500));
        }
        assert_eq!(s.campaign.totals.sent, 0);
        assert_eq!(s.arrivals.sum_last(60_000, NOW).sent, 1);
        assert_eq!(s.last_received_at, Some(NOW - 100));
        assert_eq!(
            s.transactional_lag.window(Window::M1, NOW).unwrap().count,
            1
        );
        assert!(s.campaign_lag.window(Window::M1, NOW).is_none());
    }
}
