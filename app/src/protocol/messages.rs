//! The messages on `/ws` and the topics a client can subscribe to. See
//! `docs/protocol.md` for the conversation.

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

/// Messages the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
