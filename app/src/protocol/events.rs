//! Event types and counters: what one event is, and how many of each a
//! scope saw. Shared by the store, the live engine and the UI.

use serde::{Deserialize, Serialize};

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
        let raw = raw.trim();
        // Most senders already write it in lower case: no copy then.
        if raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return EventType::from_lowercase(&raw.to_ascii_lowercase());
        }
        EventType::from_lowercase(raw)
    }

    /// [`EventType::from_wire`] of a type already trimmed and lowercased.
    pub fn from_lowercase(lower: &str) -> EventType {
        match lower {
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

/// Event counts of one scope (a mailing, a class, everything) over one
/// period. Totals count every event; `unique_*` count recipients.
/// Zero fields are left out of the JSON (most types are rare), and read
/// back as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    #[serde(skip_serializing_if = "is_zero")]
    pub sent: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub opens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unique_opens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub clicks: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unique_clicks: u64,
    /// All bounces: `hard_bounces + soft_bounces + unknown_bounces`.
    #[serde(skip_serializing_if = "is_zero")]
    pub bounces: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub hard_bounces: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub soft_bounces: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_bounces: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unsubscribes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub complaints: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub single_opt_ins: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub confirmed_opt_ins: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub double_opt_ins: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub blocklisted: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub archived: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered_by_blocklist: u64,
    /// Types mailpulse does not know.
    #[serde(skip_serializing_if = "is_zero")]
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Rates of one scope and period, as fractions of `sent` (0.0 to 1.0, and
/// above 1.0 where, e.g., opens of earlier sends outnumber this period's
/// sends). `None` when nothing was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub bounce: Option<f64>,
    pub hard_bounce: Option<f64>,
    pub soft_bounce: Option<f64>,
    /// Unique openers / sent.
    pub open: Option<f64>,
    /// Unique clickers / sent.
    pub click: Option<f64>,
    /// All opens / sent.
    pub open_total: Option<f64>,
    /// All clicks / sent.
    pub click_total: Option<f64>,
    pub unsubscribe: Option<f64>,
    pub complaint: Option<f64>,
}

impl Counters {
    /// The rates defined in the product's glossary, from these counts.
    pub fn rates(&self) -> Rates {
        let of = |n: u64| (self.sent > 0).then(|| n as f64 / self.sent as f64);
        Rates {
            bounce: of(self.bounces),
            hard_bounce: of(self.hard_bounces),
            soft_bounce: of(self.soft_bounces),
            open: of(self.unique_opens),
            click: of(self.unique_clicks),
            open_total: of(self.opens),
            click_total: of(self.clicks),
            unsubscribe: of(self.unsubscribes),
            complaint: of(self.complaints),
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
    fn counters_count_and_leave_zeros_out_of_json() {
        let mut c = Counters::default();
        c.count(EventType::Sent, false, None);
        c.count(EventType::Sent, false, None);
        c.count(EventType::Open, true, None);
        c.count(EventType::Open, false, None);
        c.count(EventType::Bounce, false, Some(BounceKind::Hard));
        c.count(EventType::Bounce, false, None);
        assert_eq!((c.sent, c.opens, c.unique_opens), (2, 2, 1));
        assert_eq!((c.bounces, c.hard_bounces, c.unknown_bounces), (2, 1, 1));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"sent":2,"opens":2,"unique_opens":1,"bounces":2,"hard_bounces":1,"unknown_bounces":1}"#
        );
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), c);
        assert_eq!(Counters::from_array(c.to_array()), c);
    }

    #[test]
    fn rates_are_fractions_of_sent() {
        let mut c = Counters {
            sent: 200,
            unique_opens: 50,
            opens: 80,
            unique_clicks: 10,
            bounces: 4,
            hard_bounces: 3,
            soft_bounces: 1,
            complaints: 1,
            ..Counters::default()
        };
        let r = c.rates();
        assert_eq!(r.open, Some(0.25));
        assert_eq!(r.open_total, Some(0.4));
        assert_eq!(r.click, Some(0.05));
        assert_eq!(r.hard_bounce, Some(0.015));
        assert_eq!(r.complaint, Some(0.005));
        c.sent = 0;
        assert_eq!(c.rates().bounce, None);
    }
}
