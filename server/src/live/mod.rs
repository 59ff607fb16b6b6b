//! The live engine: one task owns the aggregates, takes committed events
//! from a bounded channel, and publishes on a fixed tick. Everything else
//! reaches it through a cheap [`LiveHandle`].
//!
//! Publishing follows the tokio-console aggregator: a new client reads the
//! current snapshot, then follows small deltas; each message is serialised
//! once and its bytes are shared by every websocket.

use crate::store::Committed;
use axum::extract::ws::Utf8Bytes;
use mailpulse_app::protocol::{Counts, OverviewState, ServerMsg};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Batches of committed events waiting for the engine. When it is full the
/// store's writer waits (backpressure reaches ingest as 503s) rather than
/// dropping events: the aggregates must match the store.
const EVENT_QUEUE: usize = 1024;
/// Deltas buffered per websocket subscriber. A client that falls further
/// behind is resynced with a snapshot, so it can never slow the engine.
pub const FRAME_QUEUE: usize = 64;

/// One serialised message, shared by all subscribers.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub bytes: Utf8Bytes,
}

/// The latest published state and its serialised snapshot.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub state: OverviewState,
    pub snapshot: Utf8Bytes,
}

struct Shared {
    /// Written once per tick by the engine, read by new subscribers and page
    /// renders. A std lock: held only to clone an Arc-backed value.
    current: RwLock<Arc<Published>>,
    frames: broadcast::Sender<Frame>,
}

/// A cheap-to-clone handle on the engine.
#[derive(Clone)]
pub struct LiveHandle {
    events: mpsc::Sender<Vec<Committed>>,
    shared: Arc<Shared>,
}

impl LiveHandle {
    /// Hands committed events to the engine, waiting if it is behind. Called
    /// from the store's writer thread (never from async code).
    pub fn submit_blocking(&self, events: Vec<Committed>) {
        if self.events.blocking_send(events).is_err() {
            tracing::error!("live engine is gone; events not aggregated");
        }
    }

    /// The current published state.
    pub fn current(&self) -> Arc<Published> {
        self.shared
            .current
            .read()
            .expect("live state lock poisoned")
            .clone()
    }

    /// Subscribes to deltas. Subscribe *before* reading [`Self::current`]
    /// so no delta between the two is missed; skip frames with
    /// `seq <= snapshot seq`.
    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.shared.frames.subscribe()
    }
}

/// Starts the engine task with the given tick.
pub fn spawn(tick: Duration, shutdown: CancellationToken) -> LiveHandle {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let (frames, _) = broadcast::channel(FRAME_QUEUE);
    let state = OverviewState::default();
    let shared = Arc::new(Shared {
        current: RwLock::new(Arc::new(publish(0, state.clone()))),
        frames,
    });
    let engine = Engine {
        shared: shared.clone(),
        state,
        changed: Counts::new(),
        seq: 0,
    };
    tokio::spawn(engine.run(rx, tick, shutdown));
    LiveHandle { events: tx, shared }
}

fn publish(seq: u64, state: OverviewState) -> Published {
    let snapshot = serialize(&ServerMsg::Snapshot {
        seq,
        state: state.clone(),
    });
    Published {
        seq,
        state,
        snapshot,
    }
}

pub fn serialize(msg: &ServerMsg) -> Utf8Bytes {
    serde_json::to_string(msg)
        .expect("protocol messages always serialise")
        .into()
}

struct Engine {
    shared: Arc<Shared>,
    state: OverviewState,
    /// Counts changed since the last tick.
    changed: Counts,
    seq: u64,
}

impl Engine {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Committed>>,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(events) => self.apply(&events),
                    None => break,
                },
                _ = ticker.tick() => self.tick(),
                _ = shutdown.cancelled() => break,
            }
        }
    }

    fn apply(&mut self, events: &[Committed]) {
        for c in events {
            let t = c.event.event_type;
            let n = self.state.counts.entry(t).or_insert(0);
            *n += 1;
            self.changed.insert(t, *n);
        }
    }

    /// Publishes what changed since the last tick; a quiet tick sends nothing.
    fn tick(&mut self) {
        if self.changed.is_empty() {
            return;
        }
        self.seq += 1;
        let counts = std::mem::take(&mut self.changed);
        let bytes = serialize(&ServerMsg::Delta {
            seq: self.seq,
            counts,
        });
        let published = Arc::new(publish(self.seq, self.state.clone()));
        *self
            .shared
            .current
            .write()
            .expect("live state lock poisoned") = published;
        // No subscribers is not an error.
        let _ = self.shared.frames.send(Frame {
            seq: self.seq,
            bytes,
        });
    }
}
