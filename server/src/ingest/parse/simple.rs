//! A single-event body read without serde_json: one JSON object whose keys
//! have no escapes and whose values are strings without escapes, integers,
//! `true`, `false`, `null`, or objects of such values one level down (the
//! address map). That is what a sender posting one event writes. Anything
//! else, valid or not, is left to serde_json (`None`), which also words
//! the error of an invalid body. Within that shape it accepts exactly what
//! serde_json accepts and fills the same [`Fields`]; a test compares the
//! two on generated bodies. serde_json's general reader, keeping each
//! value's raw text, was ~4.7k of the ~35k instructions a single-event
//! request costs the tokio workers (callgrind; docs/store.md).

use super::{Fields, KeyNames};
use std::borrow::Cow;

/// Objects nest this deep at most (the event, its address map).
const MAX_DEPTH: u8 = 2;

/// `text` as one object's fields, or `None` if it is not a simple object.
pub(super) fn fields<'a>(text: &'a str, names: &mut KeyNames) -> Option<Fields<'a>> {
    let mut scan = Scan::new(text);
    let mut fields = Fields::new();
    scan.ws();
    scan.object(1, |key, value| {
        fields.push(names, Cow::Borrowed(key), value)
    })?;
    scan.ws();
    (scan.at == text.len()).then_some(fields)
}

/// Calls `field(key, raw value)` for each member of the simple object
/// `text` (a value [`fields`] took in); `None` if it is not one.
pub(super) fn members<'a>(text: &'a str, field: impl FnMut(&'a str, &'a str)) -> Option<()> {
    let mut scan = Scan::new(text);
    scan.object(MAX_DEPTH, field)?;
    (scan.at == text.len()).then_some(())
}

/// Where the first quote, backslash or control character of `bytes` is:
/// eight bytes at a time, as serde_json's own reader looks for them (a
/// byte at a time this was a third of the whole read).
fn string_end(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if let Some(at) = stop_in(word) {
            return Some(i * 8 + at);
        }
    }
    // The last few bytes padded with spaces, which stop nothing.
    let tail = chunks.remainder();
    let mut word = [b' '; 8];
    word[..tail.len()].copy_from_slice(tail);
    stop_in(word).map(|at| bytes.len() - tail.len() + at)
}

/// The first quote, backslash or control character among eight bytes.
fn stop_in(word: [u8; 8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    let x = u64::from_le_bytes(word);
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    // A byte's high bit is set where it is below 0x20 (or zero after the
    // xor); the borrow may flag bytes above the first match, never below
    // it, so the lowest flag is exact.
    let found = (x.wrapping_sub(ONES * 0x20) & !x)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash);
    let found = found & (ONES << 7);
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Scan<'a> {
        Scan { text, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// JSON's whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    /// A string without escapes and control characters; the text between
    /// its quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = string_end(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are at an ASCII quote, so on character boundaries.
        self.text.get(start..start + len)
    }

    /// An integer, `-?(0|[1-9][0-9]*)`; one with a fraction or an exponent
    /// is left to serde_json.
    fn integer(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.at += 1;
                }
            }
            _ => return None,
        }
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text.as_bytes()[self.at..]
            .starts_with(word.as_bytes())
            .then(|| self.at += word.len())
    }

    /// One value inside an object at `depth`; its raw text.
    fn value(&mut self, depth: u8) -> Option<&'a str> {
        let start = self.at;
        match self.peek()? {
            b'"' => self.string().map(|_| ())?,
            b'-' | b'0'..=b'9' => self.integer()?,
            b't' => self.literal("true")?,
            b'f' => self.literal("false")?,
            b'n' => self.literal("null")?,
            b'{' if depth < MAX_DEPTH => self.object(depth + 1, |_, _| ())?,
            _ => return None,
        }
        self.text.get(start..self.at)
    }

    /// An object at `depth`, calling `field(key, raw value)` for each
    /// member in order.
    fn object(&mut self, depth: u8, mut field: impl FnMut(&'a str, &'a str)) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            field(key, self.value(depth)?);
            self.ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.ws();
                }
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fast(text: &str) -> Option<Fields<'_>> {
        fields(text, &mut KeyNames::new())
    }

    fn serde(text: &str) -> Result<Fields<'_>, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn a_bench_event_is_read_without_serde_json() {
        let text = r#"{"type":"click","clientId":7,"mailingId":4711,"userListId":12,"recipientId":"s-1","timestamp":1733545200000,"mediaTypesToAddresses":{"EMAIL":"user1@example.com"},"link":"https://example.com/offer"}"#;
        let f = fast(text).expect("a simple object");
        assert_eq!(f, serde(text).unwrap());
        assert_eq!(f.len, 8);
        assert_eq!(f.find(&[super::super::Name::MailingId]), Some("4711"));
        assert_eq!(
            f.find(&[super::super::Name::MediaTypesToAddresses]),
            Some(r#"{"EMAIL":"user1@example.com"}"#)
        );
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for text in [
            r#"{"type":"se\"nt"}"#,           // an escape in a value
            r#"{"ty\u0070e":"sent"}"#,        // an escape in a key
            r#"{"type":"sent","t":1.5}"#,     // a fraction
            r#"{"type":"sent","t":1e3}"#,     // an exponent
            r#"{"type":"sent","ids":[1,2]}"#, // an array
            r#"{"a":{"b":{"c":1}}}"#,         // deeper than the address map
            "{\"type\":\"se\u{1}nt\"}",       // a control character
            r#"{"type":"sent",}"#,            // invalid: trailing comma
            r#"{"type":"sent"} x"#,           // invalid: trailing text
            r#"{"type":01}"#,                 // invalid: leading zero
            r#"{"type":-}"#,                  // invalid: no digits
            r#"{"type":tru}"#,                // invalid: not a literal
            r#"{"type":"sent""#,              // invalid: unclosed
            r#"["type"]"#,                    // not an object
        ] {
            assert!(fast(text).is_none(), "{text}");
        }
    }

    #[test]
    fn string_ends_are_found_in_every_position() {
        for len in 0..40 {
            for stop in ["\"", "\\", "\u{1}", "\u{1f}"] {
                let text = format!("{}{stop}é\"", "a".repeat(len));
                assert_eq!(string_end(text.as_bytes()), Some(len), "{text:?}");
            }
            // Bytes that only look close to a stop: DEL, space, UTF-8.
            let text = format!("{}\u{7f} é€", "b".repeat(len));
            assert_eq!(string_end(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn members_of_an_address_map() {
        let mut seen = Vec::new();
        assert!(
            members(r#"{"SMS":"+4912", "EMAIL" : "a@b.example"}"#, |k, v| seen
                .push((k, v)))
            .is_some()
        );
        assert_eq!(seen, [("SMS", r#""+4912""#), ("EMAIL", r#""a@b.example""#)]);
        assert!(members(r#"{"EMAIL":{"x":1}}"#, |_, _| ()).is_none());
        assert!(members(r#"{"EMAIL":"a"} "#, |_, _| ()).is_none());
    }

    /// JSON whitespace, sometimes none.
    fn ws() -> impl Strategy<Value = String> {
        "[ \t\n\r]{0,2}"
    }

    /// Keys the parser knows, in several spellings, and any others.
    fn key() -> impl Strategy<Value = String> {
        const KNOWN: &[&str] = &[
            "type",
            "Type",
            "mailing_id",
            "mailingId",
            "timestamp",
            "mediaTypesToAddresses",
            "events",
            "",
        ];
        prop_oneof![
            prop::sample::select(KNOWN).prop_map(String::from),
            "[a-zA-Z_é€ -]{1,12}",
        ]
    }

    /// A value of the simple shape; `nested` allows an object of them.
    fn value(nested: bool) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            "[^\"\\\\\u{0}-\u{1f}]{0,16}".prop_map(|s| format!("\"{s}\"")),
            "-?(0|[1-9][0-9]{0,22})",
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ];
        if !nested {
            return leaf.boxed();
        }
        prop_oneof![4 => leaf, 1 => object(false)].boxed()
    }

    fn object(nested: bool) -> BoxedStrategy<String> {
        proptest::collection::vec((ws(), key(), ws(), ws(), value(nested), ws()), 0..9)
            .prop_map(|members| {
                let inner: Vec<String> = members
                    .into_iter()
                    .map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"))
                    .collect();
                format!("{{{}}}", inner.join(","))
            })
            .boxed()
    }

    proptest! {
        /// Every simple object is read, and read as serde_json reads it.
        #[test]
        fn simple_objects_are_read_as_serde_json_reads_them(
            text in (ws(), object(true), ws()).prop_map(|(a, o, b)| format!("{a}{o}{b}")),
        ) {
            let f = fast(&text);
            prop_assert!(f.is_some(), "not read: {}", text);
            prop_assert_eq!(f.unwrap(), serde(&text).unwrap());
        }

        /// Whatever it reads of a damaged body, serde_json reads alike; it
        /// never reads what serde_json refuses.
        #[test]
        fn it_reads_nothing_serde_json_would_not(
            (text, at, insert) in (object(true), any::<prop::sample::Index>(), prop_oneof![
                Just(""), Just("\\"), Just("\""), Just("{"), Just("}"), Just("["), Just("]"),
                Just(","), Just(":"), Just("."), Just("e"), Just("-"), Just("0"), Just("1"),
                Just("\u{1}"), Just("é"), Just("n"), Just("t"), Just(" "), Just("\\u0041"),
            ]),
            cut in 0usize..3,
        ) {
            // Replace `cut` characters at a random place with `insert`.
            let chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len() + 1);
            let end = (i + cut).min(chars.len());
            let damaged: String = chars[..i]
                .iter()
                .chain(insert.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter())
                .collect();
            if let Some(f) = fast(&damaged) {
                let s = serde(&damaged);
                prop_assert!(s.is_ok(), "read what serde_json refuses: {}", damaged);
                prop_assert_eq!(f, s.unwrap());
            }
        }
    }
}
