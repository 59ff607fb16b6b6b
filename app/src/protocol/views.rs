//! What each subscribable view holds (its state) and what changes between
//! two ticks (its delta), with the one function both sides agree on:
//! applying a delta to a state. The server diffs with the same types, so a
//! client that applies every delta in order holds exactly the server's
//! state.

use super::events::Counters;
use super::tagged::tag_first_newtypes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A sliding window ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "24h")]
    H24,
}

impl Window {
    pub const ALL: [Window; 5] = [Window::M1, Window::M5, Window::M15, Window::H1, Window::H24];

    pub fn secs(self) -> i64 {
        match self {
            Window::M1 => 60,
            Window::M5 => 300,
            Window::M15 => 900,
            Window::H1 => 3600,
            Window::H24 => 86_400,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::M1 => "1m",
            Window::M5 => "5m",
            Window::M15 => "15m",
            Window::H1 => "1h",
            Window::H24 => "24h",
        }
    }

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.label() == s)
    }
}

/// `transactional` or `campaign`; unknown mailings are campaigns.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MailingClass {
    Transactional,
    #[default]
    Campaign,
}

impl MailingClass {
    pub fn as_str(self) -> &'static str {
        match self {
            MailingClass::Transactional => "transactional",
            MailingClass::Campaign => "campaign",
        }
    }

    pub fn parse(s: &str) -> Option<MailingClass> {
        match s {
            "transactional" => Some(MailingClass::Transactional),
            "campaign" => Some(MailingClass::Campaign),
            _ => None,
        }
    }
}

/// Percentiles of a duration distribution, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// One scope over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub counters: Counters,
    /// Webhook lag (received at − event time) of the window's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Percentiles>,
}

/// One scope (everything, a class, a mailing): every window and the totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeStats {
    pub windows: BTreeMap<Window, WindowStats>,
    /// Since the first event the store still has rollups for.
    pub totals: Counters,
}

impl ScopeStats {
    pub fn window(&self, w: Window) -> WindowStats {
        self.windows.get(&w).copied().unwrap_or_default()
    }
}

/// Everything, and each mailing class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub overall: ScopeStats,
    pub transactional: ScopeStats,
    pub campaign: ScopeStats,
}

/// Which part of a [`Summary`] a delta replaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall: Option<ScopeStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<ScopeStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<ScopeStats>,
}

impl SummaryDelta {
    pub fn between(old: &Summary, new: &Summary) -> Option<SummaryDelta> {
        let pick = |a: &ScopeStats, b: &ScopeStats| (a != b).then(|| b.clone());
        let d = SummaryDelta {
            overall: pick(&old.overall, &new.overall),
            transactional: pick(&old.transactional, &new.transactional),
            campaign: pick(&old.campaign, &new.campaign),
        };
        (d != SummaryDelta::default()).then_some(d)
    }

    pub fn apply(&self, s: &mut Summary) {
        if let Some(o) = &self.overall {
            s.overall = o.clone();
        }
        if let Some(t) = &self.transactional {
            s.transactional = t.clone();
        }
        if let Some(c) = &self.campaign {
            s.campaign = c.clone();
        }
    }
}

/// One mailing as listed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingRow {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub class: MailingClass,
    /// Event times (ms) of its first and latest events.
    pub first_event_at: i64,
    pub last_event_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<i64>,
    pub totals: Counters,
    /// Sends per minute over the last 5 minutes.
    pub sent_per_min: f64,
    /// A `sent` event in the last 2 minutes.
    pub sending: bool,
    /// Sends per minute over the last 30 minutes, oldest first.
    pub sparkline: Vec<u32>,
}

/// Time series at a fixed step, keyed by bucket start (ms).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub step_ms: i64,
    /// How much history the series keeps; older points are dropped.
    pub span_ms: i64,
    pub points: Vec<SeriesPoint>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Bucket start, ms since epoch.
    pub t: i64,
    pub counters: Counters,
    /// Webhook lag of the events that arrived in this bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Percentiles>,
    /// Dispatch delay of the transactional mails sent in this bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Percentiles>,
}

impl Series {
    /// Upserts changed points (sorted by time) and drops those older than
    /// `span_ms` before `now`.
    pub fn apply(&mut self, changed: &[SeriesPoint], now: i64) {
        for p in changed {
            match self.points.binary_search_by_key(&p.t, |x| x.t) {
                Ok(i) => self.points[i] = *p,
                Err(i) => self.points.insert(i, *p),
            }
        }
        let oldest = now - self.span_ms;
        let keep_from = self.points.partition_point(|p| p.t < oldest);
        self.points.drain(..keep_from);
    }

    /// Points of `new` that differ from `old`.
    pub fn changed(old: &Series, new: &Series) -> Vec<SeriesPoint> {
        new.points
            .iter()
            .filter(|p| {
                old.points
                    .binary_search_by_key(&p.t, |x| x.t)
                    .map_or(true, |i| old.points[i] != **p)
            })
            .copied()
            .collect()
    }
}

/// Rows keyed by mailing id, changed as upserts and removals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowsDelta {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert: Vec<MailingRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl RowsDelta {
    pub fn between(old: &[MailingRow], new: &[MailingRow]) -> Option<RowsDelta> {
        let old_by: BTreeMap<&str, &MailingRow> = old.iter().map(|r| (r.id.as_str(), r)).collect();
        let new_ids: std::collections::BTreeSet<&str> = new.iter().map(|r| r.id.as_str()).collect();
        let d = RowsDelta {
            upsert: new
                .iter()
                .filter(|r| old_by.get(r.id.as_str()) != Some(r))
                .cloned()
                .collect(),
            remove: old
                .iter()
                .filter(|r| !new_ids.contains(r.id.as_str()))
                .map(|r| r.id.clone())
                .collect(),
        };
        (!d.upsert.is_empty() || !d.remove.is_empty()).then_some(d)
    }

    /// Applies to rows kept sorted by most recent activity first.
    pub fn apply(&self, rows: &mut Vec<MailingRow>) {
        rows.retain(|r| !self.remove.contains(&r.id) && !self.upsert.iter().any(|u| u.id == r.id));
        rows.extend(self.upsert.iter().cloned());
        sort_rows(rows);
    }
}

/// Most recent activity first, then by id: the order every list uses.
pub fn sort_rows(rows: &mut [MailingRow]) {
    rows.sort_by(|a, b| {
        b.last_event_at
            .cmp(&a.last_event_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// How the webhook feed itself is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// When the last webhook event arrived (ms), if any since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_at: Option<i64>,
    /// Events per second over the last minute.
    pub events_per_sec: f64,
}

/// Bounces of one mailing broken down.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BounceBreakdown {
    pub hard: u64,
    pub soft: u64,
    pub unknown: u64,
    /// Reasons by count, largest first.
    pub by_reason: Vec<(String, u64)>,
    /// Receiving domains by bounce count, largest first (top 25).
    pub by_domain: Vec<DomainBounces>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainBounces {
    pub domain: String,
    pub hard: u64,
    pub soft: u64,
    pub unknown: u64,
}

/// Traffic-light health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Ok,
    Warning,
    Critical,
}

/// One transactional mailing's dispatch health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TxMailing {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Dispatches accepted by Optimizely with no `sent` event yet.
    pub queue_depth: u64,
    /// Age of the oldest of them (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_ms: Option<i64>,
    /// Dispatch delay over 5 minutes (open dispatches count at their age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Percentiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<i64>,
    /// Sends per minute over the last 5 minutes.
    pub sent_per_min: f64,
    pub status: Health,
}

/// Transactional mail as a whole: what on-call staff look at first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransactionalHealth {
    pub status: Health,
    pub queue_depth: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_ms: Option<i64>,
    /// Dispatch delay over 5 minutes, all transactional mailings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Percentiles>,
    /// `sent` events of tracked mailings that matched no dispatch (5 min).
    pub unmatched_sent_5m: u64,
    pub sent_per_min: f64,
    pub mailings: Vec<TxMailing>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Warning,
    Critical,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Pending,
    Firing,
    Resolved,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub comment: String,
    pub at: i64,
}

/// One alert incident: a rule's condition for one scope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: i64,
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    /// `overall`, `class:transactional`, `mailing:<id>`, …
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailing: Option<String>,
    /// One line: what, where, since when, value against threshold.
    pub summary: String,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// How to show `value` and `threshold`: `ms`, `ratio`, `count`, `per_sec`.
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<Ack>,
    /// Muted by a silence or inhibited by another alert: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<String>,
}

/// One stored event as the mailing page lists it (address masked).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub id: i64,
    pub event_type: String,
    pub event_time: i64,
    pub received_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The overview page (`/`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverviewState {
    /// Server time of this state (ms).
    pub now: i64,
    pub summary: Summary,
    /// Mailings with events in the last hour, most recent first (at most 50).
    pub mailings: Vec<MailingRow>,
    /// Everything, per 10 s, for the last hour.
    pub series: Series,
    pub feed: FeedStatus,
    pub transactional: TransactionalHealth,
    /// Pending and firing alerts, most severe first.
    pub alerts: Vec<AlertView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverviewDelta {
    pub now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailings: Option<RowsDelta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<TransactionalHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertView>>,
}

/// The mailings page (`/mailings`): every known mailing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingsState {
    pub now: i64,
    pub mailings: Vec<MailingRow>,
    pub alerts: Vec<AlertView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingsDelta {
    pub now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailings: Option<RowsDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertView>>,
}

/// Dispatch figures of one transactional mailing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingDispatch {
    pub health: TxMailing,
    /// Dispatch delay per window (open dispatches count at their age).
    pub delay: BTreeMap<Window, Percentiles>,
    /// Upper bounds (ms) of the delay histogram's bins; the last bin is
    /// open-ended.
    pub bin_bounds_ms: Vec<u64>,
    /// Dispatches sent in the last 24 h per bin.
    pub bins: Vec<u64>,
}

/// One mailing (`/mailings/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingState {
    pub now: i64,
    pub row: MailingRow,
    pub windows: BTreeMap<Window, WindowStats>,
    /// This mailing, per 10 s, for the last hour.
    pub series: Series,
    pub bounces: BounceBreakdown,
    /// For mailings with dispatch reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<MailingDispatch>,
    pub alerts: Vec<AlertView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailingDelta {
    pub now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<MailingRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<BTreeMap<Window, WindowStats>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounces: Option<BounceBreakdown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Option<MailingDispatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertView>>,
}

/// The wall screen (`/wall`): large numbers, campaigns sending now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WallState {
    pub now: i64,
    pub summary: Summary,
    /// Mailings sending now, most recent first.
    pub sending: Vec<MailingRow>,
    pub feed: FeedStatus,
    pub transactional: TransactionalHealth,
    pub alerts: Vec<AlertView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WallDelta {
    pub now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending: Option<RowsDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<TransactionalHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertView>>,
}

/// The state of any topic.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicState {
    Overview(OverviewState),
    Mailings(MailingsState),
    Mailing(MailingState),
    Wall(WallState),
}

tag_first_newtypes!(TopicState, "kind", "a topic state", {
    "overview" => Overview,
    "mailings" => Mailings,
    "mailing" => Mailing,
    "wall" => Wall,
});

/// What changed in a topic between two ticks.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicDelta {
    Overview(OverviewDelta),
    Mailings(MailingsDelta),
    Mailing(MailingDelta),
    Wall(WallDelta),
}

tag_first_newtypes!(TopicDelta, "kind", "a topic delta", {
    "overview" => Overview,
    "mailings" => Mailings,
    "mailing" => Mailing,
    "wall" => Wall,
});

/// `Some(new)` if it differs from `old`.
fn changed<T: Clone + PartialEq>(old: &T, new: &T) -> Option<T> {
    (old != new).then(|| new.clone())
}

fn set<T: Clone>(target: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *target = v.clone();
    }
}

impl TopicState {
    /// The delta that turns `self` into `new`, or `None` if they are equal.
    /// `now` alone changing is not a change worth sending.
    pub fn delta_to(&self, new: &TopicState) -> Option<TopicDelta> {
        match (self, new) {
            (TopicState::Overview(a), TopicState::Overview(b)) => {
                let d = OverviewDelta {
                    now: b.now,
                    summary: SummaryDelta::between(&a.summary, &b.summary),
                    mailings: RowsDelta::between(&a.mailings, &b.mailings),
                    series: Series::changed(&a.series, &b.series),
                    feed: (a.feed != b.feed).then_some(b.feed),
                    transactional: changed(&a.transactional, &b.transactional),
                    alerts: changed(&a.alerts, &b.alerts),
                };
                let any = d.summary.is_some()
                    || d.mailings.is_some()
                    || !d.series.is_empty()
                    || d.feed.is_some()
                    || d.transactional.is_some()
                    || d.alerts.is_some();
                any.then_some(TopicDelta::Overview(d))
            }
            (TopicState::Mailings(a), TopicState::Mailings(b)) => {
                let d = MailingsDelta {
                    now: b.now,
                    mailings: RowsDelta::between(&a.mailings, &b.mailings),
                    alerts: changed(&a.alerts, &b.alerts),
                };
                (d.mailings.is_some() || d.alerts.is_some()).then_some(TopicDelta::Mailings(d))
            }
            (TopicState::Mailing(a), TopicState::Mailing(b)) => {
                let d = MailingDelta {
                    now: b.now,
                    row: changed(&a.row, &b.row),
                    windows: changed(&a.windows, &b.windows),
                    series: Series::changed(&a.series, &b.series),
                    bounces: changed(&a.bounces, &b.bounces),
                    dispatch: changed(&a.dispatch, &b.dispatch),
                    alerts: changed(&a.alerts, &b.alerts),
                };
                let any = d.row.is_some()
                    || d.windows.is_some()
                    || !d.series.is_empty()
                    || d.bounces.is_some()
                    || d.dispatch.is_some()
                    || d.alerts.is_some();
                any.then_some(TopicDelta::Mailing(d))
            }
            (TopicState::Wall(a), TopicState::Wall(b)) => {
                let d = WallDelta {
                    now: b.now,
                    summary: SummaryDelta::between(&a.summary, &b.summary),
                    sending: RowsDelta::between(&a.sending, &b.sending),
                    feed: (a.feed != b.feed).then_some(b.feed),
                    transactional: changed(&a.transactional, &b.transactional),
                    alerts: changed(&a.alerts, &b.alerts),
                };
                let any = d.summary.is_some()
                    || d.sending.is_some()
                    || d.feed.is_some()
                    || d.transactional.is_some()
                    || d.alerts.is_some();
                any.then_some(TopicDelta::Wall(d))
            }
            _ => None,
        }
    }

    /// Applies `delta`; false if it is for another kind of topic.
    pub fn apply(&mut self, delta: &TopicDelta) -> bool {
        match (self, delta) {
            (TopicState::Overview(s), TopicDelta::Overview(d)) => {
                s.now = d.now;
                if let Some(sd) = &d.summary {
                    sd.apply(&mut s.summary);
                }
                if let Some(m) = &d.mailings {
                    m.apply(&mut s.mailings);
                }
                s.series.apply(&d.series, d.now);
                set(&mut s.feed, &d.feed);
                set(&mut s.transactional, &d.transactional);
                set(&mut s.alerts, &d.alerts);
                true
            }
            (TopicState::Mailings(s), TopicDelta::Mailings(d)) => {
                s.now = d.now;
                if let Some(m) = &d.mailings {
                    m.apply(&mut s.mailings);
                }
                set(&mut s.alerts, &d.alerts);
                true
            }
            (TopicState::Mailing(s), TopicDelta::Mailing(d)) => {
                s.now = d.now;
                set(&mut s.row, &d.row);
                set(&mut s.windows, &d.windows);
                s.series.apply(&d.series, d.now);
                set(&mut s.bounces, &d.bounces);
                set(&mut s.dispatch, &d.dispatch);
                set(&mut s.alerts, &d.alerts);
                true
            }
            (TopicState::Wall(s), TopicDelta::Wall(d)) => {
                s.now = d.now;
                if let Some(sd) = &d.summary {
                    sd.apply(&mut s.summary);
                }
                if let Some(m) = &d.sending {
                    m.apply(&mut s.sending);
                }
                set(&mut s.feed, &d.feed);
                set(&mut s.transactional, &d.transactional);
                set(&mut s.alerts, &d.alerts);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, at: i64, sent: u64) -> MailingRow {
        MailingRow {
            id: id.into(),
            last_event_at: at,
            totals: Counters {
                sent,
                ..Counters::default()
            },
            ..MailingRow::default()
        }
    }

    fn point(t: i64, sent: u64) -> SeriesPoint {
        SeriesPoint {
            t,
            counters: Counters {
                sent,
                ..Counters::default()
            },
            lag: None,
            delay: None,
        }
    }

    fn overview(
        now: i64,
        rows: Vec<MailingRow>,
        points: Vec<SeriesPoint>,
        sent: u64,
    ) -> TopicState {
        let mut summary = Summary::default();
        summary.overall.totals.sent = sent;
        TopicState::Overview(OverviewState {
            now,
            summary,
            mailings: rows,
            series: Series {
                step_ms: 10_000,
                span_ms: 3_600_000,
                points,
            },
            feed: FeedStatus::default(),
            ..OverviewState::default()
        })
    }

    #[test]
    fn applying_the_delta_reproduces_the_new_state() {
        let a = overview(
            4_000_000,
            vec![row("1", 10, 5), row("2", 9, 1)],
            vec![point(400_000, 1), point(3_990_000, 2)],
            6,
        );
        let b = overview(
            4_100_000,
            vec![row("1", 20, 7), row("3", 15, 1)],
            vec![point(3_990_000, 3), point(4_090_000, 1)],
            9,
        );
        let d = a.delta_to(&b).expect("states differ");
        let TopicDelta::Overview(od) = &d else {
            panic!()
        };
        assert_eq!(od.mailings.as_ref().unwrap().remove, vec!["2".to_string()]);
        assert_eq!(od.series.len(), 2);
        assert!(od.summary.as_ref().unwrap().campaign.is_none());
        let mut applied = a.clone();
        assert!(applied.apply(&d));
        assert_eq!(applied, b);
        // The delta survives the wire.
        let json = serde_json::to_string(&d).unwrap();
        let back: TopicDelta = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn equal_states_have_no_delta_and_time_alone_is_no_change() {
        let a = overview(1, vec![row("1", 10, 5)], vec![], 5);
        let mut b = a.clone();
        assert_eq!(a.delta_to(&b), None);
        if let TopicState::Overview(o) = &mut b {
            o.now = 99;
        }
        assert_eq!(a.delta_to(&b), None);
    }

    #[test]
    fn deltas_of_another_kind_are_refused() {
        let mut a = overview(1, vec![], vec![], 0);
        let d = TopicDelta::Wall(WallDelta::default());
        assert!(!a.apply(&d));
    }

    #[test]
    fn windows_and_classes_parse() {
        for w in Window::ALL {
            assert_eq!(Window::parse(w.label()), Some(w));
            assert_eq!(
                serde_json::to_string(&w).unwrap(),
                format!("\"{}\"", w.label())
            );
        }
        assert_eq!(Window::parse("2m"), None);
        assert_eq!(
            MailingClass::parse("transactional"),
            Some(MailingClass::Transactional)
        );
        assert_eq!(MailingClass::default(), MailingClass::Campaign);
    }
}
