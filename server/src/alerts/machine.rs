//! The alert state machine: incidents per (rule, scope) moving through
//! pending → firing → resolved, reminders at the repeat interval,
//! acknowledgements, silences and inhibition. Every change it makes comes
//! out as store operations — the incident row, its history, and one outbox
//! row per channel and notification — which the writer commits in one
//! transaction, so a notification is sent only for a persisted transition
//! and never twice for one. Pure: time is passed in.

use super::eval::Observation;
use super::rules::{Condition, Rule, Scope};
use crate::store::Param;
use mailpulse_app::protocol::{Ack, AlertState, AlertView, Severity};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};

/// After a restart, incidents are not resolved for this long (by default;
/// `alerts.startup_grace`): the live windows are still filling up and would
/// look healthier than they are.
pub const STARTUP_GRACE_MS: i64 = 60_000;
/// Points of each (rule, scope)'s value kept for charts: 30 min at 10 s.
const HISTORY_POINTS: usize = 180;
const HISTORY_STEP_MS: i64 = 10_000;
/// Resolved incidents kept in memory for the API and the UI.
const RECENT: usize = 200;

/// Store operations: statements with their parameters, committed together.
pub type Ops = Vec<(&'static str, Vec<Param>)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: i64,
    pub rule: String,
    pub scope: String,
    pub mailing: Option<String>,
    pub severity: Severity,
    pub state: AlertState,
    pub started_at: i64,
    pub firing_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    pub what: String,
    pub summary: String,
    pub acked: Option<Ack>,
    pub last_notified_at: Option<i64>,
    pub notifications: i64,
    /// A firing notification went out (so a resolved notice is owed).
    pub notified_firing: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: i64,
    /// Rule name it mutes; `None` for every rule.
    pub rule: Option<String>,
    /// Scope it mutes (`mailing:9001`, `class:transactional`, …); `None`
    /// for every scope.
    pub scope: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    fn matches(&self, i: &Incident, now: i64) -> bool {
        now >= self.starts_at
            && now < self.ends_at
            && self.rule.as_ref().is_none_or(|r| *r == i.rule)
            && self.scope.as_ref().is_none_or(|s| *s == i.scope)
    }
}

/// A channel notifications go to; only its name and kind matter here.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRef {
    pub name: String,
    /// PagerDuty gets no reminders (its dedup_key already keeps the page).
    pub wants_repeats: bool,
    /// Only notifications of this severity or worse.
    pub min_severity: Severity,
}

/// Links and names the messages carry.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub dashboard_url: String,
    pub mailing_names: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Manager {
    pub rules: Vec<Rule>,
    incidents: HashMap<(String, String), Incident>,
    recent: VecDeque<Incident>,
    pub silences: Vec<Silence>,
    channels: Vec<ChannelRef>,
    next_id: i64,
    next_silence: i64,
    started_at: i64,
    grace_ms: i64,
    history: HashMap<(String, String), VecDeque<(i64, f64)>>,
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" => fmt_secs(v),
        "ratio" => format!("{:.1} %", v * 100.0),
        "per_min" => format!("{v:.0}/min"),
        "per_sec" => format!("{v:.1}/s"),
        _ => format!("{v:.0}"),
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn hhmm(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

impl Manager {
    pub fn new(rules: Vec<Rule>, channels: Vec<ChannelRef>, now: i64) -> Manager {
        Manager {
            rules,
            channels,
            next_id: 1,
            next_silence: 1,
            started_at: now,
            grace_ms: STARTUP_GRACE_MS,
            ..Manager::default()
        }
    }

    pub fn with_grace(mut self, grace_ms: i64) -> Manager {
        self.grace_ms = grace_ms;
        self
    }

    /// Restores what the store remembers (after a restart).
    pub fn restore(
        &mut self,
        open: Vec<Incident>,
        recent: Vec<Incident>,
        silences: Vec<Silence>,
        max_id: i64,
        max_silence: i64,
    ) {
        for i in open {
            self.incidents.insert((i.rule.clone(), i.scope.clone()), i);
        }
        self.recent = recent.into_iter().collect();
        self.silences = silences;
        self.next_id = self.next_id.max(max_id + 1);
        self.next_silence = self.next_silence.max(max_silence + 1);
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.def.name == name)
    }

    /// Why an incident is muted, if it is.
    fn muted(&self, i: &Incident, now: i64) -> Option<String> {
        if let Some(s) = self.silences.iter().find(|s| s.matches(i, now)) {
            return Some(format!(
                "silenced by {} until {}: {}",
                s.created_by,
                hhmm(s.ends_at),
                s.comment
            ));
        }
        let rule = self.rule(&i.rule)?;
        for by in &rule.def.inhibited_by {
            if self
                .incidents
                .values()
                .any(|o| o.rule == *by && o.state == AlertState::Firing)
            {
                return Some(format!("inhibited while {by} is firing"));
            }
        }
        None
    }

    fn summary(&self, rule: &Rule, i: &Incident, ctx: &Context) -> String {
        let sev = match i.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
        };
        let place = match &i.mailing {
            Some(m) => match ctx.mailing_names.get(m) {
                Some(name) => format!("{name} ({m})"),
                None => format!("mailing {m}"),
            },
            None => i.scope.replace("class:", "").replace("overall", "all mail"),
        };
        let value = i.value.map_or("no data".into(), |v| fmt_value(v, &i.unit));
        let against = i.threshold.map_or(String::new(), |t| {
            let op = match &rule.condition {
                Condition::Threshold { above: false, .. } => "<",
                _ => ">",
            };
            format!(" {op} {}", fmt_value(t, &i.unit))
        });
        let window = match &rule.condition {
            Condition::Threshold { span, .. } => match span {
                super::rules::Span::Window(w) => format!(" over {}", w.label()),
                super::rules::Span::Total => " in total".into(),
            },
            _ => String::new(),
        };
        format!(
            "[{sev}] {place}: {} {value}{against}{window} — {}, since {}",
            i.what,
            rule.def.name,
            hhmm(i.firing_at.unwrap_or(i.started_at))
        )
    }

    fn payload(
        &self,
        rule: &Rule,
        i: &Incident,
        kind: &str,
        seq: i64,
        ctx: &Context,
        now: i64,
    ) -> Value {
        let base = ctx.dashboard_url.trim_end_matches('/');
        let dashboard = match &i.mailing {
            Some(m) => format!("{base}/mailings/{m}"),
            None => format!("{base}/alerts"),
        };
        let since = i.firing_at.unwrap_or(i.started_at);
        let text = match kind {
            "repeat" => format!(
                "Still firing after {}: {}",
                fmt_secs((now - since) as f64 / 1000.0),
                i.summary
            ),
            "resolved" => format!(
                "Resolved after {}: {}",
                fmt_secs((now - since) as f64 / 1000.0),
                i.summary
            ),
            "acknowledged" => format!(
                "Acknowledged by {}: {} ({})",
                i.acked.as_ref().map_or("", |a| a.by.as_str()),
                i.summary,
                i.acked.as_ref().map_or("", |a| a.comment.as_str())
            ),
            _ => i.summary.clone(),
        };
        json!({
            "id": format!("{}-{kind}-{seq}", i.id),
            "incident_id": i.id,
            "kind": kind,
            "rule": rule.def.name,
            "description": rule.def.description,
            "severity": i.severity,
            "state": i.state,
            "scope": i.scope,
            "mailing": i.mailing,
            "mailing_name": i.mailing.as_ref().and_then(|m| ctx.mailing_names.get(m)),
            "text": text,
            "summary": i.summary,
            "started_at": iso(i.started_at),
            "firing_at": i.firing_at.map(iso),
            "resolved_at": i.resolved_at.map(iso),
            "duration_s": (now - since) / 1000,
            "value": i.value,
            "threshold": i.threshold,
            "unit": i.unit,
            "acked_by": i.acked.as_ref().map(|a| a.by.clone()),
            "ack_comment": i.acked.as_ref().map(|a| a.comment.clone()),
            "dashboard_url": dashboard,
            "chart_url": format!("{base}/api/v1/alerts/{}/chart.png", i.id),
            "dedup_key": format!("mailpulse:{}:{}", i.rule, i.scope),
        })
    }

    fn persist(i: &Incident, ops: &mut Ops) {
        let state = match i.state {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        };
        let sev = match i.severity {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        };
        let text = |s: &str| Param::Text(Some(s.to_string()));
        let opt_int = |v: Option<i64>| v.map_or(Param::Text(None), Param::Int);
        let opt_real = |v: Option<f64>| v.map_or(Param::Text(None), Param::Real);
        ops.push((
            "INSERT INTO alert_incidents (id, rule, scope, severity, state, started_at, firing_at, \
             resolved_at, value, threshold, summary, acked_by, acked_at, ack_comment, \
             last_notified_at, notifications) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, firing_at = excluded.firing_at, \
             resolved_at = excluded.resolved_at, value = excluded.value, \
             threshold = excluded.threshold, summary = excluded.summary, \
             acked_by = excluded.acked_by, acked_at = excluded.acked_at, \
             ack_comment = excluded.ack_comment, last_notified_at = excluded.last_notified_at, \
             notifications = excluded.notifications",
            vec![
                Param::Int(i.id),
                text(&i.rule),
                text(&i.scope),
                text(sev),
                text(state),
                Param::Int(i.started_at),
                opt_int(i.firing_at),
                opt_int(i.resolved_at),
                opt_real(i.value),
                opt_real(i.threshold),
                text(&i.summary),
                Param::Text(i.acked.as_ref().map(|a| a.by.clone())),
                opt_int(i.acked.as_ref().map(|a| a.at)),
                Param::Text(i.acked.as_ref().map(|a| a.comment.clone())),
                opt_int(i.last_notified_at),
                Param::Int(i.notifications),
            ],
        ));
    }

    fn history_op(i: &Incident, kind: &str, detail: &str, now: i64, ops: &mut Ops) {
        ops.push((
            "INSERT INTO alert_history (incident_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            vec![
                Param::Int(i.id),
                Param::Int(now),
                Param::Text(Some(kind.into())),
                Param::Text(Some(detail.into())),
            ],
        ));
    }

    /// Queues `kind` for every channel that wants it.
    /// Queues `kind` for every channel that wants it; the incident's
    /// notification count numbers it.
    fn notify(
        &self,
        rule: &Rule,
        i: &Incident,
        kind: &str,
        ctx: &Context,
        now: i64,
        ops: &mut Ops,
    ) {
        let seq = i.notifications;
        let payload = self.payload(rule, i, kind, seq, ctx, now).to_string();
        for c in &self.channels {
            if (kind == "repeat" && !c.wants_repeats) || i.severity < c.min_severity {
                continue;
            }
            ops.push((
                "INSERT OR IGNORE INTO alert_outbox (incident_id, channel, kind, seq, payload, \
                 created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                vec![
                    Param::Int(i.id),
                    Param::Text(Some(c.name.clone())),
                    Param::Text(Some(kind.into())),
                    Param::Int(seq),
                    Param::Text(Some(payload.clone())),
                    Param::Int(now),
                ],
            ));
        }
    }

    fn record_history(&mut self, rule: &str, o: &Observation, now: i64) {
        let Some(v) = o.value else { return };
        let h = self
            .history
            .entry((rule.to_string(), o.scope.clone()))
            .or_default();
        let slot = now.div_euclid(HISTORY_STEP_MS) * HISTORY_STEP_MS;
        match h.back_mut() {
            Some((t, last)) if *t == slot => *last = v,
            _ => {
                h.push_back((slot, v));
                if h.len() > HISTORY_POINTS {
                    h.pop_front();
                }
            }
        }
    }

    /// The value history of an incident's (rule, scope), for its chart.
    pub fn chart_data(&self, id: i64) -> Option<(Incident, Vec<(i64, f64)>)> {
        let i = self
            .incidents
            .values()
            .chain(self.recent.iter())
            .find(|i| i.id == id)?
            .clone();
        let points = self
            .history
            .get(&(i.rule.clone(), i.scope.clone()))
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        Some((i, points))
    }

    /// One evaluation: each rule's observations, in rule order.
    pub fn step(
        &mut self,
        observed: Vec<(usize, Vec<Observation>)>,
        ctx: &Context,
        now: i64,
    ) -> Ops {
        let mut ops = Ops::new();
        let mut seen: Vec<(String, String)> = Vec::new();
        for (ri, observations) in observed {
            let rule = self.rules[ri].clone();
            for o in observations {
                self.record_history(&rule.def.name, &o, now);
                let key = (rule.def.name.clone(), o.scope.clone());
                seen.push(key.clone());
                self.observe(&rule, key, o, ctx, now, &mut ops);
            }
        }
        // Incidents whose scope was not observed (a mailing gone quiet for a
        // day, a rule removed or disabled): their condition no longer holds.
        let stale: Vec<(String, String)> = self
            .incidents
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in stale {
            let rule = self.rule(&key.0).cloned();
            match rule {
                Some(rule) => {
                    let i = &self.incidents[&key];
                    let o = Observation {
                        scope: key.1.clone(),
                        mailing: i.mailing.clone(),
                        value: None,
                        threshold: i.threshold.unwrap_or(0.0),
                        active: false,
                        cleared: true,
                        what: i.what.clone(),
                    };
                    self.observe(&rule, key, o, ctx, now, &mut ops);
                }
                None => {
                    let mut i = self.incidents.remove(&key).expect("key from the map");
                    if i.state == AlertState::Firing {
                        i.state = AlertState::Resolved;
                        i.resolved_at = Some(now);
                        Self::persist(&i, &mut ops);
                        Self::history_op(
                            &i,
                            "resolved",
                            "its rule was removed or disabled",
                            now,
                            &mut ops,
                        );
                        self.remember(i);
                    }
                }
            }
        }
        // Firing notifications owed to incidents whose silence ended.
        let owed: Vec<(String, String)> = self
            .incidents
            .iter()
            .filter(|(_, i)| i.state == AlertState::Firing && !i.notified_firing)
            .map(|(k, _)| k.clone())
            .collect();
        for key in owed {
            let i = self.incidents[&key].clone();
            if self.muted(&i, now).is_none() {
                if let Some(rule) = self.rule(&i.rule).cloned() {
                    let mut i = i;
                    i.notified_firing = true;
                    i.last_notified_at = Some(now);
                    i.notifications += 1;
                    self.notify(&rule, &i, "firing", ctx, now, &mut ops);
                    Self::persist(&i, &mut ops);
                    self.incidents.insert(key, i);
                }
            }
        }
        self.silences.retain(|s| s.ends_at > now);
        ops
    }

    fn remember(&mut self, i: Incident) {
        self.recent.push_front(i);
        self.recent.truncate(RECENT);
    }

    fn observe(
        &mut self,
        rule: &Rule,
        key: (String, String),
        o: Observation,
        ctx: &Context,
        now: i64,
        ops: &mut Ops,
    ) {
        let unit = match &rule.condition {
            Condition::Threshold { metric, .. } => metric.unit(),
            _ => "s",
        };
        match self.incidents.get(&key).cloned() {
            None if o.active => {
                let mut i = Incident {
                    id: self.next_id,
                    rule: rule.def.name.clone(),
                    scope: o.scope.clone(),
                    mailing: o.mailing.clone(),
                    severity: rule.def.severity,
                    state: AlertState::Pending,
                    started_at: now,
                    firing_at: None,
                    resolved_at: None,
                    value: o.value,
                    threshold: Some(o.threshold),
                    unit: unit.into(),
                    what: o.what.clone(),
                    summary: String::new(),
                    acked: None,
                    last_notified_at: None,
                    notifications: 0,
                    notified_firing: false,
                };
                self.next_id += 1;
                i.summary = self.summary(rule, &i, ctx);
                self.incidents.insert(key.clone(), i);
                if rule.for_ms == 0 {
                    self.fire(rule, &key, ctx, now, ops);
                }
            }
            None => {}
            Some(mut i) => {
                i.unit = unit.into();
                i.value = o.value;
                i.threshold = Some(o.threshold);
                i.what = o.what.clone();
                i.summary = self.summary(rule, &i, ctx);
                match i.state {
                    AlertState::Pending if !o.active => {
                        // Back to normal before `for` elapsed: never fired.
                        self.incidents.remove(&key);
                    }
                    AlertState::Pending => {
                        self.incidents.insert(key.clone(), i.clone());
                        if now - i.started_at >= rule.for_ms {
                            self.fire(rule, &key, ctx, now, ops);
                        }
                    }
                    AlertState::Firing if o.cleared && now - self.started_at >= self.grace_ms => {
                        self.incidents.remove(&key);
                        i.state = AlertState::Resolved;
                        i.resolved_at = Some(now);
                        i.summary = self.summary(rule, &i, ctx);
                        if i.notified_firing {
                            i.notifications += 1;
                            i.last_notified_at = Some(now);
                            self.notify(rule, &i, "resolved", ctx, now, ops);
                        }
                        Self::persist(&i, ops);
                        Self::history_op(&i, "resolved", &i.summary, now, ops);
                        self.remember(i);
                    }
                    AlertState::Firing => {
                        let due = i
                            .last_notified_at
                            .is_some_and(|t| now - t >= rule.repeat_ms);
                        if due
                            && i.acked.is_none()
                            && i.notified_firing
                            && self.muted(&i, now).is_none()
                        {
                            i.notifications += 1;
                            i.last_notified_at = Some(now);
                            self.notify(rule, &i, "repeat", ctx, now, ops);
                            Self::persist(&i, ops);
                            Self::history_op(&i, "repeat", &i.summary, now, ops);
                        }
                        self.incidents.insert(key, i);
                    }
                    AlertState::Resolved => {}
                }
            }
        }
    }

    fn fire(
        &mut self,
        rule: &Rule,
        key: &(String, String),
        ctx: &Context,
        now: i64,
        ops: &mut Ops,
    ) {
        let mut i = self.incidents[key].clone();
        i.state = AlertState::Firing;
        i.firing_at = Some(now);
        i.summary = self.summary(rule, &i, ctx);
        if self.muted(&i, now).is_none() {
            i.notified_firing = true;
            i.notifications += 1;
            i.last_notified_at = Some(now);
            self.notify(rule, &i, "firing", ctx, now, ops);
        }
        Self::persist(&i, ops);
        Self::history_op(&i, "firing", &i.summary, now, ops);
        self.incidents.insert(key.clone(), i);
    }

    /// Replaces the rules. Incidents of rules that are gone or disabled
    /// resolve now, with their notice (sent with the old rule's words).
    pub fn set_rules(&mut self, rules: Vec<Rule>, ctx: &Context, now: i64) -> Ops {
        let mut ops = Ops::new();
        let gone: Vec<(String, String)> = self
            .incidents
            .keys()
            .filter(|(r, _)| !rules.iter().any(|n| n.def.name == *r))
            .cloned()
            .collect();
        for key in gone {
            let mut i = self.incidents.remove(&key).expect("key from the map");
            if i.state != AlertState::Firing {
                continue;
            }
            i.state = AlertState::Resolved;
            i.resolved_at = Some(now);
            if let (true, Some(rule)) = (i.notified_firing, self.rule(&i.rule).cloned()) {
                i.notifications += 1;
                i.last_notified_at = Some(now);
                self.notify(&rule, &i, "resolved", ctx, now, &mut ops);
            }
            Self::persist(&i, &mut ops);
            Self::history_op(
                &i,
                "resolved",
                "its rule was removed or disabled",
                now,
                &mut ops,
            );
            self.remember(i);
        }
        self.rules = rules;
        ops
    }

    /// Acknowledges an open incident: no more reminders; the resolved
    /// notice still comes.
    pub fn ack(
        &mut self,
        id: i64,
        by: &str,
        comment: &str,
        ctx: &Context,
        now: i64,
    ) -> Result<Ops, String> {
        let key = self
            .incidents
            .iter()
            .find(|(_, i)| i.id == id)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| format!("no open alert with id {id}"))?;
        let mut i = self.incidents[&key].clone();
        if i.state != AlertState::Firing {
            return Err(format!("alert {id} is not firing (it is {:?})", i.state).to_lowercase());
        }
        i.acked = Some(Ack {
            by: by.into(),
            comment: comment.into(),
            at: now,
        });
        let mut ops = Ops::new();
        if let Some(rule) = self.rule(&i.rule).cloned() {
            if i.notified_firing {
                i.notifications += 1;
                self.notify(&rule, &i, "acknowledged", ctx, now, &mut ops);
            }
        }
        Self::persist(&i, &mut ops);
        Self::history_op(
            &i,
            "acknowledged",
            &format!("{by}: {comment}"),
            now,
            &mut ops,
        );
        self.incidents.insert(key, i);
        Ok(ops)
    }

    /// Adds a silence; returns it with its id, and the store operations.
    pub fn silence(&mut self, mut s: Silence) -> (Silence, Ops) {
        s.id = self.next_silence;
        self.next_silence += 1;
        let ops = vec![(
            "INSERT INTO alert_silences (id, rule, scope, starts_at, ends_at, created_by, comment, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?4)",
            vec![
                Param::Int(s.id),
                Param::Text(s.rule.clone()),
                Param::Text(s.scope.clone()),
                Param::Int(s.starts_at),
                Param::Int(s.ends_at),
                Param::Text(Some(s.created_by.clone())),
                Param::Text(Some(s.comment.clone())),
            ],
        )];
        self.silences.push(s.clone());
        (s, ops)
    }

    /// Ends a silence now.
    pub fn unsilence(&mut self, id: i64, now: i64) -> Option<Ops> {
        let s = self.silences.iter_mut().find(|s| s.id == id)?;
        s.ends_at = now;
        Some(vec![(
            "UPDATE alert_silences SET ends_at = ?2 WHERE id = ?1",
            vec![Param::Int(id), Param::Int(now)],
        )])
    }

    fn view(&self, i: &Incident, now: i64) -> AlertView {
        AlertView {
            id: i.id,
            rule: i.rule.clone(),
            severity: i.severity,
            state: i.state,
            scope: i.scope.clone(),
            mailing: i.mailing.clone(),
            summary: i.summary.clone(),
            started_at: i.started_at,
            firing_at: i.firing_at,
            resolved_at: i.resolved_at,
            value: i.value,
            threshold: i.threshold,
            unit: i.unit.clone(),
            acked: i.acked.clone(),
            muted: (i.state != AlertState::Resolved)
                .then(|| self.muted(i, now))
                .flatten(),
        }
    }

    /// Pending and firing incidents: firing first, then by severity, then
    /// oldest first.
    pub fn active(&self, now: i64) -> Vec<AlertView> {
        let mut v: Vec<AlertView> = self.incidents.values().map(|i| self.view(i, now)).collect();
        v.sort_by(|a, b| {
            (b.state == AlertState::Firing)
                .cmp(&(a.state == AlertState::Firing))
                .then(b.severity.cmp(&a.severity))
                .then(a.started_at.cmp(&b.started_at))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    pub fn recent(&self, now: i64) -> Vec<AlertView> {
        self.recent.iter().map(|i| self.view(i, now)).collect()
    }

    /// The worst state among incidents of transactional scopes: for the
    /// traffic light.
    pub fn transactional_health(&self, tx_mailings: &[String]) -> mailpulse_app::protocol::Health {
        use mailpulse_app::protocol::Health;
        let mut worst = Health::Ok;
        for i in self.incidents.values() {
            let tx = i.scope == "class:transactional"
                || i.mailing.as_ref().is_some_and(|m| tx_mailings.contains(m))
                || i.rule == "feed-dead";
            if !tx {
                continue;
            }
            let h = match (i.state, i.severity) {
                (AlertState::Firing, Severity::Critical) => Health::Critical,
                (AlertState::Firing, Severity::Warning) | (AlertState::Pending, _) => {
                    Health::Warning
                }
                _ => Health::Ok,
            };
            worst = worst.max(h);
        }
        worst
    }

    /// Rules of the `each:` kind cover these mailings' scopes.
    pub fn covers_mailing(rule: &Rule) -> bool {
        matches!(rule.scope, Scope::Each(_) | Scope::Mailing(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::defaults;
    use std::time::Duration;

    const T0: i64 = 1_800_000_000_000;

    fn manager() -> Manager {
        let rules = defaults()
            .into_iter()
            .map(|d| d.compile(Duration::from_secs(1800)).unwrap())
            .collect();
        let channels = vec![
            ChannelRef {
                name: "hook".into(),
                wants_repeats: true,
                min_severity: Severity::Warning,
            },
            ChannelRef {
                name: "pager".into(),
                wants_repeats: false,
                min_severity: Severity::Critical,
            },
        ];
        Manager::new(rules, channels, T0 - STARTUP_GRACE_MS)
    }

    fn idx(m: &Manager, name: &str) -> usize {
        m.rules.iter().position(|r| r.def.name == name).unwrap()
    }

    fn obs(scope: &str, value: f64, threshold: f64, active: bool, cleared: bool) -> Observation {
        Observation {
            scope: scope.into(),
            mailing: scope.strip_prefix("mailing:").map(str::to_string),
            value: Some(value),
            threshold,
            active,
            cleared,
            what: "dispatch delay p95".into(),
        }
    }

    fn outbox(ops: &Ops) -> Vec<(String, String)> {
        ops.iter()
            .filter(|(sql, _)| sql.contains("alert_outbox"))
            .map(|(_, p)| match (&p[1], &p[2]) {
                (Param::Text(Some(c)), Param::Text(Some(k))) => (c.clone(), k.clone()),
                _ => panic!(),
            })
            .collect()
    }

    fn ctx() -> Context {
        Context {
            dashboard_url: "http://mp.test".into(),
            mailing_names: [("9001".to_string(), "Password reset".to_string())].into(),
        }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_once() {
        let mut m = manager();
        let r = idx(&m, "transactional-dispatch-delay");
        let scope = "class:transactional";
        // True, but `for` is 2 minutes: pending, nothing sent.
        let ops = m.step(
            vec![(r, vec![obs(scope, 80.0, 60.0, true, false)])],
            &ctx(),
            T0,
        );
        assert!(outbox(&ops).is_empty());
        assert_eq!(m.active(T0)[0].state, AlertState::Pending);
        let ops = m.step(
            vec![(r, vec![obs(scope, 85.0, 60.0, true, false)])],
            &ctx(),
            T0 + 60_000,
        );
        assert!(outbox(&ops).is_empty());
        // Two minutes in: firing, one notification per channel.
        let ops = m.step(
            vec![(r, vec![obs(scope, 90.0, 60.0, true, false)])],
            &ctx(),
            T0 + 120_000,
        );
        assert_eq!(
            outbox(&ops),
            vec![
                ("hook".into(), "firing".into()),
                ("pager".into(), "firing".into())
            ]
        );
        let a = &m.active(T0)[0];
        assert_eq!(a.state, AlertState::Firing);
        assert!(
            a.summary
                .contains("dispatch delay p95 1m 30s > 60 s over 5m"),
            "{}",
            a.summary
        );
        // Still above: nothing new until the repeat interval.
        let ops = m.step(
            vec![(r, vec![obs(scope, 70.0, 60.0, true, false)])],
            &ctx(),
            T0 + 180_000,
        );
        assert!(outbox(&ops).is_empty());
        // Below the threshold but above `clear` (30 s): still firing.
        let ops = m.step(
            vec![(r, vec![obs(scope, 45.0, 60.0, false, false)])],
            &ctx(),
            T0 + 200_000,
        );
        assert!(outbox(&ops).is_empty());
        assert_eq!(m.active(T0)[0].state, AlertState::Firing);
        // Cleared: exactly one resolved notice per channel.
        let ops = m.step(
            vec![(r, vec![obs(scope, 10.0, 60.0, false, true)])],
            &ctx(),
            T0 + 260_000,
        );
        assert_eq!(
            outbox(&ops),
            vec![
                ("hook".into(), "resolved".into()),
                ("pager".into(), "resolved".into())
            ]
        );
        assert!(m.active(T0).is_empty());
        assert_eq!(m.recent(T0)[0].state, AlertState::Resolved);
        let ops = m.step(
            vec![(r, vec![obs(scope, 10.0, 60.0, false, true)])],
            &ctx(),
            T0 + 270_000,
        );
        assert!(outbox(&ops).is_empty());
    }

    #[test]
    fn flapping_within_for_never_fires() {
        let mut m = manager();
        let r = idx(&m, "transactional-dispatch-delay");
        for k in 0..20 {
            let active = k % 2 == 0;
            let ops = m.step(
                vec![(
                    r,
                    vec![obs(
                        "class:transactional",
                        if active { 80.0 } else { 20.0 },
                        60.0,
                        active,
                        !active,
                    )],
                )],
                &ctx(),
                T0 + k * 30_000,
            );
            assert!(outbox(&ops).is_empty(), "step {k}");
        }
    }

    #[test]
    fn reminders_repeat_until_acknowledged_and_say_how_long() {
        let mut m = manager();
        let r = idx(&m, "transactional-oldest-queued"); // for = 0
        let scope = "class:transactional";
        let ops = m.step(
            vec![(r, vec![obs(scope, 130.0, 120.0, true, false)])],
            &ctx(),
            T0,
        );
        assert_eq!(outbox(&ops).len(), 2);
        let ops = m.step(
            vec![(r, vec![obs(scope, 1900.0, 120.0, true, false)])],
            &ctx(),
            T0 + 1_800_000,
        );
        // The pager gets no reminders; the webhook does.
        assert_eq!(outbox(&ops), vec![("hook".into(), "repeat".into())]);
        let payload = ops
            .iter()
            .find(|(s, _)| s.contains("alert_outbox"))
            .unwrap();
        let Param::Text(Some(p)) = &payload.1[4] else {
            panic!()
        };
        assert!(p.contains("Still firing after 30m 00s"), "{p}");
        let id = m.active(T0)[0].id;
        let ops = m
            .ack(id, "jane", "restarting the relay", &ctx(), T0 + 1_900_000)
            .unwrap();
        assert_eq!(
            outbox(&ops),
            vec![
                ("hook".into(), "acknowledged".into()),
                ("pager".into(), "acknowledged".into())
            ]
        );
        let ops = m.step(
            vec![(r, vec![obs(scope, 4000.0, 120.0, true, false)])],
            &ctx(),
            T0 + 3_700_000,
        );
        assert!(outbox(&ops).is_empty(), "no reminders once acknowledged");
        // The resolved notice still comes.
        let ops = m.step(
            vec![(r, vec![obs(scope, 1.0, 120.0, false, true)])],
            &ctx(),
            T0 + 3_800_000,
        );
        assert_eq!(outbox(&ops).len(), 2);
        assert!(m.ack(id, "x", "y", &ctx(), T0).is_err());
    }

    #[test]
    fn silences_mute_and_owe_the_firing_notice_when_they_end() {
        let mut m = manager();
        let r = idx(&m, "transactional-oldest-queued");
        let (s, _) = m.silence(Silence {
            id: 0,
            rule: Some("transactional-oldest-queued".into()),
            scope: None,
            starts_at: T0,
            ends_at: T0 + 600_000,
            created_by: "jane".into(),
            comment: "maintenance".into(),
        });
        assert_eq!(s.id, 1);
        let scope = "class:transactional";
        let ops = m.step(
            vec![(r, vec![obs(scope, 130.0, 120.0, true, false)])],
            &ctx(),
            T0 + 1000,
        );
        assert!(outbox(&ops).is_empty());
        assert!(m.active(T0 + 1000)[0]
            .muted
            .as_deref()
            .unwrap()
            .contains("maintenance"));
        let ops = m.step(
            vec![(r, vec![obs(scope, 700.0, 120.0, true, false)])],
            &ctx(),
            T0 + 600_000,
        );
        assert_eq!(
            outbox(&ops).len(),
            2,
            "the silence ended while still firing"
        );
    }

    #[test]
    fn feed_dead_inhibits_silence_alerts() {
        let mut m = manager();
        let feed = idx(&m, "feed-dead");
        let silent = idx(&m, "transactional-silent");
        let ops = m.step(
            vec![
                (feed, vec![obs("overall", 700.0, 600.0, true, false)]),
                (silent, vec![obs("mailing:9001", 700.0, 30.0, true, false)]),
            ],
            &ctx(),
            T0,
        );
        // Only the feed-dead alert notifies.
        let sent = outbox(&ops);
        assert_eq!(sent.len(), 2);
        let views = m.active(T0);
        let s = views
            .iter()
            .find(|v| v.rule == "transactional-silent")
            .unwrap();
        assert_eq!(s.state, AlertState::Firing);
        assert!(s.muted.as_deref().unwrap().contains("feed-dead"));
        assert!(s.summary.contains("Password reset (9001)"), "{}", s.summary);
    }

    #[test]
    fn no_resolution_during_the_startup_grace() {
        let rules = vec![defaults()[1].compile(Duration::from_secs(1800)).unwrap()];
        let mut m = Manager::new(rules, vec![], T0);
        let scope = "class:transactional";
        m.step(
            vec![(0, vec![obs(scope, 130.0, 120.0, true, false)])],
            &ctx(),
            T0,
        );
        m.step(
            vec![(0, vec![obs(scope, 1.0, 120.0, false, true)])],
            &ctx(),
            T0 + 10_000,
        );
        assert_eq!(m.active(T0).len(), 1);
        m.step(
            vec![(0, vec![obs(scope, 1.0, 120.0, false, true)])],
            &ctx(),
            T0 + STARTUP_GRACE_MS,
        );
        assert!(m.active(T0).is_empty());
    }

    #[test]
    fn a_scope_no_longer_observed_resolves() {
        let mut m = manager();
        let r = idx(&m, "transactional-silent");
        m.step(
            vec![(r, vec![obs("mailing:9001", 100.0, 30.0, true, false)])],
            &ctx(),
            T0,
        );
        let ops = m.step(vec![(r, vec![])], &ctx(), T0 + 1000);
        assert_eq!(outbox(&ops).len(), 2);
        assert!(m.active(T0).is_empty());
    }
}
