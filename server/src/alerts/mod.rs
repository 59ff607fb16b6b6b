//! Alerts that page on-call: rules ([`rules`]) evaluated every second
//! against the live state ([`eval`]), the incident state machine
//! ([`machine`]), delivery of notifications through a persisted outbox
//! ([`notify`]) and the chart linked from them ([`chart`]). The state
//! machine runs inside the metrics engine (it reads the live state); this
//! module also builds the rule set and channels from the configuration and
//! restores alert state from the store after a restart.

pub mod chart;
pub mod eval;
pub mod machine;
pub mod notify;
pub mod rules;

use crate::config::Config;
use machine::{ChannelRef, Incident, Silence};
use mailpulse_app::protocol::{Ack, AlertState, Severity};
use r2d2_sqlite::rusqlite::Connection;
use rules::{Rule, RuleDef};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Where a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Builtin,
    Config,
    /// Set through the API or the UI (stored; wins over the others).
    Api,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    pub origin: Origin,
    #[serde(flatten)]
    pub def: RuleDef,
}

fn repeat(config: &Config) -> Result<Duration, String> {
    humantime::parse_duration(&config.alerts.startup_grace)
        .map_err(|e| format!("alerts.startup_grace: {e}"))?;
    humantime::parse_duration(&config.alerts.repeat_interval)
        .map_err(|e| format!("alerts.repeat_interval: {e}"))
}

/// The effective rules: built-ins (unless disabled), then the config's,
/// then stored ones, a later one replacing an earlier one of the same name.
/// Every rule is checked; the first bad one is the error.
pub fn rule_set(config: &Config, stored: &[RuleDef]) -> Result<Vec<RuleInfo>, String> {
    let mut out: Vec<RuleInfo> = Vec::new();
    let mut put = |origin, def: RuleDef| match out.iter_mut().find(|r| r.def.name == def.name) {
        Some(existing) => *existing = RuleInfo { origin, def },
        None => out.push(RuleInfo { origin, def }),
    };
    if config.alerts.defaults {
        for d in rules::defaults() {
            put(Origin::Builtin, d);
        }
    }
    for d in &config.alerts.rules {
        put(Origin::Config, d.clone());
    }
    for d in stored {
        put(Origin::Api, d.clone());
    }
    let repeat = repeat(config)?;
    for r in &out {
        r.def.compile(repeat)?;
    }
    Ok(out)
}

/// Compiles the enabled rules of a rule set.
pub fn compile(config: &Config, set: &[RuleInfo]) -> Vec<Rule> {
    let repeat = repeat(config).unwrap_or(Duration::from_secs(1800));
    set.iter()
        .filter(|r| r.def.enabled)
        .filter_map(|r| r.def.compile(repeat).ok())
        .collect()
}

/// The configured channels (and `MAILPULSE_ALERT_WEBHOOK_URL`), checked.
pub fn channels(
    config: &Config,
) -> anyhow::Result<(Vec<ChannelRef>, HashMap<String, notify::Channel>)> {
    let mut all = config.alerts.channels.clone();
    if let Some(url) = &config.alert_webhook_url {
        all.push(crate::config::ChannelConfig {
            name: Some("env-webhook".into()),
            kind: "webhook".into(),
            url: Some(url.clone()),
            ..Default::default()
        });
    }
    let mut refs = Vec::new();
    let mut built = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in &all {
        let name = match &c.name {
            Some(n) => n.clone(),
            None => {
                let n = counts.entry(c.kind.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    c.kind.clone()
                } else {
                    format!("{}-{n}", c.kind)
                }
            }
        };
        if built.contains_key(&name) {
            anyhow::bail!("two alert channels are named {name:?}");
        }
        let ch = notify::Channel::from_config(c)?;
        refs.push(ChannelRef {
            name: name.clone(),
            wants_repeats: ch.wants_repeats(),
            min_severity: c.min_severity,
        });
        built.insert(name, ch);
    }
    Ok((refs, built))
}

/// What the store remembers of the alerts.
pub struct Stored {
    pub open: Vec<Incident>,
    pub recent: Vec<Incident>,
    pub silences: Vec<Silence>,
    pub rules: Vec<RuleDef>,
    pub max_id: i64,
    pub max_silence: i64,
}

fn incident(r: &r2d2_sqlite::rusqlite::Row<'_>) -> r2d2_sqlite::rusqlite::Result<Incident> {
    let state = match r.get::<_, String>(4)?.as_str() {
        "firing" => AlertState::Firing,
        "pending" => AlertState::Pending,
        _ => AlertState::Resolved,
    };
    let scope: String = r.get(2)?;
    let acked_by: Option<String> = r.get(11)?;
    Ok(Incident {
        id: r.get(0)?,
        rule: r.get(1)?,
        mailing: scope.strip_prefix("mailing:").map(str::to_string),
        scope,
        severity: if r.get::<_, String>(3)? == "critical" {
            Severity::Critical
        } else {
            Severity::Warning
        },
        state,
        started_at: r.get(5)?,
        firing_at: r.get(6)?,
        resolved_at: r.get(7)?,
        value: r.get(8)?,
        threshold: r.get(9)?,
        unit: String::new(),
        what: String::new(),
        summary: r.get(10)?,
        acked: acked_by.map(|by| Ack {
            by,
            at: r.get::<_, Option<i64>>(12).ok().flatten().unwrap_or(0),
            comment: r
                .get::<_, Option<String>>(13)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }),
        last_notified_at: r.get(14)?,
        notifications: r.get(15)?,
        notified_firing: r.get::<_, i64>(15)? > 0,
    })
}

/// Reads the alert state a restart must continue from.
pub fn load(conn: &Connection, now: i64) -> anyhow::Result<Stored> {
    const COLS: &str = "id, rule, scope, severity, state, started_at, firing_at, resolved_at, \
                        value, threshold, summary, acked_by, acked_at, ack_comment, \
                        last_notified_at, notifications";
    let mut s = conn.prepare(&format!(
        "SELECT {COLS} FROM alert_incidents WHERE state != 'resolved'"
    ))?;
    let open = s.query_map([], incident)?.collect::<Result<Vec<_>, _>>()?;
    let mut s = conn.prepare(&format!(
        "SELECT {COLS} FROM alert_incidents WHERE state = 'resolved' AND resolved_at > ?1 \
         ORDER BY resolved_at DESC LIMIT 200"
    ))?;
    let recent = s
        .query_map([now - 7 * 86_400_000], incident)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = conn.prepare(
        "SELECT id, rule, scope, starts_at, ends_at, created_by, comment FROM alert_silences \
         WHERE ends_at > ?1",
    )?;
    let silences = s
        .query_map([now], |r| {
            Ok(Silence {
                id: r.get(0)?,
                rule: r.get(1)?,
                scope: r.get(2)?,
                starts_at: r.get(3)?,
                ends_at: r.get(4)?,
                created_by: r.get(5)?,
                comment: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = conn.prepare("SELECT name, definition FROM alert_rules ORDER BY name")?;
    let mut rules = Vec::new();
    for row in s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (name, def) = row?;
        match serde_json::from_str::<RuleDef>(&def) {
            Ok(d) => rules.push(d),
            Err(e) => {
                tracing::error!(rule = name, error = %e, "stored alert rule unreadable; ignored")
            }
        }
    }
    let max_id: i64 = conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM alert_incidents",
        [],
        |r| r.get(0),
    )?;
    let max_silence: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM alert_silences", [], |r| {
            r.get(0)
        })?;
    Ok(Stored {
        open,
        recent,
        silences,
        rules,
        max_id,
        max_silence,
    })
}
