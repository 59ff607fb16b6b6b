//! Transactional dispatches in the store: recording the dispatches users'
//! systems report (idempotent by `mailId`), and closing them when their
//! `sent` event arrives — by `mailId` where the payload carries one, else
//! the oldest open dispatch of that mailing and recipient. A `sent` event
//! that comes before its dispatch report waits in `unmatched_sent` and is
//! matched when the report arrives. Runs inside the writer's transactions.

use crate::ingest::parse::Event;
use r2d2_sqlite::rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How far before its dispatch a `sent` event may lie and still match it
/// (clocks of Optimizely and the reporting system differ a little).
const MATCH_SLACK_MS: i64 = 300_000;

/// One dispatch as reported: `POST /api/v1/dispatches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchReport {
    pub mail_id: String,
    pub mailing_id: String,
    pub recipient_id: String,
    /// When Optimizely accepted it (ms since epoch).
    pub accepted_at: i64,
}

/// A dispatch whose `sent` event arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedDispatch {
    pub mail_id: String,
    pub mailing_id: String,
    pub accepted_at: i64,
    /// Event time of the `sent` event.
    pub sent_at: i64,
}

/// What changed in the dispatch queue, for the live engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchUpdate {
    pub opened: Vec<DispatchReport>,
    pub closed: Vec<ClosedDispatch>,
}

/// The answer to a dispatch report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchOutcome {
    /// New dispatches recorded.
    pub accepted: usize,
    /// Already reported before (same `mailId`).
    pub duplicates: usize,
    /// Of the accepted, those whose `sent` event had already arrived.
    pub already_sent: usize,
}

/// Mailings that have ever had a dispatch reported: only their `sent`
/// events are matched, so a campaign's millions of sends cost nothing.
#[derive(Debug, Default)]
pub struct DispatchMailings(HashSet<String>);

impl DispatchMailings {
    pub fn load(tx: &r2d2_sqlite::rusqlite::Connection) -> anyhow::Result<DispatchMailings> {
        let mut s = tx.prepare("SELECT DISTINCT mailing_id FROM dispatches")?;
        let ids = s
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(DispatchMailings(ids))
    }

    pub fn contains(&self, mailing: &str) -> bool {
        self.0.contains(mailing)
    }
}

/// Records reported dispatches.
pub fn record(
    tx: &Transaction<'_>,
    reports: &[DispatchReport],
    known: &mut DispatchMailings,
    update: &mut DispatchUpdate,
    now: i64,
) -> anyhow::Result<DispatchOutcome> {
    let mut exists = tx.prepare_cached("SELECT 1 FROM dispatches WHERE mail_id = ?1")?;
    let mut waiting_by_mail = tx.prepare_cached(
        "SELECT event_id, event_time FROM unmatched_sent WHERE mail_id = ?1 LIMIT 1",
    )?;
    let mut waiting_by_recipient = tx.prepare_cached(
        "SELECT event_id, event_time FROM unmatched_sent \
         WHERE mailing_id = ?1 AND recipient_id = ?2 AND event_time >= ?3 \
         ORDER BY event_time LIMIT 1",
    )?;
    let mut forget = tx.prepare_cached("DELETE FROM unmatched_sent WHERE event_id = ?1")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO dispatches (mail_id, mailing_id, recipient_id, accepted_at, reported_at, \
         sent_at, sent_event_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut out = DispatchOutcome::default();
    for d in reports {
        if exists.exists([&d.mail_id])? {
            out.duplicates += 1;
            continue;
        }
        let waiting: Option<(i64, i64)> = match waiting_by_mail
            .query_row([&d.mail_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            Some(w) => Some(w),
            None => waiting_by_recipient
                .query_row(
                    params![d.mailing_id, d.recipient_id, d.accepted_at - MATCH_SLACK_MS],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?,
        };
        let (sent_at, event_id) = match waiting {
            Some((event_id, event_time)) => {
                forget.execute([event_id])?;
                (Some(event_time), Some(event_id))
            }
            None => (None, None),
        };
        insert.execute(params![
            d.mail_id,
            d.mailing_id,
            d.recipient_id,
            d.accepted_at,
            now,
            sent_at,
            event_id
        ])?;
        known.0.insert(d.mailing_id.clone());
        out.accepted += 1;
        match sent_at {
            Some(sent_at) => {
                out.already_sent += 1;
                update.closed.push(ClosedDispatch {
                    mail_id: d.mail_id.clone(),
                    mailing_id: d.mailing_id.clone(),
                    accepted_at: d.accepted_at,
                    sent_at,
                });
            }
            None => update.opened.push(d.clone()),
        }
    }
    Ok(out)
}

/// What a stored `sent` event did to the dispatch queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentMatch {
    /// Not a mailing with dispatches.
    NotTracked,
    Closed(ClosedDispatch),
    /// A tracked mailing, but no open dispatch matched (yet).
    Unmatched,
}

/// Closes the dispatch a newly stored `sent` event (id `event_id`) belongs to.
pub fn match_sent(
    tx: &Transaction<'_>,
    e: &Event,
    event_id: i64,
    known: &DispatchMailings,
) -> anyhow::Result<SentMatch> {
    let Some(mailing) = e.mailing_id.as_deref().filter(|m| known.contains(m)) else {
        return Ok(SentMatch::NotTracked);
    };
    let mut by_mail = tx.prepare_cached(
        "UPDATE dispatches SET sent_at = ?1, sent_event_id = ?2 \
         WHERE mail_id = ?3 AND sent_at IS NULL RETURNING mail_id, accepted_at",
    )?;
    let mut by_recipient = tx.prepare_cached(
        "UPDATE dispatches SET sent_at = ?1, sent_event_id = ?2 WHERE mail_id = \
         (SELECT mail_id FROM dispatches WHERE mailing_id = ?3 AND recipient_id = ?4 \
          AND sent_at IS NULL ORDER BY accepted_at LIMIT 1) RETURNING mail_id, accepted_at",
    )?;
    let row =
        |r: &r2d2_sqlite::rusqlite::Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
    let mut closed = match e.mail_id.as_deref() {
        Some(mail_id) => by_mail
            .query_row(params![e.event_time, event_id, mail_id], row)
            .optional()?,
        None => None,
    };
    if closed.is_none() {
        if let Some(recipient) = e.recipient_key() {
            closed = by_recipient
                .query_row(params![e.event_time, event_id, mailing, recipient], row)
                .optional()?;
        }
    }
    Ok(match closed {
        Some((mail_id, accepted_at)) => SentMatch::Closed(ClosedDispatch {
            mail_id,
            mailing_id: mailing.to_string(),
            accepted_at,
            sent_at: e.event_time,
        }),
        None => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO unmatched_sent (event_id, mailing_id, recipient_id, mail_id, \
                 event_time) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![event_id, mailing, e.recipient_key(), e.mail_id.as_deref(), e.event_time])?;
            SentMatch::Unmatched
        }
    })
}
