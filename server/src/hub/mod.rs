//! Websocket fan-out: one channel per topic. The engine publishes each new
//! state; the hub diffs it against the last one, serialises the delta once,
//! keeps the recent deltas for clients that resume, and broadcasts the
//! bytes to every subscriber. It never waits for a subscriber: a client that
//! falls behind the broadcast buffer is resynced with a snapshot.

use axum::extract::ws::Utf8Bytes;
use mailpulse_app::protocol::{ServerMsg, Topic, TopicState};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::broadcast;

/// Deltas buffered per subscriber (the broadcast ring). At the default
/// 100 ms tick that is 6.4 s of updates; a client further behind is resynced
/// with a snapshot instead of holding memory or slowing anyone.
pub const FRAME_QUEUE: usize = 64;
/// Deltas kept per topic for `resume`: 10 minutes of ticks with changes.
pub const HISTORY: usize = 6000;

/// One serialised message, shared by all subscribers.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub bytes: Utf8Bytes,
}

/// A topic's state as of `seq`, with its snapshot message serialised on
/// first use and then shared.
#[derive(Debug)]
pub struct Published {
    pub topic: Topic,
    pub seq: u64,
    pub state: TopicState,
    snapshot: OnceLock<Utf8Bytes>,
}

impl Published {
    pub fn snapshot(&self) -> Utf8Bytes {
        self.snapshot
            .get_or_init(|| {
                serialize(&ServerMsg::Snapshot {
                    topic: self.topic.clone(),
                    seq: self.seq,
                    state: self.state.clone(),
                })
            })
            .clone()
    }
}

pub fn serialize(msg: &ServerMsg) -> Utf8Bytes {
    serde_json::to_string(msg)
        .expect("protocol messages always serialise")
        .into()
}

pub struct Channel {
    pub topic: Topic,
    frames: broadcast::Sender<Frame>,
    /// Written once per tick by the engine; read by new subscribers.
    current: RwLock<Arc<Published>>,
    /// Recent deltas, oldest first, for `resume`.
    history: Mutex<VecDeque<Frame>>,
}

impl Channel {
    pub fn current(&self) -> Arc<Published> {
        self.current.read().expect("hub lock poisoned").clone()
    }

    /// Subscribe *before* reading [`Channel::current`] or
    /// [`Channel::since`], then skip frames with `seq` already seen: no
    /// delta can fall between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.frames.subscribe()
    }

    /// The deltas after `seq`, if all of them are still kept.
    pub fn since(&self, seq: u64) -> Option<Vec<Frame>> {
        let current = self.current().seq;
        if seq == current {
            return Some(vec![]);
        }
        if seq > current {
            return None;
        }
        let history = self.history.lock().expect("hub lock poisoned");
        let first = history.front()?.seq;
        (seq + 1 >= first).then(|| history.iter().filter(|f| f.seq > seq).cloned().collect())
    }

    pub fn subscribers(&self) -> usize {
        self.frames.receiver_count()
    }
}

/// Counters of the fan-out, read by `/metrics`.
#[derive(Debug, Default)]
pub struct HubStats {
    pub clients: AtomicU64,
    pub resyncs: AtomicU64,
    pub dropped: AtomicU64,
    pub frames_published: AtomicU64,
}

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<Topic, Arc<Channel>>>,
    pub stats: HubStats,
}

impl Hub {
    pub fn channel(&self, topic: &Topic) -> Option<Arc<Channel>> {
        self.topics
            .lock()
            .expect("hub lock poisoned")
            .get(topic)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Topic> {
        self.topics
            .lock()
            .expect("hub lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Publishes `state` for `topic`: the first state opens the channel at
    /// seq `first_seq`; later ones become a delta (if anything changed)
    /// with the next seq. Returns the channel.
    ///
    /// The engine passes the current time in ms as `first_seq`, so numbers
    /// keep growing across restarts and a client resuming with a number
    /// from before a restart gets a snapshot, never a delta that does not
    /// fit its state.
    pub fn publish(&self, topic: &Topic, state: TopicState, first_seq: u64) -> Arc<Channel> {
        let existing = self.channel(topic);
        let Some(channel) = existing else {
            let (frames, _) = broadcast::channel(FRAME_QUEUE);
            let channel = Arc::new(Channel {
                topic: topic.clone(),
                frames,
                current: RwLock::new(Arc::new(Published {
                    topic: topic.clone(),
                    seq: first_seq.max(1),
                    state,
                    snapshot: OnceLock::new(),
                })),
                history: Mutex::new(VecDeque::new()),
            });
            self.topics
                .lock()
                .expect("hub lock poisoned")
                .insert(topic.clone(), channel.clone());
            return channel;
        };
        let prev = channel.current();
        if let Some(delta) = prev.state.delta_to(&state) {
            let seq = prev.seq + 1;
            let frame = Frame {
                seq,
                bytes: serialize(&ServerMsg::Delta {
                    topic: topic.clone(),
                    seq,
                    delta,
                }),
            };
            *channel.current.write().expect("hub lock poisoned") = Arc::new(Published {
                topic: topic.clone(),
                seq,
                state,
                snapshot: OnceLock::new(),
            });
            {
                let mut h = channel.history.lock().expect("hub lock poisoned");
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(frame.clone());
            }
            self.stats.frames_published.fetch_add(1, Ordering::Relaxed);
            // Nobody listening is not an error.
            let _ = channel.frames.send(frame);
        }
        channel
    }

    /// Drops a topic nobody follows (its state is rebuilt on demand).
    pub fn remove(&self, topic: &Topic) {
        self.topics.lock().expect("hub lock poisoned").remove(topic);
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("topics", &self.topics().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_app::protocol::{MailingRow, MailingsState};

    fn state(ids: &[&str]) -> TopicState {
        TopicState::Mailings(MailingsState {
            now: 0,
            mailings: ids
                .iter()
                .map(|id| MailingRow {
                    id: id.to_string(),
                    ..MailingRow::default()
                })
                .collect(),
            alerts: vec![],
        })
    }

    #[test]
    fn publishing_numbers_deltas_and_keeps_them_for_resume() {
        let hub = Hub::default();
        let t = Topic::Mailings;
        let ch = hub.publish(&t, state(&["a"]), 1);
        assert_eq!(ch.current().seq, 1);
        let mut rx = ch.subscribe();
        hub.publish(&t, state(&["a"]), 1); // no change: no seq
        assert_eq!(ch.current().seq, 1);
        hub.publish(&t, state(&["a", "b"]), 1);
        hub.publish(&t, state(&["b"]), 1);
        assert_eq!(ch.current().seq, 3);
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert_eq!(rx.try_recv().unwrap().seq, 3);
        assert_eq!(
            ch.since(1)
                .unwrap()
                .iter()
                .map(|f| f.seq)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(ch.since(3).unwrap().len(), 0);
        assert!(ch.since(9).is_none());
        let snap = ch.current().snapshot();
        assert!(snap.as_str().contains(r#""seq":3"#));
    }

    #[test]
    fn old_history_is_forgotten_and_resume_falls_back_to_a_snapshot() {
        let hub = Hub::default();
        let t = Topic::Mailings;
        hub.publish(&t, state(&[]), 1);
        for i in 0..HISTORY + 10 {
            hub.publish(&t, state(&[&i.to_string()]), 1);
        }
        let ch = hub.channel(&t).unwrap();
        assert!(ch.since(1).is_none());
        assert!(ch.since(ch.current().seq - 5).is_some());
    }
}
