//! The engine task: it alone owns the [`LiveState`] and the alert state
//! machine. It rebuilds both from the store at start-up (then marks the
//! server ready), takes committed events and dispatch changes from a bounded
//! channel, evaluates the alert rules every second, answers view and alert
//! requests, and on every tick builds the state of each followed topic and
//! hands it to the [`Hub`], which sends only what changed. Everything else
//! talks to it through the cheap [`LiveHandle`].

use super::rebuild;
use super::state::{LiveState, MailingSettings};
use crate::alerts::machine::{ChannelRef, Context, Manager, Ops, Silence};
use crate::alerts::rules::RuleDef;
use crate::alerts::{self, RuleInfo};
use crate::config::Config;
use crate::hub::{Hub, Published};
use crate::store::dispatch::DispatchUpdate;
use crate::store::{Committed, Param, Store};
use mailpulse_app::protocol::{AlertView, Health, Topic, TopicState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Updates waiting for the engine. When it is full the store's writer waits
/// (backpressure reaches ingest as 503s) rather than dropping anything: the
/// aggregates must match the store.
const UPDATE_QUEUE: usize = 1024;
/// Requests (page renders, REST, new subscriptions, alert actions)
/// waiting. Callers wait for room; the engine answers each in microseconds.
const COMMAND_QUEUE: usize = 256;
/// A topic nobody follows or asked for is dropped after this long.
const TOPIC_IDLE_MS: i64 = 60_000;

/// What the store hands the engine after a commit.
#[derive(Debug)]
pub enum Update {
    Events(Vec<Committed>),
    Dispatches(DispatchUpdate),
}

pub(crate) enum Cmd {
    View {
        topic: Topic,
        reply: oneshot::Sender<Option<Arc<Published>>>,
    },
    SetMailing {
        id: String,
        settings: MailingSettings,
        reply: oneshot::Sender<()>,
    },
    Alerts {
        reply: oneshot::Sender<AlertsSnapshot>,
    },
    Ack {
        id: i64,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Silence {
        silence: Silence,
        reply: oneshot::Sender<Silence>,
    },
    Unsilence {
        id: i64,
        reply: oneshot::Sender<bool>,
    },
    Chart {
        id: i64,
        reply: oneshot::Sender<Option<ChartData>>,
    },
    Rules {
        reply: oneshot::Sender<Vec<RuleInfo>>,
    },
    PutRule {
        def: RuleDef,
        reply: oneshot::Sender<Result<(), String>>,
    },
    DeleteRule {
        name: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Alerts as the API lists them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertsSnapshot {
    pub active: Vec<AlertView>,
    pub recent: Vec<AlertView>,
    pub silences: Vec<Silence>,
}

/// What an alert's chart shows.
#[derive(Debug, Clone)]
pub struct ChartData {
    pub title: String,
    pub unit: String,
    pub threshold: Option<f64>,
    pub points: Vec<(i64, f64)>,
}

/// A cheap-to-clone handle on the engine.
#[derive(Clone)]
pub struct LiveHandle {
    updates: mpsc::Sender<Update>,
    cmds: mpsc::Sender<Cmd>,
    pub hub: Arc<Hub>,
}

/// The receiving ends, handed to [`spawn`].
pub struct EngineParts {
    updates: mpsc::Receiver<Update>,
    cmds: mpsc::Receiver<Cmd>,
    hub: Arc<Hub>,
}

/// The engine's channels. The store needs the handle before the engine can
/// start (the engine rebuilds from the store), hence two steps.
pub fn channels() -> (LiveHandle, EngineParts) {
    let (utx, urx) = mpsc::channel(UPDATE_QUEUE);
    let (ctx, crx) = mpsc::channel(COMMAND_QUEUE);
    let hub = Arc::new(Hub::default());
    (
        LiveHandle {
            updates: utx,
            cmds: ctx,
            hub: hub.clone(),
        },
        EngineParts {
            updates: urx,
            cmds: crx,
            hub,
        },
    )
}

impl LiveHandle {
    /// Hands committed changes to the engine, waiting if it is behind.
    /// Called from the store's writer thread (never from async code).
    pub fn submit_blocking(&self, update: Update) {
        if self.updates.blocking_send(update).is_err() {
            tracing::error!("live engine is gone; update not aggregated");
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.cmds.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// The current state of `topic` (starting to follow it if needed), or
    /// `None` for a mailing nobody has seen an event of.
    pub async fn view(&self, topic: Topic) -> Option<Arc<Published>> {
        self.ask(|reply| Cmd::View { topic, reply }).await.flatten()
    }

    /// Sets a mailing's class and name in the live state.
    pub async fn set_mailing(&self, id: String, settings: MailingSettings) {
        let _ = self
            .ask(|reply| Cmd::SetMailing {
                id,
                settings,
                reply,
            })
            .await;
    }

    pub async fn alerts(&self) -> Option<AlertsSnapshot> {
        self.ask(|reply| Cmd::Alerts { reply }).await
    }

    /// Acknowledges an alert (persisted by the engine, in order with its
    /// other alert changes).
    pub async fn ack(&self, id: i64, by: String, comment: String) -> Result<(), String> {
        self.ask(|reply| Cmd::Ack {
            id,
            by,
            comment,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the live engine is not running".into()))
    }

    pub async fn silence(&self, silence: Silence) -> Option<Silence> {
        self.ask(|reply| Cmd::Silence { silence, reply }).await
    }

    /// Ends a silence; false if there is none with that id.
    pub async fn unsilence(&self, id: i64) -> bool {
        self.ask(|reply| Cmd::Unsilence { id, reply })
            .await
            .unwrap_or(false)
    }

    pub async fn chart(&self, id: i64) -> Option<ChartData> {
        self.ask(|reply| Cmd::Chart { id, reply }).await.flatten()
    }

    pub async fn rules(&self) -> Vec<RuleInfo> {
        self.ask(|reply| Cmd::Rules { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn put_rule(&self, def: RuleDef) -> Result<(), String> {
        self.ask(|reply| Cmd::PutRule { def, reply })
            .await
            .unwrap_or_else(|| Err("the live engine is not running".into()))
    }

    pub async fn delete_rule(&self, name: String) -> Result<(), String> {
        self.ask(|reply| Cmd::DeleteRule { name, reply })
            .await
            .unwrap_or_else(|| Err("the live engine is not running".into()))
    }
}

pub struct EngineConfig {
    pub tick: Duration,
    pub config: Arc<Config>,
    pub channels: Vec<ChannelRef>,
}

/// Starts the engine: rebuild, mark `ready`, then serve until `shutdown`.
pub fn spawn(
    parts: EngineParts,
    store: Store,
    config: EngineConfig,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let now = chrono::Utc::now().timestamp_millis();
        let mut state = LiveState::new(config.config.mailing_settings());
        let rebuilt = store
            .read(move |conn| {
                let stats = rebuild::rebuild(conn, &mut state, now)?;
                let alerts = alerts::load(conn, now)?;
                Ok((state, stats, alerts))
            })
            .await;
        let (state, stored) = match rebuilt {
            Ok((state, stats, stored)) => {
                tracing::info!(
                    ms = stats.millis,
                    rollup_rows = stats.rollup_rows,
                    raw_events = stats.raw_events,
                    lag_slots = stats.lag_slots,
                    open_dispatches = state.dispatch.stats(None).depth,
                    open_alerts = stored.open.len(),
                    "live state rebuilt from the store"
                );
                (state, stored)
            }
            Err(e) => {
                // Not ready: /readyz stays 503 and ingest refuses events, so
                // nothing is counted against a wrong base.
                tracing::error!(error = %e, "cannot rebuild the live state; not ready");
                return;
            }
        };
        let rule_set = match alerts::rule_set(&config.config, &stored.rules) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "stored alert rules are invalid; using the configured ones");
                alerts::rule_set(&config.config, &[]).unwrap_or_default()
            }
        };
        let grace = humantime::parse_duration(&config.config.alerts.startup_grace)
            .map_or(crate::alerts::machine::STARTUP_GRACE_MS, |d| {
                d.as_millis() as i64
            });
        let mut manager = Manager::new(
            alerts::compile(&config.config, &rule_set),
            config.channels.clone(),
            now,
        )
        .with_grace(grace);
        manager.restore(
            stored.open,
            stored.recent,
            stored.silences,
            stored.max_id,
            stored.max_silence,
        );
        let dashboard_url = config
            .config
            .alerts
            .dashboard_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.config.addr));
        let mut engine = Engine {
            state,
            hub: parts.hub,
            store,
            wanted: HashMap::new(),
            lag_saved: HashMap::new(),
            alerts: manager,
            rule_set,
            config: config.config.clone(),
            ctx: Context {
                dashboard_url,
                mailing_names: HashMap::new(),
            },
            unsaved: Vec::new(),
        };
        engine.publish(chrono::Utc::now().timestamp_millis());
        ready.store(true, Ordering::Release);
        engine
            .run(parts.updates, parts.cmds, config.tick, shutdown)
            .await;
    })
}

struct Engine {
    state: LiveState,
    hub: Arc<Hub>,
    store: Store,
    /// When each topic was last asked for or followed (ms).
    wanted: HashMap<Topic, i64>,
    /// The last persisted 5-minute lag slot per scope.
    lag_saved: HashMap<&'static str, i64>,
    alerts: Manager,
    rule_set: Vec<RuleInfo>,
    config: Arc<Config>,
    ctx: Context,
    /// Alert operations not yet handed to the writer (its queue was full).
    unsaved: Ops,
}

impl Engine {
    async fn run(
        mut self,
        mut updates: mpsc::Receiver<Update>,
        mut cmds: mpsc::Receiver<Cmd>,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut evaluate = tokio::time::interval(Duration::from_secs(1));
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(u) => self.update(u),
                    None => break,
                },
                Some(cmd) = cmds.recv() => self.command(cmd),
                _ = ticker.tick() => self.publish(chrono::Utc::now().timestamp_millis()),
                _ = evaluate.tick() => self.evaluate(chrono::Utc::now().timestamp_millis()),
                _ = housekeeping.tick() => self.housekeeping(chrono::Utc::now().timestamp_millis()),
                _ = shutdown.cancelled() => break,
            }
        }
        // What the last evaluations decided must not be lost.
        if !self.unsaved.is_empty() {
            let _ = self.store.execute(std::mem::take(&mut self.unsaved)).await;
        }
    }

    fn update(&mut self, u: Update) {
        let now = chrono::Utc::now().timestamp_millis();
        match u {
            Update::Events(batch) => self.state.apply_all(&batch, now),
            Update::Dispatches(d) => {
                for o in &d.opened {
                    self.state.dispatch.opened(o);
                }
                for c in &d.closed {
                    self.state.dispatch.closed(c, now);
                }
            }
        }
    }

    /// Hands alert operations to the writer, in order; keeps them when its
    /// queue is full and tries again next time.
    fn save(&mut self, mut ops: Ops) {
        if ops.is_empty() && self.unsaved.is_empty() {
            return;
        }
        let mut all = std::mem::take(&mut self.unsaved);
        all.append(&mut ops);
        if !self.store.execute_nowait(all.clone()) {
            tracing::warn!(
                ops = all.len(),
                "store busy; alert changes kept for the next second"
            );
            self.unsaved = all;
        }
    }

    fn evaluate(&mut self, now: i64) {
        self.ctx.mailing_names = self
            .state
            .mailings
            .keys()
            .filter_map(|id| Some((id.clone(), self.state.name_of(id)?)))
            .collect();
        let observed = self
            .alerts
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i, alerts::eval::evaluate(r, &self.state, now)))
            .collect();
        let ops = self.alerts.step(observed, &self.ctx, now);
        self.save(ops);
    }

    fn command(&mut self, cmd: Cmd) {
        let now = chrono::Utc::now().timestamp_millis();
        match cmd {
            Cmd::View { topic, reply } => {
                let published = match self.hub.channel(&topic) {
                    Some(ch) => Some(ch.current()),
                    None => self
                        .build(&topic, now)
                        .map(|state| self.hub.publish(&topic, state, now as u64).current()),
                };
                if published.is_some() {
                    self.wanted.insert(topic, now);
                }
                let _ = reply.send(published);
            }
            Cmd::SetMailing {
                id,
                settings,
                reply,
            } => {
                self.state.set_mailing(&id, settings, now);
                let _ = reply.send(());
            }
            Cmd::Alerts { reply } => {
                let _ = reply.send(AlertsSnapshot {
                    active: self.alerts.active(now),
                    recent: self.alerts.recent(now),
                    silences: self.alerts.silences.clone(),
                });
            }
            Cmd::Ack {
                id,
                by,
                comment,
                reply,
            } => {
                let r = self.alerts.ack(id, &by, &comment, &self.ctx, now);
                let _ = reply.send(r.map(|ops| self.save(ops)));
            }
            Cmd::Silence { silence, reply } => {
                let (s, ops) = self.alerts.silence(silence);
                self.save(ops);
                let _ = reply.send(s);
            }
            Cmd::Unsilence { id, reply } => {
                let found = self.alerts.unsilence(id, now).map(|ops| self.save(ops));
                let _ = reply.send(found.is_some());
            }
            Cmd::Chart { id, reply } => {
                let data = self.alerts.chart_data(id).map(|(i, points)| ChartData {
                    title: format!(
                        "{} — {}{}",
                        i.what,
                        i.rule,
                        i.mailing
                            .as_ref()
                            .map_or(String::new(), |m| format!(" — mailing {m}"))
                    ),
                    unit: if i.unit.is_empty() {
                        "s".into()
                    } else {
                        i.unit
                    },
                    threshold: i.threshold,
                    points,
                });
                let _ = reply.send(data);
            }
            Cmd::Rules { reply } => {
                let _ = reply.send(self.rule_set.clone());
            }
            Cmd::PutRule { def, reply } => {
                let r = self.put_rule(def, now).map(|ops| self.save(ops));
                let _ = reply.send(r);
            }
            Cmd::DeleteRule { name, reply } => {
                let r = self.delete_rule(&name, now).map(|ops| self.save(ops));
                let _ = reply.send(r);
            }
        }
    }

    fn stored_rules(&self) -> Vec<RuleDef> {
        self.rule_set
            .iter()
            .filter(|r| r.origin == alerts::Origin::Api)
            .map(|r| r.def.clone())
            .collect()
    }

    fn apply_rules(&mut self, stored: Vec<RuleDef>, now: i64) -> Result<Ops, String> {
        let set = alerts::rule_set(&self.config, &stored)?;
        let ops = self
            .alerts
            .set_rules(alerts::compile(&self.config, &set), &self.ctx, now);
        self.rule_set = set;
        Ok(ops)
    }

    fn put_rule(&mut self, def: RuleDef, now: i64) -> Result<Ops, String> {
        let mut stored = self.stored_rules();
        stored.retain(|d| d.name != def.name);
        stored.push(def.clone());
        let mut ops = self.apply_rules(stored, now)?;
        let json = serde_json::to_string(&def).map_err(|e| e.to_string())?;
        ops.push((
            "INSERT INTO alert_rules (name, definition, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
             updated_at = excluded.updated_at",
            vec![
                Param::Text(Some(def.name)),
                Param::Text(Some(json)),
                Param::Int(now),
            ],
        ));
        Ok(ops)
    }

    fn delete_rule(&mut self, name: &str, now: i64) -> Result<Ops, String> {
        let mut stored = self.stored_rules();
        let before = stored.len();
        stored.retain(|d| d.name != name);
        if stored.len() == before {
            return Err(format!(
                "rule {name:?} was not set through the API (built-in and configured rules are disabled with enabled = false)"
            ));
        }
        let mut ops = self.apply_rules(stored, now)?;
        ops.push((
            "DELETE FROM alert_rules WHERE name = ?1",
            vec![Param::Text(Some(name.to_string()))],
        ));
        Ok(ops)
    }

    fn build(&mut self, topic: &Topic, now: i64) -> Option<TopicState> {
        let active = self.alerts.active(now);
        let tx_ids = self.state.transactional_ids(now);
        let tx_health = |h: &mut mailpulse_app::protocol::TransactionalHealth, m: &Manager| {
            h.status = m.transactional_health(&tx_ids);
            for tm in &mut h.mailings {
                let worst = active
                    .iter()
                    .filter(|a| a.mailing.as_deref() == Some(tm.id.as_str()))
                    .map(|a| match (a.state, a.severity) {
                        (
                            mailpulse_app::protocol::AlertState::Firing,
                            mailpulse_app::protocol::Severity::Critical,
                        ) => Health::Critical,
                        _ => Health::Warning,
                    })
                    .max()
                    .unwrap_or(Health::Ok);
                tm.status = worst;
            }
        };
        Some(match topic {
            Topic::Overview => {
                let mut o = self.state.overview(now);
                tx_health(&mut o.transactional, &self.alerts);
                o.alerts = active.clone();
                TopicState::Overview(o)
            }
            Topic::Mailings => {
                let mut m = self.state.mailings_view(now);
                m.alerts = active.clone();
                TopicState::Mailings(m)
            }
            Topic::Wall => {
                let mut w = self.state.wall(now);
                tx_health(&mut w.transactional, &self.alerts);
                w.alerts = active.clone();
                TopicState::Wall(w)
            }
            Topic::Mailing(id) => {
                let mut m = self.state.mailing(id, now)?;
                if let Some(d) = &mut m.dispatch {
                    d.health.status = active
                        .iter()
                        .filter(|a| a.mailing.as_deref() == Some(id.as_str()))
                        .map(|_| Health::Critical)
                        .max()
                        .unwrap_or(Health::Ok);
                }
                m.alerts = active.clone();
                TopicState::Mailing(m)
            }
        })
    }

    /// Builds every followed topic and lets the hub send what changed. The
    /// overview is always built: page renders and the REST API read it.
    fn publish(&mut self, now: i64) {
        let mut topics = self.hub.topics();
        if !topics.contains(&Topic::Overview) {
            topics.push(Topic::Overview);
        }
        for topic in topics {
            if let Some(state) = self.build(&topic, now) {
                let ch = self.hub.publish(&topic, state, now as u64);
                if ch.subscribers() > 0 {
                    self.wanted.insert(topic, now);
                }
            }
        }
    }

    fn housekeeping(&mut self, now: i64) {
        self.state.prune(now);
        let idle: Vec<Topic> = self
            .wanted
            .iter()
            .filter(|(t, at)| **t != Topic::Overview && **at < now - TOPIC_IDLE_MS)
            .map(|(t, _)| t.clone())
            .collect();
        for t in idle {
            let followed = self.hub.channel(&t).is_some_and(|c| c.subscribers() > 0);
            if !followed {
                self.hub.remove(&t);
                self.wanted.remove(&t);
            }
        }
        self.save_lag(now);
    }

    /// Persists completed 5-minute lag slots, for the next rebuild.
    fn save_lag(&mut self, now: i64) {
        let mut slots = Vec::new();
        for (name, lags) in [
            ("overall", &self.state.overall_lag),
            ("transactional", &self.state.transactional_lag),
            ("campaign", &self.state.campaign_lag),
        ] {
            let after = self.lag_saved.get(name).copied().unwrap_or(0);
            for (slot, bytes) in lags.completed_coarse(after, now) {
                slots.push((name, slot, bytes));
            }
        }
        if slots.is_empty() {
            return;
        }
        let newest: Vec<(&'static str, i64)> = slots.iter().map(|(n, s, _)| (*n, *s)).collect();
        let rows = slots
            .into_iter()
            .map(|(n, s, b)| (n.to_string(), s, b))
            .collect();
        if self.store.save_lag_slots(rows) {
            for (n, s) in newest {
                let e = self.lag_saved.entry(n).or_insert(s);
                *e = (*e).max(s);
            }
        }
    }
}
