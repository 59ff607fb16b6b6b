//! The store's schema, as an ordered list of migrations. Each runs once, in
//! its own transaction, and is recorded in `schema_migrations`; a store
//! written by a newer mailpulse (an unknown version) is refused rather than
//! misread. `docs/store.md` documents every table.

use r2d2_sqlite::rusqlite::{params, Connection};

/// `(version, description, SQL)`. Append only; never edit a released one.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "events, quarantine, first opens/clicks, rollups",
        r#"
    CREATE TABLE events (
        id                INTEGER PRIMARY KEY,
        dedup_key         BLOB NOT NULL UNIQUE,
        source            TEXT NOT NULL,
        type              TEXT NOT NULL,
        type_raw          TEXT NOT NULL,
        client_id         TEXT,
        mailing_id        TEXT,
        recipient_list_id TEXT,
        recipient_id      TEXT,
        event_time        INTEGER NOT NULL,
        time_source       TEXT NOT NULL,
        received_at       INTEGER NOT NULL,
        media_type        TEXT,
        address           TEXT,
        domain            TEXT,
        link              TEXT,
        bounce_category   TEXT,
        bounce_reason     TEXT,
        mail_id           TEXT,
        first_open        INTEGER NOT NULL DEFAULT 0,
        first_click       INTEGER NOT NULL DEFAULT 0,
        raw               TEXT NOT NULL
    );
    CREATE INDEX events_by_mailing ON events (mailing_id, id);

    CREATE TABLE quarantine (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        raw         TEXT NOT NULL
    );

    CREATE TABLE engagement_firsts (
        mailing_id TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        event_time INTEGER NOT NULL,
        PRIMARY KEY (mailing_id, recipient, kind)
    ) WITHOUT ROWID;

    CREATE TABLE rollup_minute (
        mailing_id            TEXT NOT NULL,
        minute                INTEGER NOT NULL,
        sent                  INTEGER NOT NULL DEFAULT 0,
        opens                 INTEGER NOT NULL DEFAULT 0,
        unique_opens          INTEGER NOT NULL DEFAULT 0,
        clicks                INTEGER NOT NULL DEFAULT 0,
        unique_clicks         INTEGER NOT NULL DEFAULT 0,
        bounces               INTEGER NOT NULL DEFAULT 0,
        hard_bounces          INTEGER NOT NULL DEFAULT 0,
        soft_bounces          INTEGER NOT NULL DEFAULT 0,
        unknown_bounces       INTEGER NOT NULL DEFAULT 0,
        unsubscribes          INTEGER NOT NULL DEFAULT 0,
        complaints            INTEGER NOT NULL DEFAULT 0,
        single_opt_ins        INTEGER NOT NULL DEFAULT 0,
        confirmed_opt_ins     INTEGER NOT NULL DEFAULT 0,
        double_opt_ins        INTEGER NOT NULL DEFAULT 0,
        blocklisted           INTEGER NOT NULL DEFAULT 0,
        archived              INTEGER NOT NULL DEFAULT 0,
        filtered_by_blocklist INTEGER NOT NULL DEFAULT 0,
        other                 INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mailing_id, minute)
    ) WITHOUT ROWID;
    CREATE INDEX rollup_minute_by_time ON rollup_minute (minute);

    CREATE TABLE rollup_bounce_day (
        mailing_id TEXT NOT NULL,
        day        INTEGER NOT NULL,
        domain     TEXT NOT NULL,
        category   TEXT NOT NULL,
        reason     TEXT NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (mailing_id, day, domain, category, reason)
    ) WITHOUT ROWID;
    "#,
    ),
    (
        2,
        "mailing settings, persisted lag histograms",
        r#"
    CREATE TABLE mailing_settings (
        mailing_id TEXT PRIMARY KEY,
        class      TEXT,
        name       TEXT,
        updated_at INTEGER NOT NULL
    );

    CREATE TABLE lag_5m (
        scope     TEXT NOT NULL,
        slot      INTEGER NOT NULL,
        histogram BLOB NOT NULL,
        PRIMARY KEY (scope, slot)
    ) WITHOUT ROWID;
    "#,
    ),
    (
        3,
        "transactional dispatches and unmatched sent events",
        r#"
    CREATE TABLE dispatches (
        mail_id       TEXT PRIMARY KEY,
        mailing_id    TEXT NOT NULL,
        recipient_id  TEXT NOT NULL,
        accepted_at   INTEGER NOT NULL,
        reported_at   INTEGER NOT NULL,
        sent_at       INTEGER,
        sent_event_id INTEGER
    );
    CREATE INDEX dispatches_open ON dispatches (mailing_id, recipient_id, accepted_at)
        WHERE sent_at IS NULL;
    CREATE INDEX dispatches_open_age ON dispatches (accepted_at) WHERE sent_at IS NULL;
    CREATE INDEX dispatches_closed ON dispatches (sent_at) WHERE sent_at IS NOT NULL;

    CREATE TABLE unmatched_sent (
        event_id     INTEGER PRIMARY KEY,
        mailing_id   TEXT NOT NULL,
        recipient_id TEXT,
        mail_id      TEXT,
        event_time   INTEGER NOT NULL
    );
    CREATE INDEX unmatched_by_recipient ON unmatched_sent (mailing_id, recipient_id);
    CREATE INDEX unmatched_by_mail ON unmatched_sent (mail_id);
    CREATE INDEX unmatched_by_time ON unmatched_sent (event_time);
    "#,
    ),
    (
        4,
        "alert incidents, history, outbox, silences, rules",
        r#"
    CREATE TABLE alert_incidents (
        id             INTEGER PRIMARY KEY,
        rule           TEXT NOT NULL,
        scope          TEXT NOT NULL,
        severity       TEXT NOT NULL,
        state          TEXT NOT NULL,
        started_at     INTEGER NOT NULL,
        firing_at      INTEGER,
        resolved_at    INTEGER,
        value          REAL,
        threshold      REAL,
        summary        TEXT NOT NULL,
        acked_by       TEXT,
        acked_at       INTEGER,
        ack_comment    TEXT,
        last_notified_at INTEGER,
        notifications  INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents (rule, scope)
        WHERE state != 'resolved';
    CREATE INDEX alert_incidents_recent ON alert_incidents (started_at);

    CREATE TABLE alert_history (
        id          INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE INDEX alert_history_by_incident ON alert_history (incident_id, at);

    CREATE TABLE alert_outbox (
        id            INTEGER PRIMARY KEY,
        incident_id   INTEGER NOT NULL,
        channel       TEXT NOT NULL,
        kind          TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        payload       TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        delivered_at  INTEGER,
        last_error    TEXT,
        UNIQUE (incident_id, channel, kind, seq)
    );
    CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE delivered_at IS NULL;

    CREATE TABLE alert_silences (
        id         INTEGER PRIMARY KEY,
        rule       TEXT,
        scope      TEXT,
        starts_at  INTEGER NOT NULL,
        ends_at    INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );

    CREATE TABLE alert_rules (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    ),
    (
        5,
        "batches' raw JSON kept once per request body, compressed",
        r#"
    CREATE TABLE raw_bodies (
        id          INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        body        BLOB NOT NULL
    );
    ALTER TABLE events ADD COLUMN body_id INTEGER;
    ALTER TABLE events ADD COLUMN raw_start INTEGER;
    ALTER TABLE events ADD COLUMN raw_len INTEGER;
    "#,
    ),
    (
        6,
        "bounce rollups indexed by day, for retention",
        r#"
    CREATE INDEX rollup_bounce_day_by_day ON rollup_bounce_day (day);
    "#,
    ),
    (
        7,
        "a mailing's events found through id spans instead of a per-event index",
        // Runs of a mailing's ids with gaps of at most `SPAN_GAP` (64) ids
        // become spans, read from the old index in (mailing, id) order
        // before it is dropped.
        r#"
    CREATE TABLE mailing_spans (
        last_id    INTEGER PRIMARY KEY,
        mailing_id TEXT NOT NULL,
        first_id   INTEGER NOT NULL
    );
    CREATE INDEX mailing_spans_by_mailing ON mailing_spans (mailing_id, last_id);
    INSERT INTO mailing_spans (last_id, mailing_id, first_id)
        SELECT MAX(id), mailing_id, MIN(id) FROM (
            SELECT id, mailing_id, SUM(brk) OVER (PARTITION BY mailing_id ORDER BY id) AS run
            FROM (
                SELECT id, mailing_id,
                       CASE WHEN id - LAG(id) OVER (PARTITION BY mailing_id ORDER BY id) <= 64
                            THEN 0 ELSE 1 END AS brk
                FROM events WHERE mailing_id IS NOT NULL
            )
        )
        GROUP BY mailing_id, run;
    DROP INDEX events_by_mailing;
    "#,
    ),
    (
        8,
        "first opens/clicks written late: how far engagement_firsts is written",
        // Until now every first was in the table at once, so all of them up
        // to the last event are.
        r#"
    CREATE TABLE firsts_written (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        event_id INTEGER NOT NULL
    );
    INSERT INTO firsts_written (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
    "#,
    ),
];

/// Brings the database to the newest schema.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<u32> {
    migrate_to(conn, MIGRATIONS.last().map_or(0, |m| m.0))
}

/// Brings the database to schema version `target` (at most the newest):
/// the tests of a migration start from a store as an older version left
/// it.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> anyhow::Result<u32> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  INTEGER NOT NULL
        )",
    )?;
    let current: u32 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        anyhow::bail!(
            "the store has schema version {current}, newer than this mailpulse knows ({newest}); \
             refusing to touch it"
        );
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= target)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| anyhow::anyhow!("migration {version} ({description}) failed: {e}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![version, description, chrono::Utc::now().timestamp_millis()],
        )?;
        tx.commit()?;
        tracing::info!(version, description, "store migrated");
    }
    Ok(target.min(newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_stores() {
        let mut conn = Connection::open_in_memory().unwrap();
        let v = migrate(&mut conn).unwrap();
        assert_eq!(v, MIGRATIONS.len() as u32);
        // Running again is a no-op.
        assert_eq!(migrate(&mut conn).unwrap(), v);
        let n: u32 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, v);
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        assert!(migrate(&mut conn)
            .unwrap_err()
            .to_string()
            .contains("newer"));
    }

    #[test]
    fn migration_versions_are_increasing() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
    }
}
