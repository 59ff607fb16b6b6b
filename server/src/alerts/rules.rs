//! Alert rules: how they are written (TOML in `mailpulse.toml`, JSON in the
//! API), checked, and the built-in defaults. A rule watches one metric (or a
//! mailing's silence, or the whole feed) over a scope and says when that is
//! a problem. `docs/alerts.md` lists every metric and scope.

use mailpulse_app::protocol::{MailingClass, Severity, Window};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What kind of condition a rule has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A metric above (or below) a threshold.
    #[default]
    Threshold,
    /// A mailing stopped sending, judged against its own recent rate.
    Silence,
    /// No webhook at all for a while.
    FeedDead,
}

/// A rule as written by people: in the config file, the API and the UI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub kind: RuleKind,
    /// For threshold rules: see [`Metric::parse`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `overall`, `class:transactional`, `class:campaign`, `mailing:<id>`,
    /// `each:transactional`, `each:campaign`.
    #[serde(default = "overall")]
    pub scope: String,
    /// `1m`, `5m`, `15m`, `1h`, `24h`, or `total` (since the first event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Resolve only once the value is back past this (hysteresis); defaults
    /// to the threshold itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<f64>,
    /// How long the condition must hold before firing (e.g. `2m`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Only judge a rate once the scope has sent this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sent: Option<u64>,
    /// Reminder interval while firing and not acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Silence: shortest silence worth an alert; feed dead: how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Names of rules whose firing mutes this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibited_by: Vec<String>,
}

fn yes() -> bool {
    true
}

fn overall() -> String {
    "overall".into()
}

/// Where a rule looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Overall,
    Class(MailingClass),
    Mailing(String),
    /// One incident per mailing of the class.
    Each(MailingClass),
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "overall" => Scope::Overall,
            _ => {
                let (kind, rest) = s.split_once(':')?;
                match kind {
                    "class" => Scope::Class(MailingClass::parse(rest)?),
                    "each" => Scope::Each(MailingClass::parse(rest)?),
                    "mailing" if !rest.is_empty() => Scope::Mailing(rest.to_string()),
                    _ => return None,
                }
            }
        })
    }
}

/// What a threshold rule measures, and in which unit people write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A counter over the window (`sent`, `hard_bounces`, …).
    Count(usize),
    /// `<counter>/sent` over the window.
    Rate(usize),
    /// Sends per minute over the window.
    SendsPerMinute,
    /// Webhook lag percentile, in seconds.
    WebhookLag(Quantile),
    /// Dispatch delay percentile (open dispatches at their age), seconds.
    DispatchDelay(Quantile),
    /// Open dispatches.
    QueueDepth,
    /// Age of the oldest open dispatch, seconds.
    OldestQueuedAge,
    /// Open dispatches far older than dispatches usually take.
    OverdueDispatches,
    /// Webhook events per second over the last minute.
    EventsPerSecond,
    /// `sent` events of tracked mailings that matched no dispatch.
    UnmatchedSent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P95,
    P99,
}

pub const RATE_METRICS: [(&str, &str); 7] = [
    ("bounce_rate", "bounces"),
    ("hard_bounce_rate", "hard_bounces"),
    ("soft_bounce_rate", "soft_bounces"),
    ("open_rate", "unique_opens"),
    ("click_rate", "unique_clicks"),
    ("unsubscribe_rate", "unsubscribes"),
    ("complaint_rate", "complaints"),
];

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        use mailpulse_app::protocol::Counters;
        if let Some(i) = Counters::FIELDS.iter().position(|f| *f == s) {
            return Some(Metric::Count(i));
        }
        if let Some((_, field)) = RATE_METRICS.iter().find(|(r, _)| *r == s) {
            return Counters::FIELDS
                .iter()
                .position(|f| f == field)
                .map(Metric::Rate);
        }
        let q = |suffix: &str| match suffix {
            "p50" => Some(Quantile::P50),
            "p95" => Some(Quantile::P95),
            "p99" => Some(Quantile::P99),
            _ => None,
        };
        if let Some(rest) = s.strip_prefix("webhook_lag_") {
            return q(rest).map(Metric::WebhookLag);
        }
        if let Some(rest) = s.strip_prefix("dispatch_delay_") {
            return q(rest).map(Metric::DispatchDelay);
        }
        Some(match s {
            "sends_per_min" => Metric::SendsPerMinute,
            "queue_depth" => Metric::QueueDepth,
            "oldest_queued_age" => Metric::OldestQueuedAge,
            "overdue_dispatches" => Metric::OverdueDispatches,
            "events_per_sec" => Metric::EventsPerSecond,
            "unmatched_sent" => Metric::UnmatchedSent,
            _ => return None,
        })
    }

    /// The unit values are shown in: `s`, `ratio`, `count`, `per_min`,
    /// `per_sec`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::WebhookLag(_) | Metric::DispatchDelay(_) | Metric::OldestQueuedAge => "s",
            Metric::Rate(_) => "ratio",
            Metric::SendsPerMinute => "per_min",
            Metric::EventsPerSecond => "per_sec",
            Metric::Count(_)
            | Metric::QueueDepth
            | Metric::OverdueDispatches
            | Metric::UnmatchedSent => "count",
        }
    }
}

/// A window, or the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Window(Window),
    Total,
}

/// A checked rule, ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub def: RuleDef,
    pub scope: Scope,
    pub condition: Condition,
    pub for_ms: i64,
    pub repeat_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Threshold {
        metric: Metric,
        span: Span,
        /// true: fire above `threshold`; false: below.
        above: bool,
        threshold: f64,
        clear: f64,
        min_sent: u64,
    },
    Silence {
        /// Shortest silence that can fire.
        min_ms: i64,
    },
    FeedDead {
        after_ms: i64,
    },
}

fn duration(name: &str, field: &str, v: &Option<String>, default: Duration) -> Result<i64, String> {
    match v {
        None => Ok(default.as_millis() as i64),
        Some(s) => humantime::parse_duration(s)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| format!("rule {name:?}: `{field}` = {s:?} is not a duration ({e})")),
    }
}

impl RuleDef {
    /// Checks the rule; the error says what is wrong with it.
    pub fn compile(&self, default_repeat: Duration) -> Result<Rule, String> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "rule name {name:?} must be letters, digits, '-' or '_'"
            ));
        }
        let scope = Scope::parse(&self.scope).ok_or_else(|| {
            format!(
                "rule {name:?}: scope {:?} is not overall, class:<class>, each:<class> or mailing:<id>",
                self.scope
            )
        })?;
        let for_ms = duration(name, "for", &self.for_, Duration::ZERO)?;
        let repeat_ms = duration(
            name,
            "repeat_interval",
            &self.repeat_interval,
            default_repeat,
        )?;
        if repeat_ms < 60_000 {
            return Err(format!(
                "rule {name:?}: repeat_interval must be at least 1m"
            ));
        }
        let condition = match self.kind {
            RuleKind::Threshold => {
                let metric_name = self
                    .metric
                    .as_deref()
                    .ok_or_else(|| format!("rule {name:?}: a threshold rule needs `metric`"))?;
                let metric = Metric::parse(metric_name).ok_or_else(|| {
                    format!("rule {name:?}: unknown metric {metric_name:?} (see docs/alerts.md)")
                })?;
                let span = match self.window.as_deref() {
                    None => Span::Window(Window::M5),
                    Some("total") => Span::Total,
                    Some(w) => Span::Window(Window::parse(w).ok_or_else(|| {
                        format!("rule {name:?}: window {w:?} is not 1m, 5m, 15m, 1h, 24h or total")
                    })?),
                };
                let (above, threshold) = match (self.above, self.below) {
                    (Some(a), None) => (true, a),
                    (None, Some(b)) => (false, b),
                    _ => {
                        return Err(format!(
                            "rule {name:?}: give exactly one of `above` and `below`"
                        ))
                    }
                };
                if !threshold.is_finite() {
                    return Err(format!("rule {name:?}: the threshold must be a number"));
                }
                let clear = self.clear.unwrap_or(threshold);
                if (above && clear > threshold) || (!above && clear < threshold) {
                    return Err(format!(
                        "rule {name:?}: `clear` must be on the healthy side of the threshold"
                    ));
                }
                if matches!(metric, Metric::EventsPerSecond) && scope != Scope::Overall {
                    return Err(format!("rule {name:?}: events_per_sec is only overall"));
                }
                if matches!(metric, Metric::WebhookLag(_))
                    && matches!(scope, Scope::Mailing(_) | Scope::Each(_))
                {
                    return Err(format!(
                        "rule {name:?}: webhook lag is measured overall and per class, not per mailing"
                    ));
                }
                Condition::Threshold {
                    metric,
                    span,
                    above,
                    threshold,
                    clear,
                    min_sent: self.min_sent.unwrap_or(0),
                }
            }
            RuleKind::Silence => {
                if !matches!(scope, Scope::Each(_) | Scope::Mailing(_)) {
                    return Err(format!(
                        "rule {name:?}: a silence rule watches mailings: scope each:<class> or mailing:<id>"
                    ));
                }
                Condition::Silence {
                    min_ms: duration(name, "after", &self.after, Duration::from_secs(30))?,
                }
            }
            RuleKind::FeedDead => Condition::FeedDead {
                after_ms: duration(name, "after", &self.after, Duration::from_secs(600))?,
            },
        };
        Ok(Rule {
            def: self.clone(),
            scope,
            condition,
            for_ms,
            repeat_ms,
        })
    }
}

/// The built-in rules (`alerts.defaults = true`, the default).
pub fn defaults() -> Vec<RuleDef> {
    let base = |name: &str, description: &str| RuleDef {
        name: name.into(),
        description: Some(description.into()),
        enabled: true,
        kind: RuleKind::Threshold,
        metric: None,
        scope: "overall".into(),
        window: None,
        above: None,
        below: None,
        clear: None,
        for_: None,
        severity: Severity::Critical,
        min_sent: None,
        repeat_interval: None,
        after: None,
        inhibited_by: vec![],
    };
    vec![
        RuleDef {
            metric: Some("dispatch_delay_p95".into()),
            scope: "class:transactional".into(),
            window: Some("5m".into()),
            above: Some(60.0),
            clear: Some(30.0),
            for_: Some("2m".into()),
            ..base(
                "transactional-dispatch-delay",
                "Transactional mail takes long to go out: p95 of the dispatch delay over 60 s for 2 minutes.",
            )
        },
        RuleDef {
            metric: Some("oldest_queued_age".into()),
            scope: "class:transactional".into(),
            above: Some(120.0),
            ..base(
                "transactional-oldest-queued",
                "A transactional mail accepted by Optimizely has had no sent event for over 2 minutes.",
            )
        },
        RuleDef {
            metric: Some("overdue_dispatches".into()),
            scope: "class:transactional".into(),
            above: Some(2.0),
            ..base(
                "transactional-overdue",
                "Several transactional mails accepted by Optimizely are waiting far longer than mails usually take (over 30 s and 5x the past hour's p99 dispatch delay).",
            )
        },
        RuleDef {
            kind: RuleKind::Silence,
            scope: "each:transactional".into(),
            after: Some("30s".into()),
            inhibited_by: vec!["feed-dead".into()],
            ..base(
                "transactional-silent",
                "A transactional mailing that normally sends has stopped: no sent event for far longer than its own recent rate explains.",
            )
        },
        RuleDef {
            metric: Some("webhook_lag_p95".into()),
            window: Some("5m".into()),
            above: Some(30.0),
            clear: Some(20.0),
            for_: Some("5m".into()),
            severity: Severity::Warning,
            ..base(
                "webhook-lag",
                "Optimizely delivers webhooks late: p95 of the webhook lag over 30 s for 5 minutes.",
            )
        },
        RuleDef {
            kind: RuleKind::FeedDead,
            after: Some("10m".into()),
            ..base(
                "feed-dead",
                "No webhook at all for 10 minutes: the feed from Optimizely is down (this mutes the per-mailing silence alerts).",
            )
        },
        RuleDef {
            metric: Some("hard_bounce_rate".into()),
            scope: "each:campaign".into(),
            window: Some("total".into()),
            above: Some(0.05),
            clear: Some(0.04),
            min_sent: Some(500),
            severity: Severity::Warning,
            ..base(
                "campaign-hard-bounces",
                "A campaign's hard-bounce rate is over 5 % after at least 500 sends.",
            )
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPEAT: Duration = Duration::from_secs(1800);

    #[test]
    fn the_defaults_compile() {
        for d in defaults() {
            d.compile(REPEAT).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let mut d = defaults()[0].clone();
        d.metric = Some("dispatch_delay_p42".into());
        assert!(d.compile(REPEAT).unwrap_err().contains("unknown metric"));
        let mut d = defaults()[0].clone();
        d.below = Some(1.0);
        assert!(d.compile(REPEAT).unwrap_err().contains("exactly one"));
        let mut d = defaults()[0].clone();
        d.scope = "mailings:x".into();
        assert!(d.compile(REPEAT).unwrap_err().contains("scope"));
        let mut d = defaults()[0].clone();
        d.for_ = Some("soon".into());
        assert!(d.compile(REPEAT).unwrap_err().contains("duration"));
        let mut d = defaults()[0].clone();
        d.clear = Some(90.0);
        assert!(d.compile(REPEAT).unwrap_err().contains("healthy side"));
        let named = |n: &str| defaults().into_iter().find(|d| d.name == n).unwrap();
        let mut d = named("transactional-silent");
        d.scope = "overall".into();
        assert!(d.compile(REPEAT).unwrap_err().contains("silence rule"));
        let mut d = named("webhook-lag");
        d.scope = "each:campaign".into();
        assert!(d.compile(REPEAT).unwrap_err().contains("not per mailing"));
        let mut d = defaults()[0].clone();
        d.name = "bad name".into();
        assert!(d.compile(REPEAT).is_err());
    }

    #[test]
    fn rules_read_from_toml() {
        let d: RuleDef = toml::from_str(
            r#"
            name = "campaign-unsubscribes"
            metric = "unsubscribe_rate"
            scope = "each:campaign"
            window = "1h"
            above = 0.01
            for = "5m"
            severity = "warning"
            min_sent = 1000
            "#,
        )
        .unwrap();
        let r = d.compile(REPEAT).unwrap();
        assert_eq!(r.for_ms, 300_000);
        assert!(matches!(
            r.condition,
            Condition::Threshold {
                min_sent: 1000,
                above: true,
                ..
            }
        ));
        assert_eq!(r.scope, Scope::Each(MailingClass::Campaign));
    }
}
