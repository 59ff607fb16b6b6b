//! The browser's live link: one websocket to `/ws` shared by every page. It
//! owns connecting, applying snapshots and deltas to reactive state,
//! reconnecting with backoff forever, and telling the UI how fresh its data
//! is. On the server (SSR) it only provides the empty signals, so components
//! render the same markup on both sides.

use crate::protocol::{OverviewState, ServerMsg};
use leptos::prelude::*;

/// How fresh the page's data is, as shown in the header and on the wall.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkStatus {
    /// Before the first connection (and during SSR).
    Connecting,
    /// Connected and hearing from the server.
    Live,
    /// The socket is down; `since` is when it went down (ms since epoch).
    Reconnecting { since: f64 },
    /// Connected, but nothing arrived for [`STALE_AFTER_MS`].
    Stale { since: f64 },
}

/// No message for this long means the data on screen may be wrong. The
/// server sends a heartbeat well within it.
pub const STALE_AFTER_MS: f64 = 15_000.0;

/// Reactive state fed by the websocket. Cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Live {
    /// The latest overview state, once the socket delivered a snapshot.
    pub overview: RwSignal<Option<OverviewState>>,
    pub status: RwSignal<LinkStatus>,
    /// When the last message arrived (ms since epoch), 0 before any.
    pub last_message_at: RwSignal<f64>,
    /// Sequence number of the state in `overview`.
    pub seq: RwSignal<u64>,
}

impl Live {
    fn new() -> Self {
        Live {
            overview: RwSignal::new(None),
            status: RwSignal::new(LinkStatus::Connecting),
            last_message_at: RwSignal::new(0.0),
            seq: RwSignal::new(0),
        }
    }

    /// Applies one server message. A delta that does not follow the state we
    /// hold is ignored; the server's resync (a snapshot) repairs it.
    pub fn apply(&self, msg: ServerMsg, now_ms: f64) {
        self.last_message_at.set(now_ms);
        self.status.set(LinkStatus::Live);
        match msg {
            ServerMsg::Hello { .. } | ServerMsg::Heartbeat { .. } => {}
            ServerMsg::Snapshot { seq, state } => {
                self.seq.set(seq);
                self.overview.set(Some(state));
            }
            ServerMsg::Delta { seq, counts } => {
                if self.seq.get_untracked() + 1 == seq {
                    self.seq.set(seq);
                    self.overview.update(|s| {
                        if let Some(s) = s {
                            s.apply(&counts)
                        }
                    });
                }
            }
        }
    }
}

/// Puts the live link into context and, in the browser, starts it.
pub fn provide_live() {
    let live = Live::new();
    provide_context(live);
    #[cfg(feature = "hydrate")]
    browser::start(live);
}

/// The live link from context.
pub fn use_live() -> Live {
    expect_context::<Live>()
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::{LinkStatus, Live, STALE_AFTER_MS};
    use crate::protocol::ServerMsg;
    use leptos::prelude::*;
    use std::cell::RefCell;
    use std::time::Duration;
    use wasm_bindgen::{prelude::*, JsCast};
    use web_sys::{MessageEvent, WebSocket};

    /// The open socket and the closures it calls. Replacing it drops the old
    /// closures, so a screen that reconnects for months does not leak.
    struct Conn {
        ws: WebSocket,
        _on_open: Closure<dyn FnMut()>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_close: Closure<dyn FnMut()>,
    }

    thread_local! {
        static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
    }

    fn now() -> f64 {
        js_sys::Date::now()
    }

    pub fn start(live: Live) {
        connect(live, 0);
        // Staleness is judged on a timer: a dead link says nothing by itself.
        let _ = set_interval_with_handle(
            move || {
                let last = live.last_message_at.get_untracked();
                if live.status.get_untracked() == LinkStatus::Live
                    && last > 0.0
                    && now() - last > STALE_AFTER_MS
                {
                    live.status.set(LinkStatus::Stale { since: last });
                }
            },
            Duration::from_secs(1),
        );
    }

    /// Backoff between attempts: 0.5 s doubling to 10 s, never giving up.
    fn backoff(attempt: u32) -> Duration {
        Duration::from_millis((500u64 << attempt.min(5)).min(10_000))
    }

    fn url() -> Option<String> {
        let loc = web_sys::window()?.location();
        let scheme = if loc.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        Some(format!("{scheme}://{}/ws", loc.host().ok()?))
    }

    fn connect(live: Live, attempt: u32) {
        let Some(ws) = url().and_then(|u| WebSocket::new(&u).ok()) else {
            schedule_reconnect(live, attempt);
            return;
        };
        let on_open = Closure::<dyn FnMut()>::new(move || {
            live.last_message_at.set(now());
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(msg) => live.apply(msg, now()),
                    Err(err) => leptos::logging::warn!("mailpulse: bad message: {err}"),
                }
            }
        });
        let opened_at = now();
        let on_close = Closure::<dyn FnMut()>::new(move || {
            if !matches!(live.status.get_untracked(), LinkStatus::Reconnecting { .. }) {
                live.status.set(LinkStatus::Reconnecting { since: now() });
            }
            // A link that stayed up a while starts the backoff over.
            let next = if now() - opened_at > 30_000.0 {
                0
            } else {
                attempt + 1
            };
            schedule_reconnect(live, next);
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let old = CONN.with(|c| {
            c.borrow_mut().replace(Conn {
                ws,
                _on_open: on_open,
                _on_message: on_message,
                _on_close: on_close,
            })
        });
        if let Some(old) = old {
            old.ws.set_onclose(None);
            let _ = old.ws.close();
        }
    }

    fn schedule_reconnect(live: Live, attempt: u32) {
        // From a timer, not from inside on_close: replacing Conn drops the
        // closure that is running, which wasm-bindgen forbids.
        set_timeout(move || connect(live, attempt), backoff(attempt));
    }
}
