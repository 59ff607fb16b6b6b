//! The messages on `/ws` and the topics a client can subscribe to. See
//! `docs/protocol.md` for the conversation.

use super::tagged::{self, unknown, TagFirst};
use super::views::{TopicDelta, TopicState};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped whenever a message changes shape incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a client follows. On the wire: `"overview"`, `"mailings"`,
/// `"wall"` or `"mailing:<id>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Overview,
    Mailings,
    Wall,
    Mailing(String),
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Overview => f.write_str("overview"),
            Topic::Mailings => f.write_str("mailings"),
            Topic::Wall => f.write_str("wall"),
            Topic::Mailing(id) => write!(f, "mailing:{id}"),
        }
    }
}

impl std::str::FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "overview" => Ok(Topic::Overview),
            "mailings" => Ok(Topic::Mailings),
            "wall" => Ok(Topic::Wall),
            _ => match s.strip_prefix("mailing:") {
                Some(id) if !id.is_empty() && id.len() <= 200 => Ok(Topic::Mailing(id.to_string())),
                _ => Err(format!(
                    "unknown topic {s:?}: expected overview, mailings, wall or mailing:<id>"
                )),
            },
        }
    }
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Messages the server sends. Read tag first (see [`super::tagged`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Hello {
        server: String,
        protocol: u32,
        /// How often deltas are published at most.
        tick_ms: u64,
        /// A heartbeat comes at least this often.
        heartbeat_ms: u64,
    },
    /// The full state of `topic` as of `seq`.
    Snapshot {
        topic: Topic,
        seq: u64,
        state: TopicState,
    },
    /// What changed from `seq - 1` to `seq`.
    Delta {
        topic: Topic,
        seq: u64,
        delta: TopicDelta,
    },
    /// Sent when nothing else was for a while.
    Heartbeat { now: i64 },
    /// A request of the client could not be served; the connection stays.
    Error { message: String },
}

impl TagFirst for ServerMsg {
    const TAG: &'static str = "type";
    const EXPECTING: &'static str = "a server message";
    const VARIANTS: &'static [&'static str] = &["hello", "snapshot", "delta", "heartbeat", "error"];

    fn variant<'de, D: serde::Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error> {
        // The variants' fields, as structs serde can read from the rest of
        // the map.
        #[derive(Deserialize)]
        struct Hello {
            server: String,
            protocol: u32,
            tick_ms: u64,
            heartbeat_ms: u64,
        }
        #[derive(Deserialize)]
        struct Snapshot {
            topic: Topic,
            seq: u64,
            state: TopicState,
        }
        #[derive(Deserialize)]
        struct Delta {
            topic: Topic,
            seq: u64,
            delta: TopicDelta,
        }
        #[derive(Deserialize)]
        struct Heartbeat {
            now: i64,
        }
        #[derive(Deserialize)]
        struct Error {
            message: String,
        }
        Ok(match tag {
            "hello" => {
                let m = Hello::deserialize(rest)?;
                ServerMsg::Hello {
                    server: m.server,
                    protocol: m.protocol,
                    tick_ms: m.tick_ms,
                    heartbeat_ms: m.heartbeat_ms,
                }
            }
            "snapshot" => {
                let m = Snapshot::deserialize(rest)?;
                ServerMsg::Snapshot {
                    topic: m.topic,
                    seq: m.seq,
                    state: m.state,
                }
            }
            "delta" => {
                let m = Delta::deserialize(rest)?;
                ServerMsg::Delta {
                    topic: m.topic,
                    seq: m.seq,
                    delta: m.delta,
                }
            }
            "heartbeat" => ServerMsg::Heartbeat {
                now: Heartbeat::deserialize(rest)?.now,
            },
            "error" => ServerMsg::Error {
                message: Error::deserialize(rest)?.message,
            },
            other => return Err(unknown::<D::Error, Self>(other)),
        })
    }
}

impl<'de> Deserialize<'de> for ServerMsg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// Messages a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Follow `topic` instead of the current one; a snapshot follows.
    Subscribe { topic: Topic },
    /// Follow `topic` from after `seq`: the missed deltas follow, or a
    /// snapshot when they are no longer kept.
    Resume { topic: Topic, seq: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_as_strings() {
        for t in [
            Topic::Overview,
            Topic::Mailings,
            Topic::Wall,
            Topic::Mailing("4711".into()),
            Topic::Mailing("a:b".into()),
        ] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), t);
        }
        assert_eq!(
            serde_json::to_string(&Topic::Mailing("7".into())).unwrap(),
            "\"mailing:7\""
        );
        assert!("mailing:".parse::<Topic>().is_err());
        assert!("nope"
            .parse::<Topic>()
            .unwrap_err()
            .contains("unknown topic"));
    }

    #[test]
    fn server_messages_round_trip_tag_first() {
        let state: TopicState = serde_json::from_str(
            &serde_json::to_string(&TopicState::Wall(Default::default())).unwrap(),
        )
        .unwrap();
        for m in [
            ServerMsg::Hello {
                server: "mailpulse".into(),
                protocol: PROTOCOL_VERSION,
                tick_ms: 100,
                heartbeat_ms: 5000,
            },
            ServerMsg::Snapshot {
                topic: Topic::Wall,
                seq: 3,
                state,
            },
            ServerMsg::Heartbeat { now: 17 },
            ServerMsg::Error {
                message: "nope".into(),
            },
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert!(json.starts_with(r#"{"type":"#), "{json}");
            assert_eq!(
                serde_json::from_slice::<ServerMsg>(json.as_bytes()).unwrap(),
                m
            );
            assert_eq!(serde_json::from_str::<ServerMsg>(&json).unwrap(), m);
        }
    }

    #[test]
    fn server_messages_refuse_a_late_or_unknown_tag() {
        let late = serde_json::from_str::<ServerMsg>(r#"{"now":1,"type":"heartbeat"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            late.contains(r#"expected "type" as the first key"#),
            "{late}"
        );
        let unknown = serde_json::from_str::<ServerMsg>(r#"{"type":"gossip"}"#)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown variant `gossip`"), "{unknown}");
        let missing = serde_json::from_str::<ServerMsg>(r#"{"type":"heartbeat"}"#)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing field `now`"), "{missing}");
        assert!(serde_json::from_str::<ServerMsg>("{}").is_err());
        assert!(serde_json::from_str::<ServerMsg>("[1]").is_err());
    }

    #[test]
    fn client_messages_parse() {
        let m: ClientMsg =
            serde_json::from_str(r#"{"type":"resume","topic":"mailing:9","seq":41}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Resume {
                topic: Topic::Mailing("9".into()),
                seq: 41
            }
        );
        let m: ClientMsg = serde_json::from_str(r#"{"type":"subscribe","topic":"wall"}"#).unwrap();
        assert_eq!(m, ClientMsg::Subscribe { topic: Topic::Wall });
    }
}
