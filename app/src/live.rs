//! The browser's live link: one websocket to `/ws` shared by every page. It
//! owns connecting, following the topic the current page shows, applying
//! snapshots and deltas to reactive state, resuming from the last sequence
//! number after a reconnect (with backoff, forever), and telling the UI how
//! fresh its data is. On the server (SSR) it only provides the signals, so
//! components render the same markup on both sides.

use crate::protocol::{ServerMsg, Topic, TopicState};
use leptos::prelude::*;

/// How fresh the page's data is, as shown in the header and on the wall.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkStatus {
    /// Before the first connection (and during SSR).
    Connecting,
    /// Connected and hearing from the server.
    Live,
    /// The socket is down since `since` (ms since epoch).
    Reconnecting { since: f64 },
    /// Connected, but nothing arrived since `since` for [`STALE_AFTER_MS`].
    Stale { since: f64 },
}

/// No message for this long means the data on screen may be wrong. The
/// server sends a heartbeat well within it.
pub const STALE_AFTER_MS: f64 = 15_000.0;

/// Reactive state fed by the websocket. Cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Live {
    /// The followed topic's latest state, once a snapshot arrived.
    pub state: RwSignal<Option<(Topic, TopicState)>>,
    pub status: RwSignal<LinkStatus>,
    /// When the last message arrived (ms since epoch), 0 before any.
    pub last_message_at: RwSignal<f64>,
    /// Sequence number of `state`.
    pub seq: RwSignal<u64>,
    /// The topic the page wants.
    pub topic: RwSignal<Topic>,
}

/// What a message asks of the link, besides updating state.
#[derive(Debug, PartialEq)]
pub enum Followup {
    None,
    /// A delta did not follow the held state: ask for what was missed.
    Resume {
        topic: Topic,
        seq: u64,
    },
}

impl Live {
    fn new() -> Self {
        Live {
            state: RwSignal::new(None),
            status: RwSignal::new(LinkStatus::Connecting),
            last_message_at: RwSignal::new(0.0),
            seq: RwSignal::new(0),
            topic: RwSignal::new(Topic::Overview),
        }
    }

    /// The state of `topic`, if that is what the link holds.
    pub fn state_of(&self, topic: &Topic) -> Option<TopicState> {
        self.state.with(|s| match s {
            Some((t, state)) if t == topic => Some(state.clone()),
            _ => None,
        })
    }

    /// Applies one server message.
    pub fn apply(&self, msg: ServerMsg, now_ms: f64) -> Followup {
        self.last_message_at.set(now_ms);
        self.status.set(LinkStatus::Live);
        let wanted = self.topic.get_untracked();
        match msg {
            ServerMsg::Hello { .. } | ServerMsg::Heartbeat { .. } => Followup::None,
            ServerMsg::Error { message } => {
                leptos::logging::warn!("mailpulse: server says: {message}");
                Followup::None
            }
            ServerMsg::Snapshot { topic, seq, state } if topic == wanted => {
                self.seq.set(seq);
                self.state.set(Some((topic, state)));
                Followup::None
            }
            ServerMsg::Delta { topic, seq, delta } if topic == wanted => {
                let held = self.seq.get_untracked();
                let holds_topic = self
                    .state
                    .with_untracked(|s| s.as_ref().is_some_and(|(t, _)| *t == topic));
                if !holds_topic || seq <= held {
                    return Followup::None;
                }
                if seq != held + 1 {
                    return Followup::Resume { topic, seq: held };
                }
                self.seq.set(seq);
                self.state.update(|s| {
                    if let Some((_, state)) = s {
                        state.apply(&delta);
                    }
                });
                Followup::None
            }
            // Messages of a topic the page left.
            ServerMsg::Snapshot { .. } | ServerMsg::Delta { .. } => Followup::None,
        }
    }

    /// Follows `topic` (the page changed).
    pub fn follow(&self, topic: Topic) {
        if self.topic.get_untracked() != topic {
            self.topic.set(topic.clone());
            #[cfg(feature = "hydrate")]
            browser::send_follow(*self, topic);
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
    use super::{Followup, LinkStatus, Live, STALE_AFTER_MS};
    use crate::protocol::{ClientMsg, ServerMsg, Topic};
    use leptos::prelude::*;
    use std::cell::RefCell;
    use std::time::Duration;
    use wasm_bindgen::{prelude::*, JsCast};
    use web_sys::{MessageEvent, WebSocket};

    /// The open socket and the closures it calls. Replacing it drops the old
    /// closures, so a screen that reconnects for months does not leak.
    struct Conn {
        ws: WebSocket,
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
        // Connect once the page has hydrated and said what it follows.
        request_animation_frame(move || connect(live, 0));
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

    fn send(msg: &ClientMsg) {
        CONN.with(|c| {
            if let Some(conn) = c.borrow().as_ref() {
                if conn.ws.ready_state() == WebSocket::OPEN {
                    if let Ok(text) = serde_json::to_string(msg) {
                        let _ = conn.ws.send_with_str(&text);
                    }
                }
            }
        });
    }

    pub fn send_follow(_live: Live, topic: Topic) {
        send(&ClientMsg::Subscribe { topic });
    }

    /// Backoff between attempts: 0.5 s doubling to 10 s, never giving up.
    fn backoff(attempt: u32) -> Duration {
        Duration::from_millis((500u64 << attempt.min(5)).min(10_000))
    }

    fn url(live: Live) -> Option<String> {
        let loc = web_sys::window()?.location();
        let scheme = if loc.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        let topic = live.topic.get_untracked();
        let held = live
            .state
            .with_untracked(|s| s.as_ref().is_some_and(|(t, _)| *t == topic));
        let topic_q = js_sys::encode_uri_component(&topic.to_string());
        // Resume where this page left off; the server sends what was missed,
        // or a snapshot when it no longer has it.
        let seq = if held {
            format!("&seq={}", live.seq.get_untracked())
        } else {
            String::new()
        };
        Some(format!(
            "{scheme}://{}/ws?topic={topic_q}{seq}",
            loc.host().ok()?
        ))
    }

    fn connect(live: Live, attempt: u32) {
        let Some(ws) = url(live).and_then(|u| WebSocket::new(&u).ok()) else {
            schedule_reconnect(live, attempt);
            return;
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                // `from_slice`, like the server functions' decoder: one
                // compiled deserializer per type in the wasm, not two.
                match serde_json::from_slice::<ServerMsg>(text.as_bytes()) {
                    Ok(msg) => {
                        if let Followup::Resume { topic, seq } = live.apply(msg, now()) {
                            send(&ClientMsg::Resume { topic, seq });
                        }
                    }
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
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let old = CONN.with(|c| {
            c.borrow_mut().replace(Conn {
                ws,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MailingsDelta, MailingsState, RowsDelta, TopicDelta};

    fn mailings(n: usize) -> TopicState {
        TopicState::Mailings(MailingsState {
            now: 0,
            mailings: (0..n)
                .map(|i| crate::protocol::MailingRow {
                    id: i.to_string(),
                    ..Default::default()
                })
                .collect(),
            alerts: vec![],
        })
    }

    fn delta(seq: u64, id: &str) -> ServerMsg {
        ServerMsg::Delta {
            topic: Topic::Mailings,
            seq,
            delta: TopicDelta::Mailings(MailingsDelta {
                now: 1,
                mailings: Some(RowsDelta {
                    upsert: vec![crate::protocol::MailingRow {
                        id: id.into(),
                        ..Default::default()
                    }],
                    remove: vec![],
                }),
                alerts: None,
            }),
        }
    }

    #[test]
    fn snapshot_then_deltas_in_order_and_a_gap_asks_to_resume() {
        let owner = Owner::new();
        owner.with(|| {
            let live = Live::new();
            live.topic.set(Topic::Mailings);
            live.apply(
                ServerMsg::Snapshot {
                    topic: Topic::Mailings,
                    seq: 10,
                    state: mailings(1),
                },
                1.0,
            );
            assert_eq!(live.apply(delta(11, "x"), 2.0), Followup::None);
            assert_eq!(live.seq.get_untracked(), 11);
            // A repeat is ignored.
            assert_eq!(live.apply(delta(11, "y"), 3.0), Followup::None);
            // A gap asks for the missed deltas.
            assert_eq!(
                live.apply(delta(13, "z"), 4.0),
                Followup::Resume {
                    topic: Topic::Mailings,
                    seq: 11
                }
            );
            let TopicState::Mailings(m) = live.state_of(&Topic::Mailings).unwrap() else {
                panic!()
            };
            assert_eq!(m.mailings.len(), 2);
            // Another topic's messages do not touch the state.
            live.apply(
                ServerMsg::Snapshot {
                    topic: Topic::Wall,
                    seq: 99,
                    state: mailings(5),
                },
                5.0,
            );
            assert_eq!(live.seq.get_untracked(), 11);
        });
    }
}
