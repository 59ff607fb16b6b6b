//! The live aggregates and the views built from them. Plain data with time
//! passed in: the engine task owns one [`LiveState`] and calls these.

use super::durations::Durations;
use super::scope::{Scope, SERIES_STEP_MS};
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

    /// Counts one committed event (and what it did to the dispatch queue).
    pub fn apply(&mut self, c: &Committed, now: i64) {
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
        self.observe(
            &Observed {
                event_type: e.event_type,
                first: c.first,
                bounce: e.bounce_category,
                mailing: e.mailing_id.as_deref(),
                event_time: e.event_time,
                received_at: e.received_at,
                payload_time: e.time_source == crate::ingest::parse::TimeSource::Payload,
                domain: e.domain.as_deref(),
                reason: e.bounce_reason.as_deref(),
            },
            now,
            false,
        );
    }

    /// Counts one event. Buckets go by event time (clamped to now: an event
    /// from a clock slightly ahead counts as now); webhook lag goes by
    /// arrival time, so a late feed shows up in the recent windows instead
    /// of hiding in old buckets. With `recent_only` (the rebuild, where
    /// totals, minutes and bounce breakdowns come from rollups) only the
    /// second-level buckets, lag and arrivals are touched.
    pub fn observe(&mut self, o: &Observed<'_>, now: i64, recent_only: bool) {
        let mut one = Counters::default();
        one.count(o.event_type, o.first, o.bounce);
        let t = o.event_time.min(now);
        let class = o
            .mailing
            .map_or(MailingClass::Campaign, |m| self.class_of(m));
        let lag = o.payload_time.then(|| o.received_at - o.event_time);
        let count = |scope: &mut Scope| {
            if recent_only {
                scope.count_recent(t, now, &one)
            } else {
                scope.count(t, now, &one)
            }
        };
        count(&mut self.overall);
        if let Some(lag) = lag {
            self.overall_lag.record(o.received_at, lag, now);
        }
        let (scope, lags) = self.class_scope(class);
        count(scope);
        if let Some(lag) = lag {
            lags.record(o.received_at, lag, now);
        }
        if let Some(id) = o.mailing {
            let m = match self.mailings.get_mut(id) {
                Some(m) => m,
                None if recent_only => return self.arrived(o.received_at, now),
                None => self.mailings.entry(id.to_string()).or_default(),
            };
            count(&mut m.scope);
            if let (Some(kind), false) = (o.bounce, recent_only) {
                m.bounces
                    .add(kind, o.domain.unwrap_or(""), o.reason.unwrap_or(""), 1);
            }
        }
        self.arrived(o.received_at, now);
    }

    fn arrived(&mut self, received_at: i64, now: i64) {
        let one = Counters {
            sent: 1,
            ..Counters::default()
        };
        self.arrivals.add(received_at, now, &one);
        self.last_received_at = Some(
            self.last_received_at
                .map_or(received_at, |l| l.max(received_at)),
        );
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
