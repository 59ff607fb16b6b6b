//! The websocket endpoint `/ws` (protocol: `docs/protocol.md`). Each
//! connection follows one topic at a time: `hello`, then a snapshot (or,
//! when resuming, the missed deltas), then deltas as the hub publishes them.
//! A client that falls behind the broadcast buffer is resynced with a
//! snapshot; one whose socket stays blocked is dropped. Neither can slow the
//! engine or other clients.

use crate::hub::{Channel, Frame};
use crate::metrics::LiveHandle;
use crate::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::StreamExt;
use mailpulse_app::protocol::{ClientMsg, ServerMsg, Topic, PROTOCOL_VERSION};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// A quiet connection gets an application heartbeat this often: well
/// inside the 15 s after which the browser calls its data stale, and inside
/// the 30-60 s idle timeouts of common proxies.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A client whose socket accepts nothing for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code: the server is going away (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;

/// `?topic=…&seq=…`: what to follow from the start, and from where.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    topic: Option<String>,
    seq: Option<u64>,
}

pub async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    ws: WebSocketUpgrade,
) -> Response {
    let live = state.live.clone();
    let shutdown = state.shutdown.clone();
    let tick_ms = state.config.live.tick_ms;
    // Small buffers: a wall of idle dashboards should cost little memory.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            let hub = live.hub.clone();
            hub.stats.clients.fetch_add(1, Ordering::Relaxed);
            Connection {
                live,
                socket,
                tick_ms,
                follow: None,
            }
            .serve(params, shutdown)
            .await;
            hub.stats.clients.fetch_sub(1, Ordering::Relaxed);
        })
}

struct Following {
    channel: Arc<Channel>,
    frames: broadcast::Receiver<Frame>,
    /// The last seq this client holds.
    seq: u64,
}

struct Connection {
    live: LiveHandle,
    socket: WebSocket,
    tick_ms: u64,
    follow: Option<Following>,
}

enum Step {
    Continue,
    Stop,
}

impl Connection {
    async fn serve(mut self, params: Params, shutdown: CancellationToken) {
        let hello = ServerMsg::Hello {
            server: format!("mailpulse {}", env!("CARGO_PKG_VERSION")),
            protocol: PROTOCOL_VERSION,
            tick_ms: self.tick_ms,
            heartbeat_ms: HEARTBEAT.as_millis() as u64,
        };
        if self.send(crate::hub::serialize(&hello)).await.is_err() {
            return;
        }
        let first = match params.topic.as_deref().map(str::parse::<Topic>) {
            None => Ok(Topic::Overview),
            Some(t) => t,
        };
        let step = match first {
            Ok(topic) => self.follow(topic, params.seq).await,
            Err(e) => self.error(e).await,
        };
        if let Step::Stop = step {
            return;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let step = tokio::select! {
                frame = next_frame(&mut self.follow) => self.forward(frame).await,
                msg = self.socket.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.client_message(&t).await,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Step::Stop,
                    Some(Ok(_)) => Step::Continue,
                },
                _ = heartbeat.tick() => {
                    let beat = ServerMsg::Heartbeat { now: chrono::Utc::now().timestamp_millis() };
                    self.send_step(crate::hub::serialize(&beat)).await
                },
                _ = shutdown.cancelled() => {
                    let _ = self.socket.send(Message::Close(Some(CloseFrame {
                        code: CLOSE_GOING_AWAY,
                        reason: "server shutting down".into(),
                    }))).await;
                    Step::Stop
                }
            };
            match step {
                Step::Continue => heartbeat.reset(),
                Step::Stop => return,
            }
        }
    }

    /// Starts following `topic`: the deltas after `seq` when the hub still
    /// has them all, else a snapshot.
    async fn follow(&mut self, topic: Topic, seq: Option<u64>) -> Step {
        if self.live.view(topic.clone()).await.is_none() {
            return self
                .error(format!(
                    "{topic} has no data (no event of that mailing is known)"
                ))
                .await;
        }
        let Some(channel) = self.live.hub.channel(&topic) else {
            return self.error(format!("{topic} is not available")).await;
        };
        // Subscribe before reading what to send first: nothing falls between.
        let frames = channel.subscribe();
        let missed = seq.and_then(|s| channel.since(s).map(|f| (s, f)));
        let (held, first) = match missed {
            Some((s, frames)) => {
                let last = frames.last().map_or(s, |f| f.seq);
                (last, frames.into_iter().map(|f| f.bytes).collect())
            }
            None => {
                let current = channel.current();
                (current.seq, vec![current.snapshot()])
            }
        };
        self.follow = Some(Following {
            channel,
            frames,
            seq: held,
        });
        for bytes in first {
            if let Step::Stop = self.send_step(bytes).await {
                return Step::Stop;
            }
        }
        Step::Continue
    }

    async fn forward(&mut self, frame: Result<Frame, RecvError>) -> Step {
        let Some(f) = self.follow.as_mut() else {
            return Step::Continue;
        };
        match frame {
            Ok(frame) if frame.seq <= f.seq => Step::Continue,
            Ok(frame) => {
                f.seq = frame.seq;
                self.send_step(frame.bytes).await
            }
            Err(RecvError::Lagged(_)) => {
                let current = f.channel.current();
                f.seq = current.seq;
                self.live.hub.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(topic = %f.channel.topic, "slow websocket client resynced");
                self.send_step(current.snapshot()).await
            }
            Err(RecvError::Closed) => {
                // The topic was dropped; follow it again.
                let topic = f.channel.topic.clone();
                let seq = f.seq;
                self.follow(topic, Some(seq)).await
            }
        }
    }

    async fn client_message(&mut self, text: &str) -> Step {
        match serde_json::from_str::<ClientMsg>(text) {
            Ok(ClientMsg::Subscribe { topic }) => self.follow(topic, None).await,
            Ok(ClientMsg::Resume { topic, seq }) => self.follow(topic, Some(seq)).await,
            Err(e) => self.error(format!("bad message: {e}")).await,
        }
    }

    async fn error(&mut self, message: String) -> Step {
        self.send_step(crate::hub::serialize(&ServerMsg::Error { message }))
            .await
    }

    async fn send_step(&mut self, bytes: Utf8Bytes) -> Step {
        match self.send(bytes).await {
            Ok(()) => Step::Continue,
            Err(()) => Step::Stop,
        }
    }

    async fn send(&mut self, bytes: Utf8Bytes) -> Result<(), ()> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(bytes))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(()),
            Err(_) => {
                self.live.hub.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!("websocket client dropped: its socket accepted nothing for 10 s");
                Err(())
            }
        }
    }
}

/// The next frame of the followed topic; pending forever when none.
async fn next_frame(follow: &mut Option<Following>) -> Result<Frame, RecvError> {
    match follow {
        Some(f) => f.frames.recv().await,
        None => std::future::pending().await,
    }
}
