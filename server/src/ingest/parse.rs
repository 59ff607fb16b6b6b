//! Tolerant parsing of Optimizely webhook bodies into [`Event`]s.
//!
//! Optimizely documents its payload only in part (see
//! `docs/ingest.md`), so this module accepts every plausible shape instead of
//! guessing one: an array or a single object, IDs as numbers or strings,
//! field names in camelCase or snake_case, any casing of `type`, several
//! names and formats for the event time. An item that cannot be understood
//! at all (not an object, no type) becomes a [`Quarantined`] item with the
//! reason; it is stored, never dropped. Pure functions, no I/O: time is
//! passed in.

mod simple;

use compact_str::{CompactString, ToCompactString};
use mailpulse_app::protocol::{BounceKind, EventType};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::ops::Range;

/// Earliest event time accepted from a payload (2000-01-01T00:00:00Z, ms).
/// Anything earlier is a unit mistake or garbage, not a real event.
const MIN_EVENT_TIME_MS: i64 = 946_684_800_000;
/// How far in the future a payload time may lie (clock skew at the sender).
const MAX_FUTURE_SKEW_MS: i64 = 24 * 3600 * 1000;
/// Fields that may hold the time, in order of preference.
const TIME_FIELDS: [Name; 8] = [
    Name::Timestamp,
    Name::EventTime,
    Name::EventTimestamp,
    Name::Created,
    Name::CreatedAt,
    Name::Date,
    Name::Time,
    Name::OccurredAt,
];

/// Where an event's time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// A time field of the payload.
    Payload,
    /// The payload had no time: event time = received at.
    Received,
    /// The payload had a time field we could not read, or an absurd one:
    /// event time = received at, and the raw value is still in the raw JSON.
    ReceivedInvalid,
}

impl TimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Payload => "payload",
            TimeSource::Received => "received",
            TimeSource::ReceivedInvalid => "received_invalid",
        }
    }
}

/// One understood webhook event. Its texts are `CompactString`s: ids,
/// types and most addresses fit in their 24 inline bytes, so parsing an
/// event allocates little (malloc and free were a fifth of the tokio
/// workers' time under batch load; docs/store.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_type: EventType,
    /// The `type` as sent, lowercased (keeps unknown types distinguishable).
    pub type_raw: CompactString,
    pub client_id: Option<CompactString>,
    pub mailing_id: Option<CompactString>,
    /// Optimizely's recipient list (`userListId`).
    pub recipient_list_id: Option<CompactString>,
    pub recipient_id: Option<CompactString>,
    /// Event time, ms since the Unix epoch.
    pub event_time: i64,
    pub time_source: TimeSource,
    /// When our server got it, ms since the Unix epoch.
    pub received_at: i64,
    /// The media type of the address (`EMAIL`, `SMS`, …).
    pub media_type: Option<CompactString>,
    pub address: Option<CompactString>,
    /// Lowercased receiving mail domain, for e-mail addresses only.
    pub domain: Option<CompactString>,
    pub link: Option<CompactString>,
    pub bounce_category: Option<BounceKind>,
    pub bounce_reason: Option<CompactString>,
    /// A transactional mail's `mailId`, where the payload carries one.
    pub mail_id: Option<CompactString>,
    /// Where the item's JSON lies in the request body (a byte range): the
    /// store keeps it exactly as received, every unknown field with it,
    /// without a copy per event here.
    pub raw: Range<usize>,
}

impl Event {
    /// The item's JSON as received, given the body it was parsed from;
    /// `None` if `raw` is not a span of `body` (a different body).
    pub fn raw_in<'a>(&self, body: &'a str) -> Option<&'a str> {
        body.get(self.raw.clone())
    }

    /// Who this event is about, for unique openers/clickers and dispatch
    /// matching: the recipient id, else the address.
    pub fn recipient_key(&self) -> Option<&str> {
        self.recipient_id.as_deref().or(self.address.as_deref())
    }
}

/// An item of a batch that could not be understood.
#[derive(Clone, Debug, PartialEq)]
pub struct Quarantined {
    pub reason: String,
    pub raw: String,
    pub received_at: i64,
}

/// The parsed items of one body, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedBatch {
    pub events: Vec<Event>,
    pub quarantined: Vec<Quarantined>,
}

/// Why a whole body was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body holds no event: {0}")]
    Empty(&'static str),
    #[error("body must be a JSON array of events or a single event object, not {0}")]
    Shape(&'static str),
}

/// Parses a whole request body received at `received_at` (ms).
///
/// Each stored event keeps its exact original text: its span in the body.
/// An item is read once into its fields with their values still as raw
/// JSON (borrowed from the body), and only the values the event needs are
/// decoded: no tree of `serde_json::Value`s is built (one allocation per
/// key and value), which matters at tens of thousands of single-event
/// requests per second.
pub fn parse_body(body: &[u8], received_at: i64) -> Result<ParsedBatch, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError::Json(format!("body is not UTF-8: {e}")))?;
    let list = match text.trim_start().as_bytes().first() {
        Some(b'[') => text,
        Some(b'{') => {
            // The event is read while the object's fields are at hand:
            // `Fields` is ~700 bytes, and moving it out of the closure
            // cost ~300 instructions of copying per body.
            let read = KeyNames::with(|names| {
                let obj = match simple::fields(text, names) {
                    Some(obj) => obj,
                    None => {
                        let mut de = serde_json::Deserializer::from_str(text);
                        let obj = FieldsSeed(names).deserialize(&mut de)?;
                        de.end()?;
                        obj
                    }
                };
                Ok(match obj.wrapped_list() {
                    Some(list) => Err(list),
                    None => {
                        // One event per POST is the common case: read it
                        // once. The text is valid JSON, so what
                        // surrounds the object is JSON whitespace: the
                        // trimmed text is its raw JSON, as `RawValue`
                        // would give it.
                        let mut batch = ParsedBatch::default();
                        match parse_fields(&obj, trim(text), text, received_at) {
                            Ok(e) => batch.events.push(e),
                            Err(q) => batch.quarantined.push(q),
                        }
                        Ok(batch)
                    }
                })
            })
            .map_err(json_err)?;
            match read {
                Ok(batch) => return Ok(batch),
                // `{"events": [...]}` and the like.
                Err(list) => list,
            }
        }
        _ => {
            let value: Value = serde_json::from_str(text).map_err(json_err)?;
            return Err(BodyError::Shape(json_kind(&value)));
        }
    };
    let batch = match read_in_one_pass(list, text, received_at) {
        Some(batch) => batch,
        // Not an array of objects whose spans the fields tell (or not JSON).
        None => split_then_parse(list, text, received_at)?,
    };
    // Every item is an event or quarantined, so none of either is no item.
    if batch.events.is_empty() && batch.quarantined.is_empty() {
        return Err(BodyError::Empty("the array is empty"));
    }
    Ok(batch)
}

/// The array `list` (a slice of `body`) split into items as raw JSON
/// first, each then read: any item, at the cost of a second pass.
fn split_then_parse(list: &str, body: &str, received_at: i64) -> Result<ParsedBatch, BodyError> {
    let items: Vec<&RawValue> = serde_json::from_str(list).map_err(json_err)?;
    let mut batch = ParsedBatch::default();
    for raw in items {
        match parse_item(raw, body, received_at)? {
            Ok(e) => batch.events.push(e),
            Err(q) => batch.quarantined.push(q),
        }
    }
    Ok(batch)
}

/// The array `list` (a slice of `body`) read in one pass, each object
/// straight into its fields and its span in `body` told by its first key
/// and last value; `None` when that cannot be done: an item is no object,
/// or an object's first key has escapes (is not borrowed from the body),
/// or `list` is no valid JSON array. Splitting the items as `RawValue`s
/// first and reading each again was a third of the parse.
fn read_in_one_pass(list: &str, body: &str, received_at: i64) -> Option<ParsedBatch> {
    let mut de = serde_json::Deserializer::from_str(list);
    let batch = OnePass { body, received_at }.deserialize(&mut de).ok()??;
    de.end().ok()?;
    Some(batch)
}

/// [`read_in_one_pass`] as a serde visitor of the array.
struct OnePass<'a> {
    body: &'a str,
    received_at: i64,
}

impl<'de> DeserializeSeed<'de> for OnePass<'de> {
    type Value = Option<ParsedBatch>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OnePass<'de> {
    type Value = Option<ParsedBatch>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        KeyNames::with(|names| {
            let mut batch = ParsedBatch::default();
            while let Some(obj) = seq.next_element_seed(FieldsSeed(names))? {
                // Given up: the caller reads the array the other way.
                let Some(span) = obj.span_in(self.body) else {
                    return Ok(None);
                };
                match parse_fields(&obj, &self.body[span], self.body, self.received_at) {
                    Ok(e) => batch.events.push(e),
                    Err(q) => batch.quarantined.push(q),
                }
            }
            Ok(Some(batch))
        })
    }
}

fn json_err(e: serde_json::Error) -> BodyError {
    BodyError::Json(e.to_string())
}

/// A JSON string, borrowed from the body unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Declares [`Name`]: the field names the parser looks for, normalised
/// (lowercase, no `_` or `-`).
macro_rules! names {
    ($($variant:ident = $text:literal),* $(,)?) => {
        /// A field name the parser knows, whatever its case and separators:
        /// `mailing_id`, `mailingId` and `MailingID` are all
        /// [`Name::MailingId`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Name { $($variant),* }

        impl Name {
            const COUNT: usize = [$(Name::$variant),*].len();

            fn of_normalised(key: &[u8]) -> Option<Name> {
                match key {
                    $($text => Some(Name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

names! {
    Type = b"type", EventType = b"eventtype",
    Timestamp = b"timestamp", EventTime = b"eventtime", EventTimestamp = b"eventtimestamp",
    Created = b"created", CreatedAt = b"createdat", Date = b"date", Time = b"time",
    OccurredAt = b"occurredat",
    ClientId = b"clientid", Client = b"client",
    MailingId = b"mailingid", Mailing = b"mailing",
    UserListId = b"userlistid", RecipientListId = b"recipientlistid", ListId = b"listid",
    RecipientId = b"recipientid", Recipient = b"recipient",
    Link = b"link", Url = b"url", LinkUrl = b"linkurl",
    MailId = b"mailid", TransactionalMailId = b"transactionalmailid",
    MediaTypesToAddresses = b"mediatypestoaddresses",
    Email = b"email", EmailAddress = b"emailaddress", Address = b"address",
    BounceCategory = b"bouncecategory", BounceType = b"bouncetype", Category = b"category",
    Subtype = b"subtype", Bounce = b"bounce",
    BounceReason = b"bouncereason", Reason = b"reason", BounceCause = b"bouncecause",
    Events = b"events", Data = b"data", Items = b"items", Records = b"records",
}

impl Name {
    /// The known name `key` spells, ignoring case, `_` and `-`.
    /// Allocation-free: it runs once for every field of every event.
    fn of(key: &str) -> Option<Name> {
        // Longer than any known name once normalised.
        let mut buf = [0u8; 24];
        let mut len = 0;
        for b in key.bytes().filter(|b| *b != b'_' && *b != b'-') {
            *buf.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
        Name::of_normalised(&buf[..len])
    }
}

/// An event object as the parser reads it: the value of each known field,
/// still raw JSON borrowed from the body (the text of a valid JSON value,
/// as `RawValue::get` gives it), found by [`Name`] without comparing keys
/// again for every lookup.
#[derive(Debug, PartialEq)]
struct Fields<'a> {
    /// The last non-null value under each name (an object with a repeated
    /// key means its last value).
    known: [Option<&'a str>; Name::COUNT],
    /// How many fields the object has.
    len: usize,
    /// The first field's name, if known, and value.
    first: Option<(Option<Name>, &'a str)>,
    /// The first key when it is a slice of the body (no escapes), and the
    /// last value: between them and the braces lies only JSON whitespace,
    /// so they tell where the object lies.
    first_key: Option<&'a str>,
    last_value: Option<&'a str>,
}

/// The known names of the keys at each position of the objects read
/// before: the items of a batch repeat one key order, and so do the bodies
/// one sender posts, so most keys are told by comparing them with the key
/// at the same position before. Naming a key from scratch ([`Name::of`])
/// was the largest single cost of parsing a single-event body (~1.5k of
/// its ~11k instructions, callgrind; docs/store.md).
struct KeyNames([(CompactString, Option<Name>); KeyNames::POSITIONS]);

thread_local! {
    /// Each thread's [`KeyNames`], kept from one body to the next.
    static KEY_NAMES: std::cell::RefCell<KeyNames> = std::cell::RefCell::new(KeyNames::new());
}

impl KeyNames {
    /// Positions remembered; keys further on are named every time.
    const POSITIONS: usize = 16;
    /// Keys remembered are at most this long, so remembering one never
    /// allocates (`CompactString` keeps 24 bytes inline).
    const MAX_KEY: usize = 24;

    fn new() -> KeyNames {
        // The empty key names nothing, so it can stand for "not seen yet".
        KeyNames(std::array::from_fn(|_| {
            (CompactString::const_new(""), None)
        }))
    }

    /// Runs `f` with this thread's key names.
    fn with<T>(f: impl FnOnce(&mut KeyNames) -> T) -> T {
        KEY_NAMES.with_borrow_mut(f)
    }

    fn name(&mut self, position: usize, key: &str) -> Option<Name> {
        let Some((seen, name)) = self.0.get_mut(position) else {
            return Name::of(key);
        };
        if key.len() > KeyNames::MAX_KEY {
            return Name::of(key);
        }
        if seen.as_str() != key {
            *seen = CompactString::from(key);
            *name = Name::of(key);
        }
        *name
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FieldsSeed(&mut KeyNames::new()).deserialize(d)
    }
}

/// Reads an object into [`Fields`], naming its keys through a
/// [`KeyNames`] kept across objects.
struct FieldsSeed<'n>(&'n mut KeyNames);

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::new();
        while let Some((Text(k), v)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
            fields.push(self.0, k, v.get());
        }
        Ok(fields)
    }
}

impl<'a> Fields<'a> {
    fn new() -> Fields<'a> {
        Fields {
            known: [None; Name::COUNT],
            len: 0,
            first: None,
            first_key: None,
            last_value: None,
        }
    }

    /// Takes in the object's next field: its key (borrowed from the body
    /// unless it had escapes) and its value's raw JSON.
    fn push(&mut self, names: &mut KeyNames, key: Cow<'a, str>, value: &'a str) {
        let name = match key {
            Cow::Borrowed(k) => names.name(self.len, k),
            Cow::Owned(ref k) => Name::of(k),
        };
        if self.len == 0 {
            self.first = Some((name, value));
            if let Cow::Borrowed(k) = key {
                self.first_key = Some(k);
            }
        }
        if let Some(name) = name.filter(|_| value != "null") {
            self.known[name as usize] = Some(value);
        }
        self.len += 1;
        self.last_value = Some(value);
    }

    /// The value of the last non-null field under the first of `names`
    /// that has one.
    fn find(&self, names: &[Name]) -> Option<&'a str> {
        names.iter().find_map(|n| self.known[*n as usize])
    }

    /// `{"events": [...]}` and the like: an object whose only field is an
    /// array under a list-ish name.
    fn wrapped_list(&self) -> Option<&'a str> {
        let (Some((Some(name), value)), 1) = (self.first, self.len) else {
            return None;
        };
        let listish = matches!(
            name,
            Name::Events | Name::Data | Name::Items | Name::Records
        );
        (listish && value.starts_with('[')).then_some(value)
    }

    /// Where the object lies in `body`, from the opening brace to the
    /// closing one, when its first key and last value (slices of `body`)
    /// tell it.
    fn span_in(&self, body: &str) -> Option<Range<usize>> {
        let bytes = body.as_bytes();
        let offset = |part: &str| {
            let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            (start <= bytes.len() && part.len() <= bytes.len() - start).then_some(start)
        };
        let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        // Back from the key's opening quote, over whitespace, to the brace.
        let quote = offset(self.first_key?)?.checked_sub(1)?;
        if bytes[quote] != b'"' {
            return None;
        }
        let open = bytes[..quote].iter().rposition(|b| !is_space(*b))?;
        // On from the last value, over whitespace, to the brace.
        let last = self.last_value?;
        let after = offset(last)? + last.len();
        let close = after + bytes[after..].iter().position(|b| !is_space(*b))?;
        (bytes[open] == b'{' && bytes[close] == b'}').then_some(open..close + 1)
    }
}

/// The address map's pick, made while the map is read (no list of its
/// entries is built): the first `EMAIL` entry whose value is a non-blank
/// string, else the first entry with such a value, as (media type,
/// address).
#[derive(Default)]
struct AddressPick<'a> {
    email: Option<(Cow<'a, str>, Cow<'a, str>)>,
    first: Option<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> AddressPick<'a> {
    /// Looks at the map's next entry (its value as raw JSON).
    fn take(&mut self, media_type: Cow<'a, str>, value: &'a str) {
        if self.email.is_some() {
            return;
        }
        let Some(address) = raw_text(value).filter(|a| !trim(a).is_empty()) else {
            return;
        };
        if media_type.eq_ignore_ascii_case("email") {
            self.email = Some((media_type, address));
        } else if self.first.is_none() {
            self.first = Some((media_type, address));
        }
    }

    fn pick(self) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
        self.email.or(self.first)
    }
}

impl<'de> Deserialize<'de> for AddressPick<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AddressPick<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AddressPick<'de>, A::Error> {
                let mut pick = AddressPick::default();
                // Every entry is read, even after the pick: the map must be JSON.
                while let Some((Text(k), v)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    pick.take(k, v.get());
                }
                Ok(pick)
            }
        }
        d.deserialize_map(V)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What kind of JSON value `raw` is, told by its first byte (it is valid).
fn raw_kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The text of a JSON string value; `None` for any other kind.
fn raw_text(text: &str) -> Option<Cow<'_, str>> {
    if !text.starts_with('"') {
        return None;
    }
    // `text` is a valid JSON string: without a backslash its text is what
    // lies between the quotes, with no second deserializer to find it.
    if !text.contains('\\') {
        return text.get(1..text.len() - 1).map(Cow::Borrowed);
    }
    serde_json::from_str::<Text>(text).ok().map(|t| t.0)
}

/// `s.trim()`, without looking up Unicode's whitespace when `s` starts
/// and ends with a printable ASCII character, as a payload's texts nearly
/// always do: `str::trim` cost ~50 instructions a call, several calls per
/// event (callgrind; docs/store.md).
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// An ID given as a string or a number; blank strings count as absent.
/// Numbers are written as `serde_json` writes them, so `7` and `"7"` are
/// the same ID.
fn id_field(obj: &Fields, names: &[Name]) -> Option<CompactString> {
    let text = obj.find(names)?;
    match text.as_bytes().first()? {
        b'"' => {
            let s = raw_text(text)?;
            let t = trim(&s);
            (!t.is_empty()).then(|| CompactString::from(t))
        }
        b't' | b'f' => Some(CompactString::from(text)),
        // A plain integer is written back as it came.
        _ if text.len() < 19 && text.bytes().all(|b| b.is_ascii_digit()) => {
            Some(CompactString::from(text))
        }
        b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(text)
            .ok()
            .map(|n| n.to_compact_string()),
        _ => None,
    }
}

fn text_field(obj: &Fields, names: &[Name]) -> Option<CompactString> {
    id_field(obj, names)
}

/// One item of an array body: an event, or the reason it is quarantined.
/// The outer error is a JSON error inside an item already split as valid
/// JSON, which cannot happen but is not unwrapped.
fn parse_item(
    raw: &RawValue,
    body: &str,
    received_at: i64,
) -> Result<Result<Event, Quarantined>, BodyError> {
    if !raw.get().starts_with('{') {
        return Ok(Err(Quarantined {
            reason: format!("item is {}, not an event object", raw_kind(raw.get())),
            raw: raw.get().to_string(),
            received_at,
        }));
    }
    let obj: Fields = serde_json::from_str(raw.get()).map_err(json_err)?;
    Ok(parse_fields(&obj, raw.get(), body, received_at))
}

/// The byte range of `part` in `body`; `part` is always a slice of it (the
/// JSON values are borrowed from the body, never copied).
fn span_of(part: &str, body: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    assert!(
        start <= body.len() && part.len() <= body.len() - start,
        "an item's JSON is not a slice of its body"
    );
    start..start + part.len()
}

/// `raw` is the item's JSON, a slice of `body`.
fn parse_fields(
    obj: &Fields,
    raw: &str,
    body: &str,
    received_at: i64,
) -> Result<Event, Quarantined> {
    let quarantine = |reason: String| Quarantined {
        reason,
        raw: raw.to_string(),
        received_at,
    };
    let type_raw = match obj.find(&[Name::Type, Name::EventType]) {
        Some(v) => match raw_text(v) {
            Some(s) if !trim(&s).is_empty() => {
                let mut t = CompactString::from(trim(&s));
                t.make_ascii_lowercase();
                t
            }
            _ => {
                return Err(quarantine(format!(
                    "field `type` is {}, not a non-empty string",
                    raw_kind(v)
                )))
            }
        },
        None => return Err(quarantine("item has no `type` field".into())),
    };
    // The seed article names `hardbounce`/`softbounce`: a bounce whose type
    // carries its category.
    let (event_type, type_category) = match type_raw.as_str() {
        "hardbounce" => (EventType::Bounce, Some(BounceKind::Hard)),
        "softbounce" => (EventType::Bounce, Some(BounceKind::Soft)),
        t => (EventType::from_lowercase(t), None),
    };

    let (event_time, time_source) = match find_time(obj) {
        TimeLookup::Found(t) if plausible(t, received_at) => (t, TimeSource::Payload),
        TimeLookup::Found(_) | TimeLookup::Invalid => (received_at, TimeSource::ReceivedInvalid),
        TimeLookup::Absent => (received_at, TimeSource::Received),
    };

    let (media_type, address) = address_of(obj);
    let domain = match (&media_type, &address) {
        (Some(m), Some(a)) if m.eq_ignore_ascii_case("email") => domain_of(a),
        (None, Some(a)) => domain_of(a),
        _ => None,
    };

    let (bounce_category, bounce_reason) = if event_type == EventType::Bounce {
        let cat = type_category.or_else(|| {
            text_field(
                obj,
                &[
                    Name::BounceCategory,
                    Name::BounceType,
                    Name::Category,
                    Name::Subtype,
                    Name::Bounce,
                ],
            )
            .map(|s| BounceKind::from_str_lossy(&s))
        });
        let reason = text_field(obj, &[Name::BounceReason, Name::Reason, Name::BounceCause]);
        (Some(cat.unwrap_or(BounceKind::Unknown)), reason)
    } else {
        (None, None)
    };

    Ok(Event {
        event_type,
        type_raw,
        client_id: id_field(obj, &[Name::ClientId, Name::Client]),
        mailing_id: id_field(obj, &[Name::MailingId, Name::Mailing]),
        recipient_list_id: id_field(
            obj,
            &[Name::UserListId, Name::RecipientListId, Name::ListId],
        ),
        recipient_id: id_field(obj, &[Name::RecipientId, Name::Recipient]),
        event_time,
        time_source,
        received_at,
        media_type,
        address,
        domain,
        link: text_field(obj, &[Name::Link, Name::Url, Name::LinkUrl]),
        bounce_category,
        bounce_reason,
        mail_id: id_field(obj, &[Name::MailId, Name::TransactionalMailId]),
        raw: span_of(raw, body),
    })
}

enum TimeLookup {
    Found(i64),
    Invalid,
    Absent,
}

fn find_time(obj: &Fields) -> TimeLookup {
    let Some(raw) = obj.find(&TIME_FIELDS) else {
        return TimeLookup::Absent;
    };
    let time = match raw.as_bytes().first() {
        Some(b'"') => raw_text(raw).and_then(|s| time_from_text(&s)),
        // Epoch milliseconds or seconds as a plain integer, the usual
        // case, without a second deserializer: what serde_json reads as
        // an f64 from up to 15 digits is the integer itself.
        Some(b'0'..=b'9') if raw.len() <= 15 && raw.bytes().all(|b| b.is_ascii_digit()) => {
            raw.parse::<u64>().ok().and_then(|n| epoch_to_ms(n as f64))
        }
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<f64>(raw).ok().and_then(epoch_to_ms),
        _ => None,
    };
    time.map_or(TimeLookup::Invalid, TimeLookup::Found)
}

fn plausible(t: i64, received_at: i64) -> bool {
    t >= MIN_EVENT_TIME_MS && t <= received_at.saturating_add(MAX_FUTURE_SKEW_MS)
}

/// Epoch seconds or milliseconds (told apart by magnitude: 10^11 seconds
/// is the year 5138, 10^11 ms is 1973), or an RFC 3339 / ISO-like string.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => epoch_to_ms(n.as_f64()?),
        Value::String(s) => time_from_text(s),
        _ => None,
    }
}

/// A time written as text: epoch seconds or ms, RFC 3339, RFC 2822, or an
/// ISO-like date and time without a zone (taken as UTC).
fn time_from_text(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>() {
        return epoch_to_ms(f);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc2822(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    None
}

fn epoch_to_ms(f: f64) -> Option<i64> {
    if !f.is_finite() || f <= 0.0 {
        return None;
    }
    let ms = if f >= 1e11 { f } else { f * 1000.0 };
    // Anything past the year 10000 is garbage, and would overflow later math.
    (ms < 253_402_300_800_000.0).then_some(ms as i64)
}

/// The address from `mediaTypesToAddresses`, preferring e-mail; a plain
/// `email`/`address` field is taken when the map is absent.
fn address_of(obj: &Fields) -> (Option<CompactString>, Option<CompactString>) {
    let pick = obj
        .find(&[Name::MediaTypesToAddresses])
        .filter(|raw| raw.starts_with('{'))
        .and_then(|raw| {
            let mut pick = AddressPick::default();
            match simple::members(raw, |k, v| pick.take(Cow::Borrowed(k), v)) {
                Some(()) => Some(pick),
                None => serde_json::from_str::<AddressPick>(raw).ok(),
            }
        })
        .and_then(AddressPick::pick);
    if let Some((k, a)) = pick {
        return (Some(upper(&k)), Some(CompactString::from(trim(&a))));
    }
    match text_field(obj, &[Name::Email, Name::EmailAddress, Name::Address]) {
        Some(a) => (Some("EMAIL".into()), Some(a)),
        None => (None, None),
    }
}

/// A media type's name as stored: upper case (`EMAIL`, `SMS`).
fn upper(key: &str) -> CompactString {
    let mut k = CompactString::from(key);
    k.make_ascii_uppercase();
    k
}

fn domain_of(address: &str) -> Option<CompactString> {
    let (_, domain) = address.rsplit_once('@')?;
    let d = trim(domain).trim_end_matches('.');
    let d = if d.is_ascii() {
        let mut d = CompactString::from(d);
        d.make_ascii_lowercase();
        d
    } else {
        CompactString::from(d.to_lowercase())
    };
    (!d.is_empty() && !d.contains(char::is_whitespace)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_767_000_000_000; // 2025-12-29

    fn one(v: Value) -> Event {
        let b = parse_body(v.to_string().as_bytes(), NOW).unwrap();
        assert!(b.quarantined.is_empty(), "{:?}", b.quarantined);
        assert_eq!(b.events.len(), 1);
        b.events.into_iter().next().unwrap()
    }

    #[test]
    fn object_and_array_bodies() {
        let e = json!({"type": "sent", "mailingId": 7});
        assert_eq!(
            parse_body(e.to_string().as_bytes(), NOW)
                .unwrap()
                .events
                .len(),
            1
        );
        let arr = json!([e, e, e]);
        assert_eq!(
            parse_body(arr.to_string().as_bytes(), NOW)
                .unwrap()
                .events
                .len(),
            3
        );
        let wrapped = json!({"events": [e, e]});
        assert_eq!(
            parse_body(wrapped.to_string().as_bytes(), NOW)
                .unwrap()
                .events
                .len(),
            2
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        assert!(matches!(parse_body(b"{nope", NOW), Err(BodyError::Json(_))));
        assert!(matches!(parse_body(b"", NOW), Err(BodyError::Json(_))));
        assert_eq!(
            parse_body(b"[]", NOW),
            Err(BodyError::Empty("the array is empty"))
        );
        assert_eq!(parse_body(b"42", NOW), Err(BodyError::Shape("a number")));
        assert_eq!(parse_body(b"\"x\"", NOW), Err(BodyError::Shape("a string")));
        assert_eq!(parse_body(b"null", NOW), Err(BodyError::Shape("null")));
    }

    #[test]
    fn ids_as_numbers_or_strings_and_any_key_style() {
        let a = one(
            json!({"type":"open","clientId":12,"mailingId":"345","recipientId":"r-1","userListId":9}),
        );
        let b = one(
            json!({"type":"open","client_id":"12","mailing_id":345,"recipient_id":"r-1","user_list_id":"9"}),
        );
        assert_eq!(a.client_id.as_deref(), Some("12"));
        assert_eq!(a.mailing_id.as_deref(), Some("345"));
        assert_eq!(a.recipient_list_id.as_deref(), Some("9"));
        assert_eq!(
            (
                a.client_id,
                a.mailing_id,
                a.recipient_id,
                a.recipient_list_id
            ),
            (
                b.client_id,
                b.mailing_id,
                b.recipient_id,
                b.recipient_list_id
            )
        );
        // Large ids survive exactly (no float rounding).
        let c = one(json!({"type":"sent","mailingId": 9007199254740993u64}));
        assert_eq!(c.mailing_id.as_deref(), Some("9007199254740993"));
    }

    #[test]
    fn type_is_case_insensitive_and_unknown_is_other() {
        assert_eq!(one(json!({"type":"CLICK"})).event_type, EventType::Click);
        assert_eq!(
            one(json!({"type":"Archived"})).event_type,
            EventType::Archive
        );
        let o = one(json!({"type":"webhooknode"}));
        assert_eq!(o.event_type, EventType::Other);
        assert_eq!(o.type_raw, "webhooknode");
        for t in [
            "sent",
            "open",
            "click",
            "bounce",
            "unsubscribe",
            "spamcomplaint",
            "singleoptin",
            "confirmedoptin",
            "doubleoptin",
            "blocklist",
            "archive",
            "filteredbyblocklist",
        ] {
            assert_ne!(
                one(json!({ "type": t })).event_type,
                EventType::Other,
                "{t}"
            );
        }
    }

    #[test]
    fn each_time_format() {
        let t = 1_766_999_000_000i64;
        for v in [
            json!(t),
            json!(t / 1000),
            json!((t / 1000) as f64 + 0.0),
            json!(t.to_string()),
            json!("2025-12-29T09:03:20Z"),
            json!("2025-12-29T10:03:20+01:00"),
            json!("2025-12-29 09:03:20"),
            json!("2025-12-29T09:03:20.000"),
            json!("Mon, 29 Dec 2025 09:03:20 +0000"),
        ] {
            for field in ["timestamp", "eventTime", "created", "date", "time"] {
                let e = one(json!({"type":"sent", field: v.clone()}));
                assert_eq!(e.event_time, t, "{field} = {v}");
                assert_eq!(e.time_source, TimeSource::Payload);
            }
        }
    }

    #[test]
    fn no_time_or_absurd_time_uses_receive_time_and_says_so() {
        let e = one(json!({"type":"sent"}));
        assert_eq!((e.event_time, e.time_source), (NOW, TimeSource::Received));
        for bad in [
            json!("yesterday"),
            json!(-5),
            json!(1e300),
            json!(12),
            json!({"a":1}),
            json!(NOW + 10 * 86_400_000),
        ] {
            let e = one(json!({"type":"sent","timestamp": bad}));
            assert_eq!(
                (e.event_time, e.time_source),
                (NOW, TimeSource::ReceivedInvalid),
                "{bad}"
            );
        }
        // null counts as absent.
        assert_eq!(
            one(json!({"type":"sent","timestamp":null})).time_source,
            TimeSource::Received
        );
    }

    #[test]
    fn addresses_and_domains() {
        let e = one(
            json!({"type":"bounce","mediaTypesToAddresses":{"SMS":"+4912345","EMAIL":"Jane.Doe@Example.COM"}}),
        );
        assert_eq!(e.media_type.as_deref(), Some("EMAIL"));
        assert_eq!(e.address.as_deref(), Some("Jane.Doe@Example.COM"));
        assert_eq!(e.domain.as_deref(), Some("example.com"));
        let s = one(json!({"type":"sent","mediaTypesToAddresses":{"sms":"+4912345"}}));
        assert_eq!((s.media_type.as_deref(), s.domain), (Some("SMS"), None));
        let u = one(json!({"type":"sent","mediaTypesToAddresses":{"EMAIL":"jörg@bücher.de"}}));
        assert_eq!(u.domain.as_deref(), Some("bücher.de"));
        // Non-ASCII capitals are lowercased too.
        let c = one(json!({"type":"sent","mediaTypesToAddresses":{"EMAIL":"JÖRG@BÜCHER.DE"}}));
        assert_eq!(c.domain.as_deref(), Some("bücher.de"));
        // Texts longer than the 24 bytes kept inline are stored whole.
        let long = "a.very.long.local.part.indeed@mail.some-subsidiary.example.co.uk";
        let l = one(
            json!({"type":"sent","mediaTypesToAddresses":{"EMAIL": long},
            "recipientId": "recipient-0123456789-0123456789"}),
        );
        assert_eq!(l.address.as_deref(), Some(long));
        assert_eq!(
            l.domain.as_deref(),
            Some("mail.some-subsidiary.example.co.uk")
        );
        assert_eq!(
            l.recipient_id.as_deref(),
            Some("recipient-0123456789-0123456789")
        );
        let n = one(json!({"type":"sent","mediaTypesToAddresses":{"EMAIL":"no-at-sign"}}));
        assert_eq!(n.domain, None);
        assert_eq!(n.recipient_key(), Some("no-at-sign"));
    }

    #[test]
    fn bounce_category_and_reason() {
        let h = one(json!({"type":"bounce","bounceCategory":"hardbounce","reason":"other"}));
        assert_eq!(h.bounce_category, Some(BounceKind::Hard));
        assert_eq!(h.bounce_reason.as_deref(), Some("other"));
        let s = one(json!({"type":"bounce","category":"SOFTBOUNCE","bounceReason":"spam-related"}));
        assert_eq!(s.bounce_category, Some(BounceKind::Soft));
        assert_eq!(s.bounce_reason.as_deref(), Some("spam-related"));
        assert_eq!(
            one(json!({"type":"bounce"})).bounce_category,
            Some(BounceKind::Unknown)
        );
        assert_eq!(
            one(json!({"type":"hardbounce"})).event_type,
            EventType::Bounce
        );
        assert_eq!(
            one(json!({"type":"softbounce"})).bounce_category,
            Some(BounceKind::Soft)
        );
        assert_eq!(
            one(json!({"type":"sent","category":"hard"})).bounce_category,
            None
        );
    }

    #[test]
    fn unknown_fields_and_unicode_are_kept_in_raw() {
        let body =
            json!({"type":"click","link":"https://x.test/ä?q=1","vendorExtra":{"deep":[1,2,"✓"]}})
                .to_string();
        let e = one_text(&body);
        let raw: Value = serde_json::from_str(e.raw_in(&body).unwrap()).unwrap();
        assert_eq!(raw["vendorExtra"]["deep"][2], "✓");
        assert_eq!(e.link.as_deref(), Some("https://x.test/ä?q=1"));
    }

    #[test]
    fn items_that_cannot_be_understood_are_quarantined_not_dropped() {
        let body = json!([{"type":"sent"}, 5, "str", null, [1], {"mailingId":1}, {"type": 7}, {"type":"  "}, {"type":"open"}]);
        let b = parse_body(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.quarantined.len(), 7);
        assert!(b.quarantined[0].reason.contains("a number"));
        assert!(b.quarantined[4].reason.contains("no `type`"));
        assert_eq!(b.quarantined[4].raw, r#"{"mailingId":1}"#);
        // A single bad object is quarantined too, not refused.
        let b = parse_body(br#"{"hello":"world"}"#, NOW).unwrap();
        assert_eq!((b.events.len(), b.quarantined.len()), (0, 1));
    }

    #[test]
    fn escapes_repeated_keys_and_number_spellings() {
        // Escaped keys and values are decoded, not compared as written.
        let e = one_text(r#"{"\u0074ype":"OPEN","recipientId":"a\"b","mailingId":"7"}"#);
        assert_eq!(e.event_type, EventType::Open);
        assert_eq!(e.recipient_id.as_deref(), Some("a\"b"));
        // A repeated key means its last value, as in any JSON reader.
        let e = one_text(r#"{"type":"sent","mailingId":1,"mailingId":2}"#);
        assert_eq!(e.mailing_id.as_deref(), Some("2"));
        // Numbers are written as serde_json writes them.
        let e = one_text(r#"{"type":"sent","mailingId":1e3,"clientId":-4,"recipientId":2.50}"#);
        assert_eq!(e.mailing_id.as_deref(), Some("1000.0"));
        assert_eq!(e.client_id.as_deref(), Some("-4"));
        assert_eq!(e.recipient_id.as_deref(), Some("2.5"));
        let e = one_text(r#"{"type":"sent","mailingId":123456789012345678901234}"#);
        assert_eq!(e.mailing_id.as_deref(), Some("1.2345678901234567e+23"));
        // Without an EMAIL entry, the first address in the document wins.
        let e = one_text(
            r#"{"type":"sent","mediaTypesToAddresses":{"SMS":"+4912345","FAX":"0211","email":"  "}}"#,
        );
        assert_eq!(e.media_type.as_deref(), Some("SMS"));
        assert_eq!(e.address.as_deref(), Some("+4912345"));
        // Whitespace around a single object is not part of its raw text.
        let body = " \n {\"type\":\"sent\"}\t ";
        assert_eq!(one_text(body).raw_in(body), Some(r#"{"type":"sent"}"#));
    }

    #[test]
    fn raw_spans_point_at_each_item_as_sent() {
        // Items of an array, of a wrapped list, with escapes and unicode:
        // each span is the item's exact text in the body.
        let body = r#" [ {"type":"sent", "x":"ü\u00fc"} ,{"type" : "open"},7,
            {"type":"click","link":"a"} ] "#;
        let b = parse_body(body.as_bytes(), NOW).unwrap();
        let raws: Vec<&str> = b.events.iter().map(|e| e.raw_in(body).unwrap()).collect();
        assert_eq!(
            raws,
            [
                r#"{"type":"sent", "x":"ü\u00fc"}"#,
                r#"{"type" : "open"}"#,
                r#"{"type":"click","link":"a"}"#
            ]
        );
        let body = r#"{"events":[{"type":"sent"},{"type":"bounce"}]}"#;
        let b = parse_body(body.as_bytes(), NOW).unwrap();
        assert_eq!(b.events[1].raw_in(body), Some(r#"{"type":"bounce"}"#));
    }

    #[test]
    fn one_pass_and_two_pass_reads_agree() {
        // Arrays of objects are read in one pass, their spans told by the
        // first key and last value; escaped first keys, empty objects and
        // items of other kinds go the two-pass way. Both give the same.
        let bodies = [
            "[{\"type\":\"sent\"},{\"type\":\"open\",\"x\":[1,{\"y\":2}]}]",
            "[\n  {\n    \"type\" :\t\"open\" ,\r\n \"link\": \"a\"  }\n ,{ \"type\":\"sent\"}\n]",
            r#"[{"\u0074ype":"sent","mailingId":1},{"type":"open"}]"#,
            r#"[{"type":"sent"},{},{ }]"#,
            r#"[{"type":"sent"},[],"x",null]"#,
            r#"[{"a":{"type":"sent"}},{"type":null,"type":"click"},{"type":"open","type":null}]"#,
        ];
        for body in bodies {
            let one = parse_body(body.as_bytes(), NOW).unwrap();
            let two = split_then_parse(body, body, NOW).unwrap();
            assert_eq!(one, two, "{body}");
            for e in &one.events {
                let raw = e.raw_in(body).unwrap();
                assert!(raw.starts_with('{') && raw.ends_with('}'), "{raw}");
            }
        }
        // The raw text of each event, then of each quarantined item.
        let spans = |body: &str| {
            let batch = read_in_one_pass(body, body, NOW)?;
            let events = batch
                .events
                .iter()
                .map(|e| e.raw_in(body).unwrap().to_string());
            let quarantined = batch.quarantined.into_iter().map(|q| q.raw);
            Some(events.chain(quarantined).collect::<Vec<_>>())
        };
        assert_eq!(
            spans("[ {\"type\" : \"sent\" } ,{\"a\":1}]"),
            Some(vec![
                "{\"type\" : \"sent\" }".to_string(),
                "{\"a\":1}".to_string()
            ])
        );
        assert_eq!(spans(r#"[{"\u0074ype":"sent"}]"#), None);
        assert_eq!(spans("[{}]"), None);
        assert_eq!(spans("[{\"a\":1},2]"), None);
    }

    fn one_text(body: &str) -> Event {
        let b = parse_body(body.as_bytes(), NOW).unwrap();
        assert!(b.quarantined.is_empty(), "{:?}", b.quarantined);
        b.events.into_iter().next().unwrap()
    }

    #[test]
    fn absurd_values_do_not_panic() {
        let long = "x".repeat(100_000);
        let e = one(
            json!({"type": long.clone(), "mailingId": long, "timestamp": u64::MAX, "recipientId": -1.5e308}),
        );
        assert_eq!(e.event_type, EventType::Other);
        assert_eq!(e.time_source, TimeSource::ReceivedInvalid);
        let deep = "[".repeat(200) + &"]".repeat(200);
        let _ = parse_body(deep.as_bytes(), NOW);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Arbitrary JSON, biased towards the keys and shapes the parser
        /// looks at.
        fn json_value() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just("type".to_string()),
                Just("timestamp".to_string()),
                Just("eventTime".to_string()),
                Just("mailingId".to_string()),
                Just("recipientId".to_string()),
                Just("mediaTypesToAddresses".to_string()),
                Just("EMAIL".to_string()),
                Just("bounceCategory".to_string()),
                Just("events".to_string()),
                "\\PC{0,12}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<u64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                prop_oneof![
                    Just("sent".to_string()),
                    Just("hardbounce".to_string()),
                    Just("2025-12-29T09:03:20Z".to_string()),
                    Just("a@b.c".to_string()),
                    "\\PC{0,24}",
                ]
                .prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 64, 8, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::vec((key.clone(), inner), 0..8)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn one_pass_reads_pretty_printed_arrays_as_two_passes_do(
                items in prop::collection::vec(json_value(), 0..6)
            ) {
                let text = serde_json::to_string_pretty(&items).unwrap();
                if let Ok(batch) = parse_body(text.as_bytes(), NOW) {
                    prop_assert_eq!(batch, split_then_parse(&text, &text, NOW).unwrap());
                }
            }

            #[test]
            fn never_panics_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_body(&body, NOW);
            }

            #[test]
            fn never_panics_and_loses_no_item(v in json_value()) {
                let text = v.to_string();
                if let Ok(batch) = parse_body(text.as_bytes(), NOW) {
                    // Every item of an array is either an event or quarantined.
                    if let Value::Array(items) = &v {
                        prop_assert_eq!(batch.events.len() + batch.quarantined.len(), items.len());
                    }
                    if let Value::Array(_) = &v {
                        prop_assert_eq!(&batch, &split_then_parse(&text, &text, NOW).unwrap());
                    }
                    for e in &batch.events {
                        prop_assert!(e.event_time > 0);
                        let raw: Value = serde_json::from_str(e.raw_in(&text).unwrap()).unwrap();
                        prop_assert!(raw.is_object());
                    }
                }
            }
        }
    }
}
