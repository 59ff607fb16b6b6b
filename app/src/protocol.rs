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

/// Event counts of one scope (a mailing, a class, everything) over one
/// period. Totals count every event; `unique_*` count recipients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub sent: u64,
    pub opens: u64,
    pub unique_opens: u64,
    pub clicks: u64,
    pub unique_clicks: u64,
    /// All bounces: `hard_bounces + soft_bounces + unknown_bounces`.
    pub bounces: u64,
    pub hard_bounces: u64,
    pub soft_bounces: u64,
    pub unknown_bounces: u64,
    pub unsubscribes: u64,
    pub complaints: u64,
    pub single_opt_ins: u64,
    pub confirmed_opt_ins: u64,
    pub double_opt_ins: u64,
    pub blocklisted: u64,
    pub archived: u64,
    pub filtered_by_blocklist: u64,
    /// Types mailpulse does not know.
    pub other: u64,
}

/// The bounce category of a bounce event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BounceKind {
    Hard,
    Soft,
    Unknown,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Unknown => "unknown",
        }
    }

    /// Reads a category from free text (`hardbounce`, `Soft`, …).
    pub fn from_str_lossy(s: &str) -> BounceKind {
        let l = s.to_ascii_lowercase();
        if l.contains("hard") {
            BounceKind::Hard
        } else if l.contains("soft") {
            BounceKind::Soft
        } else {
            BounceKind::Unknown
        }
    }
}

impl Counters {
    /// Counts one event. `first` says whether it is the recipient's first
    /// open (for opens) or first click (for clicks) of its mailing.
    pub fn count(&mut self, t: EventType, first: bool, bounce: Option<BounceKind>) {
        match t {
            EventType::Sent => self.sent += 1,
            EventType::Open => {
                self.opens += 1;
                self.unique_opens += u64::from(first);
            }
            EventType::Click => {
                self.clicks += 1;
                self.unique_clicks += u64::from(first);
            }
            EventType::Bounce => {
                self.bounces += 1;
                match bounce.unwrap_or(BounceKind::Unknown) {
                    BounceKind::Hard => self.hard_bounces += 1,
                    BounceKind::Soft => self.soft_bounces += 1,
                    BounceKind::Unknown => self.unknown_bounces += 1,
                }
            }
            EventType::Unsubscribe => self.unsubscribes += 1,
            EventType::SpamComplaint => self.complaints += 1,
            EventType::SingleOptIn => self.single_opt_ins += 1,
            EventType::ConfirmedOptIn => self.confirmed_opt_ins += 1,
            EventType::DoubleOptIn => self.double_opt_ins += 1,
            EventType::Blocklist => self.blocklisted += 1,
            EventType::Archive => self.archived += 1,
            EventType::FilteredByBlocklist => self.filtered_by_blocklist += 1,
            EventType::Other => self.other += 1,
        }
    }

    /// The fields in a fixed order (the store's column order).
    pub fn to_array(&self) -> [u64; 18] {
        [
            self.sent,
            self.opens,
            self.unique_opens,
            self.clicks,
            self.unique_clicks,
            self.bounces,
            self.hard_bounces,
            self.soft_bounces,
            self.unknown_bounces,
            self.unsubscribes,
            self.complaints,
            self.single_opt_ins,
            self.confirmed_opt_ins,
            self.double_opt_ins,
            self.blocklisted,
            self.archived,
            self.filtered_by_blocklist,
            self.other,
        ]
    }

    pub fn from_array(a: [u64; 18]) -> Counters {
        Counters {
            sent: a[0],
            opens: a[1],
            unique_opens: a[2],
            clicks: a[3],
            unique_clicks: a[4],
            bounces: a[5],
            hard_bounces: a[6],
            soft_bounces: a[7],
            unknown_bounces: a[8],
            unsubscribes: a[9],
            complaints: a[10],
            single_opt_ins: a[11],
            confirmed_opt_ins: a[12],
            double_opt_ins: a[13],
            blocklisted: a[14],
            archived: a[15],
            filtered_by_blocklist: a[16],
            other: a[17],
        }
    }

    /// Column names matching [`Counters::to_array`].
    pub const FIELDS: [&'static str; 18] = [
        "sent",
        "opens",
        "unique_opens",
        "clicks",
        "unique_clicks",
        "bounces",
        "hard_bounces",
        "soft_bounces",
        "unknown_bounces",
        "unsubscribes",
        "complaints",
        "single_opt_ins",
        "confirmed_opt_ins",
        "double_opt_ins",
        "blocklisted",
        "archived",
        "filtered_by_blocklist",
        "other",
    ];

    pub fn add(&mut self, o: &Counters) {
        let mut a = self.to_array();
        for (x, y) in a.iter_mut().zip(o.to_array()) {
            *x += y;
        }
        *self = Counters::from_array(a);
    }

    pub fn is_empty(&self) -> bool {
        self.to_array().iter().all(|n| *n == 0)
    }

    /// Count of one event type (the skeleton's per-type view).
    pub fn of_type(&self, t: EventType) -> u64 {
        match t {
            EventType::Sent => self.sent,
            EventType::Open => self.opens,
            EventType::Click => self.clicks,
            EventType::Bounce => self.bounces,
            EventType::Unsubscribe => self.unsubscribes,
            EventType::SpamComplaint => self.complaints,
            EventType::SingleOptIn => self.single_opt_ins,
            EventType::ConfirmedOptIn => self.confirmed_opt_ins,
            EventType::DoubleOptIn => self.double_opt_ins,
            EventType::Blocklist => self.blocklisted,
            EventType::Archive => self.archived,
            EventType::FilteredByBlocklist => self.filtered_by_blocklist,
            EventType::Other => self.other,
        }
    }
}

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
