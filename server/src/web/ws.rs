//! The websocket endpoint `/ws`: one connection, split into a sender task
//! that follows the engine's frames and a receiver that reads the client.
//! A client that falls behind is resynced with a snapshot; it can never slow
//! the engine or other clients.

use crate::live::{serialize, LiveHandle};
use crate::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use mailpulse_app::protocol::{ServerMsg, PROTOCOL_VERSION};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Quiet connections get an application heartbeat this often, well inside
/// the 15 s after which the browser calls its data stale, and inside the
/// 30-60 s idle timeouts of common proxies.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Close code for "server going away" (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let live = state.live.clone();
    let shutdown = state.shutdown.clone();
    // Small buffers: a wall of idle dashboards should cost little memory.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, live, shutdown))
}

async fn serve(socket: WebSocket, live: LiveHandle, shutdown: CancellationToken) {
    let (mut tx, mut rx) = socket.split();
    let mut frames = live.subscribe();
    let current = live.current();
    let mut seq = current.seq;
    let hello = serialize(&ServerMsg::Hello {
        server: format!("mailpulse {}", env!("CARGO_PKG_VERSION")),
        protocol: PROTOCOL_VERSION,
    });
    if tx.send(Message::Text(hello)).await.is_err()
        || tx
            .send(Message::Text(current.snapshot.clone()))
            .await
            .is_err()
    {
        return;
    }

    let sender = async {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let msg = tokio::select! {
                frame = frames.recv() => match frame {
                    Ok(f) if f.seq <= seq => continue,
                    Ok(f) => {
                        seq = f.seq;
                        Message::Text(f.bytes)
                    }
                    Err(RecvError::Lagged(_)) => {
                        let cur = live.current();
                        seq = cur.seq;
                        tracing::debug!(seq, "slow websocket client resynced");
                        Message::Text(cur.snapshot.clone())
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = heartbeat.tick() => Message::Text(serialize(&ServerMsg::Heartbeat { seq })),
                _ = shutdown.cancelled() => {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: CLOSE_GOING_AWAY,
                        reason: "server shutting down".into(),
                    }))).await;
                    break;
                }
            };
            if tx.send(msg).await.is_err() {
                break;
            }
            heartbeat.reset();
        }
    };
    let receiver = async {
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Close(_) = msg {
                break;
            }
        }
    };
    tokio::select! {
        _ = sender => {},
        _ = receiver => {},
    }
}
