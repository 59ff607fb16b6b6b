//! The engine task: it alone owns the [`LiveState`]. It rebuilds it from the
//! store at start-up (then marks the server ready), takes committed events
//! from a bounded channel, answers view requests, and on every tick builds
//! the state of each followed topic and hands it to the [`Hub`], which
//! sends only what changed. Everything else talks to it through the cheap
//! [`LiveHandle`].

use super::rebuild;
use super::state::{LiveState, MailingSettings};
use crate::hub::{Hub, Published};
use crate::store::{Committed, Store};
use mailpulse_app::protocol::{Topic, TopicState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Batches of committed events waiting for the engine. When it is full the
/// store's writer waits (backpressure reaches ingest as 503s) rather than
/// dropping events: the aggregates must match the store.
const EVENT_QUEUE: usize = 1024;
/// View requests (page renders, REST, new subscriptions) waiting. Callers
/// wait for room; the engine answers each in microseconds.
const COMMAND_QUEUE: usize = 256;
/// A topic nobody follows or asked for is dropped after this long.
const TOPIC_IDLE_MS: i64 = 60_000;

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
}

/// A cheap-to-clone handle on the engine.
#[derive(Clone)]
pub struct LiveHandle {
    events: mpsc::Sender<Vec<Committed>>,
    cmds: mpsc::Sender<Cmd>,
    pub hub: Arc<Hub>,
}

/// The receiving ends, handed to [`spawn`].
pub struct EngineParts {
    events: mpsc::Receiver<Vec<Committed>>,
    cmds: mpsc::Receiver<Cmd>,
    hub: Arc<Hub>,
}

/// The engine's channels. The store needs the handle before the engine can
/// start (the engine rebuilds from the store), hence two steps.
pub fn channels() -> (LiveHandle, EngineParts) {
    let (etx, erx) = mpsc::channel(EVENT_QUEUE);
    let (ctx, crx) = mpsc::channel(COMMAND_QUEUE);
    let hub = Arc::new(Hub::default());
    (
        LiveHandle {
            events: etx,
            cmds: ctx,
            hub: hub.clone(),
        },
        EngineParts {
            events: erx,
            cmds: crx,
            hub,
        },
    )
}

impl LiveHandle {
    /// Hands committed events to the engine, waiting if it is behind. Called
    /// from the store's writer thread (never from async code).
    pub fn submit_blocking(&self, events: Vec<Committed>) {
        if self.events.blocking_send(events).is_err() {
            tracing::error!("live engine is gone; events not aggregated");
        }
    }

    /// The current state of `topic` (starting to follow it if needed), or
    /// `None` for a mailing nobody has seen an event of.
    pub async fn view(&self, topic: Topic) -> Option<Arc<Published>> {
        let (reply, answer) = oneshot::channel();
        self.cmds.send(Cmd::View { topic, reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Sets a mailing's class and name in the live state.
    pub async fn set_mailing(&self, id: String, settings: MailingSettings) {
        let (reply, answer) = oneshot::channel();
        if self
            .cmds
            .send(Cmd::SetMailing {
                id,
                settings,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = answer.await;
        }
    }
}

pub struct EngineConfig {
    pub tick: Duration,
    pub configured: HashMap<String, MailingSettings>,
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
        let mut state = LiveState::new(config.configured);
        let rebuilt = store
            .read(move |conn| {
                let stats = rebuild::rebuild(conn, &mut state, now)?;
                Ok((state, stats))
            })
            .await;
        let state = match rebuilt {
            Ok((state, stats)) => {
                tracing::info!(
                    ms = stats.millis,
                    rollup_rows = stats.rollup_rows,
                    raw_events = stats.raw_events,
                    lag_slots = stats.lag_slots,
                    "live state rebuilt from the store"
                );
                state
            }
            Err(e) => {
                // Not ready: /readyz stays 503 and ingest refuses events, so
                // nothing is counted against a wrong base.
                tracing::error!(error = %e, "cannot rebuild the live state; not ready");
                return;
            }
        };
        let mut engine = Engine {
            state,
            hub: parts.hub,
            store,
            wanted: HashMap::new(),
            lag_saved: HashMap::new(),
        };
        engine.publish(chrono::Utc::now().timestamp_millis());
        ready.store(true, Ordering::Release);
        engine
            .run(parts.events, parts.cmds, config.tick, shutdown)
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
}

impl Engine {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Vec<Committed>>,
        mut cmds: mpsc::Receiver<Cmd>,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                batch = events.recv() => match batch {
                    Some(batch) => {
                        let now = chrono::Utc::now().timestamp_millis();
                        for c in &batch {
                            self.state.apply(c, now);
                        }
                    }
                    None => break,
                },
                Some(cmd) = cmds.recv() => self.command(cmd),
                _ = ticker.tick() => self.publish(chrono::Utc::now().timestamp_millis()),
                _ = housekeeping.tick() => self.housekeeping(chrono::Utc::now().timestamp_millis()),
                _ = shutdown.cancelled() => break,
            }
        }
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
        }
    }

    fn build(&mut self, topic: &Topic, now: i64) -> Option<TopicState> {
        Some(match topic {
            Topic::Overview => TopicState::Overview(self.state.overview(now)),
            Topic::Mailings => TopicState::Mailings(self.state.mailings_view(now)),
            Topic::Wall => TopicState::Wall(self.state.wall(now)),
            Topic::Mailing(id) => TopicState::Mailing(self.state.mailing(id, now)?),
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
