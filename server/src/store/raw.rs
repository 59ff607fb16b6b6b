//! How the store keeps each event's raw JSON. A request with one event
//! keeps its text inline in `events.raw`. A batch is stored once, as its
//! whole request body compressed with zstd (`raw_bodies`), and each of its
//! events points at its span in that body (`body_id`, `raw_start`,
//! `raw_len`; `raw` is then empty). The raw text was more than half of each
//! event's row; written inline, it was most of what the writer and the
//! checkpointer copy per event (BENCHMARKS.md, docs/store.md).

use bytes::Bytes;
use r2d2_sqlite::rusqlite::{Connection, OptionalExtension, Row};
use std::cell::RefCell;

/// zstd's fastest regular level: batches of webhook JSON repeat the same
/// keys, so even this level shrinks them several times over.
const ZSTD_LEVEL: i32 = 1;

/// The raw JSON of one request, as the writer stores it.
pub(crate) enum RawBody {
    /// Each event's text is stored inline, cut from the body as received
    /// (UTF-8, checked by the parser): a body of one event, or one that
    /// compression would not shrink.
    Inline(Bytes),
    /// The whole body, compressed; events are spans of it.
    Compressed {
        data: Vec<u8>,
        /// The body's length before compression (no span reaches past it).
        len: usize,
    },
}

impl RawBody {
    /// Compresses the body when it holds more than one event (one event's
    /// JSON is too short for compression to pay for itself) and when that
    /// makes it smaller; otherwise each event's text is stored inline.
    pub(crate) fn for_request(body: Bytes, events: usize) -> std::io::Result<RawBody> {
        thread_local! {
            // A compression context is ~1 MB of tables: made once per
            // thread, not per request.
            static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { RefCell::new(None) };
        }
        if events > 1 {
            let z = COMPRESSOR.with_borrow_mut(|c| {
                let c = match c {
                    Some(c) => c,
                    None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                };
                c.compress(&body)
            })?;
            if z.len() < body.len() {
                return Ok(RawBody::Compressed {
                    data: z,
                    len: body.len(),
                });
            }
        }
        Ok(RawBody::Inline(body))
    }
}

/// One event's stored raw JSON, as read back: inline text, or a span of a
/// compressed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRaw {
    Inline(String),
    Span { body_id: i64, start: i64, len: i64 },
}

impl StoredRaw {
    /// From the columns `raw, body_id, raw_start, raw_len`.
    pub fn from_columns(
        raw: String,
        body_id: Option<i64>,
        start: Option<i64>,
        len: Option<i64>,
    ) -> StoredRaw {
        match (body_id, start, len) {
            (Some(body_id), Some(start), Some(len)) => StoredRaw::Span {
                body_id,
                start,
                len,
            },
            _ => StoredRaw::Inline(raw),
        }
    }

    /// From a row that selected `raw, body_id, raw_start, raw_len` in that
    /// order, starting at column `first`.
    pub fn from_row(row: &Row<'_>, first: usize) -> r2d2_sqlite::rusqlite::Result<StoredRaw> {
        Ok(StoredRaw::from_columns(
            row.get(first)?,
            row.get(first + 1)?,
            row.get(first + 2)?,
            row.get(first + 3)?,
        ))
    }
}

/// Reads events' raw JSON, decompressing each body once for the run of
/// events that share it (a listing in id order meets a batch's events one
/// after another). Holds at most one decompressed body.
pub struct RawReader<'c> {
    conn: &'c Connection,
    last: Option<(i64, Vec<u8>)>,
}

impl<'c> RawReader<'c> {
    pub fn new(conn: &'c Connection) -> RawReader<'c> {
        RawReader { conn, last: None }
    }

    pub fn text(&mut self, raw: StoredRaw) -> anyhow::Result<String> {
        let (body_id, start, len) = match raw {
            StoredRaw::Inline(text) => return Ok(text),
            StoredRaw::Span {
                body_id,
                start,
                len,
            } => (body_id, start, len),
        };
        if self.last.as_ref().map(|(id, _)| *id) != Some(body_id) {
            let compressed: Vec<u8> = self
                .conn
                .prepare_cached("SELECT body FROM raw_bodies WHERE id = ?1")?
                .query_row([body_id], |r| r.get(0))
                .optional()?
                .ok_or_else(|| anyhow::anyhow!("raw body {body_id} is missing"))?;
            self.last = Some((body_id, zstd::stream::decode_all(compressed.as_slice())?));
        }
        let body = &self.last.as_ref().expect("just set").1;
        let end = start
            .checked_add(len)
            .ok_or_else(|| anyhow::anyhow!("raw span {start}+{len} overflows"))?;
        let span = usize::try_from(start)?..usize::try_from(end)?;
        let bytes = body
            .get(span)
            .ok_or_else(|| anyhow::anyhow!("raw span {start}+{len} is outside body {body_id}"))?;
        Ok(std::str::from_utf8(bytes)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_body(body: &str) -> (Connection, i64) {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let RawBody::Compressed { data: z, len } =
            RawBody::for_request(Bytes::from(body.to_string()), 3).unwrap()
        else {
            panic!("a body that repeats itself compresses");
        };
        assert_eq!(len, body.len());
        conn.execute(
            "INSERT INTO raw_bodies (received_at, body) VALUES (1, ?1)",
            [z],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        (conn, id)
    }

    #[test]
    fn rows_written_before_version_5_read_back_inline() {
        use super::super::schema::{migrate, migrate_to, MIGRATIONS};
        // A store as version 4 left it, with one event in it.
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 4).unwrap();
        conn.execute(
            "INSERT INTO events (dedup_key, source, type, type_raw, event_time, time_source, \
             received_at, raw) VALUES (x'00', 'default', 'sent', 'sent', 1, 'payload', 1, \
             '{\"type\":\"sent\",\"old\":true}')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.last().unwrap().0);
        let stored = conn
            .query_row(
                "SELECT raw, body_id, raw_start, raw_len FROM events",
                [],
                |r| StoredRaw::from_row(r, 0),
            )
            .unwrap();
        assert_eq!(
            RawReader::new(&conn).text(stored).unwrap(),
            r#"{"type":"sent","old":true}"#
        );
    }

    #[test]
    fn only_bodies_of_several_events_are_compressed() {
        let body = Bytes::from_static(br#"{"type":"sent"}"#);
        assert!(matches!(
            RawBody::for_request(body.clone(), 1).unwrap(),
            RawBody::Inline(b) if b == body
        ));
        assert!(matches!(
            RawBody::for_request(body, 0).unwrap(),
            RawBody::Inline(_)
        ));
        // Two short events: zstd's frame would be larger than the text.
        let body = Bytes::from_static(br#"[{"type":"sent"},{"type":"open"}]"#);
        assert!(matches!(
            RawBody::for_request(body, 2).unwrap(),
            RawBody::Inline(_)
        ));
    }

    #[test]
    fn spans_read_back_from_the_compressed_body() {
        let body = r#"[{"type":"sent","x":"ü"},{"type":"open"},{"type":"sent","x":"ü"}]"#;
        let (conn, id) = store_with_body(body);
        let mut reader = RawReader::new(&conn);
        let span = |start: usize, end: usize| StoredRaw::Span {
            body_id: id,
            start: start as i64,
            len: (end - start) as i64,
        };
        let first = body.find("{\"type\":\"open").unwrap();
        assert_eq!(
            reader.text(span(first, first + 15)).unwrap(),
            r#"{"type":"open"}"#
        );
        assert_eq!(
            reader.text(span(1, 25)).unwrap(),
            r#"{"type":"sent","x":"ü"}"#
        );
        assert_eq!(
            reader.text(StoredRaw::Inline("inline".into())).unwrap(),
            "inline"
        );
        // Columns of an inline row (no body) and of a span.
        assert_eq!(
            StoredRaw::from_columns("t".into(), None, None, None),
            StoredRaw::Inline("t".into())
        );
        assert_eq!(
            StoredRaw::from_columns(String::new(), Some(id), Some(1), Some(2)),
            StoredRaw::Span {
                body_id: id,
                start: 1,
                len: 2
            }
        );
    }

    #[test]
    fn a_missing_body_or_a_span_outside_it_is_an_error_not_a_panic() {
        let (conn, id) =
            store_with_body(r#"[{"type":"sent"},{"type":"sent"},{"type":"sent"},{"type":"sent"}]"#);
        let mut reader = RawReader::new(&conn);
        let err = reader
            .text(StoredRaw::Span {
                body_id: id + 1,
                start: 0,
                len: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        for (start, len) in [(60, 10), (-1, 2), (0, 1000), (1, i64::MAX), (5, -2)] {
            assert!(reader
                .text(StoredRaw::Span {
                    body_id: id,
                    start,
                    len
                })
                .is_err());
        }
    }
}
