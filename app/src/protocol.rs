//! The wire contract: serde types that cross the websocket (`/ws`) and the
//! REST API. Both the server (native) and the browser (wasm) compile this
//! module, so a change here changes both sides at once. It owns no logic
//! beyond small pure helpers on the types themselves.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a message changes shape incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// The Optimizely event types mailpulse recognises. Optimizely treats the set
/// as open, so anything unknown is kept and counted as [`EventType::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Sent,
    Open,
    Click,
    Bounce,
    Unsubscribe,
    SpamComplaint,
    SingleOptIn,
    ConfirmedOptIn,
    DoubleOptIn,
    Blocklist,
    Archive,
    FilteredByBlocklist,
    Other,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::Sent,
        EventType::Open,
        EventType::Click,
        EventType::Bounce,
        EventType::Unsubscribe,
        EventType::SpamComplaint,
        EventType::SingleOptIn,
        EventType::ConfirmedOptIn,
        EventType::DoubleOptIn,
        EventType::Blocklist,
        EventType::Archive,
        EventType::FilteredByBlocklist,
        EventType::Other,
    ];

    /// Parses Optimizely's `type` field, case-insensitively. `archived` is how
    /// responses spell `archive`; anything unrecognised is `Other`.
    pub fn from_wire(raw: &str) -> EventType {
        let lower = raw.trim().to_ascii_lowercase();
        match lower.as_str() {
            "sent" => EventType::Sent,
            "open" => EventType::Open,
            "click" => EventType::Click,
            "bounce" => EventType::Bounce,
            "unsubscribe" => EventType::Unsubscribe,
            "spamcomplaint" => EventType::SpamComplaint,
            "singleoptin" => EventType::SingleOptIn,
            "confirmedoptin" => EventType::ConfirmedOptIn,
            "doubleoptin" => EventType::DoubleOptIn,
            "blocklist" => EventType::Blocklist,
            "archive" | "archived" => EventType::Archive,
            "filteredbyblocklist" => EventType::FilteredByBlocklist,
            _ => EventType::Other,
        }
    }

    /// The stable lowercase name used in the API, the store and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Sent => "sent",
            EventType::Open => "open",
            EventType::Click => "click",
            EventType::Bounce => "bounce",
            EventType::Unsubscribe => "unsubscribe",
            EventType::SpamComplaint => "spamcomplaint",
            EventType::SingleOptIn => "singleoptin",
            EventType::ConfirmedOptIn => "confirmedoptin",
            EventType::DoubleOptIn => "doubleoptin",
            EventType::Blocklist => "blocklist",
            EventType::Archive => "archive",
            EventType::FilteredByBlocklist => "filteredbyblocklist",
            EventType::Other => "other",
        }
    }
}

/// Running count of accepted events per type.
pub type Counts = BTreeMap<EventType, u64>;

/// What the overview page shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverviewState {
    pub counts: Counts,
}

/// Messages the server sends on `/ws`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Hello { server: String, protocol: u32 },
    /// The full state; `seq` numbers the state it describes.
    Snapshot { seq: u64, state: OverviewState },
    /// Only the counts that changed since `seq - 1`.
    Delta { seq: u64, counts: Counts },
    /// Sent when nothing else was, so clients and proxies see a live link.
    Heartbeat { seq: u64 },
}

impl OverviewState {
    /// Applies a delta's changed counts.
    pub fn apply(&mut self, counts: &Counts) {
        for (k, v) in counts {
            self.counts.insert(*k, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_parses_case_insensitively_and_keeps_unknowns() {
        assert_eq!(EventType::from_wire("SENT"), EventType::Sent);
        assert_eq!(
            EventType::from_wire(" SpamComplaint "),
            EventType::SpamComplaint
        );
        assert_eq!(EventType::from_wire("archived"), EventType::Archive);
        assert_eq!(EventType::from_wire("webhooknode"), EventType::Other);
        for t in EventType::ALL {
            if t != EventType::Other {
                assert_eq!(EventType::from_wire(t.as_str()), t);
            }
        }
    }

    #[test]
    fn messages_are_tagged_json() {
        let m = ServerMsg::Delta {
            seq: 3,
            counts: [(EventType::Sent, 5)].into_iter().collect(),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"type":"delta","seq":3,"counts":{"sent":5}}"#);
        assert_eq!(serde_json::from_str::<ServerMsg>(&s).unwrap(), m);
    }
}
