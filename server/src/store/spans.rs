//! Where a mailing's events are: runs of event ids (`mailing_spans`), kept
//! instead of an index entry per event. An index on `events (mailing_id,
//! id)` cost the single writer ~15 % of its time per event (a seek and an
//! insert, and its leaves rewritten in every commit); a span costs one row
//! per run of a mailing's events in a group commit (one per 100–500 events
//! under batch load). Readers walk a mailing's spans newest first and read
//! the events table by id range, keeping the rows of that mailing.
//!
//! A span holds all of its mailing's events between `first_id` and
//! `last_id`, and at most `SPAN_GAP` − 1 other ids between two of them, so
//! a reader scans at most that many rows of other mailings per event it
//! finds. A mailing's spans never overlap: a group's runs are disjoint and
//! later groups have larger ids.

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::HashMap;

use super::writer::Committed;

/// The largest id step within one span.
pub const SPAN_GAP: i64 = 64;

/// Records the spans of a group's committed events (in id order), in the
/// group's transaction.
pub(crate) fn record(tx: &Transaction<'_>, committed: &[Committed]) -> anyhow::Result<()> {
    // Open runs of this group, one per mailing: (mailing, first, last).
    // Consecutive events mostly share a mailing, so the last hit is tried
    // first; the map finds the others (a group of transactional mail can
    // hold hundreds of mailings).
    let mut open: Vec<(&str, i64, i64)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut last_hit = 0;
    let mut insert = tx.prepare_cached(
        "INSERT INTO mailing_spans (last_id, mailing_id, first_id) VALUES (?1, ?2, ?3)",
    )?;
    for c in committed {
        let Some(m) = c.event.mailing_id.as_deref() else {
            continue;
        };
        let at = if open.get(last_hit).is_some_and(|r| r.0 == m) {
            Some(last_hit)
        } else {
            index.get(m).copied()
        };
        match at {
            Some(i) => {
                let run = &mut open[i];
                if c.id - run.2 > SPAN_GAP {
                    insert.execute(params![run.2, run.0, run.1])?;
                    run.1 = c.id;
                }
                run.2 = c.id;
                last_hit = i;
            }
            None => {
                last_hit = open.len();
                index.insert(m, last_hit);
                open.push((m, c.id, c.id));
            }
        }
    }
    for (m, first, last) in open {
        insert.execute(params![last, m, first])?;
    }
    Ok(())
}

/// Visits the id ranges that hold `mailing`'s events below `before` (all
/// when `None`), newest first, as `(lo, hi)` inclusive, until `visit`
/// returns false. Every range may also hold other mailings' events.
pub fn newest_first(
    conn: &Connection,
    mailing: &str,
    before: Option<i64>,
    mut visit: impl FnMut(i64, i64) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let before = before.unwrap_or(i64::MAX);
    // Spans do not overlap, so at most one holds `before` itself.
    let straddling: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT first_id, last_id FROM mailing_spans WHERE mailing_id = ?1 AND last_id >= ?2 \
             ORDER BY last_id LIMIT 1",
        )?
        .query_row(params![mailing, before], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // Below the range visited last, so no id is visited twice even if
    // spans overlapped.
    let mut upper = before.saturating_sub(1);
    if let Some((first, _)) = straddling.filter(|s| s.0 < before) {
        if !visit(first, upper)? {
            return Ok(());
        }
        upper = first - 1;
    }
    let mut spans = conn.prepare_cached(
        "SELECT first_id, last_id FROM mailing_spans WHERE mailing_id = ?1 AND last_id < ?2 \
         ORDER BY last_id DESC",
    )?;
    let mut rows = spans.query(params![mailing, before])?;
    while let Some(r) = rows.next()? {
        let (first, last): (i64, i64) = (r.get(0)?, r.get(1)?);
        let hi = last.min(upper);
        if hi >= first && !visit(first, hi)? {
            break;
        }
        upper = upper.min(first - 1);
    }
    Ok(())
}

/// Deletes up to `limit` spans that end at or below `up_to_id` (their
/// events are gone); returns how many.
pub(crate) fn delete_up_to(tx: &Transaction<'_>, up_to_id: i64, limit: i64) -> anyhow::Result<u64> {
    Ok(tx.execute(
        "DELETE FROM mailing_spans WHERE last_id IN \
         (SELECT last_id FROM mailing_spans WHERE last_id <= ?1 ORDER BY last_id LIMIT ?2)",
        params![up_to_id, limit],
    )? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse_body;
    use crate::store::dispatch::SentMatch;
    use crate::store::schema;

    /// The single number `sql` selects.
    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A small deterministic generator (xorshift), so failures repeat.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// One mailing per event id: a dense one, a few sparse ones and events
    /// without a mailing, interleaved.
    fn mailings(n: usize, seed: u64) -> Vec<Option<String>> {
        let mut rng = Rng(seed);
        (0..n)
            .map(|_| match rng.below(100) {
                0..=59 => Some("dense".to_string()),
                60..=79 => Some("medium".to_string()),
                80..=84 => Some(format!("sparse{}", rng.below(3))),
                85..=89 => None,
                // Bursts of one mailing that is otherwise rare.
                _ => Some("bursty".to_string()),
            })
            .collect()
    }

    fn insert_event(conn: &Connection, id: i64, mailing: Option<&str>) {
        conn.execute(
            "INSERT INTO events (id, dedup_key, source, type, type_raw, event_time, time_source, \
             received_at, raw, mailing_id) VALUES (?1, ?1, 's', 'sent', 'sent', 0, 'received', 0, '', ?2)",
            params![id, mailing],
        )
        .unwrap();
    }

    /// Everything `newest_first` visits for `mailing` below `before`, read
    /// the way the API reads it, against a plain scan of the table.
    fn check_reads(conn: &Connection, mailing: &str, before: Option<i64>, limit: usize) {
        let mut got = Vec::new();
        let mut read = conn
            .prepare(
                "SELECT id FROM events WHERE id BETWEEN ?1 AND ?2 AND mailing_id = ?3 \
                 ORDER BY id DESC LIMIT ?4",
            )
            .unwrap();
        newest_first(conn, mailing, before, |lo, hi| {
            let left = (limit - got.len()) as i64;
            let ids = read
                .query_map(params![lo, hi, mailing, left], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            got.extend(ids);
            Ok(got.len() < limit)
        })
        .unwrap();
        let want: Vec<i64> = conn
            .prepare(
                "SELECT id FROM events WHERE mailing_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )
            .unwrap()
            .query_map(
                params![mailing, before.unwrap_or(i64::MAX), limit as i64],
                |r| r.get(0),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, want, "{mailing} before {before:?} limit {limit}");
    }

    /// Every span holds only steps of at most `SPAN_GAP` between its
    /// mailing's events, and a mailing's spans do not overlap.
    fn check_spans(conn: &Connection) {
        let spans: Vec<(String, i64, i64)> = conn
            .prepare("SELECT mailing_id, first_id, last_id FROM mailing_spans ORDER BY mailing_id, last_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for w in spans.windows(2) {
            if w[0].0 == w[1].0 {
                assert!(w[0].2 < w[1].1, "overlap: {w:?}");
            }
        }
        for (m, first, last) in &spans {
            let ids: Vec<i64> = conn
                .prepare("SELECT id FROM events WHERE mailing_id = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id")
                .unwrap()
                .query_map(params![m, first, last], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(ids.first(), Some(first), "{m} {first}..{last}");
            assert_eq!(ids.last(), Some(last), "{m} {first}..{last}");
            assert!(
                ids.windows(2).all(|w| w[1] - w[0] <= SPAN_GAP),
                "{m}: {ids:?}"
            );
        }
    }

    fn check_all_reads(conn: &Connection, n: i64) {
        for m in ["dense", "medium", "sparse0", "sparse2", "bursty", "nothing"] {
            for before in [
                None,
                Some(i64::MIN),
                Some(1),
                Some(n / 3),
                Some(n / 2 + 7),
                Some(n),
            ] {
                for limit in [1, 7, 100, 10_000] {
                    check_reads(conn, m, before, limit);
                }
            }
        }
    }

    #[test]
    fn group_commits_record_spans_that_find_every_event_newest_first() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let template = parse_body(br#"{"type":"sent","mailingId":"x"}"#, 1)
            .unwrap()
            .events
            .remove(0);
        let all = mailings(4_000, 0x5eed);
        let mut rng = Rng(42);
        let mut next = 0;
        while next < all.len() {
            // Groups of one event up to more than a few spans' gaps.
            let size = 1 + rng.below(600) as usize;
            let tx = conn.transaction().unwrap();
            let mut committed = Vec::new();
            for m in all.iter().skip(next).take(size) {
                next += 1;
                let id = next as i64;
                insert_event(&tx, id, m.as_deref());
                let mut event = template.clone();
                event.mailing_id = m.as_deref().map(Into::into);
                committed.push(Committed {
                    id,
                    event,
                    first: false,
                    dispatch: SentMatch::NotTracked,
                });
            }
            record(&tx, &committed).unwrap();
            tx.commit().unwrap();
        }
        check_spans(&conn);
        check_all_reads(&conn, all.len() as i64);
        let spans = count(&conn, "SELECT COUNT(*) FROM mailing_spans");
        // The point of spans: far fewer rows than events.
        assert!(spans < all.len() as i64 / 10, "{spans} spans");

        // Retention: spans that end at or below the deleted ids go, a
        // chunk at a time; the rest still find every event left.
        conn.execute("DELETE FROM events WHERE id <= 2000", [])
            .unwrap();
        let tx = conn.transaction().unwrap();
        while delete_up_to(&tx, 2000, 7).unwrap() > 0 {}
        tx.commit().unwrap();
        let stale = count(
            &conn,
            "SELECT COUNT(*) FROM mailing_spans WHERE last_id <= 2000",
        );
        assert_eq!(stale, 0);
        check_all_reads(&conn, all.len() as i64);
    }

    #[test]
    fn the_migration_turns_the_old_index_into_spans() {
        // A store as version 6 left it.
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate_to(&mut conn, 6).unwrap();
        let all = mailings(3_000, 7);
        for (i, m) in all.iter().enumerate() {
            insert_event(&conn, i as i64 + 1, m.as_deref());
        }
        schema::migrate(&mut conn).unwrap();
        let index = count(
            &conn,
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'events_by_mailing'",
        );
        assert_eq!(index, 0);
        check_spans(&conn);
        check_all_reads(&conn, all.len() as i64);
    }

    #[test]
    fn span_reads_and_deletes_use_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        for sql in [
            "SELECT first_id, last_id FROM mailing_spans WHERE mailing_id = ?1 AND last_id >= ?2 \
             ORDER BY last_id LIMIT 1",
            "SELECT first_id, last_id FROM mailing_spans WHERE mailing_id = ?1 AND last_id < ?2 \
             ORDER BY last_id DESC",
            "SELECT last_id FROM mailing_spans WHERE last_id <= ?1 ORDER BY last_id LIMIT ?2",
            "SELECT id FROM events WHERE id BETWEEN ?1 AND ?2 AND mailing_id = ?3 \
             ORDER BY id DESC LIMIT ?4",
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(
                    params![1, 2, 3, 4][..sql.matches('?').count()].as_ref(),
                    |r| r.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .all(|l| !l.starts_with("SCAN") && !l.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }
}
