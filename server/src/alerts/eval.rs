//! Evaluating rules against the live state: for each rule, one observation
//! per scope it covers (a mailing, a class, everything) — the value, the
//! threshold it is judged against, and whether the condition holds or has
//! cleared. Pure: time is passed in.

use super::rules::{Condition, Metric, Quantile, Rule, Scope, Span};
use crate::metrics::scope::RECENT_SENDS;
use crate::metrics::state::LiveState;
use mailpulse_app::protocol::{Counters, MailingClass, Percentiles, Window};

/// `-ln(p)` for p = 1e-6: a silence this many expected sends long would
/// happen by chance once in a million.
const SILENCE_SURPRISE: f64 = 13.8;
/// A mailing "normally sends" with at least this many sends in the hour
/// before its last one.
const SILENCE_MIN_BASELINE: u64 = 10;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// `overall`, `class:transactional`, `mailing:<id>`.
    pub scope: String,
    pub mailing: Option<String>,
    /// `None`: no data (nothing to judge), which counts as healthy.
    pub value: Option<f64>,
    pub threshold: f64,
    /// The condition holds.
    pub active: bool,
    /// The value is back on the healthy side of the clear threshold.
    pub cleared: bool,
    /// What the value means, for people: "dispatch delay p95 83 s".
    pub what: String,
}

fn q(p: Option<Percentiles>, which: Quantile) -> Option<f64> {
    p.map(|p| match which {
        Quantile::P50 => p.p50,
        Quantile::P95 => p.p95,
        Quantile::P99 => p.p99,
    } as f64)
}

fn quantile_name(which: Quantile) -> &'static str {
    match which {
        Quantile::P50 => "p50",
        Quantile::P95 => "p95",
        Quantile::P99 => "p99",
    }
}

/// Mailings a rule with scope `each:<class>` covers: of that class, with an
/// event in the last day or an open dispatch.
fn mailings_of(state: &LiveState, class: MailingClass, now: i64) -> Vec<String> {
    let mut ids: Vec<String> = state
        .mailings
        .iter()
        .filter(|(id, m)| {
            state.class_of(id) == class
                && (m.scope.last_event_at.is_some_and(|t| t > now - DAY)
                    || state.dispatch.stats(Some(id)).depth > 0)
        })
        .map(|(id, _)| id.clone())
        .collect();
    if class == MailingClass::Transactional {
        for id in state.dispatch.mailings() {
            if !ids.contains(id)
                && state.class_of(id) == class
                && state.dispatch.stats(Some(id)).depth > 0
            {
                ids.push(id.clone());
            }
        }
    }
    ids.sort();
    ids
}

pub fn evaluate(rule: &Rule, state: &LiveState, now: i64) -> Vec<Observation> {
    let scopes: Vec<(String, Option<String>)> = match &rule.scope {
        Scope::Overall => vec![("overall".into(), None)],
        Scope::Class(c) => vec![(format!("class:{}", c.as_str()), None)],
        Scope::Mailing(id) => vec![(format!("mailing:{id}"), Some(id.clone()))],
        Scope::Each(c) => mailings_of(state, *c, now)
            .into_iter()
            .map(|id| (format!("mailing:{id}"), Some(id)))
            .collect(),
    };
    scopes
        .into_iter()
        .map(|(scope, mailing)| {
            let class = match &rule.scope {
                Scope::Class(c) => Some(*c),
                _ => None,
            };
            observe(rule, state, now, scope, mailing, class)
        })
        .collect()
}

fn observe(
    rule: &Rule,
    state: &LiveState,
    now: i64,
    scope: String,
    mailing: Option<String>,
    class: Option<MailingClass>,
) -> Observation {
    let m = mailing.as_deref();
    match &rule.condition {
        Condition::Threshold {
            metric,
            span,
            above,
            threshold,
            clear,
            min_sent,
        } => {
            let counters = || -> Option<Counters> {
                let s = match (m, class) {
                    (Some(id), _) => &state.mailings.get(id)?.scope,
                    (None, Some(MailingClass::Transactional)) => &state.transactional,
                    (None, Some(MailingClass::Campaign)) => &state.campaign,
                    (None, None) => &state.overall,
                };
                Some(match span {
                    Span::Window(w) => s.window(*w, now),
                    Span::Total => s.totals,
                })
            };
            let window = match span {
                Span::Window(w) => *w,
                Span::Total => Window::H24,
            };
            let (value, what) = match metric {
                Metric::Count(i) => {
                    let v = counters().map(|c| c.to_array()[*i] as f64);
                    (v, Counters::FIELDS[*i].replace('_', " "))
                }
                Metric::Rate(i) => {
                    let v = counters().and_then(|c| {
                        (c.sent > 0 && c.sent >= *min_sent)
                            .then(|| c.to_array()[*i] as f64 / c.sent as f64)
                    });
                    let name = super::rules::RATE_METRICS
                        .iter()
                        .find(|(_, f)| *f == Counters::FIELDS[*i])
                        .map_or("rate", |(r, _)| r);
                    (v, name.replace('_', " "))
                }
                Metric::SendsPerMinute => (
                    counters().map(|c| c.sent as f64 * 60.0 / window.secs() as f64),
                    "sends per minute".into(),
                ),
                Metric::WebhookLag(which) => {
                    let lag = match class {
                        Some(MailingClass::Transactional) => &state.transactional_lag,
                        Some(MailingClass::Campaign) => &state.campaign_lag,
                        None => &state.overall_lag,
                    };
                    (
                        q(lag.window(window, now), *which).map(|ms| ms / 1000.0),
                        format!("webhook lag {}", quantile_name(*which)),
                    )
                }
                Metric::DispatchDelay(which) => (
                    q(state.dispatch.delay(m, window, now), *which).map(|ms| ms / 1000.0),
                    format!("dispatch delay {}", quantile_name(*which)),
                ),
                Metric::QueueDepth => (
                    Some(state.dispatch.stats(m).depth as f64),
                    "queued dispatches".into(),
                ),
                Metric::OldestQueuedAge => (
                    state
                        .dispatch
                        .stats(m)
                        .oldest_accepted_at
                        .map(|t| (now - t) as f64 / 1000.0),
                    "oldest queued dispatch".into(),
                ),
                Metric::OverdueDispatches => (
                    Some(state.dispatch.overdue(m, now) as f64),
                    "overdue dispatches".into(),
                ),
                Metric::EventsPerSecond => (
                    Some(state.feed(now).events_per_sec),
                    "webhook events per second".into(),
                ),
                Metric::UnmatchedSent => (
                    Some(state.dispatch.unmatched_in(m, window, now) as f64),
                    "sent events without a dispatch".into(),
                ),
            };
            let (active, cleared) = match value {
                None => (false, true),
                Some(v) if *above => (v > *threshold, v <= *clear),
                Some(v) => (v < *threshold, v >= *clear),
            };
            Observation {
                scope,
                mailing,
                value,
                threshold: *threshold,
                active,
                cleared,
                what,
            }
        }
        Condition::Silence { min_ms } => silence(state, now, scope, mailing, *min_ms),
        Condition::FeedDead { after_ms } => {
            let since = state.last_received_at.map(|t| (now - t).max(0));
            let active = since.is_some_and(|s| s >= *after_ms);
            Observation {
                scope,
                mailing,
                value: since.map(|s| s as f64 / 1000.0),
                threshold: *after_ms as f64 / 1000.0,
                active,
                cleared: !active,
                what: "time since the last webhook".into(),
            }
        }
    }
}

/// Silence of one mailing: the time since its last `sent` event, against
/// what its own recent sending makes surprising. The rate is the lower of
/// the rates over its latest 64 and 16 sends and over the hour before its last send
/// (its history, if younger), so a mailing winding down is not judged by its
/// busy hour; the gap must also be half again as long as the longest gap
/// among those latest sends, so the quiet stretches of a naturally bursty or
/// sparse mailing are not mistaken for a stall. Silent when the rate would
/// have produced [`SILENCE_SURPRISE`] sends in the gap, the gap is at least
/// `min_ms`, and the mailing normally sends.
fn silence(
    state: &LiveState,
    now: i64,
    scope: String,
    mailing: Option<String>,
    min_ms: i64,
) -> Observation {
    let none = |scope, mailing| Observation {
        scope,
        mailing,
        value: None,
        threshold: min_ms as f64 / 1000.0,
        active: false,
        cleared: true,
        what: "silence".into(),
    };
    let Some(m) = mailing.as_deref().and_then(|id| state.mailings.get(id)) else {
        return none(scope, mailing);
    };
    let Some(last) = m.scope.last_sent_at else {
        return none(scope, mailing);
    };
    let to = m.scope.mins.bucket_of(last);
    let n60: u64 = m
        .scope
        .mins
        .range(to - 59 * MINUTE, to)
        .map(|(_, c)| c.sent)
        .sum();
    // A mailing younger than an hour is judged over its own history.
    let age = m.scope.first_event_at.map_or(60 * MINUTE, |f| {
        (last - f + MINUTE).clamp(10 * MINUTE, 60 * MINUTE)
    });
    let per_ms_hour = n60 as f64 / age as f64;
    // Rates over the latest 64 and the latest 16 sends: the shorter one
    // follows a mailing that is quietening down (evening) sooner.
    let recent = &m.scope.recent_sends;
    let rate_of = |n: usize| -> Option<f64> {
        let n = n.min(recent.len());
        let (first, last) = (recent.get(recent.len().checked_sub(n)?)?, recent.back()?);
        (n >= 2 && last > first).then(|| (n - 1) as f64 / (last - first) as f64)
    };
    let longest_gap = recent
        .iter()
        .zip(recent.iter().skip(1))
        .map(|(a, b)| b - a)
        .max()
        .unwrap_or(0);
    let per_ms = [rate_of(RECENT_SENDS), rate_of(16)]
        .into_iter()
        .flatten()
        .fold(per_ms_hour, f64::min);
    let gap = (now - last).max(0);
    let limit = if per_ms > 0.0 {
        (SILENCE_SURPRISE / per_ms)
            .max(min_ms as f64)
            .max(1.5 * longest_gap as f64)
    } else {
        f64::INFINITY
    };
    let active = n60 >= SILENCE_MIN_BASELINE && gap as f64 >= limit;
    Observation {
        scope,
        mailing,
        value: Some(gap as f64 / 1000.0),
        threshold: limit / 1000.0,
        active,
        cleared: !active,
        what: format!("no sent event (normally {:.0}/min)", per_ms * MINUTE as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::defaults;
    use crate::metrics::state::Observed;
    use mailpulse_app::protocol::EventType;
    use std::collections::HashMap;
    use std::time::Duration;

    const NOW: i64 = 1_000 * DAY + 12 * 3_600_000;

    fn rule(name: &str) -> Rule {
        defaults()
            .into_iter()
            .find(|d| d.name == name)
            .unwrap()
            .compile(Duration::from_secs(1800))
            .unwrap()
    }

    fn state_with_tx() -> LiveState {
        let mut configured = HashMap::new();
        configured.insert(
            "tx".to_string(),
            crate::metrics::MailingSettings {
                class: Some(MailingClass::Transactional),
                name: Some("Password reset".into()),
            },
        );
        LiveState::new(configured)
    }

    fn sent(state: &mut LiveState, mailing: &str, t: i64) {
        state.observe(
            &Observed {
                event_type: EventType::Sent,
                first: false,
                bounce: None,
                mailing: Some(mailing),
                event_time: t,
                received_at: t,
                payload_time: true,
                domain: None,
                reason: None,
            },
            NOW,
            false,
        );
    }

    #[test]
    fn a_busy_mailing_that_stops_is_silent_within_a_minute() {
        let mut s = state_with_tx();
        // 60/min for the last hour, then nothing for `gap`.
        for i in 0..3600 {
            sent(&mut s, "tx", NOW - 45_000 - i * 1000);
        }
        let r = rule("transactional-silent");
        let obs = evaluate(&r, &s, NOW);
        assert_eq!(obs.len(), 1);
        assert!(obs[0].active, "{obs:?}");
        assert_eq!(obs[0].scope, "mailing:tx");
        // 15 s of quiet is not yet a silence.
        let quiet = evaluate(&r, &s, NOW - 30_000);
        assert!(!quiet[0].active, "{quiet:?}");
    }

    #[test]
    fn a_slow_mailing_is_not_silent_for_long() {
        let mut s = state_with_tx();
        // 2 an hour.
        for i in 0..24 {
            sent(&mut s, "tx", NOW - 600_000 - i * 1_800_000);
        }
        let obs = evaluate(&rule("transactional-silent"), &s, NOW);
        assert!(!obs[0].active, "{obs:?}");
    }

    #[test]
    fn the_baseline_follows_a_winding_down_mailing() {
        let mut s = state_with_tx();
        // 60/min an hour ago, 3/min in the last 10 minutes.
        for i in 0..3000 {
            sent(&mut s, "tx", NOW - 700_000 - 60_000 - i * 1000);
        }
        for i in 0..30 {
            sent(&mut s, "tx", NOW - 60_000 - i * 20_000);
        }
        // 60 s without a send at 3/min (one every 20 s) is unremarkable.
        let obs = evaluate(&rule("transactional-silent"), &s, NOW);
        assert!(!obs[0].active, "{obs:?}");
        assert!(obs[0].threshold > 120.0, "{obs:?}");
    }

    #[test]
    fn a_sparse_mailing_with_long_natural_gaps_is_judged_by_them() {
        let mut s = state_with_tx();
        // Bursts of 10 sends a second apart, every 4 minutes, for an hour.
        for burst in 0..15 {
            for k in 0..10 {
                sent(&mut s, "tx", NOW - 60_000 - burst * 240_000 - k * 1000);
            }
        }
        // 3 minutes after the last burst is normal for this mailing.
        let obs = evaluate(&rule("transactional-silent"), &s, NOW + 120_000);
        assert!(!obs[0].active, "{obs:?}");
        assert!(obs[0].threshold >= 1.5 * 230.0, "{obs:?}");
    }

    #[test]
    fn thresholds_need_data_and_min_sent() {
        let mut s = LiveState::new(HashMap::new());
        let r = rule("campaign-hard-bounces");
        for i in 0..100 {
            sent(&mut s, "c1", NOW - i);
        }
        for i in 0..40 {
            s.observe(
                &Observed {
                    event_type: EventType::Bounce,
                    first: false,
                    bounce: Some(mailpulse_app::protocol::BounceKind::Hard),
                    mailing: Some("c1"),
                    event_time: NOW - i,
                    received_at: NOW,
                    payload_time: true,
                    domain: Some("x.com"),
                    reason: None,
                },
                NOW,
                false,
            );
        }
        // 40 % hard bounces, but only 100 sends: not judged yet.
        let obs = evaluate(&r, &s, NOW);
        assert_eq!(obs[0].value, None);
        assert!(!obs[0].active);
        for i in 0..500 {
            sent(&mut s, "c1", NOW - 200 - i);
        }
        let obs = evaluate(&r, &s, NOW);
        assert!(obs[0].active, "{obs:?}");
        assert!((obs[0].value.unwrap() - 40.0 / 600.0).abs() < 1e-9);
    }

    #[test]
    fn feed_dead_after_ten_minutes_without_webhooks() {
        let mut s = LiveState::new(HashMap::new());
        let r = rule("feed-dead");
        assert_eq!(
            evaluate(&r, &s, NOW)[0].value,
            None,
            "no data before any webhook"
        );
        sent(&mut s, "c", NOW - 601_000);
        assert!(evaluate(&r, &s, NOW)[0].active);
        assert!(!evaluate(&r, &s, NOW - 2_000)[0].active);
    }
}
