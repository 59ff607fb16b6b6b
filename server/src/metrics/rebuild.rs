//! Rebuilding the live state after a restart, from the store: totals,
//! per-minute buckets and bounce breakdowns from the rollups, persisted lag
//! histograms for the older part of the day, and the raw events of the last
//! hour for second-level buckets and recent lag. Runs before `/readyz`
//! turns ready.

use super::durations::COARSE_MS;
use super::state::{LiveState, MailingSettings, Observed};
use crate::ingest::parse::TimeSource;
use crate::store::dispatch::{ClosedDispatch, DispatchReport};
use mailpulse_app::protocol::{BounceKind, Counters, EventType, MailingClass};
use r2d2_sqlite::rusqlite::Connection;
use std::time::Instant;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What the rebuild read, for the log and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub struct RebuildStats {
    pub rollup_rows: u64,
    pub raw_events: u64,
    pub lag_slots: u64,
    pub millis: u64,
}

pub fn rebuild(conn: &Connection, state: &mut LiveState, now: i64) -> anyhow::Result<RebuildStats> {
    let started = Instant::now();
    let mut stats = RebuildStats::default();

    let mut s = conn.prepare("SELECT mailing_id, class, name FROM mailing_settings")?;
    let rows = s.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, class, name) = row?;
        state.settings.insert(
            id,
            MailingSettings {
                class: class.as_deref().and_then(MailingClass::parse),
                name,
            },
        );
    }

    // Totals and first/last activity per mailing, summed in SQLite.
    let fields = Counters::FIELDS
        .iter()
        .map(|f| format!("SUM({f})"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = conn.prepare(&format!(
        "SELECT mailing_id, MIN(minute), MAX(minute), MAX(CASE WHEN sent > 0 THEN minute END), \
         COUNT(*), {fields} FROM rollup_minute GROUP BY mailing_id"
    ))?;
    let mut rows = s.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let first: i64 = r.get(1)?;
        let last: i64 = r.get(2)?;
        let last_sent: Option<i64> = r.get(3)?;
        stats.rollup_rows += r.get::<_, i64>(4)? as u64;
        let c = counters_at(r, 5)?;
        let class = state.class_of(&id);
        state.overall.totals.add(&c);
        class_scope(state, class).totals.add(&c);
        if !id.is_empty() {
            let m = state.mailings.entry(id).or_default();
            m.scope.totals.add(&c);
            m.scope.seen(first * 60_000, false);
            m.scope.seen(last * 60_000, false);
            if let Some(ls) = last_sent {
                m.scope.seen(ls * 60_000, true);
            }
        }
    }

    // Per-minute buckets of the last day.
    let mut s = conn.prepare(&format!(
        "SELECT mailing_id, minute, {} FROM rollup_minute WHERE minute > ?1",
        Counters::FIELDS.join(", ")
    ))?;
    let mut rows = s.query([(now - DAY_MS).div_euclid(60_000)])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let t = r.get::<_, i64>(1)? * 60_000;
        let c = counters_at(r, 2)?;
        let class = state.class_of(&id);
        state.overall.minutes_only(t, now, &c);
        class_scope(state, class).minutes_only(t, now, &c);
        if let Some(m) = state.mailings.get_mut(&id) {
            m.scope.minutes_only(t, now, &c);
        }
    }

    let mut s = conn.prepare(
        "SELECT mailing_id, domain, category, reason, SUM(count) FROM rollup_bounce_day \
         GROUP BY mailing_id, domain, category, reason",
    )?;
    let mut rows = s.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        if let Some(m) = state.mailings.get_mut(&id) {
            let kind = BounceKind::from_str_lossy(&r.get::<_, String>(2)?);
            m.bounces.add(
                kind,
                &r.get::<_, String>(1)?,
                &r.get::<_, String>(3)?,
                r.get::<_, i64>(4)? as u64,
            );
        }
    }

    // Raw events from the start of the 5-minute lag slot an hour ago: the
    // persisted lag slots before it, raw events from it on.
    let cutoff = (now - HOUR_MS).div_euclid(COARSE_MS) * COARSE_MS;
    let mut s =
        conn.prepare("SELECT scope, slot, histogram FROM lag_5m WHERE slot > ?1 AND slot < ?2")?;
    let mut rows = s.query([now - DAY_MS, cutoff])?;
    while let Some(r) = rows.next()? {
        let scope: String = r.get(0)?;
        let slot: i64 = r.get(1)?;
        let bytes: Vec<u8> = r.get(2)?;
        let target = match scope.as_str() {
            "overall" => &mut state.overall_lag,
            "transactional" => &mut state.transactional_lag,
            "campaign" => &mut state.campaign_lag,
            _ => continue,
        };
        target.load_coarse(slot, &bytes, now)?;
        stats.lag_slots += 1;
    }

    if let Some(from_id) = crate::store::first_id_received_since(conn, cutoff)? {
        let mut s = conn.prepare(
            "SELECT type, mailing_id, event_time, time_source, received_at, bounce_category, \
             first_open, first_click FROM events WHERE id >= ?1",
        )?;
        let mut rows = s.query([from_id])?;
        while let Some(r) = rows.next()? {
            stats.raw_events += 1;
            let mailing: Option<String> = r.get(1)?;
            let observed = Observed {
                event_type: EventType::from_wire(&r.get::<_, String>(0)?),
                first: r.get::<_, bool>(6)? || r.get::<_, bool>(7)?,
                bounce: r
                    .get::<_, Option<String>>(5)?
                    .map(|b| BounceKind::from_str_lossy(&b)),
                mailing: mailing.as_deref(),
                event_time: r.get(2)?,
                received_at: r.get(4)?,
                payload_time: r.get::<_, String>(3)? == TimeSource::Payload.as_str(),
                domain: None,
                reason: None,
            };
            state.observe(&observed, now, true);
        }
    }
    // The dispatch queue: open dispatches, delays of the last day, recent
    // unmatched sent events.
    let mut s = conn.prepare(
        "SELECT mail_id, mailing_id, recipient_id, accepted_at FROM dispatches WHERE sent_at IS NULL",
    )?;
    let mut rows = s.query([])?;
    while let Some(r) = rows.next()? {
        state.dispatch.opened(&DispatchReport {
            mail_id: r.get(0)?,
            mailing_id: r.get(1)?,
            recipient_id: r.get(2)?,
            accepted_at: r.get(3)?,
        });
    }
    let mut s = conn.prepare(
        "SELECT mail_id, mailing_id, accepted_at, sent_at FROM dispatches WHERE sent_at > ?1",
    )?;
    let mut rows = s.query([now - DAY_MS])?;
    while let Some(r) = rows.next()? {
        state.dispatch.closed(
            &ClosedDispatch {
                mail_id: r.get(0)?,
                mailing_id: r.get(1)?,
                accepted_at: r.get(2)?,
                sent_at: r.get(3)?,
            },
            now,
        );
    }
    let mut s =
        conn.prepare("SELECT mailing_id, event_time FROM unmatched_sent WHERE event_time > ?1")?;
    let mut rows = s.query([now - HOUR_MS])?;
    while let Some(r) = rows.next()? {
        let mailing: String = r.get(0)?;
        state.dispatch.unmatched(&mailing, r.get(1)?, now);
    }

    stats.millis = started.elapsed().as_millis() as u64;
    Ok(stats)
}

fn class_scope(state: &mut LiveState, class: MailingClass) -> &mut super::scope::Scope {
    match class {
        MailingClass::Transactional => &mut state.transactional,
        MailingClass::Campaign => &mut state.campaign,
    }
}

fn counters_at(r: &r2d2_sqlite::rusqlite::Row<'_>, from: usize) -> anyhow::Result<Counters> {
    let mut a = [0u64; 18];
    for (i, v) in a.iter_mut().enumerate() {
        *v = r.get::<_, Option<i64>>(from + i)?.unwrap_or(0) as u64;
    }
    Ok(Counters::from_array(a))
}
